"""The predictive-coding schedule as data: the steps of an INFER and of a LEARN.

This is the one statement of the order in which pchw runs predictive coding (see
``docs/architecture.md``, "The schedule"). The golden model (:mod:`pchw.golden.model`) iterates
it, the latency model (:mod:`pchw.latency`) sums its cycle and multiply-accumulate counts, and
the core's sequencer (:mod:`pchw.gateware.core`) runs the same steps, cycle for cycle (the
tests hold it to :mod:`pchw.latency`).

A :class:`Step` is one phase of the sequencer: an :class:`Op` that every participating layer
unit starts in the same cycle, the :class:`Work` of each (which pass, over how many row groups
and columns, for how many busy cycles), and the sequencer's bookkeeping (a new set of errors,
a weight update counted). A step costs ``PHASE_OVERHEAD`` cycles and the busy cycles of its
slowest unit. The steps come in :class:`Segment` s (steps repeated a number of times: the
relaxation loop is one), so that a schedule and the sums over it stay small for any ``T``.

INFER (core op ``INFER``): ``FEEDFORWARD`` of layer 1, then 2, ... ``L``.

LEARN (core op ``LEARN``, after the INFER and the target load; ``T`` relaxation steps):

- ``standard``: ``ERRORS`` (with ``mu`` from the feedforward), then ``T`` times ``RELAX``,
  ``PREDICT``, ``ERRORS``; then ``UPDATE``.
- ``fixed_prediction``: ``ERRORS``, then ``T`` times ``RELAX``, ``ERRORS``; then ``UPDATE``
  (``mu`` and ``phi`` stay the feedforward's).
- ``incremental``: ``ERRORS``, then ``RELAX`` (which also updates the weights), and ``T - 1``
  times ``PREDICT``, ``ERRORS``, ``RELAX``; no ``UPDATE`` (``T = 0``: ``ERRORS`` only).

Not every multiply-accumulate the schedule performs is needed: :meth:`Schedule.necessary` says
which are (the one statement of it; the benchmarks' MAC ratios count only those).
"""

import enum
from dataclasses import dataclass

from .latency import PHASE_OVERHEAD, busy_cycles, row_groups

__all__ = ["Op", "Pass", "Work", "Step", "Segment", "Schedule", "schedule", "learn_phases",
           "relax_work", "Necessity"]


class Op(enum.Enum):
    """What the units do in a step (the gateware's :class:`~pchw.gateware.layer.Phase`)."""
    FEEDFORWARD = "feedforward"   # one layer's row pass: mu_l = x_l = W_l phi_{l-1} + b_l
    PREDICT = "predict"           # every layer's row pass: mu_l = W_l phi_{l-1} + b_l
    ERRORS = "errors"             # every layer's sweep: eps_l = x_l - mu_l
    RELAX = "relax"               # column passes: W_l^T eps_l down, x_{l-1} updated on it;
                                  # in incremental mode also the weight update
    UPDATE = "update"             # every layer's column pass: W_l, b_l updated


class Pass(enum.Enum):
    """How a unit walks its weights: by rows (``r`` outer, ``j`` inner), by columns (``j``
    outer, ``r`` inner), or a sweep over its row groups (no weights)."""
    ROW = "row"
    COLUMN = "column"
    SWEEP = "sweep"


@dataclass(frozen=True)
class Work:
    """What layer unit ``layer`` does in a step.

    ``rows``: its row groups ``R_l`` (rows per lane); ``columns``: the columns ``n_{l-1}`` a
    pass visits for each (0 for a sweep); ``message``: it sends ``W_l^T eps_l`` to the unit
    below; ``update``: it updates ``W_l`` and ``b_l``; ``cycles``: its busy cycles
    (:func:`pchw.latency.busy_cycles`); ``weights``: the ``n_l x n_{l-1}`` weights of ``W_l``
    (``R_l`` rows of lanes are counted as the ``n_l`` real rows); ``macs``: the products the
    pass performs, one per weight for a row pass, and for a column pass one per weight for the
    message and one for the update (a relaxation of layer ``l >= 2`` in incremental mode does
    both: it visits each column twice, :func:`pchw.latency.column_slots`)."""
    layer: int
    kind: Pass
    rows: int
    columns: int
    message: bool
    update: bool
    cycles: int
    macs: int
    weights: int = 0


