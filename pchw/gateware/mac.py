"""The multiplier pool of a layer unit: ``M`` multiply-accumulate units on one schedule."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .fixed import floor_shift

__all__ = ["registered_product", "MacLanes"]


def registered_product(m, a, b, name):
    """``a * b`` through :data:`~pchw.latency.MULTIPLIER_STAGES` registers (operands, then
    product); returns the product, valid ``MULTIPLIER_STAGES`` cycles after its operands.

    Both registers belong to the multiplier block (Yosys absorbs them into the SB_MAC16's
    A/B and pipeline registers), so every path into and out of the block starts or ends at a
    register: nextpnr-ice40 times every DSP port as a register port, whatever the block's
    configuration, so a combinational multiplier's delay would escape the timing analysis."""
    a_q = Signal(a.shape(), name=f"{name}_a", reset_less=True)
    b_q = Signal(b.shape(), name=f"{name}_b", reset_less=True)
    product = Signal(signed(len(a) + len(b)), name=name, reset_less=True)
    m.d.sync += [a_q.eq(a), b_q.eq(b), product.eq(a_q * b_q)]
    return product


class MacLanes(wiring.Component):
    """``M`` multipliers that multiply their own two operands each and accumulate, two ways.

    The caller picks each multiplier's operands (``a_q``, ``b_q``: a weight and a value in a
    pass, an error and a value for a weight update). A *row pass* accumulates per multiplier:
    ``acc_q <- (init_q if first else acc_q) + a_q * b_q`` (``W phi + b``, a row each). A
    *column pass* sums over the multipliers into one accumulator:
    ``acc <- (col_init if first else acc) + sum_q a_q * b_q`` (``W^T eps``; ``col_init`` a
    constant, e.g. a rounding offset). The sums are exact: the accumulators are wide enough for
    ``terms`` products (a row accumulator) and ``terms`` products of every multiplier (the
    column accumulator).

    Timing: ``a`` and ``b`` are the operands of cycle ``t``; their products ``product_q`` are
    valid in cycle ``t + MULTIPLIER_STAGES`` (registered), and so are the accumulation controls
    ``first``, ``row_en``, ``col_en`` and ``init`` that use them. The accumulators take the new
    sums at the clock edge when ``row_en`` / ``col_en`` is high; ``row_sum`` and ``col_sum`` are
    the accumulators shifted right by ``row_shift`` / ``col_shift`` (floor; left for a negative
    shift): a sum whose last product is in cycle ``t`` is there in cycle ``t + 1``.

    Parameters
    ----------
    count : int
        Multipliers ``M``.
    a_shape, b_shape, init_shape : signed shapes of ``a_q``, ``b_q``, ``init_q``.
    terms : int
        The most products one accumulation sums per multiplier.
    col_init : int
        The start of every column accumulation (non-negative, below ``2**(a + b bits)``).
    row_shift, col_shift : int
        The shifts of ``row_sum`` and ``col_sum``.
    """

    def __init__(self, count, a_shape, b_shape, init_shape, terms, col_init=0, row_shift=0,
                 col_shift=0):
        self._count = count
        self._col_init = col_init
        self._row_shift, self._col_shift = row_shift, col_shift
        product = a_shape.width + b_shape.width
        row_width = max(product + terms.bit_length() + 1, init_shape.width + 1)
        col_width = product + (terms * count).bit_length() + 2
        self._row_width, self._col_width = row_width, col_width
        super().__init__({
            "a": In(data.ArrayLayout(a_shape, count)),
            "b": In(data.ArrayLayout(b_shape, count)),
            "init": In(data.ArrayLayout(init_shape, count)),
            "first": In(1), "row_en": In(1), "col_en": In(1),
            "product": Out(data.ArrayLayout(signed(product), count)),
            "row_sum": Out(data.ArrayLayout(signed(row_width - row_shift), count)),
            "col_sum": Out(signed(col_width - col_shift)),
        })

    def elaborate(self, platform):
        m = Module()
        products = []
        for q in range(self._count):
            product = registered_product(m, self.a[q], self.b[q], name=f"product{q}")
            m.d.comb += self.product[q].eq(product)
            products.append(product)
            acc = Signal(signed(self._row_width), name=f"row_acc{q}")
            with m.If(self.row_en):
                m.d.sync += acc.eq(Mux(self.first, self.init[q], acc) + product)
            m.d.comb += self.row_sum[q].eq(floor_shift(acc, self._row_shift))
        col_acc = Signal(signed(self._col_width))
        with m.If(self.col_en):
            m.d.sync += col_acc.eq(Mux(self.first, self._col_init, col_acc) + sum(products))
        m.d.comb += self.col_sum.eq(floor_shift(col_acc, self._col_shift))
        return m
