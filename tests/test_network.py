"""The network description: round trip, and a clear one-line error for each bad input."""

import numpy as np
import pytest

import pchw
from pchw import Format, Formats, Network, PCSettings, PchwError


@pytest.fixture
def model(tmp_path):
    net = Network([3, 4, 2], ["identity", {"name": "leaky_relu", "slope": 0.25}], init_seed=3,
                  pc=PCSettings(mode="incremental", inference_steps=5, inference_rate=0.25,
                                learning_rate=2 ** -6, weight_rounding="stochastic", seed=9),
                  formats=Formats(Format(12, 8), Format(14, 11), {0: Format(8, 7)},
                                  {2: Format(10, 6)}),
                  lanes=[4, 2], name="tiny", dataset="xor")
    net.save(tmp_path / "tiny")
    return tmp_path / "tiny", net


def test_round_trip(model):
    path, net = model
    back = pchw.load(path)
    assert back.layers == net.layers and back.activations == net.activations
    assert back.pc == net.pc and back.lanes == net.lanes
    assert back.formats == net.formats
    assert back.value_format(0) == Format(8, 7) and back.weight_format(2) == Format(10, 6)
    for a, b in zip(back.weights + back.biases, net.weights + net.biases):
        assert np.array_equal(a, b)
    assert back.description_hash() == net.description_hash()
    assert back.with_settings(mode="standard").description_hash() != net.description_hash()


def _edit_toml(path, old, new):
    toml = path / "network.toml"
    text = toml.read_text()
    assert old in text, f"{old!r} not in network.toml"
    toml.write_text(text.replace(old, new))


@pytest.mark.parametrize("old, new, message", [
    ("inference_rate = 0.25", "inference_rate = 0.3",
     r"pc.inference_rate: 0.3 is not a power of two .* nearest allowed: 0.25 or 0.5"),
    ("learning_rate = 0.015625", "learning_rate = 0.1",
     r"pc.learning_rate: 0.1 .* nearest allowed: 0.0625 or 0.125"),
    ("learning_rate = 0.015625", "learning_rate = 0.0",
     r"pc.learning_rate: 0.0 must be positive"),
    ("inference_steps = 5", "inference_steps = -1", r"pc.inference_steps: -1 must be >= 0"),
    ('mode = "incremental"', 'mode = "magic"', r"pc.mode: unknown mode 'magic'"),
    ('"identity"', '"swish"', r"network.activations\[0\]: unknown activation 'swish'"),
    ("slope = 0.25", "slope = 0.3", r"activations\[1\].slope: 0.3 is not a power of two"),
    ("layers = [3, 4, 2]", "layers = [3, 0, 2]", r"network.layers: size of layer 1 is 0"),
    ("width = 12", "width = 40", r"format.value: width 40 is outside 2..32"),
    ("width = 12", "width = 1", r"format.value: width 1 is outside 2..32"),
    ("frac = 8", "frac = 12", r"format.value: fraction bits 12 must be in 0..11"),
    ('weight_rounding = "stochastic"', 'weight_rounding = "up"', r"unknown rounding 'up'"),
    ("[pc]", "[pc]\ntypo = 1", r"\[pc\]: unknown key\(s\) typo"),
    ("lanes = [4, 2]", "lanes = [0, 2]", r"hardware.lanes: needs 2 positive integers"),
    ("[format]", "[format.layer.7]\nvalue = { width = 8, frac = 4 }\n[format]",
     r"format.layer.7.value: layer 7 does not exist"),
    ("[pc]", "[pc", r"not valid TOML"),
])
def test_bad_description(model, old, new, message):
    path, _ = model
    _edit_toml(path, old, new)
    with pytest.raises(PchwError, match=message) as info:
        pchw.load(path)
    text = str(info.value)
    assert "\n" not in text and str(path / "network.toml") in text


def test_missing_files(model):
    path, _ = model
    with pytest.raises(PchwError, match="no such model folder"):
        pchw.load(path / "nothing")
    (path / "weights.npz").unlink()
    with pytest.raises(PchwError, match=r"weights.npz: missing file"):
        pchw.load(path)


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("b2"), r"missing array\(s\) b2"),
    (lambda a: a.update(W3=np.zeros(2)), r"unexpected array\(s\) W3"),
    (lambda a: a.update(W1=np.zeros((4, 2))), r"W1: has shape \(4, 2\), expected \(4, 3\)"),
    (lambda a: a.update(b1=np.zeros(5)), r"b1: has shape \(5,\), expected \(4,\)"),
    (lambda a: a["W2"].__setitem__((0, 0), np.nan), r"W2: contains NaN or infinity"),
    (lambda a: a["b1"].__setitem__(0, np.inf), r"b1: contains NaN or infinity"),
])
def test_bad_weights(model, change, message):
    path, _ = model
    with np.load(path / "weights.npz") as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    change(arrays)
    np.savez(path / "weights.npz", **arrays)
    with pytest.raises(PchwError, match=message) as info:
        pchw.load(path)
    assert str(path / "weights.npz") in str(info.value)


def test_garbage_weights_file(model):
    path, _ = model
    (path / "weights.npz").write_bytes(b"not a zip file")
    with pytest.raises(PchwError, match="cannot read as .npz"):
        pchw.load(path)


def test_python_api_validates_too():
    with pytest.raises(PchwError, match="needs 1 entries"):
        Network([2, 2], ["relu", "relu"])
    with pytest.raises(PchwError, match="at least two sizes"):
        Network([2], [])
    with pytest.raises(PchwError, match="W1: has shape"):
        Network([2, 3], ["relu"], [np.zeros((2, 3))], [np.zeros(3)])
    with pytest.raises(PchwError, match="give both weights and biases"):
        Network([2, 3], ["relu"], [np.zeros((3, 2))])


def test_power_of_two_rates_accepted():
    net = Network([1, 1], ["identity"], pc=PCSettings(inference_rate=1, learning_rate=2 ** -30))
    assert net.pc.gamma_shift == 0 and net.pc.eta_shift == 30


def test_memory_bits_and_summary():
    net = Network([4, 3, 2], ["identity", "relu"],
                  formats=Formats(Format(8, 4), Format(16, 12)))
    bits = net.memory_bits()
    assert bits["parameters"] == (3 * 5 + 2 * 4) * 16
    assert bits["state"] == 3 * (4 + 3 + 2) * 8
    assert "4 -> 3 -> 2" in net.summary()
