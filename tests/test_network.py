"""The network description: round trip, and a clear one-line error for each bad input."""

import time
import tracemalloc

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


def test_multipliers_per_lane_round_trip(tmp_path):
    """hardware.multipliers and board_multipliers: saved, loaded, applied by on_board, kept by
    the copies."""
    net = Network([3, 4, 2], ["identity", "relu"], lanes=[2, 1], multipliers=1,
                  board_multipliers={"ulx3s-85f": 2})
    assert Network([3, 4, 2], ["identity", "relu"]).multipliers == 2     # the pool by default
    net.save(tmp_path / "m")
    back = pchw.load(tmp_path / "m")
    assert (back.multipliers, back.board_multipliers) == (1, {"ulx3s-85f": 2})
    assert back.description_hash() == net.description_hash()
    assert back.on_board("ulx3s-85f").multipliers == 2
    assert back.on_board("icebreaker").multipliers == 1
    assert back.with_lanes([1, 1]).multipliers == 1
    assert back.with_settings(inference_steps=3).on_board("ulx3s-85f").multipliers == 2
    assert back.with_lanes([1, 1], 2).multipliers == 2


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
    ("inference_steps = 5", "inference_steps = -1", r"pc.inference_steps: -1 must be in 0\.\."),
    ("inference_steps = 5", "inference_steps = 1000000000",
     r"pc.inference_steps: 1000000000 must be in 0\.\.65535 \(the hardware's step counter\)"),
    ("inference_steps = 5", "inference_steps = 1e9", r"pc.inference_steps: 1000000000.0 is not an"),
    ("lanes = [4, 2]", "lanes = [1000, 1000]",
     r"hardware.lanes: 1000 lanes for weight layer 1 of 4 neurons; at most 4 "),
    ("lanes = [4, 2]", "lanes = [4, 3]", r"3 lanes for weight layer 2 of 2 neurons; at most 2"),
    ("lanes = [4, 2]", 'lanes = [4, 2]\n[hardware.board_lanes]\nicebraker = [1, 1]',
     r"hardware.board_lanes: unknown board 'icebraker'; did you mean 'icebreaker'\? known: "),
    ("lanes = [4, 2]", 'lanes = [4, 2]\n[hardware.board_lanes]\nicebreaker = [1, 5]',
     r"hardware.board_lanes.icebreaker: 5 lanes for weight layer 2 of 2 neurons"),
    ("lanes = [4, 2]", "lanes = [4, 2]\nmultipliers = 3",
     r"hardware.multipliers: multipliers per lane are 1 or 2, got 3"),
    ("lanes = [4, 2]", "lanes = [4, 2]\nmultipliers = true",
     r"hardware.multipliers: multipliers per lane are 1 or 2, got True"),
    ("lanes = [4, 2]", 'lanes = [4, 2]\n[hardware.board_multipliers]\nicebreaker = 0',
     r"hardware.board_multipliers.icebreaker: multipliers per lane are 1 or 2, got 0"),
    ("lanes = [4, 2]", 'lanes = [4, 2]\n[hardware.board_multipliers]\nulx3s = 1',
     r"hardware.board_multipliers: unknown board 'ulx3s'"),
    ("lanes = [4, 2]", 'lanes = [4, 2]\nboard_multipliers = 1',
     r"hardware.board_multipliers: must be a table of board = 1 or 2"),
    ("layers = [3, 4, 2]", "layers = [65535, 65535, 2]",
     r"network.layers: 4295032832 parameters \(weights and biases\); at most 16777216"),
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


@pytest.mark.parametrize("content, message", [
    (b"not a zip file\n", r"is a text file, not a .npz archive; write it with Network.save"),
    (b"", r"is an empty file, not a .npz archive"),
    (b"\x80\x04\x95\x05\x00\x00\x00", r"is pickled Python data \(refused: unpickling can run "
                                       r"code\), not a .npz archive"),
])
def test_garbage_weights_file(model, content, message):
    """One line with the right advice: never 'load it unsafely' (pickles stay refused)."""
    path, _ = model
    (path / "weights.npz").write_bytes(content)
    with pytest.raises(PchwError, match=message) as info:
        pchw.load(path)
    assert "\n" not in str(info.value) and "allow_pickle" not in str(info.value)


def test_npy_named_npz(model):
    path, _ = model
    with open(path / "weights.npz", "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(PchwError, match=r"is a single .npy array, not a .npz archive"):
        pchw.load(path)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_weights_file(model, keep):
    path, _ = model
    data = (path / "weights.npz").read_bytes()
    (path / "weights.npz").write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(PchwError, match=r"weights.npz: is not a complete .npz archive "
                                        r"\(truncated or damaged") as info:
        pchw.load(path)
    assert "\n" not in str(info.value)


def test_object_array_is_refused(model):
    path, _ = model
    with np.load(path / "weights.npz") as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    arrays["W1"] = np.array([[None] * 3] * 4, dtype=object)
    np.savez(path / "weights.npz", **arrays)
    with pytest.raises(PchwError, match=r"W1: has dtype object, expected numbers"):
        pchw.load(path)


def test_weights_are_read_before_any_initialisation(model):
    """A large description with the small npz of another network: the shape error comes from the
    array's header, without drawing random weights (which would need gigabytes)."""
    path, _ = model
    _edit_toml(path, "layers = [3, 4, 2]", "layers = [4000, 4000, 2]")
    tracemalloc.start()
    try:
        with pytest.raises(PchwError, match=r"weights.npz: W1: has shape \(4, 3\), expected "
                                            r"\(4000, 4000\)"):
            pchw.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 ** 20        # random weights of this size would be 128 MB


def test_parameter_cap_is_checked_before_allocation():
    start = time.perf_counter()
    with pytest.raises(PchwError, match=r"network.layers: 400060002 parameters .* at most"):
        Network([20000, 20000, 2], ["identity", "relu"])
    assert time.perf_counter() - start < 0.5
    assert Network([4096, 4095], ["identity"]).parameter_count <= pchw.network.MAX_PARAMETERS


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
