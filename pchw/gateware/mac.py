"""The MAC lane array of a layer unit: ``P`` multiply-accumulate lanes on one schedule."""

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
    """``P`` lanes that multiply a weight each by a value and accumulate, two ways.

    A *row pass* accumulates per lane: ``acc_p <- (init_p if first else acc_p) + w_p * v``,
    ``v`` broadcast to all lanes (``W phi + b``, a row per lane). A *column pass* sums over the
    lanes into one accumulator: ``acc <- (col_init if first else acc) + sum_p w_p * e_p``
    (``W^T eps``; ``col_init`` a constant, e.g. a rounding offset). The sums are exact: the accumulators are wide enough for ``terms`` products.
    Both passes share one multiplier per lane: ``column`` selects its operand (``e_p`` or ``v``);
    ``unit_w`` replaces every ``w_p`` by 1, so that ``product_p`` is the operand itself.

    Timing: ``w``, ``v``, ``e``, ``column`` and ``unit_w`` are the operands of cycle ``t``; their
    products ``product_p`` are valid in cycle ``t + MULTIPLIER_STAGES`` (registered), and so are
    the accumulation controls ``first``, ``row_en``, ``col_en`` and ``init`` that use them.
    The accumulators take the new sums at the clock edge when ``row_en`` / ``col_en`` is high;
    ``row_sum`` and ``col_sum`` are the accumulators shifted right by ``row_shift`` /
    ``col_shift`` (floor; left for a negative shift): a sum whose last product is in cycle
    ``t`` is there in cycle ``t + 1``.

    Parameters
    ----------
    lanes : int
    weight_shape, value_shape, lane_value_shape : signed shapes of ``w_p``, ``v``, ``e_p``.
    init_shape : signed shape of ``init_p``.
    terms : int
        The most products one accumulation sums (the row length, or lanes x row groups).
    col_init : int
        The start of every column accumulation (non-negative, below ``2**(weight + lane value
        bits)``).
    row_shift, col_shift : int
        The shifts of ``row_sum`` and ``col_sum``.
    """

    def __init__(self, lanes, weight_shape, value_shape, lane_value_shape, init_shape, terms,
                 col_init=0, row_shift=0, col_shift=0):
        self._lanes = lanes
        self._col_init = col_init
        self._row_shift, self._col_shift = row_shift, col_shift
        operand = max(value_shape.width, lane_value_shape.width)
        row_width = max(weight_shape.width + value_shape.width + terms.bit_length() + 1,
                        init_shape.width + 1)
        col_width = weight_shape.width + lane_value_shape.width + terms.bit_length() + 2
        self._row_width, self._col_width = row_width, col_width
        super().__init__({
            "w": In(data.ArrayLayout(weight_shape, lanes)),
            "v": In(value_shape),
            "e": In(data.ArrayLayout(lane_value_shape, lanes)),
            "init": In(data.ArrayLayout(init_shape, lanes)),
            "column": In(1), "unit_w": In(1),
            "first": In(1), "row_en": In(1), "col_en": In(1),
            "product": Out(data.ArrayLayout(signed(weight_shape.width + operand), lanes)),
            "row_sum": Out(data.ArrayLayout(signed(row_width - row_shift), lanes)),
            "col_sum": Out(signed(col_width - col_shift)),
        })

    def elaborate(self, platform):
        m = Module()
        P = self._lanes
        products = []
        for p in range(P):
            product = registered_product(
                m, Mux(self.unit_w, 1, self.w[p]), Mux(self.column, self.e[p], self.v),
                name=f"product{p}")
            m.d.comb += self.product[p].eq(product)
            products.append(product)
            acc = Signal(signed(self._row_width), name=f"row_acc{p}")
            with m.If(self.row_en):
                m.d.sync += acc.eq(Mux(self.first, self.init[p], acc) + product)
            m.d.comb += self.row_sum[p].eq(floor_shift(acc, self._row_shift))
        col_acc = Signal(signed(self._col_width))
        with m.If(self.col_en):
            m.d.sync += col_acc.eq(Mux(self.first, self._col_init, col_acc) + sum(products))
        m.d.comb += self.col_sum.eq(floor_shift(col_acc, self._col_shift))
        return m
