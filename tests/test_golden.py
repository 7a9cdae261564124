"""The golden models: fixed point against an independent reference, float PC against backprop."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pchw import Format, Formats, Network, PCSettings
from pchw.backprop import gradients
from pchw.fixedpoint import LayerShifts
from pchw.golden import FixedModel, FloatModel
from pchw.quality import AGREEMENT_STEPS, gradient_agreement, millidge_setup

from .reference_pc import Reference

ACTIVATION_SPECS = ["identity", "relu", "hardtanh", {"name": "leaky_relu", "slope": 0.25},
                    "tanh", "sigmoid"]


def _topology(draw, min_width, max_width):
    """Depth 1..3, sizes 1..4, any activations, and a drawer of formats ``min_width`` to
    ``max_width`` bits wide: ``(L, layers, activations, fmt)``."""
    L = draw(st.integers(1, 3))
    layers = [draw(st.integers(1, 4)) for _ in range(L + 1)]
    activations = [draw(st.sampled_from(ACTIVATION_SPECS)) for _ in range(L)]

    def fmt():
        width = draw(st.integers(min_width, max_width))
        return Format(width, draw(st.integers(0, width - 1)))
    return L, layers, activations, fmt


@st.composite
def networks(draw):
    L, layers, activations, fmt = _topology(draw, 4, 20)
    formats = Formats(fmt(), fmt(),
                      {l: fmt() for l in range(L + 1) if draw(st.booleans())},
                      {l: fmt() for l in range(1, L + 1) if draw(st.booleans())})
    pc = PCSettings(mode=draw(st.sampled_from(["standard", "fixed_prediction", "incremental"])),
                    inference_steps=draw(st.integers(0, 4)),
                    inference_rate=2.0 ** -draw(st.integers(0, 3)),
                    learning_rate=2.0 ** -draw(st.integers(0, 6)),
                    weight_rounding=draw(st.sampled_from(["nearest", "stochastic"])),
                    seed=draw(st.integers(0, 100)))
    scale = draw(st.sampled_from([0.5, 2.0, 8.0]))     # large scales force saturation
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    weights = [rng.normal(0, scale, (layers[l], layers[l - 1])) for l in range(1, L + 1)]
    biases = [rng.normal(0, scale, layers[l]) for l in range(1, L + 1)]
    return Network(layers, activations, weights, biases, pc=pc, formats=formats), rng, scale


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_fixed_model_matches_independent_reference(case):
    """Bit for bit: predictions, every traced state, and the parameters after each step."""
    net, rng, scale = case
    model, ref = FixedModel(net), Reference(net)
    for _ in range(3):
        x = rng.normal(0, scale, net.layers[0])
        y = rng.normal(0, scale, net.layers[-1])
        assert [int(v) for v in model.infer(x[None]).ravel() * 2 ** net.value_format(net.L).frac] \
            == ref.infer(list(x))
        result = model.learn(x[None], y[None], trace=True)
        prediction, trace = ref.learn(list(x), list(y))
        assert list(np.round(result.output[0] * 2 ** net.value_format(net.L).frac)) == prediction
        assert len(result.trace) == len(trace)
        for snap, (rx, rmu, reps) in zip(result.trace, trace):
            assert [list(v[0]) for v in snap.x] == rx
            assert [list(v[0]) for v in snap.mu[1:]] == rmu[1:]
            assert [list(v[0]) for v in snap.eps[1:]] == reps[1:]
        for l in range(1, net.L + 1):
            assert model.W[l - 1].tolist() == ref.W[l]
            assert model.b[l - 1].tolist() == ref.b[l]
    assert model.updates == ref.updates


def finite_difference_gradient(net, x, y, eps=1e-6):
    """dLoss/dW_l and dLoss/db_l by central differences, from a forward pass written here."""
    acts = {"identity": lambda v: v, "relu": lambda v: np.maximum(v, 0),
            "hardtanh": lambda v: np.clip(v, -1, 1),
            "leaky_relu": lambda v, s=0: np.where(v >= 0, v, v * 2.0 ** -s),
            "tanh": np.tanh, "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v))}

    def f(a, v):
        return acts[a.name](v, a.shift) if a.name == "leaky_relu" else acts[a.name](v)

    def loss(ws, bs):
        h = x
        for l in range(net.L):
            h = ws[l] @ f(net.activations[l], h) + bs[l]
        return 0.5 * np.sum((y - h) ** 2)

    ws = [w.copy() for w in net.weights]
    bs = [b.copy() for b in net.biases]
    grads = []
    for params in (ws, bs):
        layer_grads = []
        for p in params:
            g = np.zeros_like(p)
            for idx in np.ndindex(p.shape):
                old = p[idx]
                p[idx] = old + eps
                up = loss(ws, bs)
                p[idx] = old - eps
                down = loss(ws, bs)
                p[idx] = old
                g[idx] = (up - down) / (2 * eps)
            layer_grads.append(g)
        grads.append(layer_grads)
    return grads


@pytest.mark.parametrize("activation", ACTIVATION_SPECS)
@pytest.mark.parametrize("layers", [[3, 2], [3, 5, 2], [4, 6, 5, 3], [2, 4, 4, 4, 3]])
def test_fixed_prediction_equals_backprop(layers, activation):
    """gamma = 1 and T = L - 1 in fixed_prediction mode: the update is exactly -eta * dLoss/dW."""
    L = len(layers) - 1
    eta = 2.0 ** -4
    net = Network(layers, ["identity"] + [activation] * (L - 1), init_seed=L,
                  pc=PCSettings(mode="fixed_prediction", inference_steps=L - 1,
                                inference_rate=1.0, learning_rate=eta))
    rng = np.random.default_rng(1)
    net = net.with_params(net.weights, [rng.normal(0, 0.3, b.shape) for b in net.biases])
    x, y = rng.normal(size=layers[0]), rng.normal(size=layers[-1])
    result = FloatModel(net).learn(x[None], y[None])
    grad_w, grad_b = finite_difference_gradient(net, x, y)
    for l in range(L):
        np.testing.assert_allclose(result.dW[l], -eta * grad_w[l], atol=1e-8)
        np.testing.assert_allclose(result.db[l], -eta * grad_b[l], atol=1e-8)
    bw, bb, _ = gradients(net, net.weights, net.biases, x, y)     # pchw's own backprop agrees
    for l in range(L):
        np.testing.assert_allclose(bw[l], grad_w[l], atol=1e-7)
        np.testing.assert_allclose(bb[l], grad_b[l], atol=1e-7)


def test_backprop_equivalence_with_autograd():
    torch = pytest.importorskip("torch", reason="PyTorch is optional (pip install 'pchw[torch]'); "
                                "the finite-difference test above checks the same property")
    net = Network([5, 7, 6, 3], ["identity", "relu", "hardtanh"], init_seed=4,
                  pc=PCSettings(mode="fixed_prediction", inference_steps=2, inference_rate=1.0,
                                learning_rate=2.0 ** -3))
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(1, 5)), rng.normal(size=(1, 3))
    ws = [torch.tensor(w, requires_grad=True) for w in net.weights]
    bs = [torch.tensor(b, requires_grad=True) for b in net.biases]
    h = torch.tensor(x)
    for w, b, f in zip(ws, bs, [lambda v: v, torch.relu, torch.nn.functional.hardtanh]):
        h = f(h) @ w.T + b
    (0.5 * ((torch.tensor(y) - h) ** 2).sum()).backward()
    result = FloatModel(net).learn(x, y)
    for l in range(3):
        np.testing.assert_allclose(result.dW[l], -2.0 ** -3 * ws[l].grad.numpy(), atol=1e-12)
        np.testing.assert_allclose(result.db[l], -2.0 ** -3 * bs[l].grad.numpy(), atol=1e-12)


def test_relaxation_approaches_backprop_as_T_grows(capsys):
    """Millidge et al.'s figure: cosine(PC update, -backprop gradient) against T, gamma = 2^-3.

    With the fixed prediction assumption the errors converge to backprop's deltas, so the
    cosine tends to 1. Standard PC converges to its own equilibrium, where (linearised) the
    output error is ``(I + W_L D W_L^T)^-1`` times backprop's: close to, not equal to, the
    gradient however small the output error (Whittington & Bogacz 2017).
    """
    net, x, y = millidge_setup()
    steps = AGREEMENT_STEPS
    rows = {mode: gradient_agreement(net.with_settings(mode=mode), x, y, steps)
            for mode in ("fixed_prediction", "standard")}
    with capsys.disabled():
        print("\ncosine(PC update, -dLoss/dtheta), gamma = 2^-3, 8-16-16-4 relu:")
        print("  mode              " + " ".join(f"T={T:<4d}" for T in steps))
        for mode, cosines in rows.items():
            print(f"  {mode:17s} " + " ".join(f"{c:6.4f}" for c in cosines))
    for cosines in rows.values():
        assert cosines[-1] > cosines[0] + 0.2               # relaxation carries errors down
        assert all(b >= a - 1e-3 for a, b in zip(cosines[4:], cosines[5:]))  # and settles
    assert rows["fixed_prediction"][-1] > 0.9999
    assert rows["standard"][-1] > 0.95


def test_fixed_point_tracks_float_with_wide_formats():
    net = Network([6, 8, 5, 3], ["identity", "relu", {"name": "leaky_relu", "slope": 0.125}],
                  init_seed=6, formats=Formats(Format(28, 18), Format(24, 18)),
                  pc=PCSettings(mode="standard", inference_steps=6, inference_rate=0.5,
                                learning_rate=2.0 ** -3))
    rng = np.random.default_rng(4)
    x, y = rng.uniform(-1, 1, (5, 6)), rng.uniform(-1, 1, (5, 3))
    fixed, floating = FixedModel(net), FloatModel(net)
    np.testing.assert_allclose(fixed.infer(x), floating.infer(x), atol=1e-4)
    for i in range(5):
        a, b = fixed.learn(x[i:i + 1], y[i:i + 1]), floating.learn(x[i:i + 1], y[i:i + 1])
        for l in range(3):
            np.testing.assert_allclose(a.dW[l], b.dW[l], atol=2e-4)
    assert fixed.saturations.saturated() == 0


def test_batched_inference_equals_one_by_one():
    net = Network([5, 9, 4], ["identity", "hardtanh"], init_seed=7)
    x = np.random.default_rng(5).normal(size=(20, 5))
    model = FixedModel(net)
    batched = model.infer(x)
    assert np.array_equal(batched, np.concatenate([model.infer(v[None]) for v in x]))


def test_minibatch_update_is_sum_of_sample_updates_in_float():
    net = Network([4, 6, 3], ["identity", "relu"], init_seed=8,
                  pc=PCSettings(mode="standard", inference_steps=5, inference_rate=0.25))
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(4, 4)), rng.normal(size=(4, 3))
    batch = FloatModel(net).learn(x, y)
    singles = [FloatModel(net).learn(x[i:i + 1], y[i:i + 1]) for i in range(4)]
    for l in range(2):
        np.testing.assert_allclose(batch.dW[l], sum(s.dW[l] for s in singles), atol=1e-12)


@pytest.mark.parametrize("mode, snapshots, updates", [
    ("standard", 4, 1), ("fixed_prediction", 4, 1), ("incremental", 3, 3)])
def test_trace_and_update_counts(mode, snapshots, updates):
    net = Network([3, 4, 4, 2], ["identity", "relu", "relu"], init_seed=9,
                  pc=PCSettings(mode=mode, inference_steps=3))
    model = FixedModel(net)
    result = model.learn(np.ones((1, 3)), np.zeros((1, 2)), trace=True)
    assert len(result.trace) == snapshots and model.updates == updates
    first = result.trace[0]
    # The first snapshot is the clamped feedforward state: hidden errors are zero.
    assert all(not np.any(first.eps[l]) for l in (1, 2))
    assert np.array_equal(first.x[3], net.value_format(3).quantise(np.zeros((1, 2))))
    if mode == "fixed_prediction":
        assert all(np.array_equal(s.mu[l], first.mu[l]) for s in result.trace for l in (1, 2, 3))


def test_saturation_and_underflow_are_counted():
    net = Network([2, 3, 2], ["identity", "relu"], init_seed=10,
                  formats=Formats(Format(8, 4), Format(8, 6)),
                  pc=PCSettings(learning_rate=2.0 ** -20))
    model = FixedModel(net)
    model.learn(np.array([[100.0, -0.3]]), np.array([[0.7, -0.2]]))
    counts = model.saturations.as_dict()
    assert counts["input[0]"] == 1
    assert counts.get("dW_zero[2]", 0) > 0         # eta = 2^-20 rounds every update to zero
    assert all(np.array_equal(w, q) for w, q in zip(model.W, FixedModel(net).W))


# -- exact arithmetic at every legal width ----------------------------------------------------

def _raw(rng, fmt, shape):
    """Values of ``fmt`` (as floats, exactly representable) of every magnitude up to its range."""
    bits = rng.integers(0, fmt.width, size=shape)
    raw = [int(rng.integers(-(1 << b), 1 << b)) for b in np.ravel(bits)]
    return np.ldexp(np.clip(np.reshape(np.array(raw, dtype=np.float64), shape), fmt.min,
                            fmt.max), -fmt.frac)


def _wide_network(layers, activations, value, weight, value_overrides=None,
                  weight_overrides=None, params_seed=0, **pc):
    formats = Formats(value, weight, value_overrides or {}, weight_overrides or {})
    shell = Network(layers, activations, formats=formats)
    rng = np.random.default_rng(params_seed)
    weights = [_raw(rng, shell.weight_format(l), (layers[l], layers[l - 1]))
               for l in range(1, len(layers))]
    biases = [_raw(rng, shell.weight_format(l), (layers[l],)) for l in range(1, len(layers))]
    return shell.with_params(weights, biases).with_settings(**pc)


def _assert_matches_reference(net, batch, steps=2, seed=1):
    """Golden model and the Python-int reference agree bit for bit on ``steps`` batches."""
    rng = np.random.default_rng(seed)
    model, ref = FixedModel(net), Reference(net)
    out = net.value_format(net.L)
    for _ in range(steps):
        x = _raw(rng, net.value_format(0), (batch, net.layers[0]))
        y = _raw(rng, out, (batch, net.layers[-1]))
        assert [[int(v) for v in row] for row in np.ldexp(model.infer(x), out.frac)] \
            == [ref.infer(list(row)) for row in x]
        result = model.learn(x, y, trace=True)
        predictions, traces = ref.learn_batch([list(r) for r in x], [list(r) for r in y])
        assert np.ldexp(result.output, out.frac).astype(np.int64).tolist() == predictions
        for s in range(batch):
            assert len(result.trace) == len(traces[s])
            for snap, (rx, rmu, reps) in zip(result.trace, traces[s]):
                assert [v[s].tolist() for v in snap.x] == rx
                assert [v[s].tolist() for v in snap.mu[1:]] == rmu[1:]
                assert [v[s].tolist() for v in snap.eps[1:]] == reps[1:]
        for l in range(1, net.L + 1):
            assert model.W[l - 1].tolist() == ref.W[l]
            assert model.b[l - 1].tolist() == ref.b[l]
            assert model.W[l - 1].dtype == np.int64 and model.b[l - 1].dtype == np.int64
    assert model.updates == ref.updates


def test_wide_left_shift_saturates_instead_of_wrapping():
    """Issue 15: Q20.0 values, Q32.31 weights, eta = 1: dW = 2^36 << 31 saturates to max."""
    net = Network([1, 1], ["identity"], [np.zeros((1, 1))], [np.zeros(1)],
                  formats=Formats(Format(20, 0), Format(32, 31)),
                  pc=PCSettings(inference_steps=0, learning_rate=1.0))
    model = FixedModel(net)
    model.learn([[2 ** 18]], [[2 ** 18]])
    assert model.W[0].tolist() == [[2147483647]] and model.b[0].tolist() == [2147483647]


def test_wide_right_shift_beyond_64_bits():
    """Issue 15: Q24.23 values, Q8.0 weights, eta = 2^-20: the weight shift is 66."""
    net = _wide_network([2, 2], ["identity"], Format(24, 23), Format(8, 0), params_seed=3,
                        inference_steps=2, learning_rate=2.0 ** -20)
    assert LayerShifts.of(net, 1).weight == 66
    _assert_matches_reference(net, batch=2)


def _narrowing_case(kind, w, rounding):
    """A network whose narrowing ``kind`` has its extreme shift at width ``w``; returns
    ``(network, batch, (layer, shift name, expected shift))``."""
    hi, lo = Format(w, w - 1), Format(w, 0)
    mid = Format(w, w // 2)
    layers, acts = [3, 4, 2], ["identity", "leaky_relu"]
    pc = dict(mode="standard", inference_steps=2, inference_rate=0.5, learning_rate=1.0,
              weight_rounding=rounding, seed=5)
    v, f, batch = {}, {}, 1
    if kind == "mu_left":              # w_1 + v_0 - v_1 = -(w - 1)
        v, f, check = {0: lo, 1: hi}, {1: lo}, (1, "mu", -(w - 1))
    elif kind == "mu_right":           # 2w - 2
        v, f, check = {0: hi, 1: lo}, {1: hi}, (1, "mu", 2 * w - 2)
    elif kind == "message_left":       # v_2 + w_2 - v_1 = -(w - 1)
        v, f, check = {1: hi, 2: lo}, {2: lo}, (2, "message", -(w - 1))
    elif kind == "message_right":
        v, f, check = {1: lo, 2: hi}, {2: hi}, (2, "message", 2 * w - 2)
    elif kind == "weight_left":        # v_1 + v_0 - w_1 + k = -(w - 1), summed over a batch
        v, f, batch, check = {0: lo, 1: lo}, {1: hi}, 3, (1, "weight", -(w - 1))
    elif kind == "weight_right":       # 2w - 2 + 30
        v, f, batch, check = {0: hi, 1: hi}, {1: lo}, 3, (1, "weight", 2 * w - 2 + 30)
        pc["learning_rate"] = 2.0 ** -30
    elif kind == "bias_left":          # v_1 - w_1 + k = -(w - 1), summed over a batch
        v, f, batch, check = {1: lo}, {1: hi}, 4, (1, "bias", -(w - 1))
    elif kind == "bias_right":         # w - 1 + 30
        v, f, batch, check = {1: hi}, {1: lo}, 4, (1, "bias", w - 1 + 30)
        pc["learning_rate"] = 2.0 ** -30
    elif kind == "batch_sums":         # incremental: every step sums a batch of 8
        v, f, batch, check = {0: lo, 1: mid}, {1: lo}, 8, (1, "weight", w // 2)
        pc.update(mode="incremental", learning_rate=1.0)
    net = _wide_network(layers, acts, mid, mid, v, f, params_seed=w, **pc)
    return net, batch, check


NARROWINGS = ["mu_left", "mu_right", "message_left", "message_right", "weight_left",
              "weight_right", "bias_left", "bias_right", "batch_sums"]


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("width", range(24, 33))
@pytest.mark.parametrize("kind", NARROWINGS)
def test_every_narrowing_is_exact_at_wide_formats(kind, width, rounding):
    """Each narrowing at its extreme shift for widths 24..32, against the Python-int reference."""
    net, batch, (l, name, shift) = _narrowing_case(kind, width, rounding)
    assert getattr(LayerShifts.of(net, l), name) == shift
    _assert_matches_reference(net, batch)


@st.composite
def wide_networks(draw):
    L, layers, activations, fmt = _topology(draw, 24, 32)
    pc = dict(mode=draw(st.sampled_from(["standard", "fixed_prediction", "incremental"])),
              inference_steps=draw(st.integers(0, 3)),
              inference_rate=2.0 ** -draw(st.integers(0, 30)),
              learning_rate=2.0 ** -draw(st.integers(0, 30)),
              weight_rounding=draw(st.sampled_from(["nearest", "stochastic"])),
              seed=draw(st.integers(0, 100)))
    net = _wide_network(layers, activations, fmt(), fmt(),
                        {l: fmt() for l in range(L + 1) if draw(st.booleans())},
                        {l: fmt() for l in range(1, L + 1) if draw(st.booleans())},
                        params_seed=draw(st.integers(0, 2 ** 32 - 1)), **pc)
    return net, draw(st.integers(1, 3)), draw(st.integers(0, 2 ** 32 - 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wide_networks())
def test_wide_formats_match_reference(case):
    """Random networks with every format 24..32 bits wide, batches of 1..3, every mode."""
    net, batch, seed = case
    _assert_matches_reference(net, batch, seed=seed)
