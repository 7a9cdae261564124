"""The MAC lane array of a layer unit: ``P`` multiply-accumulate lanes on one schedule."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MacLanes"]


class MacLanes(wiring.Component):
    """``P`` lanes that multiply a weight each by a value and accumulate, two ways.

    A *row pass* accumulates per lane: ``acc_p <- (init_p if first else acc_p) + w_p * v``,
    ``v`` broadcast to all lanes (``W phi + b``, a row per lane). A *column pass* sums over the
    lanes into one accumulator: ``acc <- (0 if first else acc) + sum_p w_p * e_p``
    (``W^T eps``). The sums are exact: the accumulators are wide enough for ``terms`` products.
    Both passes share one multiplier per lane: ``column`` selects its operand (``e_p`` or ``v``).

    Timing: ``row_sum`` and ``col_sum`` are combinational (0 cycles) from the operands; the
    accumulators take them at the clock edge when ``row_en`` / ``col_en`` is high.

    Parameters
    ----------
    lanes : int
    weight_shape, value_shape, lane_value_shape : signed shapes of ``w_p``, ``v``, ``e_p``.
    terms : int
        The most products one accumulation sums (the row length, or lanes x row groups).
    init_shape : signed shape of ``init_p``.
    """

    def __init__(self, lanes, weight_shape, value_shape, lane_value_shape, init_shape, terms):
        self._lanes = lanes
        row_width = max(weight_shape.width + value_shape.width + terms.bit_length() + 1,
                        init_shape.width + 1)
        col_width = weight_shape.width + lane_value_shape.width + terms.bit_length() + 1
        super().__init__({
            "w": In(data.ArrayLayout(weight_shape, lanes)),
            "v": In(value_shape),
            "e": In(data.ArrayLayout(lane_value_shape, lanes)),
            "init": In(data.ArrayLayout(init_shape, lanes)),
            "column": In(1), "first": In(1), "row_en": In(1), "col_en": In(1),
            "row_sum": Out(data.ArrayLayout(signed(row_width), lanes)),
            "col_sum": Out(signed(col_width)),
        })

    def elaborate(self, platform):
        m = Module()
        P = self._lanes
        products = []
        for p in range(P):
            product = Signal(signed(len(self.w[p]) + max(len(self.v), len(self.e[p]))),
                             name=f"product{p}")
            m.d.comb += product.eq(self.w[p] * Mux(self.column, self.e[p], self.v))
            products.append(product)
            acc = Signal.like(self.row_sum[p], name=f"acc{p}")
            m.d.comb += self.row_sum[p].eq(Mux(self.first, self.init[p], acc) + product)
            with m.If(self.row_en):
                m.d.sync += acc.eq(self.row_sum[p])
        col_acc = Signal.like(self.col_sum)
        m.d.comb += self.col_sum.eq(Mux(self.first, 0, col_acc) + sum(products))
        with m.If(self.col_en):
            m.d.sync += col_acc.eq(self.col_sum)
        return m
