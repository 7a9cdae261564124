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
"""

import enum
from dataclasses import dataclass

from .latency import PHASE_OVERHEAD, busy_cycles, row_groups

__all__ = ["Op", "Pass", "Work", "Step", "Segment", "Schedule", "schedule", "relax_work"]


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
    (:func:`pchw.latency.busy_cycles`); ``macs``: multiply-accumulates, one per weight the
    pass visits (``R_l`` rows of lanes are counted as the ``n_l`` real rows)."""
    layer: int
    kind: Pass
    rows: int
    columns: int
    message: bool
    update: bool
    cycles: int
    macs: int


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
        """Multiply-accumulates of one sample: the feedforward, and for learning its steps."""
        return sum(s.macs for s in self.infer_segments) + \
            (sum(s.macs for s in self.learn_segments) if learn else 0)


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
                cycles=busy_cycles(network, l, kind.value, message),
                macs=0 if sweep else n_out * n_in)


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
    if mode == "standard":
        learn = [Segment((errors,)), Segment((relax, predict, errors), T),
                 Segment((every(Op.UPDATE, Pass.COLUMN, update=True),))]
    elif mode == "fixed_prediction":
        learn = [Segment((errors,)), Segment((relax, errors), T),
                 Segment((every(Op.UPDATE, Pass.COLUMN, update=True),))]
    else:               # incremental: every relaxation updates; the last one ends the command
        learn = [Segment((errors, relax) if T else (errors,)),
                 Segment((predict, errors, relax), max(T - 1, 0))]
    return Schedule(infer, tuple(seg for seg in learn if seg.repeat))
