"""Derived PC settings (pchw.defaults), the energy monitor and the divergence guard."""

import math

import numpy as np
import pytest

import pchw
from pchw.cli import main
from pchw.datasets import load_dataset
from pchw.defaults import (DEEP_VALUE_FORMAT, DEFAULT_MODE, default_formats, default_settings,
                           relaxation_bound, slowest_relaxation, with_defaults)
from pchw.fixedpoint import Format
from pchw.golden import FixedModel, FloatModel, energy_rises
from pchw.network import Network, PCSettings
from pchw.train import DivergenceGuard, train_pc


def _chain(gamma, steps=8):
    """1-1-1 identity network, W_1 = 1, W_2 = 2: the relaxation's Hessian is 1 + 2^2 = 5, so it
    diverges for gamma > 2/5 (each step multiplies the error by 1 - 5 gamma). A small eta keeps
    the weights (nearly) where they are."""
    return Network([1, 1, 1], ["identity", "identity"], [np.array([[1.0]]), np.array([[2.0]])],
                   [np.zeros(1), np.zeros(1)],
                   pc=PCSettings(mode="standard", inference_steps=steps, inference_rate=gamma,
                                 learning_rate=2.0 ** -20))


def test_energy_monitor_reports_a_diverging_relaxation():
    x, y = np.array([[0.5]]), np.array([[0.0]])
    result = FloatModel(_chain(0.5)).learn(x, y, energy=True)
    e = result.energy[:, 0]
    assert result.energy.shape == (9, 1)
    assert e[0] == pytest.approx(0.5 * (0.0 - 1.0) ** 2)        # output error only
    # Past the bound the unstable mode grows by (1 - 5/2)^2 = 2.25 per step.
    assert np.all(np.diff(e[2:]) > 0) and e[-1] > 10 * e[0]
    assert energy_rises(result.energy)[0] > 1.0
    # The fixed-point model reports the same energies (to rounding).
    fixed = FixedModel(_chain(0.5)).learn(x, y, energy=True).energy[:, 0]
    assert np.allclose(fixed, e, rtol=1e-2)


def test_energy_monitor_derived_gamma_descends():
    net = _chain(0.5)
    assert relaxation_bound(net) == pytest.approx(5.0)
    settings = default_settings(net, "standard")
    assert settings.inference_rate == 2.0 ** -4          # largest 2^-g with 5 g <= 1/2
    result = FloatModel(net.with_settings(**vars(settings))).learn([[0.5]], [[0.0]], energy=True)
    assert np.all(np.diff(result.energy[:, 0]) <= 0)
    assert energy_rises(result.energy)[0] == 0.0
    assert FloatModel(net).learn([[0.5]], [[0.0]]).energy is None          # off by default


def test_relaxation_bound_bounds_the_hessian():
    """The Gauss-Newton Hessian J^T J of the energy in the hidden values, for random weights and
    random activation gates, never exceeds the bound."""
    rng = np.random.default_rng(1)
    for layers in ([5, 7, 3], [4, 6, 5, 3], [3, 8, 4, 6, 2]):
        net = Network(layers, ["identity"] + ["relu"] * (len(layers) - 2),
                      init_seed=int(rng.integers(100)))
        L, hidden = net.L, layers[1:-1]
        offsets = np.concatenate([[0], np.cumsum(layers[1:])])
        for _ in range(5):
            gates = [np.diag(rng.integers(0, 2, n).astype(float)) for n in layers]
            J = np.zeros((sum(layers[1:]), sum(hidden)))      # d(eps_1..eps_L)/d(x_1..x_{L-1})
            for l in range(1, L):
                cols = slice(offsets[l - 1], offsets[l])
                J[offsets[l - 1]:offsets[l], cols] = np.eye(layers[l])
                J[offsets[l]:offsets[l + 1], cols] = -net.weights[l] @ gates[l]
            assert np.linalg.eigvalsh(J.T @ J)[-1] <= relaxation_bound(net) + 1e-9


