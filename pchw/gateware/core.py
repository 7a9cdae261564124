"""The network core: one :class:`~pchw.gateware.layer.PCLayer` per layer, chained by their
neighbour links, and the sequencer that runs the PC schedule on them.

Cycle counts are those of :mod:`pchw.latency` (the tests hold the circuit to them).
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from .layer import PCLayer, Phase

__all__ = ["CoreOp", "PCCore"]


class CoreOp(enum.Enum, shape=1):
    INFER = 0    # feedforward wavefront: x_0 (loaded) -> y
    LEARN = 1    # after INFER and the target written into x_L: relax, then update the weights


class PCCore(wiring.Component):
    """All layer units of ``network`` and the sequencer.

    Members
    -------
    op : In(CoreOp), start : In(1)   start a command with a one-cycle pulse (while idle).
    busy : Out(1)                     high from the cycle after ``start`` until done.
    errors_ready : Out(1)             pulses for one cycle each time a new set of errors is
                                      complete (the points of the golden model's trace).
    x_layer : In, x_we, x_addr, x_wdata : In   write ``x_0`` (inputs) or ``x_L`` (targets).
    y_addr : In, y_data : Out         the prediction ``y`` (combinational read).
    p_layer, p_lane, p_group, p_col, p_we, p_wdata : In; p_rdata : Out
                                      parameter access of layer ``p_layer`` (see PCLayer).
    """

    def __init__(self, network):
        self._net = network
        L = network.L
        self.layers = [PCLayer(network, l) for l in range(L + 1)]
        top, out = self.layers[1:], self.layers[L]
        vf0 = network.value_format(0)
        width = max(vf0.width, network.value_format(L).width)
        wmax = max(network.weight_format(l).width for l in range(1, L + 1))
        super().__init__({
            "op": In(CoreOp), "start": In(1), "busy": Out(1), "errors_ready": Out(1),
            "x_layer": In(1), "x_we": In(1),
            "x_addr": In(range(max(max(network.layers[0], network.layers[L]), 2))),
            "x_wdata": In(signed(width)),
            "y_addr": In(out.y_addr.shape()), "y_data": Out(out.y_data.shape()),
            "p_layer": In(range(L + 1)),
            "p_lane": In(range(max(max(network.lanes), 2))),
            "p_group": In(range(max(max(u._R for u in top), 2))),
            "p_col": In(range(max(network.layers[:-1]) + 1)),
            "p_we": In(1), "p_wdata": In(signed(wmax)), "p_rdata": Out(signed(wmax)),
        })
        self.updates = Signal(32)

    def elaborate(self, platform):
        m = Module()
        net, L = self._net, self._net.L
        mode, T = net.pc.mode, net.pc.inference_steps
        units = self.layers
        for l, unit in enumerate(units):
            m.submodules[f"layer{l}"] = unit
            if l >= 1:
                wiring.connect(m, unit.below, units[l - 1].above)
            m.d.comb += unit.step.eq(self.updates)

        # Host access.
        m.d.comb += [units[0].x_addr.eq(self.x_addr), units[0].x_wdata.eq(self.x_wdata),
                     units[0].x_we.eq(self.x_we & (self.x_layer == 0)),
                     units[L].x_addr.eq(self.x_addr), units[L].x_wdata.eq(self.x_wdata),
                     units[L].x_we.eq(self.x_we & (self.x_layer == 1)),
                     units[L].y_addr.eq(self.y_addr), self.y_data.eq(units[L].y_data)]
        p_layer_q = Signal.like(self.p_layer)
        m.d.sync += p_layer_q.eq(self.p_layer)
        for l, unit in enumerate(units[1:], start=1):
            m.d.comb += [unit.p_lane.eq(self.p_lane), unit.p_group.eq(self.p_group),
                         unit.p_col.eq(self.p_col), unit.p_wdata.eq(self.p_wdata),
                         unit.p_we.eq(self.p_we & (self.p_layer == l))]
            with m.If(p_layer_q == l):
                m.d.comb += self.p_rdata.eq(unit.p_rdata)

        # Sequencer. Every phase is a start cycle and then a wait until no unit is busy.
        any_busy = Signal()
        m.d.comb += any_busy.eq(sum(u.busy for u in units[1:]) != 0)
        ff_layer = Signal(range(L + 2))
        t = Signal(range(max(T, 1) + 1))

        def start(phase, only=None):
            for l, unit in enumerate(units[1:], start=1):
                cond = 1 if only is None else (only == l)
                m.d.comb += [unit.phase.eq(phase), unit.start.eq(cond)]

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [ff_layer.eq(1), t.eq(0)]
                    with m.If(self.op == CoreOp.INFER):
                        m.next = "FEEDFORWARD"
                    with m.Else():
                        m.next = "HELD_ERRORS"
            with m.State("FEEDFORWARD"):
                start(Phase.FEEDFORWARD, only=ff_layer)
                m.next = "FEEDFORWARD_WAIT"
            with m.State("FEEDFORWARD_WAIT"):
                with m.If(~any_busy):
                    m.d.sync += ff_layer.eq(ff_layer + 1)
                    m.next = "FEEDFORWARD"
                    with m.If(ff_layer == L):
                        m.next = "IDLE"
            with m.State("HELD_ERRORS"):
                start(Phase.ERRORS)
                m.next = "HELD_ERRORS_WAIT"
            with m.State("HELD_ERRORS_WAIT"):
                with m.If(~any_busy):
                    m.d.comb += self.errors_ready.eq(1)
                    self._after_errors(m, t, T, mode, first=True)
            with m.State("RELAX"):
                start(Phase.RELAX)
                m.next = "RELAX_WAIT"
            with m.State("RELAX_WAIT"):
                with m.If(~any_busy):
                    m.d.sync += t.eq(t + 1)
                    # New predictions (row passes), except with the feedforward mu held.
                    after = "ERRORS" if mode == "fixed_prediction" else "PREDICT"
                    if mode == "incremental":
                        m.d.sync += self.updates.eq(self.updates + 1)
                        m.next = after
                        with m.If(t == T - 1):
                            m.next = "IDLE"
                    else:
                        m.next = after
            with m.State("PREDICT"):
                start(Phase.PREDICT)
                m.next = "PREDICT_WAIT"
            with m.State("PREDICT_WAIT"):
                with m.If(~any_busy):
                    m.next = "ERRORS"
            with m.State("ERRORS"):
                start(Phase.ERRORS)
                m.next = "ERRORS_WAIT"
            with m.State("ERRORS_WAIT"):
                with m.If(~any_busy):
                    m.d.comb += self.errors_ready.eq(1)
                    self._after_errors(m, t, T, mode, first=False)
            with m.State("UPDATE"):
                start(Phase.UPDATE)
                m.next = "UPDATE_WAIT"
            with m.State("UPDATE_WAIT"):
                with m.If(~any_busy):
                    m.d.sync += self.updates.eq(self.updates + 1)
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m

    @staticmethod
    def _after_errors(m, t, T, mode, first):
        """After a set of errors: relax while steps remain, else update (incremental: stop)."""
        if T == 0:
            m.next = "IDLE" if mode == "incremental" else "UPDATE"
        elif first:
            m.next = "RELAX"
        else:
            with m.If(t == T):
                m.next = "UPDATE"
            with m.Else():
                m.next = "RELAX"
