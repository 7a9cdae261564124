"""The fault model (pchw.faults): the specification and its errors, the golden model on a
damaged substrate against an independent statement of what the damage means, upsets, and the
``pchw faults`` experiment."""

import json

import numpy as np
import pytest

import pchw
from pchw import Network, PCSettings
from pchw.cli import main
from pchw.faults import (FaultSpec, StuckWeights, apply_upsets, damage, learn_command,
                         parameter_bits, upset_positions)
from pchw.fixedpoint import srhash32
from pchw.golden import FixedModel, FloatModel


def small(mode="standard", rounding="nearest", layers=(5, 7, 6, 3)):
    return Network(list(layers), ["identity", "relu", "hardtanh"][:len(layers) - 1],
                   pc=PCSettings(mode=mode, inference_steps=3, inference_rate=0.25,
                                 learning_rate=2.0 ** -3, weight_rounding=rounding),
                   init_seed=3, name="small")


def samples(network, count, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, (count, network.layers[0])),
            rng.uniform(-1, 1, (count, network.layers[-1])))


# -- the specification ---------------------------------------------------------------------------

@pytest.mark.parametrize("table, message", [
    ({"dead": [{"layer": 1}]}, "dead[0]: give either 'indices' or 'fraction'"),
    ({"dead": [{"layer": 1, "fraction": 1.5}]}, "dead[0].fraction: 1.5 is not a number in [0, 1]"),
    ({"dead": [{"fraction": 0.5}]}, "dead[0]: missing 'layer'"),
    ({"dead": [{"layer": 1, "indices": [0, 99]}]}, "unit 99 of layer 1, which has 7 units"),
    ({"dead": [{"layer": 9, "fraction": 0.5}]}, "layer 9: the network has layers 0..3"),
    ({"dead": [{"layer": 2, "fraction": 1.0}]}, "every unit of layer 2 is dead"),
    ({"stuck": [{"layer": 0, "fraction": 0.5}]}, "stuck[0].layer: 0 is not an integer"),
    ({"upsets": {"rate": -1}}, "upsets.rate: -1 is not a number"),
    ({"upsets": {"rte": 1}}, "unexpected key(s) rte"),
    ({"deadd": []}, "unexpected key(s) deadd"),
    ({"seed": 1 << 24}, "seed: 16777216 is not an integer"),
])
def test_bad_specifications_are_one_line_errors(table, message):
    with pytest.raises(pchw.PchwError) as error:
        FaultSpec.from_dict(table).resolve(small())
    assert message in str(error.value) and "\n" not in str(error.value)


def test_specification_files(tmp_path):
    path = tmp_path / "f.toml"
    path.write_text('seed = 7\n[[dead]]\nlayer = 1\nindices = [0, 2]\n[[stuck]]\nlayer = 2\n'
                    'fraction = 0.25\nvalue = 0.5\n[upsets]\nrate = 1.5\n')
    spec = FaultSpec.load(path)
    assert spec.seed == 7 and spec.upset_rate == 1.5 and spec.dead[0].indices == (0, 2)
    assert FaultSpec.from_dict(spec.to_dict()) == spec
    faults = spec.resolve(small())
    assert list(np.flatnonzero(faults.dead[1])) == [0, 2]
    assert faults.stuck_mask[1].sum() == round(0.25 * 6 * 7)
    assert spec.resolve(small()).stuck_mask[1].tolist() == faults.stuck_mask[1].tolist()
    (tmp_path / "bad.toml").write_text("seed = \n")
    with pytest.raises(pchw.PchwError, match="not valid TOML"):
        FaultSpec.load(tmp_path / "bad.toml")
    with pytest.raises(pchw.PchwError, match="no such fault specification"):
        FaultSpec.load(tmp_path / "missing.toml")


# -- the golden model on a damaged substrate ------------------------------------------------------

def _remove_units(network, dead):
    """The network with the dead units of each layer removed (the independent statement: a dead
    unit is as if it were not there)."""
    keep = [np.flatnonzero(~d) for d in dead]
    weights = [w[np.ix_(keep[l], keep[l - 1])] for l, w in enumerate(network.weights, start=1)]
    biases = [b[keep[l]] for l, b in enumerate(network.biases, start=1)]
    return Network([len(k) for k in keep], network.activations, weights, biases, pc=network.pc,
                   formats=network.formats), keep