@dataclass(frozen=True)
class Step:
    """One phase of the sequencer.

    ``op``; ``work``: the :class:`Work` of every unit that is busy in it (a unit started with
    nothing to do, like layer 1 in a relaxation without updates, is left out);
    ``counts_update``: the weight-update count (the stochastic-rounding key) goes up after
    it."""
    op: Op
    work: tuple
    counts_update: bool = False

    @property
    def layers(self):
        """The layers that work in this step."""
        return tuple(w.layer for w in self.work)

    @property
    def errors_ready(self):
        """A new set of errors is complete after this step (a point of the golden trace)."""
        return self.op is Op.ERRORS

    @property
    def updates_weights(self):
        return any(w.update for w in self.work)

    @property
    def cycles(self):
        """The start cycle, the busy cycles of the slowest unit, the cycle that sees all idle."""
        return PHASE_OVERHEAD + max((w.cycles for w in self.work), default=0)

    @property
    def macs(self):
        return sum(w.macs for w in self.work)


@dataclass(frozen=True)
class Segment:
    """``steps`` run ``repeat`` times in a row (``T`` can be large: the schedule stays small)."""
    steps: tuple
    repeat: int = 1

    @property
    def cycles(self):
        return self.repeat * sum(s.cycles for s in self.steps)

    @property
    def macs(self):
        return self.repeat * sum(s.macs for s in self.steps)


@dataclass(frozen=True)
class Schedule:
    """The steps of the core's two commands: INFER (the feedforward) and LEARN (what a LEARN
    runs after the feedforward and the target load), each a tuple of :class:`Segment`: for
    LEARN the steps before the relaxation loop, the loop's body repeated, the steps after."""
    infer_segments: tuple
    learn_segments: tuple
    L: int = 0

    def steps(self, learn):
        """The steps of an INFER, or of a LEARN (``learn`` true), in order (an iterator)."""
        for segment in self.learn_segments if learn else self.infer_segments:
            for _ in range(segment.repeat):
                yield from segment.steps

    @property
    def infer(self):
        """The INFER steps (a tuple)."""
        return tuple(self.steps(False))

    @property
    def learn(self):
        """The LEARN steps (a tuple, as long as ``T``: iterate :meth:`steps` for a large one)."""
        return tuple(self.steps(True))

    def cycles(self, learn):
        """Core cycles of an INFER, or of a LEARN's own steps (``learn`` true)."""
        return sum(s.cycles for s in (self.learn_segments if learn else self.infer_segments))

    def macs(self, learn):
        """Multiply-accumulates performed for one sample: the feedforward, and for learning its
        steps."""
        return sum(s.macs for s in self.infer_segments) + \
            (sum(s.macs for s in self.learn_segments) if learn else 0)

    def necessary(self, learn):
        """The steps of an INFER, or of the feedforward and a LEARN (``learn`` true), each with
        the multiply-accumulates of it that are necessary: an iterator of ``(step, macs)``.

        A pass's products are necessary unless its result is already known without them:

        - a prediction ``mu_l = W_l phi_{l-1}`` (``PREDICT``) is not, when neither ``x_{l-1}``
          nor ``W_l`` has changed since ``mu_l`` was last computed: it would recompute the same
          ``mu_l``. Standard mode re-predicts layer 1 in every relaxation step although
          ``x_0`` is clamped and ``W_1`` changes only in ``UPDATE``; in incremental mode so
          are the re-predictions of layer 1 until ``W_1`` first changes (its updates are zero
          while ``eps_1`` is, see below: one relaxation with two weight layers), the later
          ones are necessary.
        - a message ``W_l^T eps_l`` (``RELAX``, ``l >= 2``) is not, when ``eps_l`` is known to
          be zero, or when neither ``eps_l`` nor ``W_l`` has changed since the last message
          of ``l`` (a design can keep it: ``n_{l-1}`` values). The feedforward sets
          ``x_l = mu_l`` exactly, so ``eps_l = 0`` in every hidden layer until the relaxation
          has changed ``x_l``: that reaches layer ``L - k`` in the ``k``-th relaxation, so the
          first ``L - l`` relaxations' messages of layer ``l < L`` are zero. In
          ``fixed_prediction`` mode ``eps_L = target - mu_L`` never changes: only the first
          relaxation's message of layer ``L`` is necessary.
        - a weight update ``eps_l phi_{l-1}^T`` (``UPDATE``, or ``RELAX`` in incremental mode)
          is not when ``eps_l`` is known to be zero: it leaves ``W_l`` as it is.

        Known zero and unchanged mean so for every input (exactly, in fixed point: a zero error
        and a zero message leave ``x`` and ``W`` unchanged); what depends on the data (a relu
        that gates a message off) counts as necessary. A value ``x_l`` of a hidden layer
        changes in a ``RELAX`` unless its error and the message from above are both known zero;
        the target load changes ``x_L``. Performed minus necessary is the redundant work the
        schedule does; the MAC ratios of the benchmarks count only the necessary products.
        """
        state = Necessity(self.L)
        for segment in self.infer_segments:
            for step in segment.steps:
                yield step, state.step(step)
        if not learn:
            return
        state.load_target()
        for segment in self.learn_segments:
            yield from state.segment(segment)

    def necessary_macs(self, learn):
        """Necessary multiply-accumulates of one sample (:meth:`necessary`): of an INFER, or of
        the feedforward and a LEARN."""
        return sum(macs for _, macs in self.necessary(learn))


