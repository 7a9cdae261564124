"""The PC layer unit: layer ``l``'s state and, for ``l >= 1``, its weights and local learning.

Unit ``l`` owns ``x_l`` (and for ``l >= 1``: ``mu_l``, ``eps_l``, ``W_l``, ``b_l``). It talks to
its two neighbours only, over a :func:`link_signature` each: it fetches ``phi_{l-1}`` from the
unit below and sends it the message ``W_l^T eps_l``; the unit above fetches this unit's
``phi_l`` and sends it messages, on which this unit updates ``x_l``.

Lanes and banks: ``W_l`` is split by rows over ``P_l`` lanes (lane ``p`` owns rows
``i = r P_l + p``, ``r = 0 .. R_l - 1``, ``R_l = ceil(n_l / P_l)``), and a lane's row groups
over its multipliers, the pool (:func:`~pchw.latency.halves`: two, each taking ``H_l`` row
groups, :func:`~pchw.latency.half_rows`): multiplier ``h`` has a memory of ``H_l x n_{l-1}``
weights (rows ``r = h H_l + s`` at address ``s n_{l-1} + j``) and a memory of ``H_l`` biases,
and takes ``W x phi`` in a row pass, ``W x eps`` in the message and ``eps x phi`` in the update.
The state vectors are block memories banked the same way: bank ``p`` of ``x_l``, ``mu_l`` and
``eps_l`` holds neuron ``r P_l + p`` at address ``r`` (layer 0: one bank); ``eps_l`` is split
further by halves (address ``s``), so that a column pass reads an error for every multiplier.
Every memory has one read and one write port, and no two users of a port are ever active in
the same cycle (so they map onto single block RAMs).

Phases (``phase``, started by a one-cycle ``start``; ``busy`` is high while the unit works and
for exactly the cycle counts of :mod:`pchw.latency`):

``FEEDFORWARD``  row pass: ``mu_l = W_l phi_{l-1} + b_l``; ``x_l = mu_l``; the output layer also
                 keeps ``mu_L`` as the prediction ``y``.
``PREDICT``      row pass: ``mu_l = W_l phi_{l-1} + b_l``.
``ERRORS``       sweep: ``eps_l = x_l - mu_l``, a row group per cycle (``R_l`` cycles).
``RELAX``        column pass: the message ``W_l^T eps_l`` to the unit below (``l >= 2``), and in
                 incremental mode the weight update; the unit below updates ``x_{l-1}``.
``UPDATE``       column pass: the weight and bias update.

A row pass iterates ``r`` (outer) and ``j`` (inner), a column pass ``j`` (outer) and ``r``
(inner), ``r`` over a half's row groups; each issues one address per cycle and multiplier for
``H_l n_{l-1}`` cycles (a column pass that sends the message and updates visits each column
twice). Stage 1 (one cycle after
the issue) has the memories' read data, which go into the multipliers; stage
``1 + MULTIPLIER_STAGES`` (:data:`~pchw.latency.PASS_STAGES`) has their products, accumulates
them, writes ``mu``/``x`` at row ends and the updated weights.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import enum, memory, wiring
from amaranth.lib.wiring import In, Out

from ..fixedpoint import LayerShifts
from ..latency import (MESSAGE_STAGES, MULTIPLIER_STAGES, PASS_STAGES, half_rows, halves,
                       row_groups)
from ..schedule import relax_work
from .fixed import (ActivationUnit, gate_apply, gate_condition, requantise, round_offset,
                    saturate)
from .mac import MacLanes, registered_product
from .srhash import noise_bits, srhash32

__all__ = ["Phase", "link_signature", "banks", "message_lag", "PCLayer"]


class Phase(enum.Enum, shape=3):
    IDLE = 0
    FEEDFORWARD = 1
    PREDICT = 2
    ERRORS = 3
    RELAX = 4
    UPDATE = 5


def banks(network, l):
    """Memory banks of layer ``l``'s state vectors: its lanes (``l >= 1``), or 1 (inputs)."""
    return network.lanes[l - 1] if l >= 1 else 1


def message_lag(network):
    """Cycles from the fetch of a neuron over a link to the message for it.

    The message leaves ``PASS_STAGES + MESSAGE_STAGES`` cycles after the upper unit issues the
    last address of its column. Without updates during relaxation (every mode but incremental)
    the upper unit needs no ``phi`` then and fetches each neuron :data:`LATE_FETCH` cycles late:
    the lag is 2. In incremental mode it fetches on time (the update needs ``phi``), and the lower
    unit holds the fetched values longer."""
    return 2 if network.pc.mode != "incremental" else PASS_STAGES + MESSAGE_STAGES