@pytest.mark.parametrize("mode", ["standard", "fixed_prediction", "incremental"])
@pytest.mark.parametrize("fixed", [True, False])
def test_dead_units_are_as_if_removed(mode, fixed):
    """Learning with dead hidden units equals learning in the network without them (bit for
    bit in fixed point with nearest rounding, whose result does not depend on indices; to
    rounding in float64, where the zeros change the summation order), and the dead units'
    weights never change."""
    network = small(mode)
    spec = FaultSpec.from_dict({"dead": [{"layer": 1, "indices": [1, 4]},
                                         {"layer": 2, "indices": [0, 5]}]})
    faults = spec.resolve(network)
    make = FixedModel if fixed else FloatModel
    model = damage(make(network), faults)
    smaller, keep = _remove_units(network, faults.dead)
    reference = make(smaller)
    x, y = samples(network, 12)
    for i in range(12):
        got = model.learn(x[i:i + 1], y[i:i + 1], trace=True)
        want = reference.learn(x[i:i + 1], y[i:i + 1])
        assert np.array_equal(got.output, want.output) if fixed else \
            np.allclose(got.output, want.output, rtol=0, atol=1e-12)
        for snap in got.trace:                   # the dead units are zero at every step
            for l in (1, 2):
                assert not np.any(snap.x[l][:, faults.dead[l]])
                assert not np.any(snap.eps[l][:, faults.dead[l]])
    for l in range(1, network.L + 1):
        kept = model.W[l - 1][np.ix_(keep[l], keep[l - 1])]
        assert np.array_equal(kept, reference.W[l - 1]) if fixed else \
            np.allclose(kept, reference.W[l - 1], rtol=0, atol=1e-12)
        assert np.array_equal(model.b[l - 1][keep[l]], reference.b[l - 1]) if fixed else \
            np.allclose(model.b[l - 1][keep[l]], reference.b[l - 1], rtol=0, atol=1e-12)
    initial = FixedModel(network) if fixed else FloatModel(network)
    for l in range(1, network.L + 1):                # rows and columns of dead units: unchanged
        rows, cols = faults.dead[l], faults.dead[l - 1]
        assert np.array_equal(model.W[l - 1][rows], initial.W[l - 1][rows])
        assert np.array_equal(model.W[l - 1][:, cols], initial.W[l - 1][:, cols])


def test_stuck_weights_hold_and_the_rest_learns():
    network = small(rounding="stochastic")
    spec = FaultSpec(stuck=(StuckWeights(1, 0.5, 0.25), StuckWeights(3, 0.3, -1.0)), seed=5)
    faults = spec.resolve(network)
    model = damage(FixedModel(network), faults)
    x, y = samples(network, 20)
    before = [w.copy() for w in model.W]
    total = None
    for i in range(20):
        result = model.learn(x[i:i + 1], y[i:i + 1])
        total = result.dW if total is None else [a + b for a, b in zip(total, result.dW)]
    for l, value in ((1, 0.25), (3, -1.0)):
        mask = faults.stuck_mask[l - 1]
        raw = network.weight_format(l).quantise(value)
        assert mask.sum() == round(spec.stuck[0 if l == 1 else 1].fraction * mask.size)
        assert np.all(model.W[l - 1][mask] == raw)
        assert not np.any(total[l - 1][mask])      # reported changes: none where stuck
        assert np.any(model.W[l - 1][~mask] != before[l - 1][~mask])


def test_upsets_follow_the_stated_hash():
    """The positions are the documented function of (seed, command) alone, the count follows
    the rate, and each flips exactly one bit of the weight memory."""
    network = small()
    spec = FaultSpec(upset_rate=2.5, seed=11)
    B = parameter_bits(network)
    counts = [len(upset_positions(spec, k, B)) for k in range(400)]
    assert set(counts) == {2, 3} and abs(np.mean(counts) - 2.5) < 0.1
    k = 7
    extra = int(srhash32(11, k, 0, 0, 0)) < 0.5 * 2 ** 32
    want = [(int(srhash32(11, k, 0, 2 * j + 1, 0)) * 2 ** 32 + int(srhash32(11, k, 0, 2 * j + 2, 0)))
            % B for j in range(2 + extra)]
    assert upset_positions(spec, k, B) == want

    model = damage(FixedModel(network), spec.resolve(network))
    before = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in zip(model.W, model.b)])
    flipped = apply_upsets(model, k)
    after = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in zip(model.W, model.b)])
    width = network.weight_format(1).width
    diff = (before.astype(np.int64) ^ after.astype(np.int64)) & ((1 << width) - 1)
    assert sum(bin(int(d)).count("1") for d in diff) == flipped == len(want)
    for p in want:                                   # the word and bit each position names
        word, bit = divmod(p, width)
        assert diff[word] >> bit & 1