class Necessity:
    """What is known about the values while :meth:`Schedule.necessary` walks the steps, for
    layers ``1 .. L``: ``x_is_mu[l]`` (``x_l = mu_l`` exactly: the feedforward set it),
    ``zero[l]`` (the last ``ERRORS`` found ``eps_l`` known zero), and which results are stale:
    ``mu_stale[l]`` (``x_{l-1}`` or ``W_l`` changed since ``mu_l`` was computed),
    ``eps_stale[l]`` (``x_l`` or ``mu_l`` changed since the errors), ``msg_stale[l]`` (``eps_l``
    or ``W_l`` changed since the last message of ``l``). Booleans only: a repeated segment
    reaches a state it had before within a few rounds, and the rest repeat those rounds."""

    def __init__(self, L):
        self.L = L
        layers = range(L + 1)
        self.x_is_mu = [False for _ in layers]
        self.zero = [False for _ in layers]
        self.mu_stale = [True for _ in layers]        # nothing computed yet
        self.eps_stale = [True for _ in layers]
        self.msg_stale = [True for _ in layers]

    def _key(self):
        return tuple(map(tuple, (self.x_is_mu, self.zero, self.mu_stale, self.eps_stale,
                                 self.msg_stale)))

    def _x_changed(self, l, to_mu=False):
        self.x_is_mu[l] = to_mu
        self.eps_stale[l] = True
        if l < self.L:
            self.mu_stale[l + 1] = True

    def _w_changed(self, l):
        self.mu_stale[l] = self.msg_stale[l] = True

    def load_target(self):
        """A LEARN starts by loading the target into ``x_L``."""
        self._x_changed(self.L)

    def step(self, step):
        """Walk ``step``: its necessary multiply-accumulates."""
        macs = 0
        if step.op in (Op.FEEDFORWARD, Op.PREDICT):
            for w in step.work:
                if self.mu_stale[w.layer]:
                    macs += w.macs
                    self.mu_stale[w.layer] = False
                    self.eps_stale[w.layer] = True
                    self.x_is_mu[w.layer] = False
                if step.op is Op.FEEDFORWARD:
                    self._x_changed(w.layer, to_mu=True)
        elif step.op is Op.ERRORS:
            for l in range(1, self.L + 1):
                if self.eps_stale[l]:
                    self.eps_stale[l] = False
                    self.zero[l] = self.x_is_mu[l]
                    self.msg_stale[l] = True
        else:                       # RELAX, UPDATE: from this step's errors and weights
            for w in step.work:
                if w.message and self.msg_stale[w.layer] and not self.zero[w.layer]:
                    macs += w.weights
                    self.msg_stale[w.layer] = False
                if w.update and not self.zero[w.layer]:
                    macs += w.weights
            if step.op is Op.RELAX:
                moved = [l for l in range(1, self.L) if not (self.zero[l] and self.zero[l + 1])]
                for l in moved:
                    self._x_changed(l)
            for w in step.work:
                if w.update and not self.zero[w.layer]:
                    self._w_changed(w.layer)
        return macs

    def segment(self, segment):
        """Walk ``segment``'s rounds: ``(step, necessary macs)`` for each step of each."""
        seen, keys, rounds = {}, [], []
        for r in range(segment.repeat):
            key = self._key()
            if key in seen:                           # the rounds since then repeat
                first = seen[key]
                cycle = rounds[first:]
                left = segment.repeat - r
                for i in range(left):
                    yield from cycle[i % len(cycle)]
                self._restore(keys[first + left % len(cycle)])
                return
            seen[key] = r
            keys.append(key)
            rounds.append([(step, self.step(step)) for step in segment.steps])
            yield from rounds[-1]

    def _restore(self, key):
        self.x_is_mu, self.zero, self.mu_stale, self.eps_stale, self.msg_stale = map(list, key)


