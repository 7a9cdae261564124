"""The network core: one :class:`~pchw.gateware.layer.PCLayer` per layer, chained by their
neighbour links, and the sequencer that runs the PC schedule on them.

The sequencer's FSM is generated from :func:`pchw.schedule.schedule`: two states per step (the
start cycle, the wait), a round counter for a repeated segment. Cycle counts are those of
:mod:`pchw.latency`, sums over the same schedule (the tests hold the circuit to them).
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from ..network import MAX_INFERENCE_STEPS
from ..schedule import Op, schedule
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

    Raises
    ------
    ValueError
        If ``T`` is above :data:`~pchw.network.MAX_INFERENCE_STEPS`: the round counter of the
        relaxation loop is then at most 16 bits (a :class:`~pchw.network.Network` never holds
        a larger ``T``).
    """

    def __init__(self, network, *, faults=False):
        self._net = network
        self._faults = faults
        L = network.L
        if not 0 <= network.pc.inference_steps <= MAX_INFERENCE_STEPS:
            self._MustUse__silence = True       # refused, so never elaborated: no warning
            raise ValueError(f"T = {network.pc.inference_steps} is outside the step counter's "
                             f"0..{MAX_INFERENCE_STEPS}")
        self.layers = [PCLayer(network, l, faults=faults) for l in range(L + 1)]
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
            # fault injection: the dead units of layers 0..L, concatenated; the stuck bit of
            # the weight at the parameter port (write, and read one cycle after the address)
            **({"dead": In(sum(network.layers)), "s_we": In(1), "s_wdata": In(1),
                "p_stuck": Out(1)} if faults else {}),
        })
        self.updates = Signal(32)

    def elaborate(self, platform):
        m = Module()
        net, L = self._net, self._net.L
        units = self.layers
        offset = 0
        for l, unit in enumerate(units):
            m.submodules[f"layer{l}"] = unit
            if self._faults:
                m.d.comb += unit.dead.eq(self.dead[offset:offset + net.layers[l]])
                offset += net.layers[l]
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
            if self._faults:
                m.d.comb += [unit.s_we.eq(self.s_we & (self.p_layer == l)),
                             unit.s_wdata.eq(self.s_wdata)]
                with m.If(p_layer_q == l):
                    m.d.comb += self.p_stuck.eq(unit.p_stuck)

        # Sequencer: the steps of pchw.schedule, generated from it. Every step is a start
        # cycle and then a wait until no unit is busy; a repeated segment (the relaxation loop)
        # counts its rounds.
        any_busy = Signal()
        m.d.comb += any_busy.eq(sum(u.busy for u in units[1:]) != 0)
        plan = schedule(net)
        segments = {CoreOp.INFER: plan.infer_segments, CoreOp.LEARN: plan.learn_segments}
        rounds = Signal(range(max(seg.repeat for segs in segments.values() for seg in segs)))

        def state(op, i, k):
            return f"{op.name}_{i}_{k}_{segments[op][i].steps[k].op.name}"

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += rounds.eq(0)
                    with m.If(self.op == CoreOp.INFER):
                        m.next = state(CoreOp.INFER, 0, 0)
                    with m.Else():
                        m.next = state(CoreOp.LEARN, 0, 0)
            for op, segs in segments.items():
                for i, seg in enumerate(segs):
                    after = state(op, i + 1, 0) if i + 1 < len(segs) else "IDLE"
                    for k, step in enumerate(seg.steps):
                        name = state(op, i, k)
                        with m.State(name):
                            # The feedforward starts its one layer; other steps start every
                            # unit (a unit with no work in the step, like layer 1 in a
                            # relaxation without updates, stays idle).
                            for l, unit in enumerate(units[1:], start=1):
                                m.d.comb += [unit.phase.eq(Phase[step.op.name]),
                                             unit.start.eq(step.op is not Op.FEEDFORWARD
                                                           or l in step.layers)]
                            m.next = f"{name}_WAIT"
                        with m.State(f"{name}_WAIT"):
                            with m.If(~any_busy):
                                if step.errors_ready:
                                    m.d.comb += self.errors_ready.eq(1)
                                if step.counts_update:
                                    m.d.sync += self.updates.eq(self.updates + 1)
                                if k + 1 < len(seg.steps):
                                    m.next = state(op, i, k + 1)
                                elif seg.repeat == 1:
                                    m.next = after
                                else:
                                    with m.If(rounds == seg.repeat - 1):
                                        m.d.sync += rounds.eq(0)
                                        m.next = after
                                    with m.Else():
                                        m.d.sync += rounds.eq(rounds + 1)
                                        m.next = state(op, i, 0)
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