def test_upsets_only_in_fixed_point_and_stuck_wins():
    network = small()
    with pytest.raises(pchw.PchwError, match="fixed-point"):
        damage(FloatModel(network), FaultSpec(upset_rate=1.0).resolve(network))
    spec = FaultSpec(stuck=(StuckWeights(1, 1.0, 0.5),), upset_rate=50.0, seed=2)
    model = damage(FixedModel(network), spec.resolve(network))
    x, y = samples(network, 5)
    for i in range(5):
        learn_command(model, x[i:i + 1], y[i:i + 1])
    assert np.all(model.W[0] == network.weight_format(1).quantise(0.5))
    assert model.faults.commands == 5


# -- the experiment --------------------------------------------------------------------------------

def test_pchw_faults_command(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["faults", "models/iris", "--kill", "0.5", "--epochs", "1",
                 "--reference-epochs", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "surviving 4-8-3" in printed and "reference: surviving size from scratch" in printed
    record = json.loads(out.read_text())
    for key in ("fault", "epochs", "accuracy_intact", "accuracy_damaged", "accuracy_recovered",
                "accuracy_reference_scratch", "accuracy_reference_backprop"):
        assert key in record
    assert record["fault"] == {"seed": 0, "dead": [{"layer": 1, "fraction": 0.5}]}
    intact = np.mean(FixedModel(pchw.load("models/iris")).predict(
        pchw.datasets.load_dataset("iris").x_test) == pchw.datasets.load_dataset("iris").y_test)
    assert record["accuracy_intact"] == pytest.approx(intact)
    assert len(record["curve"]) == 5 and record["curve"][0] == [0.0, record["accuracy_damaged"]]


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "1"], "no faults: give --spec FILE"),
    (["--kill", "2"], "--kill 2: a fraction between 0 and 1"),
    (["--kill", "0.5", "--json", "/nonexistent/r.json"],
     "--json /nonexistent/r.json: no such folder /nonexistent"),
    (["--spec", "/nonexistent.toml"], "no such fault specification"),
])
def test_pchw_faults_errors_are_one_line(argv, message, capsys):
    assert main(["faults", "models/xor", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_verilog_of_a_fault_injection_build(tmp_path, capsys):
    """`pchw verilog --faults`: the manifest says so and gives FAULT's latency; the Verilog has
    the FAULT logic (dead units, upsets, stuck bits), and a normal build's has none (only the
    loader's enum names it)."""
    from pchw import latency, protocol, verilog
    assert main(["verilog", "models/xor", "-o", str(tmp_path / "f.v"), "--faults"]) == 0
    info = json.loads((tmp_path / "f.json").read_text())
    network = pchw.load("models/xor")
    assert info["fault_injection"] is True
    commands = info["latency_cycles"]["commands"]
    assert commands["FAULT"] == {str(t): latency.command_latency(network, protocol.Opcode.FAULT, t)
                                 for t in range(network.L + 1)}
    assert commands["LEARN"] + commands["LEARN_per_upset"] == latency.command_latency(
        network, protocol.Opcode.LEARN, upsets=1)
    assert info["max_payload_bytes"] == protocol.max_payload(network, faults=True)
    text = (tmp_path / "f.v").read_text()
    assert "dead1_0" in text and "upset_hash" in text and "stuck0" in text
    normal = verilog.generate(network)
    assert "dead1_0" not in normal and "upset" not in normal and "stuck" not in normal
    assert "FAULT" not in verilog.manifest(network)[
        "latency_cycles"]["commands"]


def test_recovery_under_upsets_and_stuck_weights():
    """The experiment with every fault: the curve runs the upsets; the float backprop reference
    has the same dead units and stuck weights but no upsets (they flip fixed-point bits)."""
    from pchw.faults import FaultSpec, recovery
    network = pchw.load("models/xor")
    data = pchw.datasets.load_dataset("xor")
    spec = FaultSpec.from_dict({"seed": 2, "stuck": [{"layer": 1, "fraction": 0.25}],
                                "upsets": {"rate": 0.5}})
    record = recovery(network, data, spec, epochs=1, reference_epochs=1)
    assert record["fault"]["upsets"] == {"rate": 0.5}
    assert len(record["reference_backprop_curve"]) == 2