def relax_work(network, l):
    """``(message, update)`` of unit ``l`` in a ``RELAX`` step: it sends ``W_l^T eps_l`` down if
    there is a hidden unit below (``l >= 2``), and updates its weights in incremental mode; a
    unit with neither (layer 1 outside incremental mode) has no work in the step."""
    return l >= 2, network.pc.mode == "incremental"


def _work(network, l, kind, message=False, update=False):
    n_out, n_in = network.layers[l], network.layers[l - 1]
    sweep = kind is Pass.SWEEP
    return Work(layer=l, kind=kind, rows=row_groups(network, l), columns=0 if sweep else n_in,
                message=message, update=update,
                cycles=busy_cycles(network, l, kind.value, message, update),
                macs=0 if sweep else n_out * n_in * (1 if kind is Pass.ROW else message + update),
                weights=n_out * n_in)


def learn_phases(mode, T):
    """The order of a LEARN's ops after the feedforward and the target load: a tuple of
    ``(ops, repeat)``, the ops run ``repeat`` times in a row (the one statement of the order,
    which :func:`schedule` gives its steps and cycles, and the golden model of graphs,
    :mod:`pchw.golden.graph`, iterates). A ``RELAX`` in ``incremental`` mode also updates the
    weights."""
    if mode == "standard":
        phases = (((Op.ERRORS,), 1), ((Op.RELAX, Op.PREDICT, Op.ERRORS), T), ((Op.UPDATE,), 1))
    elif mode == "fixed_prediction":
        phases = (((Op.ERRORS,), 1), ((Op.RELAX, Op.ERRORS), T), ((Op.UPDATE,), 1))
    else:               # incremental: every relaxation updates; the last one ends the command
        phases = (((Op.ERRORS, Op.RELAX) if T else (Op.ERRORS,), 1),
                  ((Op.PREDICT, Op.ERRORS, Op.RELAX), max(T - 1, 0)))
    return tuple(phase for phase in phases if phase[1])


def schedule(network, lanes=None):
    """The :class:`Schedule` of ``network`` with its lanes (or ``lanes``, one per weight layer).

    The order of the steps depends on the mode and ``T`` only; the lanes set the cycles."""
    if lanes is not None:
        network = network.with_lanes(lanes)
    L, pc = network.L, network.pc
    T, mode = pc.inference_steps, pc.mode
    layers = range(1, L + 1)
    incremental = mode == "incremental"

    def every(op, kind, update=False):
        return Step(op, tuple(_work(network, l, kind, update=update) for l in layers),
                    counts_update=update)

    errors = every(Op.ERRORS, Pass.SWEEP)
    predict = every(Op.PREDICT, Pass.ROW)
    relax = Step(Op.RELAX, tuple(_work(network, l, Pass.COLUMN, *relax_work(network, l))
                                 for l in layers if any(relax_work(network, l))),
                 counts_update=incremental)
    infer = tuple(Segment((Step(Op.FEEDFORWARD, (_work(network, l, Pass.ROW),)),))
                  for l in layers)
    steps = {Op.ERRORS: errors, Op.PREDICT: predict, Op.RELAX: relax,
             Op.UPDATE: every(Op.UPDATE, Pass.COLUMN, update=True)}
    learn = tuple(Segment(tuple(steps[op] for op in ops), repeat)
                  for ops, repeat in learn_phases(mode, T))
    return Schedule(infer, learn, L)
