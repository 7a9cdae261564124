"""The value walker: where each value of a payload goes (or each value of a reply comes from).

Values of ``x_0``, ``x_L`` and ``y`` are walked by index; the parameters of layer ``l`` as
:func:`pchw.protocol.encode_params` orders them, ``W_l`` row-major and then ``b_l``, as
(lane, row group, column) of the layer unit's memories (:class:`~pchw.gateware.layer.PCLayer`;
row ``r`` is lane ``r mod P_l`` of group ``r div P_l``, column ``n_{l-1}`` is the bias).
"""

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from ..latency import row_groups

__all__ = ["WalkMode", "ValueWalker"]


class WalkMode(enum.Enum, shape=1):
    VALUES = 0      # ``count`` values by index
    PARAMS = 1      # the parameters of layer ``layer``: W_l row-major, then b_l


class ValueWalker(wiring.Component):
    """Counts through the values of a command's payload or reply.

    The per-layer sizes are looked up once, at ``start``, into registers; the position and the
    comparisons that advance it read only registers (no path from the command's decode).

    Members
    -------
    start : In(1)
        Begin a walk (a one-cycle pulse) of ``mode``: ``count`` values, or the parameters of
        ``layer`` (1..L).
    next : In(1)
        Advance to the next value (a one-cycle pulse per value).
    index, lane, group, col : Out
        The position of the current value, valid from the cycle after ``start`` and after each
        ``next`` (latency 1): its index, and for parameters its lane, row group and column
        (the bias column is ``n_{l-1}``).
    last : Out(1)
        The current value is the walk's last.
    """

    def __init__(self, network):
        self._net = network
        L = network.L
        n = network.layers
        # lane, group and col as wide as the layer units' parameter port (PCCore's p_lane,
        # p_group, p_col): no bit the core cannot take
        super().__init__({
            "start": In(1), "mode": In(WalkMode), "layer": In(range(max(L + 1, 256))),
            "count": In(17), "next": In(1),
            "index": Out(16),
            "lane": Out(range(max(max(network.lanes), 2))),
            "group": Out(range(max(max(row_groups(network, l) for l in range(1, L + 1)), 2))),
            "col": Out(range(max(n[:-1]) + 1)),
            "last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        net, n, L = self._net, self._net.layers, self._net.L

        def table(values, width):          # per layer 1..L (index 0 unused)
            return Array(Const(v, width) for v in values)
        n_in = table([1] + [n[l - 1] for l in range(1, L + 1)], 17)
        n_out = table([1] + [n[l] for l in range(1, L + 1)], 16)
        lanes = table([1] + list(net.lanes), 8)
        param_count = table([0] + [n[l] * (n[l - 1] + 1) for l in range(1, L + 1)], 17)

        # The walk's sizes, registered at start.
        cols, last_col_at, last_lane_at, last_row_at = (Signal(17), Signal(17), Signal(8),
                                                         Signal(16))
        count = Signal(17)          # values left
        row = Signal(16)            # group * lanes + lane, counted (no multiplier)
        in_bias = Signal()
        index, lane, group, col = self.index, self.lane, self.group, self.col
        m.d.comb += self.last.eq(count == 1)

        with m.If(self.start):
            layer = self.layer
            m.d.sync += [count.eq(Mux(self.mode == WalkMode.PARAMS, param_count[layer],
                                      self.count)),
                         index.eq(0), lane.eq(0), group.eq(0), col.eq(0), row.eq(0),
                         in_bias.eq(0), cols.eq(n_in[layer]), last_col_at.eq(n_in[layer] - 1),
                         last_lane_at.eq(lanes[layer] - 1), last_row_at.eq(n_out[layer] - 1)]
        with m.Elif(self.next):
            last_col = col == last_col_at
            last_lane = lane == last_lane_at
            last_row = row == last_row_at
            m.d.sync += [count.eq(count - 1), index.eq(index + 1)]
            next_row = [lane.eq(Mux(last_lane, 0, lane + 1)),
                        group.eq(Mux(last_lane, group + 1, group)), row.eq(row + 1)]
            with m.If(in_bias):
                m.d.sync += next_row
            with m.Elif(last_col):
                m.d.sync += [col.eq(0), *next_row]
                with m.If(last_row):
                    m.d.sync += [in_bias.eq(1), col.eq(cols), lane.eq(0), group.eq(0),
                                 row.eq(0)]
            with m.Else():
                m.d.sync += col.eq(col + 1)
        return m
