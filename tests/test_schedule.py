"""pchw.schedule: the steps of an INFER and a LEARN, and the counts summed over them.

The circuit is held to these cycle counts by tests/gateware/test_core.py (and the golden model
to the order of the steps by tests/test_golden.py); here the schedule is checked against the
closed-form counts stated independently below."""

import itertools

import pytest

from pchw import Network, PCSettings
from pchw.golden import FixedModel
from pchw.latency import (PASS_STAGES, PHASE_OVERHEAD, core_infer_cycles, core_learn_cycles,
                          macs_per_sample)
from pchw.schedule import Op, Pass, schedule

MODES = ["standard", "fixed_prediction", "incremental"]


def _net(mode, T, layers=(5, 7, 3, 4), lanes=(3, 2, 4)):
    return Network(list(layers), ["relu"] * (len(layers) - 1), lanes=list(lanes),
                   pc=PCSettings(mode=mode, inference_steps=T))


@pytest.mark.parametrize("mode, expected", [
    ("standard", "E R P E R P E U"),
    ("fixed_prediction", "E R E R E U"),
    ("incremental", "E R P E R"),
])
def test_the_order_of_the_steps(mode, expected):
    letters = {Op.ERRORS: "E", Op.RELAX: "R", Op.PREDICT: "P", Op.UPDATE: "U"}
    s = schedule(_net(mode, 2))
    assert [(step.op, step.layers) for step in s.infer] == \
        [(Op.FEEDFORWARD, (l,)) for l in (1, 2, 3)]
    assert " ".join(letters[step.op] for step in s.learn) == expected
    relaxes = [step for step in s.learn if step.op is Op.RELAX]
    # Layer 1 has no unit below to send to: it relaxes only to update its weights.
    assert all(step.layers == ((1, 2, 3) if mode == "incremental" else (2, 3))
               for step in relaxes)
    # The relaxation loop is one segment, its body repeated (T, or T - 1 after the first
    # relaxation in incremental mode).
    assert [seg.repeat for seg in s.learn_segments] == \
        ([1, 1] if mode == "incremental" else [1, 2, 1])


@pytest.mark.parametrize("mode", MODES)
def test_weight_updates_and_errors_match_the_golden_model(mode):
    """As many counted weight updates as the golden model makes, and a set of errors per
    entry of its trace."""
    for T in range(4):
        net = _net(mode, T)
        s = schedule(net)
        model = FixedModel(net)
        result = model.learn([[0.5] * 5], [[0.25] * 4], trace=True)
        assert sum(step.counts_update for step in s.learn) == model.updates
        assert sum(step.errors_ready for step in s.learn) == len(result.trace)
        assert all(step.updates_weights == step.counts_update for step in s.learn)


def test_work_of_a_step():
    net = _net("standard", 1)                    # layer 2: 3 rows on 2 lanes, 7 columns
    update = schedule(net).learn[-1]
    w = update.work[1]
    assert (w.layer, w.kind, w.rows, w.columns, w.message, w.update) == \
        (2, Pass.COLUMN, 2, 7, False, True)
    assert (w.cycles, w.macs) == (2 * 7 + PASS_STAGES, 3 * 7)
    assert update.cycles == PHASE_OVERHEAD + max(x.cycles for x in update.work)


def _closed_form(net):
    """Core cycles and MACs per sample as written before the schedule existed (commit 80715a7)."""
    L, T, mode = net.L, net.pc.inference_steps, net.pc.mode
    R = [None] + [-(-net.layers[l] // net.lanes[l - 1]) for l in range(1, L + 1)]
    passes = [R[l] * net.layers[l - 1] for l in range(1, L + 1)]
    weights = [net.layers[l] * net.layers[l - 1] for l in range(1, L + 1)]
    phase = lambda busy: 2 + max(busy, default=0)                       # noqa: E731
    infer = sum(phase([p + 4]) for p in passes)
    relax = [p + 4 + 1 + 2 for p in passes[1:]] + ([passes[0] + 4] if mode == "incremental"
                                                   else [])
    sweep = phase([R[l] + 1 for l in range(1, L + 1)])
    errors = (0 if mode == "fixed_prediction" else phase([p + 4 for p in passes])) + sweep
    rounds = max(T - 1, 0) if mode == "incremental" else T
    learn = sweep + T * phase(relax) + rounds * errors + \
        (0 if mode == "incremental" else phase([p + 4 for p in passes]))
    macs = sum(weights)
    macs_learn = macs + T * (sum(weights[1:]) + (weights[0] if mode == "incremental" else 0)) \
        + rounds * (0 if mode == "fixed_prediction" else sum(weights)) \
        + (0 if mode == "incremental" else sum(weights))
    return infer, learn, macs, macs_learn


@pytest.mark.parametrize("mode", MODES)
def test_counts_are_sums_over_the_schedule(mode):
    shapes = [((2, 8, 2), (2, 2)), ((5, 7, 3, 4), (3, 2, 4)), ((4, 1), (1,)),
              ((3, 1, 4, 2), (1, 3, 2)), ((64, 32, 10), (8, 5))]
    for (layers, lanes), T in itertools.product(shapes, range(5)):
        net = _net(mode, T, layers, lanes)
        assert (core_infer_cycles(net), core_learn_cycles(net), macs_per_sample(net, False),
                macs_per_sample(net, True)) == _closed_form(net), (layers, lanes, T)


def test_lanes_argument():
    net = _net("standard", 2)
    assert schedule(net, lanes=[1, 1, 1]) == schedule(net.with_lanes([1, 1, 1]))
    assert schedule(net, lanes=[1, 1, 1]).cycles(False) > schedule(net).cycles(False)


def test_a_long_relaxation_stays_small():
    """T = 65535: the schedule is a few segments, and the sums over it are instant."""
    net = _net("standard", 65535)
    s = schedule(net)
    assert sum(len(seg.steps) for seg in s.learn_segments) == 5
    assert core_learn_cycles(net) == _closed_form(net)[1]
    steps = s.steps(learn=True)
    assert [next(steps).op for _ in range(4)] == [Op.ERRORS, Op.RELAX, Op.PREDICT, Op.ERRORS]