LATE_FETCH = PASS_STAGES + MESSAGE_STAGES - 2


def link_signature(n, fmt, bank_count):
    """Between unit ``l`` (the upper, ``Out``) and unit ``l-1`` (``n`` neurons, values ``fmt``,
    state in ``bank_count`` banks).

    ``fetch_row``/``fetch_bank`` -> ``phi_data``: neuron ``k = fetch_row * bank_count +
    fetch_bank`` is fetched every cycle; ``phi_data`` is ``phi_{l-1}[k]`` one cycle later.
    ``msg_valid``/``msg_data``: the message for the neuron fetched :func:`message_lag` cycles
    before.
    """
    rows = -(-n // bank_count)
    return wiring.Signature({
        "fetch_row": Out(range(max(rows, 2))),
        "fetch_bank": Out(range(max(bank_count, 2))),
        "phi_data": In(signed(fmt.width)),
        "msg_valid": Out(1),
        "msg_data": Out(signed(fmt.width)),
    })


def _delayed(m, value, name):
    """``value`` one cycle later (a register without reset)."""
    q = Signal(value.shape(), name=name, reset_less=True)
    m.d.sync += q.eq(value)
    return q


def _delayed_valid(m, value, name):
    """``value`` one cycle later (a register reset to 0)."""
    q = Signal(name=name)
    m.d.sync += q.eq(value)
    return q


def _bank_memories(count, rows, width):
    return [memory.Memory(shape=signed(width), depth=max(rows, 1), init=[]) for _ in range(count)]


class PCLayer(wiring.Component):
    """Unit ``l`` of ``network`` (see the module docstring).

    Members
    -------
    below : Out(link_signature)   (``l >= 1``) link to the unit below.
    above : In(link_signature)    (``l < L``) link from the unit above.
    phase, start : In             the phase to run, and a one-cycle start pulse.
    busy : Out(1)                 high while working.
    step : In(32)                 the network's weight-update count (stochastic rounding key).
    x_we, x_addr, x_wdata : In    write ``x_l[x_addr]`` (inputs, targets; only while idle).
    y_addr : In, y_data : Out     read the prediction ``y`` (output layer; combinational).
    p_group, p_col : In           parameter port (``l >= 1``, only while idle): row group
    p_lane : In                   ``r`` and column ``j`` (``j = n_{l-1}`` is the bias) of lane
    p_rdata : Out                 ``p``; read data one cycle after the address;
    p_we, p_wdata : In            write.

    Attributes ``x``, ``mu``, ``eps`` (per neuron, the memory rows holding it) and ``y`` (the
    output layer's registers) give the state to tests and traces.
    """

    def __init__(self, network, layer, *, faults=False):
        self._net = network
        self._faults = faults
        self._l = l = layer
        self._L = L = network.L
        self._n = n = network.layers[l]
        self._vf = network.value_format(l)
        self._B = B = banks(network, l)
        members = {
            "phase": In(Phase), "start": In(1), "busy": Out(1), "step": In(32),
            "x_we": In(1), "x_addr": In(range(max(n, 2))), "x_wdata": In(signed(self._vf.width)),
        }
        if l == L:
            members.update({"y_addr": In(range(max(n, 2))), "y_data": Out(signed(self._vf.width))})
        if l >= 1:
            self._n_in = network.layers[l - 1]
            self._P = P = network.lanes[l - 1]
            self._R = row_groups(network, l)
            self._H = halves(network, l)            # multipliers per lane
            self._RA = half_rows(network, l)        # row groups per multiplier
            self._wf = network.weight_format(l)
            self._vin = network.value_format(l - 1)
            self._B_in = banks(network, l - 1)
            members["below"] = Out(link_signature(self._n_in, self._vin, self._B_in))
            members.update({
                "p_lane": In(range(max(P, 2))), "p_group": In(range(max(self._R, 2))),
                "p_col": In(range(self._n_in + 1)),
                "p_rdata": Out(signed(self._wf.width)), "p_we": In(1),
                "p_wdata": In(signed(self._wf.width)),
            })
        if l < L:
            members["above"] = In(link_signature(n, self._vf, B))
        if faults:
            members["dead"] = In(n)     # fault injection: these units' x, mu (y) stay zero
            if l >= 1:                  # ... and the stuck weights (see _stuck_weights)
                members.update({"s_we": In(1), "s_wdata": In(1), "p_stuck": Out(1)})
        super().__init__(members)
        w = self._vf.width
        rows = -(-n // B)
        self.x_banks = _bank_memories(B, rows, w)
        self.x = [self.x_banks[k % B].data[k // B] for k in range(n)]
        if l >= 1:
            self.mu_banks = _bank_memories(B, rows, w)
            H, RA = self._H, self._RA
            # eps: a bank per lane and half (the column pass reads both halves every cycle)
            self.eps_banks = [_bank_memories(H, RA, w) for _ in range(B)]
            self.mu = [self.mu_banks[k % B].data[k // B] for k in range(n)]
            self.eps = [self.eps_banks[k % B][k // B // RA].data[k // B % RA] for k in range(n)]
            self.y = [Signal(signed(w), name=f"y{k}") for k in range(n)] if l == L else None
            self.weight_memories, self.bias_memories = self._memories()

    def _memories(self):
        """Weight and bias memories per lane and half (one per multiplier), initialised from
        the quantised parameters: half ``h`` of lane ``p`` holds rows ``(h H_l + s) P + p``,
        ``s = 0 .. H_l - 1``, at ``s n_{l-1} + j`` (biases at ``s``)."""
        wf, P, RA, n_in = self._wf, self._P, self._RA, self._n_in
        W = wf.quantise(self._net.weights[self._l - 1])
        b = wf.quantise(self._net.biases[self._l - 1])
        weights, biases = [], []
        for p in range(P):
            lane_w, lane_b = [], []
            for h in range(self._H):
                rows = [(h * RA + s) * P + p for s in range(RA)]
                w_init = [int(W[i, j]) if i < self._n else 0 for i in rows for j in range(n_in)]
                b_init = [int(b[i]) if i < self._n else 0 for i in rows]
                lane_w.append(memory.Memory(shape=signed(wf.width), depth=RA * n_in,
                                            init=w_init))
                lane_b.append(memory.Memory(shape=signed(wf.width), depth=RA, init=b_init))
            weights.append(lane_w), biases.append(lane_b)
        return weights, biases

    # -- elaboration --------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        l, L = self._l, self._L
        ports = {"x": []}
        for p, mem in enumerate(self.x_banks):
            m.submodules[f"x_bank{p}"] = mem
            ports["x"].append((mem.read_port(), mem.write_port()))
        if l >= 1:
            ports["mu"] = []
            for p, mem in enumerate(self.mu_banks):
                m.submodules[f"mu_bank{p}"] = mem
                ports["mu"].append((mem.read_port(), mem.write_port()))
            ports["eps"] = []
            for p, lane in enumerate(self.eps_banks):
                ports["eps"].append([])
                for h, mem in enumerate(lane):
                    m.submodules[f"eps_bank{p}_{h}"] = mem
                    ports["eps"][p].append((mem.read_port(), mem.write_port()))
        if l == L:
            m.d.comb += self.y_data.eq(Array(self.y)[self.y_addr])
        busy = Const(0)
        if l >= 1:
            sweeping, sweep_r, busy = self._passes(m, ports)
        else:
            sweeping, sweep_r = Const(0), Const(0)
        if l < L:
            busy = busy | self._serve_above(m, ports, sweeping, sweep_r)
        if l >= 1:
            m.d.comb += self.busy.eq(busy)
        self._host_writes(m, ports)
        return m

    def _alive(self, bank, row, value):
        """``value``, or 0 if the unit at ``row`` of ``bank`` is dead (fault-injection builds;
        without fault injection, ``value`` itself: no logic)."""
        if not self._faults:
            return value
        units = range(bank, self._n, self._B)
        dead = Cat(*(self.dead[k] for k in units), Const(0, 1))
        return Mux(dead.bit_select(row, 1), 0, value)

    def _host_writes(self, m, ports):
        """``x_l[x_addr] = x_wdata`` (inputs at layer 0, targets at layer L); only while idle,
        so it shares the write port of bank ``x_addr mod B`` without contention."""
        l, L, B, n = self._l, self._L, self._B, self._n
        if l not in (0, L):
            return
        bank = Array(Const(k % B, range(max(B, 2))) for k in range(n))[self.x_addr]
        row = Array(Const(k // B, range(max(-(-n // B), 2))) for k in range(n))[self.x_addr]
        for p, (_, wr) in enumerate(ports["x"]):
            with m.If(self.x_we & (bank == p)):
                m.d.comb += [wr.addr.eq(row), wr.data.eq(self._alive(p, row, self.x_wdata)),
                             wr.en.eq(1)]

    def _serve_above(self, m, ports, sweeping, sweep_r):
        """``phi_l`` to the unit above (one cycle after its fetch), and the value update on its
        messages (:func:`message_lag` cycles after the fetch of the same neuron). Returns the
        busy signal of the value update."""
        l, B, vf = self._l, self._B, self._vf
        act = self._net.activations[l]
        held = self._net.pc.mode == "fixed_prediction" and l >= 1   # f, f' of the feedforward mu
        above = self.above
        read_addr = Mux(sweeping, sweep_r, above.fetch_row)
        for name in ("x", "mu") if l >= 1 else ("x",):
            for rd, _ in ports[name]:
                m.d.comb += rd.addr.eq(read_addr)
        bank_q1 = Signal.like(above.fetch_bank)
        row_q1 = Signal.like(above.fetch_row)
        m.d.sync += [bank_q1.eq(above.fetch_bank), row_q1.eq(above.fetch_row)]

        def fetched(name):
            data = [rd.data for rd, _ in ports[name]]
            return data[0] if B == 1 else Array(data)[bank_q1]

        x_f = fetched("x")
        m.submodules.f = f = ActivationUnit(act, vf)
        if l == 0:
            m.d.comb += [f.x.eq(x_f), above.phi_data.eq(f.phi)]
            return Const(0)
        mu_f = fetched("mu")
        m.d.comb += [f.x.eq(mu_f if held else x_f), above.phi_data.eq(f.phi)]

        # The message for the neuron fetched message_lag cycles ago: x += gamma (f'(.) msg - eps),
        # from eps_l[k] and the gate f'(.) computed at the fetch (x_l[k] is not yet updated), in
        # VALUE_STAGES registered steps: the difference, the rounded step, then the write.
        gamma = self._net.pc.gamma_shift
        eps_q, open_q = Signal(signed(vf.width)), Signal()
        m.d.comb += [eps_q.eq(saturate(x_f - mu_f, vf)),
                     open_q.eq(gate_condition(act, mu_f if held else x_f, vf))]
        x_q, bank_q, row_q = x_f, bank_q1, row_q1
        for stage in range(2, message_lag(self._net) + 1):
            x_q, eps_q, open_q = (_delayed(m, x_q, f"x_q{stage}"),
                                  _delayed(m, eps_q, f"eps_q{stage}"),
                                  _delayed(m, open_q, f"open_q{stage}"))
            bank_q, row_q = _delayed(m, bank_q, f"bank_q{stage}"), _delayed(m, row_q, f"row_q{stage}")
        diff = Signal(signed(vf.width + 1), reset_less=True)
        delta = Signal(signed(vf.width), reset_less=True)
        valid_a, valid_b = _delayed_valid(m, above.msg_valid, "value_a"), Signal()
        m.d.sync += [diff.eq(gate_apply(act, open_q, above.msg_data, vf) - eps_q),
                     valid_b.eq(valid_a), delta.eq(requantise(diff, gamma, vf))]
        x_b, bank_b, row_b = x_q, bank_q, row_q
        for stage in ("a", "b"):
            x_b, bank_b, row_b = (_delayed(m, x_b, f"x_{stage}"),
                                  _delayed(m, bank_b, f"bank_{stage}"),
                                  _delayed(m, row_b, f"row_{stage}"))
        for p, (_, wr) in enumerate(ports["x"]):
            with m.If(valid_b & (bank_b == p)):
                m.d.comb += [wr.addr.eq(row_b),
                             wr.data.eq(self._alive(p, row_b, saturate(x_b + delta, vf))),
                             wr.en.eq(1)]
        return valid_a | valid_b

    def _passes(self, m, ports):
        """Row passes, column passes, the error sweep and the weight update of unit ``l >= 1``.

        The multiplier pool: lane ``p`` has ``H`` (:func:`~pchw.latency.halves`) multipliers,
        one per half of its row groups, each with its weight, bias and ``eps`` memory; every
        one serves the active op (row pass ``W phi``, message ``W eps``, update ``eps phi``).
        Row and column passes count ``r`` over the ``R_A`` (:func:`~pchw.latency.half_rows`)
        row groups of a half; a column pass that both sends the message and updates visits each
        column twice (``second``: the update visits). The sweep counts ``r`` over all ``R_l``.

        Returns ``(sweeping, r, busy)``: the error sweep's issue stage reads the state banks at
        row group ``r`` (the fetch port of the unit above is idle then)."""
        l, L, P, R, n, n_in = self._l, self._L, self._P, self._R, self._n, self._n_in
        H, RA = self._H, self._RA
        vf, vin, wf = self._vf, self._vin, self._wf
        pc = self._net.pc
        mode = pc.mode
        incremental = mode == "incremental"
        relax_message, relax_update = relax_work(self._net, l)
        twice = relax_message and relax_update        # a relaxation visits each column twice

        # Issue stage: phase latch, the (r, j) counters, the weight address, and j as the
        # (row, bank) of the unit below.
        run = Signal(Phase)
        active = Signal()
        column = Signal()            # column order (RELAX/UPDATE) vs row order
        sweep = Signal()             # ERRORS: r only
        second = Signal()            # the update visits of a column visited twice
        r = Signal(range(max(R, 2)))
        j = Signal(range(max(n_in, 2)))
        addr = Signal(range(max(RA * n_in, 2)))
        B_in = self._B_in
        j_row = Signal.like(self.below.fetch_row)
        j_bank = Signal.like(self.below.fetch_bank)

        def j_restart():
            return [j.eq(0), j_row.eq(0), j_bank.eq(0)]

        def j_next():
            if B_in == 1:
                return [j.eq(j + 1), j_row.eq(j_row + 1)]
            wrap = j_bank == B_in - 1
            return [j.eq(j + 1), j_bank.eq(Mux(wrap, 0, j_bank + 1)),
                    j_row.eq(Mux(wrap, j_row + 1, j_row))]

        with m.If(self.start):
            m.d.sync += [run.eq(self.phase), r.eq(0), addr.eq(0), second.eq(0), *j_restart()]
            with m.Switch(self.phase):
                with m.Case(Phase.FEEDFORWARD, Phase.PREDICT):
                    m.d.sync += [active.eq(1), column.eq(0), sweep.eq(0)]
                with m.Case(Phase.ERRORS):
                    m.d.sync += [active.eq(1), column.eq(0), sweep.eq(1)]
                with m.Case(Phase.UPDATE):
                    m.d.sync += [active.eq(1), column.eq(1), sweep.eq(0)]
                with m.Case(Phase.RELAX):
                    # Layer 1 sends no message; it only works in incremental mode (update).
                    m.d.sync += [active.eq(any(relax_work(self._net, l))), column.eq(1),
                                 sweep.eq(0)]
        visits_twice = (run == Phase.RELAX) if twice else Const(0)
        last_r, last_j = r == RA - 1, j == n_in - 1
        column_done = last_r & (second | ~visits_twice)
        with m.If(active):
            with m.If(sweep):
                m.d.sync += r.eq(r + 1)
                with m.If(r == R - 1):
                    m.d.sync += active.eq(0)
            with m.Elif(column):
                m.d.sync += [r.eq(Mux(last_r, 0, r + 1)),
                             addr.eq(Mux(last_r, Mux(column_done, j + 1, j), addr + n_in))]
                with m.If(last_r):
                    m.d.sync += second.eq(~second & visits_twice)
                with m.If(column_done):
                    m.d.sync += j_next()
                with m.If(column_done & last_j):
                    m.d.sync += active.eq(0)
            with m.Else():
                m.d.sync += addr.eq(addr + 1)
                with m.If(last_j):
                    m.d.sync += [r.eq(r + 1), *j_restart()]
                with m.Else():
                    m.d.sync += j_next()
                with m.If(last_r & last_j):
                    m.d.sync += active.eq(0)
        sweeping = active & sweep
        for lane in ports["eps"]:
            for rd, _ in lane:
                m.d.comb += rd.addr.eq(r)
        if l == L:           # no unit above fetches: the sweep owns the x and mu read ports
            for name in ("x", "mu"):
                for rd, _ in ports[name]:
                    m.d.comb += rd.addr.eq(r)

        # What a visit does: the message product (W eps), the update product (eps phi), or
        # (neither) the row pass product (W phi).
        updates = column & ((run == Phase.UPDATE) | ((run == Phase.RELAX) & relax_update))
        sends = column & (run == Phase.RELAX) if relax_message else Const(0)
        row_pass = ~column & ~sweep
        msg = sends & ~second
        upd = updates & (second | ~visits_twice)

        # Pipeline stages after the issue (S1: memory data; X: products; S = PASS_STAGES:
        # results). The error sweep ends in S1 (it uses no multiplier).
        s1 = Signal()
        s1_r, s1_j, s1_addr = Signal.like(r), Signal.like(j), Signal.like(addr)
        m.d.sync += [s1.eq(active), s1_r.eq(r), s1_j.eq(j), s1_addr.eq(addr)]
        s_valid, s_r, s_j, s_addr, s_jrow, s_jbank = [active, s1], [r, s1_r], [j, s1_j], \
            [addr, s1_addr], [j_row], [j_bank]
        s_msg, s_upd = [msg], [upd]
        for k in range(1, PASS_STAGES + 1):
            if k >= 2:
                s_valid.append(_delayed_valid(m, s_valid[-1] & ~sweep if k == 2 else
                                              s_valid[-1], f"s{k}"))
                s_r.append(_delayed(m, s_r[-1], f"s{k}_r"))
                s_j.append(_delayed(m, s_j[-1], f"s{k}_j"))
                s_addr.append(_delayed(m, s_addr[-1], f"s{k}_addr"))
            s_msg.append(_delayed_valid(m, s_msg[-1], f"s{k}_msg"))
            s_upd.append(_delayed_valid(m, s_upd[-1], f"s{k}_upd"))
        for k in range(1, LATE_FETCH + 1):
            s_jrow.append(_delayed(m, s_jrow[-1], f"s{k}_jrow"))
            s_jbank.append(_delayed(m, s_jbank[-1], f"s{k}_jbank"))
        X = 1 + MULTIPLIER_STAGES                 # the products' stage
        S = PASS_STAGES                           # the results' stage
        sX, sX_r, sX_j = s_valid[X], s_r[X], s_j[X]
        sS, sS_r, sS_j, sS_addr = s_valid[S], s_r[S], s_j[S], s_addr[S]

        # The fetch from below: on time, except in a relaxation without updates, which needs no
        # phi and fetches each neuron LATE_FETCH cycles late, so that its message follows the
        # fetch by message_lag() = 2 cycles.
        late_fetch = (run == Phase.RELAX) if not incremental else Const(0)
        m.d.comb += [self.below.fetch_row.eq(Mux(late_fetch, s_jrow[-1], j_row)),
                     self.below.fetch_bank.eq(Mux(late_fetch, s_jbank[-1], j_bank))]

        # Weight and bias memories (one each per multiplier): pass reads, update writes, the
        # parameter port when idle. Outside incremental mode the weight update reads W_l again
        # in stage S - 1 (no visit of an UPDATE reads W at its issue), so that the old weight
        # arrives with its rounded update; in incremental mode the read is held. The
        # bias is read in the stage before its use (row pass init: X, update: S).
        p_half = Const(0) if H == 1 else (self.p_group >= RA)
        p_row = Signal(range(max(RA, 2)))
        m.d.comb += p_row.eq(self.p_group - Mux(p_half, RA, 0))
        p_addr = Signal.like(addr)
        m.d.comb += p_addr.eq(p_row * n_in + self.p_col)
        late_weights = (run == Phase.UPDATE) if not incremental else Const(0)
        w_rd, w_wr, b_rd, b_wr = {}, {}, {}, {}
        for p in range(P):
            for h in range(H):
                wm, bm = self.weight_memories[p][h], self.bias_memories[p][h]
                m.submodules[f"w{p}_{h}"], m.submodules[f"b{p}_{h}"] = wm, bm
                rd, wr = wm.read_port(), wm.write_port()
                brd, bwr = bm.read_port(), bm.write_port()
                m.d.comb += [
                    rd.addr.eq(Mux(s_valid[S - 1] & late_weights, s_addr[S - 1],
                                   Mux(active, addr, p_addr))),
                    brd.addr.eq(Mux(s_valid[S - 1] & s_upd[S - 1], s_r[S - 1],
                                    Mux(s_valid[X - 1] & row_pass, s_r[X - 1], p_row)))]
                w_rd[p, h], w_wr[p, h], b_rd[p, h], b_wr[p, h] = rd, wr, brd, bwr
        p_sel = Signal(range(max(P * H, 2)))
        p_bias = Signal()
        m.d.sync += [p_sel.eq(self.p_lane * H + p_half), p_bias.eq(self.p_col == n_in)]
        keys = [(p, h) for p in range(P) for h in range(H)]
        m.d.comb += self.p_rdata.eq(Mux(p_bias, Array(b_rd[k].data for k in keys)[p_sel],
                                        Array(w_rd[k].data for k in keys)[p_sel]))

        phi = self.below.phi_data
        eps = {(p, h): ports["eps"][p][h][0].data for p in range(P) for h in range(H)}
        valid = {(p, h): (h * RA + sS_r) * P + p < n for p in range(P) for h in range(H)}
        busy = Cat(*s_valid).any()

        # The pool: every multiplier takes W phi (row pass), W eps (message) or eps phi
        # (update). The accumulations start from the rounding offset of their narrowing, which
        # then is a shift. A column visited twice takes phi from its first visit (the message
        # updates x_{l-1}[j] below meanwhile).
        if twice:
            phi_held = Signal.like(phi)
            with m.If(s_valid[1] & s_msg[1] & (s_r[1] == 0)):
                m.d.sync += phi_held.eq(phi)
            phi_update = Mux(s_upd[1], phi_held, phi)
        else:
            phi_update = phi
        shifts = LayerShifts.of(self._net, l)
        mu_shift, msg_shift = shifts.mu, shifts.message
        a_width = max(wf.width, vf.width)
        b_width = max(vin.width, vf.width) if relax_message else vin.width
        m.submodules.mac = mac = MacLanes(
            P * H, signed(a_width), signed(b_width), signed(wf.width + vin.frac + 1),
            terms=max(n_in, RA), col_init=round_offset(msg_shift), row_shift=mu_shift,
            col_shift=msg_shift)
        # Whether the products start a sum, compared a stage early (a register, not a
        # comparator, in front of the accumulators' adders).
        first = _delayed(m, Mux(column, s_r[X - 1] == 0, s_j[X - 1] == 0), "sX_first")
        m.d.comb += [mac.first.eq(first),
                     mac.row_en.eq(sX & row_pass), mac.col_en.eq(sX & s_msg[X])]
        for q, (p, h) in enumerate(keys):
            m.d.comb += [mac.a[q].eq(Mux(s_upd[1], eps[p, h], w_rd[p, h].data)),
                         mac.b[q].eq(Mux(s_msg[1], eps[p, h], phi_update) if relax_message
                                     else phi),
                         mac.init[q].eq((b_rd[p, h].data << vin.frac) +
                                        round_offset(mu_shift))]

        # Row pass: at the end of a row, mu (and in the feedforward pass x and y); the second
        # half's row ends a cycle later (the banks have one write port).
        row_end = sS & row_pass & (sS_j == n_in - 1)
        if H == 2:
            busy = busy | _delayed_valid(m, row_end, "row_end_q")
        feedforward = run == Phase.FEEDFORWARD
        for p in range(P):
            _, mu_wr = ports["mu"][p]
            _, x_wr = ports["x"][p]
            for h in range(H):
                q = p * H + h
                mu_val = Signal(signed(vf.width), name=f"mu_val{p}_{h}")
                end, row = row_end & valid[p, h], sS_r + h * RA
                if h:
                    mu_val_d = mu_val
                    mu_val = _delayed(m, mu_val_d, f"mu_val{p}_{h}_q")
                    end = _delayed_valid(m, end, f"row_end{p}_{h}_q")
                    row_q = Signal(range(max(-(-n // P), 2)), name=f"row{p}_{h}_q",
                                   reset_less=True)
                    m.d.sync += row_q.eq(row)
                    row = row_q
                    m.d.comb += mu_val_d.eq(self._alive(p, sS_r + RA, saturate(mac.row_sum[q], vf)))
                else:
                    m.d.comb += mu_val.eq(self._alive(p, sS_r, saturate(mac.row_sum[q], vf)))
                with m.If(end):
                    m.d.comb += [mu_wr.addr.eq(row), mu_wr.data.eq(mu_val), mu_wr.en.eq(1)]
                    with m.If(feedforward):
                        m.d.comb += [x_wr.addr.eq(row), x_wr.data.eq(mu_val), x_wr.en.eq(1)]
                if l == L:
                    for k in range(p, n, P):
                        if k // P // RA == h:
                            with m.If(end & feedforward & (row == k // P)):
                                m.d.sync += self.y[k].eq(mu_val)

        # Error sweep (stage 1): eps = x - mu, row group s1_r of every bank, into its half.
        s1_half = Const(0) if H == 1 else (s1_r >= RA)
        for p in range(P):
            (x_rd, _), (mu_rd, _) = ports["x"][p], ports["mu"][p]
            for h in range(H):
                _, eps_wr = ports["eps"][p][h]
                with m.If(s1 & sweep & (s1_r < (n - p + P - 1) // P) & (s1_half == h)):
                    m.d.comb += [eps_wr.addr.eq(s1_r - h * RA), eps_wr.en.eq(1),
                                 eps_wr.data.eq(saturate(x_rd.data - mu_rd.data, vf))]

        # Column pass: the message W^T eps down (l >= 2), then the weight update.
        if l >= 2:
            msg_valid = Signal()
            msg_data = Signal.like(self.below.msg_data)
            m.d.sync += [msg_valid.eq(sS & s_msg[S] & (sS_r == RA - 1)),
                         msg_data.eq(saturate(mac.col_sum, vin))]
            m.d.comb += [self.below.msg_valid.eq(msg_valid), self.below.msg_data.eq(msg_data)]
            busy = busy | msg_valid

        # The update: W += eta eps phi^T from the pool's products, b += eta eps; rounded in
        # stage X, added and written in stage S.
        shift_w, shift_b = shifts.weight, shifts.bias
        stochastic = pc.weight_rounding == "stochastic"
        for q, (p, h) in enumerate(keys):
            row = Signal(range(R * P + 1), name=f"update_row{p}_{h}")
            m.d.comb += row.eq((sX_r + h * RA) * P + p)
            noise_w = noise_b = None
            if stochastic and shift_w > 0:
                hw = srhash32(m, pc.seed, self.step, l, row, sX_j, name=f"hash_w{p}_{h}")
                noise_w = noise_bits(hw, shift_w)
            if stochastic and shift_b > 0:
                hb = srhash32(m, pc.seed, self.step, l, row, n_in, name=f"hash_b{p}_{h}")
                noise_b = noise_bits(hb, shift_b)
            eps_x = eps[p, h]
            for k in range(2, X + 1):
                eps_x = _delayed(m, eps_x, f"eps{p}_{h}_s{k}")
            if incremental:      # W read at the issue (the message visits read it too): held
                old_w = w_rd[p, h].data
                for k in range(2, S + 1):
                    old_w = _delayed(m, old_w, f"w{p}_{h}_s{k}")
            else:
                old_w = w_rd[p, h].data
            new_w = Signal(signed(wf.width), name=f"new_w{p}_{h}")
            new_b = Signal(signed(wf.width), name=f"new_b{p}_{h}")
            dw = Signal(signed(wf.width), name=f"dw{p}_{h}", reset_less=True)
            db = Signal(signed(wf.width), name=f"db{p}_{h}", reset_less=True)
            m.d.sync += [dw.eq(requantise(mac.product[q], shift_w, wf, noise_w)),
                         db.eq(requantise(eps_x, shift_b, wf, noise_b))]
            m.d.comb += [new_w.eq(saturate(old_w + dw, wf)),
                         new_b.eq(saturate(b_rd[p, h].data + db, wf))]
            live = sS & s_upd[S] & valid[p, h]
            mine = self.p_we & (self.p_lane == p) & (p_half == h)
            m.d.comb += [
                w_wr[p, h].addr.eq(Mux(sS, sS_addr, p_addr)),
                w_wr[p, h].data.eq(Mux(sS, new_w, self.p_wdata)),
                w_wr[p, h].en.eq(Mux(sS, live, mine & (self.p_col != n_in))),
                b_wr[p, h].addr.eq(Mux(sS, sS_r, p_row)),
                b_wr[p, h].data.eq(Mux(sS, new_b, self.p_wdata)),
                b_wr[p, h].en.eq(Mux(sS, live & (sS_j == 0), mine & (self.p_col == n_in))),
            ]
        if self._faults:
            self._stuck_weights(m, keys, w_rd, w_wr, sS, p_addr, p_half, p_sel, p_bias)
        return sweeping, r, busy

    def _stuck_weights(self, m, keys, w_rd, w_wr, sS, p_addr, p_half, p_sel, p_bias):
        """Fault injection: a stuck bit per weight, a memory per weight memory (lane and half)
        beside the weights (zero at reset). A stuck weight's update is never written, so it
        holds its value (the host's writes still set it); ``p_stuck`` tells the parameter
        port's reader (upsets skip it). The stuck memory is read at the weight memory's
        address, so its bit arrives with the weight, and is delayed with it to the update's
        write stage."""
        RA, n_in = self._RA, self._n_in
        incremental = self._net.pc.mode == "incremental"
        stuck_data = []
        for p, h in keys:
            mem = memory.Memory(shape=1, depth=RA * n_in, init=[])
            m.submodules[f"stuck{p}_{h}"] = mem
            rd, wr = mem.read_port(), mem.write_port()
            m.d.comb += [rd.addr.eq(w_rd[p, h].addr), wr.addr.eq(p_addr),
                         wr.data.eq(self.s_wdata),
                         wr.en.eq(self.s_we & (self.p_lane == p) & (p_half == h) &
                                  (self.p_col != n_in))]
            stuck_data.append(rd.data)
            held = rd.data
            if incremental:      # the old weight is held from stage 1 to S (see _passes)
                for k in range(2, PASS_STAGES + 1):
                    held = _delayed(m, held, f"stuck{p}_{h}_s{k}")
            with m.If(sS & held):
                m.d.comb += w_wr[p, h].en.eq(0)
        m.d.comb += self.p_stuck.eq(~p_bias & Array(stuck_data)[p_sel])
