"""The PC layer unit: layer ``l``'s state and, for ``l >= 1``, its weights and local learning.

Unit ``l`` owns ``x_l`` (and for ``l >= 1``: ``mu_l``, ``eps_l``, ``W_l``, ``b_l``). It talks to
its two neighbours only, over a :func:`link_signature` each: it reads ``phi_{l-1}`` from the unit
below and sends it the message ``W_l^T eps_l``; the unit above reads this unit's ``phi_l`` and
sends it messages, on which this unit updates ``x_l``.

Lanes: ``W_l`` is split by rows over ``P_l`` lanes (lane ``p`` owns rows ``i = r P_l + p``,
``r = 0 .. R_l - 1``, ``R_l = ceil(n_l / P_l)``), each lane a memory of ``R_l x n_{l-1}``
weights (address ``r n_{l-1} + j``) and a memory of ``R_l`` biases, with a multiplier for
``W x phi`` (row pass), one for ``W x eps`` (the message, ``l >= 2``) and one for the update
``eps x phi``.

Phases (``phase``, started by a one-cycle ``start``; ``busy`` is high while the unit works and
for exactly the cycle counts of :mod:`pchw.latency`):

``FEEDFORWARD``  row pass: ``mu_l = W_l phi_{l-1} + b_l``; ``x_l = mu_l``; the output layer also
                 keeps ``mu_L`` as the prediction ``y``.
``ERRORS``       row pass: ``mu_l = W_l phi_{l-1} + b_l``; ``eps_l = x_l - mu_l``.
``ERRORS_HELD``  ``eps_l = x_l - mu_l`` with ``mu_l`` kept (fixed prediction, or right after the
                 feedforward pass, where it is what a row pass would compute); no busy cycles.
``RELAX``        column pass: the message ``W_l^T eps_l`` to the unit below (``l >= 2``), and in
                 incremental mode the weight update; the unit below updates ``x_{l-1}``.
``UPDATE``       column pass: the weight and bias update.

A row pass iterates ``r`` (outer) and ``j`` (inner), a column pass ``j`` (outer) and ``r``
(inner); each issues one address per cycle for ``R_l n_{l-1}`` cycles.
"""

from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import enum, memory, wiring
from amaranth.lib.wiring import In, Out

from .fixed import ActivationUnit, DerivativeUnit, requantise, saturate
from .mac import MacLanes
from .srhash import noise_bits, srhash32

__all__ = ["Phase", "link_signature", "PCLayer"]


class Phase(enum.Enum, shape=3):
    IDLE = 0
    FEEDFORWARD = 1
    ERRORS = 2
    ERRORS_HELD = 3
    RELAX = 4
    UPDATE = 5


def link_signature(n, fmt):
    """Between unit ``l`` (the upper, ``Out``) and unit ``l-1`` (``n`` neurons, values ``fmt``).

    ``phi_addr`` -> ``phi_data``: combinational read of ``phi_{l-1}[phi_addr]``.
    ``msg_valid``/``msg_index``/``msg_data``: one message element per cycle, sent down.
    """
    return wiring.Signature({
        "phi_addr": Out(range(max(n, 2))),
        "phi_data": In(signed(fmt.width)),
        "msg_valid": Out(1),
        "msg_index": Out(range(max(n, 2))),
        "msg_data": Out(signed(fmt.width)),
    })