def test_default_settings_rule():
    net = Network([64, 16, 10], ["identity", "relu"])
    assert default_settings(net) == default_settings(net, DEFAULT_MODE)
    fp = default_settings(net, "fixed_prediction")
    assert (fp.inference_steps, fp.inference_rate) == (1, 1.0)        # backprop's update
    for mode in ("standard", "incremental"):
        s = default_settings(net, mode)
        assert s.inference_rate * relaxation_bound(net) <= 0.5 < \
            2 * s.inference_rate * relaxation_bound(net)
        assert s.inference_steps == round(1 / s.inference_rate) + net.L - 2
    assert default_settings(net, "standard").learning_rate == 2.0 ** -5
    deep = Network([64, 32, 16, 10], ["identity", "relu", "relu"])
    assert default_settings(deep).inference_steps == 2
    standard = default_settings(deep, "standard")
    assert slowest_relaxation(deep) < 1
    # One time constant of the slowest mode, after the L - 2 steps that carry the error down.
    assert standard.inference_steps == 1 + math.ceil(
        1 / (standard.inference_rate * slowest_relaxation(deep)))
    assert standard.learning_rate == 4 * default_settings(net, "standard").learning_rate
    incremental = default_settings(deep, "incremental")
    assert incremental.inference_steps == round(1 / incremental.inference_rate) + 1


def test_slowest_relaxation(monkeypatch):
    """lambda_min of the Hessian with every unit active: at least 1 with one hidden layer (the
    old T = 1/gamma + L - 2), smaller deeper; the bound used for large networks is below it."""
    import pchw.defaults as defaults
    rng = np.random.default_rng(2)
    assert slowest_relaxation(Network([5, 7, 3], ["identity", "relu"])) == 1.0
    narrow = Network([5, 2, 3], ["identity", "relu"], init_seed=3)
    assert slowest_relaxation(narrow) == pytest.approx(
        np.linalg.eigvalsh(np.eye(2) + narrow.weights[1].T @ narrow.weights[1])[0])
    for layers in ([4, 6, 5, 3], [3, 8, 4, 6, 2]):
        net = Network(layers, ["identity"] + ["relu"] * (len(layers) - 2),
                      init_seed=int(rng.integers(100)))
        exact = slowest_relaxation(net)
        L, hidden = net.L, layers[1:-1]
        offsets = np.concatenate([[0], np.cumsum(layers[1:])])
        J = np.zeros((sum(layers[1:]), sum(hidden)))
        for l in range(1, L):
            J[offsets[l - 1]:offsets[l], offsets[l - 1]:offsets[l]] = np.eye(layers[l])
            J[offsets[l]:offsets[l + 1], offsets[l - 1]:offsets[l]] = -net.weights[l]
        assert exact == pytest.approx(np.linalg.svd(J, compute_uv=False)[-1] ** 2)
        assert 0 < exact < 1
        monkeypatch.setattr(defaults, "_DENSE_HIDDEN", 1)
        assert 0 < slowest_relaxation(net) <= exact
        monkeypatch.undo()


def test_guard_names_the_setting_to_change():
    warnings = []
    net = _chain(0.5)
    guard = DivergenceGuard(net, warnings.append)
    model = FloatModel(net)
    for i in range(4):
        guard.observe(model.learn([[0.5 + 0.1 * i]], [[0.0]], energy=True).energy)
    guard.end_epoch(0, 0.9, model)
    assert len(warnings) == 1 and "pc.inference_rate (gamma) = 0.5 is past the stability " \
        "bound" in warnings[0] and "pc.inference_rate = " in warnings[0]
    guard.end_epoch(1, 0.5, model)                                # a collapse
    assert len(warnings) == 2 and "fell to 50.00% from 90.00% (epoch 1)" in warnings[1]
    assert "lower pc.inference_rate" in warnings[1]
    calm = []
    guard = DivergenceGuard(net.with_settings(inference_rate=2.0 ** -4), calm.append)
    guard.end_epoch(0, 0.9, model)
    guard.end_epoch(1, 0.8, model)
    assert len(calm) == 1 and "lower pc.learning_rate (eta = 9.53674e-07) to 4.76837e-07" in calm[0]


