"""pchw.schedule: the steps of an INFER and a LEARN, and the counts summed over them.

The circuit is held to these cycle counts by tests/gateware/test_core.py (and the golden model
to the order of the steps by tests/test_golden.py); here the schedule is checked against the
closed-form counts stated independently below."""

import itertools

import numpy as np
import pytest

from pchw import Network, PCSettings
from pchw.golden import FixedModel
from pchw.latency import (PASS_STAGES, PHASE_OVERHEAD, core_infer_cycles, core_learn_cycles,
                          mac_utilisation, macs_per_sample)
from pchw.schedule import Necessity, Op, Pass, schedule

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
    # the pool: two multipliers a lane, one row group each
    assert (w.cycles, w.macs, w.weights) == (1 * 7 + PASS_STAGES, 3 * 7, 3 * 7)
    assert update.cycles == PHASE_OVERHEAD + max(x.cycles for x in update.work)


def _closed_form(net):
    """Core cycles and MACs per sample as written before the schedule existed (commit 80715a7),
    but for the relaxation of layers ``l >= 2`` in incremental mode: its message and its weight
    update are two products per weight (that commit counted one); and with the multiplier pool
    (issue 11): a lane's two multipliers take half of its row groups each (one, for a lane of
    one row group or a layer of one column), the second half's row ends a cycle later, and an
    incremental relaxation visits each column twice (message, then update)."""
    L, T, mode = net.L, net.pc.inference_steps, net.pc.mode
    R = [None] + [-(-net.layers[l] // net.lanes[l - 1]) for l in range(1, L + 1)]
    H = [None] + [2 if R[l] >= 2 and net.layers[l - 1] >= 2 else 1 for l in range(1, L + 1)]
    half = [-(-R[l] // H[l]) for l in range(1, L + 1)]
    passes = [half[l - 1] * net.layers[l - 1] for l in range(1, L + 1)]
    rows = [p + 4 + H[l] - 1 for l, p in enumerate(passes, start=1)]
    weights = [net.layers[l] * net.layers[l - 1] for l in range(1, L + 1)]
    phase = lambda busy: 2 + max(busy, default=0)                       # noqa: E731
    infer = sum(phase([b]) for b in rows)
    if mode == "incremental":
        relax = [2 * p + 4 + max(3 - a, 0) for p, a in zip(passes[1:], half[1:])] + \
            [passes[0] + 4]
    else:
        relax = [p + 4 + 1 + 2 for p in passes[1:]]
    sweep = phase([R[l] + 1 for l in range(1, L + 1)])
    errors = (0 if mode == "fixed_prediction" else phase(rows)) + sweep
    rounds = max(T - 1, 0) if mode == "incremental" else T
    learn = sweep + T * phase(relax) + rounds * errors + \
        (0 if mode == "incremental" else phase([p + 4 for p in passes]))
    macs = sum(weights)
    macs_learn = macs + T * ((2 if mode == "incremental" else 1) * sum(weights[1:])
                             + (weights[0] if mode == "incremental" else 0)) \
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


# -- necessary multiply-accumulates (Schedule.necessary) -------------------------------------------

def _tiny(mode, T, layers):
    return _net(mode, T, layers, [1] * (len(layers) - 1))


# Hand-computed necessary MACs of each LEARN step (after the feedforward, which is all necessary)
# for 2-3-2 (W_1, W_2: 6 weights each) and 2-3-4-2 (W_1 6, W_2 12, W_3 8); E R P U are the ops.
# standard, 2-3-2: RELAX sends W_2^T eps_2 (6); PREDICT re-predicts mu_2 (6), never mu_1 (x_0 is
# clamped, W_1 unchanged); UPDATE both layers (12), only W_2 at T = 0 (eps_1 = 0: x_1 = mu_1).
# 2-3-4-2: the first RELAX's message of layer 2 is zero (eps_2 = 0 until x_2 moves), so is the
# first PREDICT of mu_2 (x_1 has not moved); from the second relaxation on 8 + 12 each.
# fixed_prediction: eps_L = target - mu_L never changes: one message of layer L is necessary.
# incremental (RELAX updates every layer; message and update are a product per weight each):
# the first RELAX updates only the top (eps_1 = 0: W_1 stays), so the first re-prediction of
# mu_1 is not necessary either; from then on every pass is.
HAND = [
    ("standard", (2, 3, 2), 0, "E0 U6", 24),
    ("standard", (2, 3, 2), 1, "E0 R6 P6 E0 U12", 42),
    ("standard", (2, 3, 2), 3, "E0 R6 P6 E0 R6 P6 E0 R6 P6 E0 U12", 78),
    ("standard", (2, 3, 4, 2), 2, "E0 R8 P8 E0 R20 P20 E0 U26", 144),
    ("fixed_prediction", (2, 3, 2), 3, "E0 R6 E0 R0 E0 R0 E0 U12", 42),
    ("fixed_prediction", (2, 3, 4, 2), 3, "E0 R8 E0 R12 E0 R12 E0 U26", 112),
    ("incremental", (2, 3, 2), 0, "E0", 12),
    ("incremental", (2, 3, 2), 3, "E0 R12 P6 E0 R18 P12 E0 R18", 90),
    ("incremental", (2, 3, 4, 2), 2, "E0 R16 P8 E0 R40", 144),
]


@pytest.mark.parametrize("mode, layers, T, steps, performed", HAND)
def test_necessary_macs_by_hand(mode, layers, T, steps, performed):
    net = _tiny(mode, T, layers)
    s = schedule(net)
    weights = [a * b for a, b in zip(layers[1:], layers)]
    walk = list(s.necessary(learn=True))
    assert [(step.op, macs) for step, macs in walk[:len(weights)]] == \
        [(Op.FEEDFORWARD, w) for w in weights]
    assert " ".join(f"{step.op.name[0]}{macs}" for step, macs in walk[len(weights):]) == steps
    necessary = sum(weights) + sum(int(x[1:]) for x in steps.split())
    assert macs_per_sample(net, True, necessary=True) == s.necessary_macs(True) == necessary
    assert macs_per_sample(net, True) == s.macs(True) == performed
    assert macs_per_sample(net, False, necessary=True) == macs_per_sample(net, False) == \
        sum(weights)


def test_the_committed_models_necessary_macs():
    """xor (2-8-2) and iris (4-16-3), standard, T = 8: the 8 re-predictions of layer 1 (16 and
    64 MACs) are not necessary; digits (fixed_prediction, T = 1): every MAC is."""
    import pchw
    for name, performed, necessary in [("xor", 448, 448 - 8 * 16), ("iris", 1504, 1504 - 8 * 64),
                                       ("digits", 5056, 5056)]:
        net = pchw.load(f"models/{name}")
        assert (macs_per_sample(net, True), macs_per_sample(net, True, necessary=True)) == \
            (performed, necessary), name


def test_mac_utilisation():
    """Necessary MACs over multipliers x core cycles (a LEARN's include its feedforward): 2-3-2,
    standard, T = 1 needs 12 MACs to infer and 36 to learn (test_necessary_macs_by_hand)."""
    net = _tiny("standard", 1, (2, 3, 2))
    infer, learn = core_infer_cycles(net), core_learn_cycles(net)
    assert mac_utilisation(net, 4, False) == 12 / (4 * infer)
    assert mac_utilisation(net, 8, True) == 36 / (8 * (infer + learn))


def _naive(s, learn):
    """The walk without skipping the repeated rounds of a segment."""
    state, out = Necessity(s.L), []
    for step in s.steps(False):
        out.append(state.step(step))
    if learn:
        state.load_target()
        for step in s.steps(True):
            out.append(state.step(step))
    return out


@pytest.mark.parametrize("mode", MODES)
def test_necessary_walk_skips_repeated_rounds_exactly(mode):
    for layers, T in itertools.product([(2, 3, 2), (4, 1), (2, 3, 4, 2), (3, 2, 5, 4, 2, 3)],
                                       range(8)):
        s = schedule(_tiny(mode, T, layers))
        walk = [macs for _, macs in s.necessary(True)]
        assert walk == _naive(s, True), (layers, T)
        assert [step for step, _ in s.necessary(True)] == list(s.steps(False)) + list(s.learn)
        performed = [step.macs for step in list(s.steps(False)) + list(s.learn)]
        assert all(0 <= n <= p for n, p in zip(walk, performed))


def test_necessary_macs_of_a_long_relaxation():
    """T = 65535 in an instant; 2 layers, standard: the feedforward, then per relaxation a
    message and a prediction of layer 2, then the update of both."""
    net = _net("standard", 65535, (5, 7, 3), (3, 2))
    assert macs_per_sample(net, True, necessary=True) == 35 + 21 + 65535 * 2 * 21 + 35 + 21


@pytest.mark.parametrize("mode", MODES)
def test_what_is_not_necessary_is_known(mode):
    """Against the golden model: wherever the walk finds an error known zero, the traced error
    is zero, and a prediction it skips leaves the same mu as the last traced one."""
    rng = np.random.default_rng(1)
    checked = {"zero": 0, "mu": 0}
    for layers, T in [((3, 4, 5, 2), 4), ((3, 4, 2), 3)]:
        net = Network(list(layers), ["identity"] * (len(layers) - 1), lanes=[1] * (len(layers) - 1),
                      pc=PCSettings(mode=mode, inference_steps=T, learning_rate=0.5))
        model = FixedModel(net)
        for l, w in enumerate(model.W):
            model.W[l] = rng.integers(-200, 200, w.shape)
        s = schedule(net)
        trace = model.learn(rng.uniform(-1, 1, (2, layers[0])),
                            rng.uniform(-1, 1, (2, layers[-1])), trace=True).trace
        state, point, skipped = Necessity(s.L), 0, []
        for step in s.steps(False):
            state.step(step)
        state.load_target()
        for step in s.steps(True):
            if step.op is Op.PREDICT:
                skipped = [w.layer for w in step.work if not state.mu_stale[w.layer]]
            state.step(step)
            if step.op is Op.ERRORS:
                snap = trace[point]
                for l in range(1, s.L + 1):
                    if state.zero[l]:
                        assert not np.any(snap.eps[l]), (layers, T, point, l)
                        checked["zero"] += 1
                for l in skipped:
                    assert np.array_equal(snap.mu[l], trace[point - 1].mu[l]), (layers, T, l)
                    checked["mu"] += 1
                point, skipped = point + 1, []
        assert point == len(trace)
    assert checked["zero"] and (checked["mu"] or mode == "fixed_prediction")