class PCLayer(wiring.Component):
    """Unit ``l`` of ``network`` (see the module docstring).

    Members
    -------
    below : Out(link_signature)   (``l >= 1``) link to the unit below.
    above : In(link_signature)    (``l < L``) link from the unit above.
    phase, start : In             the phase to run, and a one-cycle start pulse.
    busy : Out(1)                 high while working.
    step : In(32)                 the network's weight-update count (stochastic rounding key).
    x_we, x_addr, x_wdata : In    write ``x_l[x_addr]`` (inputs, targets).
    y_addr : In, y_data : Out     read the prediction ``y`` (output layer; combinational).
    p_group, p_col : In           parameter port (``l >= 1``, only while idle): row group
    p_lane : In                   ``r`` and column ``j`` (``j = n_{l-1}`` is the bias) of lane
    p_rdata : Out                 ``p``; read data one cycle after the address;
    p_we, p_wdata : In            write.

    Attributes ``x``, ``mu``, ``eps`` (lists of signals) hold the state, for tests and traces.
    """

    def __init__(self, network, layer):
        self._net = network
        self._l = l = layer
        self._L = L = network.L
        self._n = n = network.layers[l]
        self._vf = network.value_format(l)
        members = {
            "phase": In(Phase), "start": In(1), "busy": Out(1), "step": In(32),
            "x_we": In(1), "x_addr": In(range(max(n, 2))), "x_wdata": In(signed(self._vf.width)),
        }
        if l == L:
            members.update({"y_addr": In(range(max(n, 2))), "y_data": Out(signed(self._vf.width))})
        if l >= 1:
            self._n_in = network.layers[l - 1]
            self._P = P = network.lanes[l - 1]
            self._R = -(-n // P)
            self._wf = network.weight_format(l)
            self._vin = network.value_format(l - 1)
            members["below"] = Out(link_signature(self._n_in, self._vin))
            members.update({
                "p_lane": In(range(max(P, 2))), "p_group": In(range(max(self._R, 2))),
                "p_col": In(range(self._n_in + 1)),
                "p_rdata": Out(signed(self._wf.width)), "p_we": In(1),
                "p_wdata": In(signed(self._wf.width)),
            })
        if l < L:
            members["above"] = In(link_signature(n, self._vf))
        super().__init__(members)
        w = self._vf.width
        self.x = [Signal(signed(w), name=f"x{k}") for k in range(n)]
        if l >= 1:
            self.mu = [Signal(signed(w), name=f"mu{k}") for k in range(n)]
            self.eps = [Signal(signed(w), name=f"eps{k}") for k in range(n)]
            self.y = [Signal(signed(w), name=f"y{k}") for k in range(n)] if l == L else None
            self.weight_memories, self.bias_memories = self._memories()

    def _memories(self):
        """Per-lane weight and bias memories, initialised from the quantised parameters."""
        wf, P, R, n_in = self._wf, self._P, self._R, self._n_in
        W = wf.quantise(self._net.weights[self._l - 1])
        b = wf.quantise(self._net.biases[self._l - 1])
        weights, biases = [], []
        for p in range(P):
            rows = [r * P + p for r in range(R)]
            w_init = [int(W[i, j]) if i < self._n else 0 for i in rows for j in range(n_in)]
            b_init = [int(b[i]) if i < self._n else 0 for i in rows]
            weights.append(memory.Memory(shape=signed(wf.width), depth=R * n_in, init=w_init))
            biases.append(memory.Memory(shape=signed(wf.width), depth=R, init=b_init))
        return weights, biases

    # -- elaboration --------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        l, L = self._l, self._L
        mode = self._net.pc.mode
        if l < L:
            self._serve_above(m, mode)
        if l == L:
            m.d.comb += self.y_data.eq(Array(self.y)[self.y_addr])
        x_write = self.x_we
        if l >= 1:
            self._passes(m, mode, x_write)
        else:
            with m.If(self.x_we):
                m.d.sync += Array(self.x)[self.x_addr].eq(self.x_wdata)
        return m

    def _serve_above(self, m, mode):
        """``phi_l`` to the unit above, and the value update on its messages."""
        l, vf = self._l, self._vf
        act = self._net.activations[l]
        held = mode == "fixed_prediction" and l >= 1       # f and f' of the feedforward value
        x_for_f = Array(self.mu if held else self.x)
        m.submodules.f = f = ActivationUnit(act, vf)
        m.d.comb += [f.x.eq(x_for_f[self.above.phi_addr]), self.above.phi_data.eq(f.phi)]
        if l == 0:
            return
        k = self.above.msg_index
        m.submodules.df = df = DerivativeUnit(act, vf)
        delta = Signal(signed(vf.width))
        m.d.comb += [df.x.eq(x_for_f[k]), df.message.eq(self.above.msg_data),
                     delta.eq(requantise(df.gated - Array(self.eps)[k],
                                         self._net.pc.gamma_shift, vf))]
        with m.If(self.above.msg_valid):
            m.d.sync += Array(self.x)[k].eq(saturate(Array(self.x)[k] + delta, vf))

    def _passes(self, m, mode, x_write):
        l, L, P, R, n, n_in = self._l, self._L, self._P, self._R, self._n, self._n_in
        vf, vin, wf = self._vf, self._vin, self._wf
        pc = self._net.pc

        # Issue stage: phase latch and the (r, j) counters.
        run = Signal(Phase)
        active = Signal()
        r = Signal(range(max(R, 2)))
        j = Signal(range(max(n_in, 2)))
        column = Signal()            # column order (RELAX/UPDATE) vs row order
        with m.If(self.start):
            m.d.sync += [run.eq(self.phase), r.eq(0), j.eq(0)]
            with m.Switch(self.phase):
                with m.Case(Phase.FEEDFORWARD, Phase.ERRORS):
                    m.d.sync += [active.eq(1), column.eq(0)]
                with m.Case(Phase.UPDATE):
                    m.d.sync += [active.eq(1), column.eq(1)]
                with m.Case(Phase.RELAX):
                    # Layer 1 sends no message; it only works in incremental mode (update).
                    m.d.sync += [active.eq(l >= 2 or mode == "incremental"), column.eq(1)]
        last_r, last_j = r == R - 1, j == n_in - 1
        with m.If(active):
            with m.If(column):
                m.d.sync += r.eq(Mux(last_r, 0, r + 1))
                with m.If(last_r):
                    m.d.sync += j.eq(j + 1)
            with m.Else():
                m.d.sync += j.eq(Mux(last_j, 0, j + 1))
                with m.If(last_j):
                    m.d.sync += r.eq(r + 1)
            with m.If(last_r & last_j):
                m.d.sync += active.eq(0)

        # Memory ports: pass reads, update writes, and the parameter port when idle.
        addr = Signal(range(max(R * n_in, 2)))
        m.d.comb += addr.eq(r * n_in + j)
        p_addr = Signal.like(addr)
        m.d.comb += p_addr.eq(self.p_group * n_in + self.p_col)
        w_rd, w_wr, b_rd, b_wr = [], [], [], []
        for p in range(P):
            wm, bm = self.weight_memories[p], self.bias_memories[p]
            m.submodules[f"w{p}"], m.submodules[f"b{p}"] = wm, bm
            rd, wr = wm.read_port(), wm.write_port()
            brd, bwr = bm.read_port(), bm.write_port()
            m.d.comb += [rd.addr.eq(Mux(active, addr, p_addr)),
                         brd.addr.eq(Mux(active, r, self.p_group))]
            w_rd.append(rd), w_wr.append(wr), b_rd.append(brd), b_wr.append(bwr)
        # Parameter port read data (one cycle after p_re).
        p_sel = Signal.like(self.p_lane)
        p_bias = Signal()
        m.d.sync += [p_sel.eq(self.p_lane), p_bias.eq(self.p_col == n_in)]
        m.d.comb += self.p_rdata.eq(Mux(p_bias, Array(p.data for p in b_rd)[p_sel],
                                        Array(p.data for p in w_rd)[p_sel]))

        # Stage 1 registers.
        s1 = Signal()
        s1_r = Signal.like(r)
        s1_j = Signal.like(j)
        s1_addr = Signal.like(addr)
        s1_phi = Signal(signed(vin.width))
        s1_eps = [Signal(signed(vf.width), name=f"s1_eps{p}") for p in range(P)]
        m.d.sync += [s1.eq(active), s1_r.eq(r), s1_j.eq(j), s1_addr.eq(addr)]
        m.d.comb += self.below.phi_addr.eq(j)
        m.d.sync += s1_phi.eq(self.below.phi_data)
        eps_arr = Array(self.eps)
        for p in range(P):
            row = Signal(range(R * P + 1), name=f"row{p}")
            m.d.comb += row.eq(r * P + p)
            m.d.sync += s1_eps[p].eq(Mux(row < n, eps_arr[Mux(row < n, row, 0)], 0))
        busy = active | s1
        col_pass = s1 & column
        sends = col_pass & (run == Phase.RELAX) if l >= 2 else 0

        # The lanes: W phi + b per lane (row pass), W^T eps over the lanes (column pass).
        m.submodules.mac = mac = MacLanes(
            P, signed(wf.width), signed(vin.width), signed(vf.width),
            signed(wf.width + vin.frac), terms=max(n_in, R * P))
        row_pass = s1 & ~column
        m.d.comb += [mac.v.eq(s1_phi), mac.first.eq(Mux(column, s1_r == 0, s1_j == 0)),
                     mac.row_en.eq(row_pass), mac.col_en.eq(sends)]
        for p in range(P):
            m.d.comb += [mac.w[p].eq(w_rd[p].data), mac.e[p].eq(s1_eps[p]),
                         mac.init[p].eq(b_rd[p].data << vin.frac)]

        # Row pass: at the end of a row write mu (and x, y or eps).
        mu_shift = wf.frac + vin.frac - vf.frac
        for p in range(P):
            mu_val = Signal(signed(vf.width), name=f"mu_val{p}")
            m.d.comb += mu_val.eq(requantise(mac.row_sum[p], mu_shift, vf))
            for k in range(p, n, P):
                with m.If(row_pass & (s1_j == n_in - 1) & (s1_r == k // P)):
                    m.d.sync += self.mu[k].eq(mu_val)
                    with m.If(run == Phase.FEEDFORWARD):
                        m.d.sync += self.x[k].eq(mu_val)
                        if l == L:
                            m.d.sync += self.y[k].eq(mu_val)
                    with m.Else():
                        m.d.sync += self.eps[k].eq(saturate(self.x[k] - mu_val, vf))

        # ERRORS_HELD: every eps at once from the held mu.
        with m.If(self.start & (self.phase == Phase.ERRORS_HELD)):
            m.d.sync += [self.eps[k].eq(saturate(self.x[k] - self.mu[k], vf)) for k in range(n)]

        # Host writes of x (inputs/targets); lowest priority (only used while idle).
        with m.If(x_write):
            m.d.sync += Array(self.x)[self.x_addr].eq(self.x_wdata)

        # Column pass: the message W^T eps down (l >= 2), then the weight update.
        if l >= 2:
            msg_shift = vf.frac + wf.frac - vin.frac
            msg_valid = Signal()
            msg_index = Signal.like(self.below.msg_index)
            msg_data = Signal.like(self.below.msg_data)
            m.d.sync += [msg_valid.eq(sends & (s1_r == R - 1)), msg_index.eq(s1_j),
                         msg_data.eq(requantise(mac.col_sum, msg_shift, vin))]
            m.d.comb += [self.below.msg_valid.eq(msg_valid), self.below.msg_index.eq(msg_index),
                         self.below.msg_data.eq(msg_data)]
            busy = busy | msg_valid
        m.d.comb += self.busy.eq(busy)

        updates = col_pass & ((run == Phase.UPDATE) |
                              ((run == Phase.RELAX) & (mode == "incremental")))
        shift_w = vf.frac + vin.frac - wf.frac + pc.eta_shift
        shift_b = vf.frac - wf.frac + pc.eta_shift
        stochastic = pc.weight_rounding == "stochastic"
        for p in range(P):
            row = Signal(range(R * P + 1), name=f"s1_row{p}")
            m.d.comb += row.eq(s1_r * P + p)
            noise_w = noise_b = None
            if stochastic and shift_w > 0:
                h = srhash32(m, pc.seed, l, self.step, row, s1_j, name=f"hash_w{p}")
                noise_w = noise_bits(h, shift_w)
            if stochastic and shift_b > 0:
                h = srhash32(m, pc.seed, l, self.step, row, n_in, name=f"hash_b{p}")
                noise_b = noise_bits(h, shift_b)
            new_w = Signal(signed(wf.width), name=f"new_w{p}")
            new_b = Signal(signed(wf.width), name=f"new_b{p}")
            dw = Signal(signed(wf.width), name=f"dw{p}")
            db = Signal(signed(wf.width), name=f"db{p}")
            m.d.comb += [dw.eq(requantise(s1_eps[p] * s1_phi, shift_w, wf, noise_w)),
                         db.eq(requantise(s1_eps[p], shift_b, wf, noise_b)),
                         new_w.eq(saturate(w_rd[p].data + dw, wf)),
                         new_b.eq(saturate(b_rd[p].data + db, wf))]
            live = updates & (row < n)
            m.d.comb += [
                w_wr[p].addr.eq(Mux(s1, s1_addr, p_addr)),
                w_wr[p].data.eq(Mux(s1, new_w, self.p_wdata)),
                w_wr[p].en.eq(Mux(s1, live, self.p_we & (self.p_lane == p) &
                                  (self.p_col != n_in))),
                b_wr[p].addr.eq(Mux(s1, s1_r, self.p_group)),
                b_wr[p].data.eq(Mux(s1, new_b, self.p_wdata)),
                b_wr[p].en.eq(Mux(s1, live & (s1_j == 0), self.p_we & (self.p_lane == p) &
                                  (self.p_col == n_in))),
            ]