def test_train_warns_on_the_old_defaults(capsys):
    """Standard PC at gamma = 1/2 on digits 64-16-10 (pchw init's old defaults) diverges: the
    guard says so in epoch 4, before the accuracy collapses."""
    data = load_dataset("digits")
    net = Network([64, 16, 10], ["identity", "relu"],
                  pc=PCSettings(mode="standard", inference_steps=8, inference_rate=0.5))
    warnings = []
    train_pc(net, data, 4, fixed=False, warn=warnings.append)
    assert len(warnings) == 1 and "pc.inference_rate (gamma) = 0.5" in warnings[0]


def test_default_formats_rule():
    """Q16.12 values for standard PC with more than one hidden layer (the small relaxation
    steps of its lower layers), Q16.10 otherwise; weights Q16.12; every format 16
    bits wide (one SB_MAC16 operand)."""
    one = Network([64, 32, 10], ["identity", "relu"])
    deep = Network([64, 32, 16, 10], ["identity", "relu", "relu"])
    for mode in ("fixed_prediction", "standard", "incremental"):
        assert default_formats(one, mode).value == Format(16, 10)
        deep_value = default_formats(deep, mode).value
        assert deep_value == (DEEP_VALUE_FORMAT if mode == "standard" else Format(16, 10))
        for net in (one, deep):
            f = default_formats(net, mode)
            assert f.weight == Format(16, 12) and f.value.width == f.weight.width == 16
    configured = with_defaults(deep, "standard")
    assert configured.pc == default_settings(deep, "standard")
    assert configured.formats == default_formats(deep, "standard")
    with pytest.raises(ValueError):
        default_formats(deep, "backprop")


#: (dataset, hidden layers, mode, epochs, test accuracy reached): `pchw init` settings and
#: formats, then a short fixed-point training (bench/pc_defaults.py measures 30 epochs).
SHORT_RUNS = [
    ("xor", (8,), DEFAULT_MODE, 100, 1.0),
    ("iris", (8,), DEFAULT_MODE, 5, 0.9),
    ("wine", (16,), DEFAULT_MODE, 5, 0.95),
    ("breast_cancer", (16,), DEFAULT_MODE, 2, 0.9),
    ("digits", (16,), DEFAULT_MODE, 2, 0.85),
    ("xor", (8,), "standard", 100, 1.0),
    ("breast_cancer", (16,), "standard", 2, 0.95),
    ("xor", (8,), "incremental", 100, 1.0),
    ("wine", (16, 16), "standard", 1, 0.9),
]


@pytest.mark.parametrize("name, hidden, mode, epochs, reached", SHORT_RUNS)
def test_init_then_train_learns(tmp_path, name, hidden, mode, epochs, reached):
    data = load_dataset(name)
    path = tmp_path / name
    layers = ",".join(str(n) for n in (data.n_features, *hidden, data.n_classes))
    assert main(["init", str(path), "--layers", layers, "--dataset", name, "--mode", mode]) == 0
    network = pchw.load(path)
    assert network.pc == default_settings(network, mode)
    assert network.formats == default_formats(network, mode)
    warnings = []
    _, history = train_pc(network, data, epochs, fixed=True, warn=warnings.append)
    assert history[-1] >= reached
    assert warnings == []


def test_learning_curves_pass_the_guard_on():
    """pchw report's learning curves (pchw.quality) warn with the run's label."""
    from pchw.datasets import Dataset
    from pchw.quality import learning_curves
    x, y = np.full((32, 1), 0.2), np.zeros(32, dtype=int)     # output 0.4, target 1
    data = Dataset("toy", x, y, x, y, 1)
    warnings = []
    learning_curves(_chain(0.5), data, 1, backprop=False, warn=warnings.append)
    assert warnings and all(w.startswith("PC standard ") for w in warnings)
    assert {w.split(":")[0] for w in warnings} == {"PC standard float64",
                                                   "PC standard fixed point"}
    assert all("pc.inference_rate (gamma) = 0.5 is past" in w for w in warnings)
