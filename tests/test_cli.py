"""The pchw command line, end to end."""

import re
import subprocess
import sys

import numpy as np
import pytest

import pchw
from pchw.cli import main
from pchw.golden import FixedModel


@pytest.fixture
def xor_model(tmp_path):
    path = tmp_path / "xor"
    assert main(["init", str(path), "--layers", "2,8,2", "--activations", "identity,hardtanh",
                 "--dataset", "xor", "--seed", "1", "--mode", "standard"]) == 0
    return path


def test_info(xor_model, capsys):
    assert main(["info", str(xor_model)]) == 0
    out = capsys.readouterr().out
    assert "2 -> 8 -> 2" in out and "parameters 42" in out and "Q16.10" in out


def test_train_saves_and_eval_reads_back(xor_model, tmp_path, capsys):
    trained = tmp_path / "trained"
    assert main(["train", str(xor_model), "--epochs", "3", "-o", str(trained)]) == 0
    captured = capsys.readouterr()
    assert "backprop float64" in captured.out and "PC standard (fixed-point)" in captured.out
    assert "epoch 3/3" in captured.err                        # progress
    before, after = pchw.load(xor_model), pchw.load(trained)
    assert not np.array_equal(before.weights[0], after.weights[0])
    # The saved parameters are exactly the fixed-point model's: reloading loses nothing.
    assert all(np.array_equal(w, w_q) for w, w_q in
               zip(FixedModel(after).W, [after.weight_format(1).quantise(after.weights[0]),
                                         after.weight_format(2).quantise(after.weights[1])]))
    assert main(["eval", str(trained), "--fixed"]) == 0
    assert "fixed-point inference" in capsys.readouterr().out


def test_train_in_another_mode_derives_its_relaxation(tmp_path, capsys):
    """`train --mode standard` of a fixed_prediction model (T = 1, gamma = 1, unstable for
    standard PC) runs standard PC at the T and gamma pchw.defaults derives, and says so."""
    from pchw.defaults import default_settings
    path = tmp_path / "m"
    assert main(["init", str(path), "--layers", "4,8,3", "--dataset", "iris"]) == 0
    network = pchw.load(path)
    assert network.pc.mode == "fixed_prediction" and network.pc.inference_rate == 1
    derived = default_settings(network, "standard")
    capsys.readouterr()
    assert main(["train", str(path), "--mode", "standard", "--epochs", "1",
                 "--no-backprop"]) == 0
    err = capsys.readouterr().err
    assert (f"--mode standard: T = {derived.inference_steps}, gamma = "
            f"{derived.inference_rate:g}") in err
    assert derived.inference_rate < 1
    assert "values Q16.10" in err                     # one hidden layer: pchw.defaults' Q16.10


def test_train_in_another_mode_derives_its_value_format(tmp_path, capsys):
    """A deep fixed_prediction model trained with --mode standard gets the value format
    pchw.defaults gives standard PC (Q16.12), unless its own is not its mode's default."""
    from pchw.defaults import default_formats
    from pchw.fixedpoint import Format
    path = tmp_path / "m"
    assert main(["init", str(path), "--layers", "4,3,3,3", "--dataset", "iris"]) == 0
    network = pchw.load(path)
    deep = default_formats(network, "standard").value
    assert deep != network.formats.value
    capsys.readouterr()
    args = ["train", str(path), "--mode", "standard", "--epochs", "1", "--no-backprop"]
    assert main(args) == 0
    assert f"values {deep}" in capsys.readouterr().err
    text = (path / "network.toml").read_text().replace("frac = 10", "frac = 9")
    (path / "network.toml").write_text(text)
    assert pchw.load(path).formats.value == Format(16, 9)
    assert main(args) == 0
    assert "values Q16.9" in capsys.readouterr().err


def test_golden_learn_writes_updates(xor_model, tmp_path, capsys):
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x, np.array([[0.0, 1.0], [1.0, 1.0]]))
    np.save(y, np.array([[0.0, 1.0], [1.0, 0.0]]))
    out = tmp_path / "r.npz"
    assert main(["golden", str(xor_model), "--input", str(x), "--target", str(y), "--learn",
                 "--trace", "--out", str(out)]) == 0
    net = pchw.load(xor_model)
    model = FixedModel(net)
    expected = [model.learn(np.load(x)[i:i + 1], np.load(y)[i:i + 1]) for i in range(2)]
    with np.load(out) as r:
        assert np.array_equal(r["output"], np.concatenate([e.output for e in expected]))
        w, b = model.float_params()
        assert np.array_equal(r["W1"], w[0]) and np.array_equal(r["b2"], b[1])
        assert np.array_equal(r["dW1"], w[0] - net.weight_format(1).dequantise(
            net.weight_format(1).quantise(net.weights[0])))
        T = net.pc.inference_steps
        assert r["trace_x1"].shape == (2, T + 1, 8) and r["trace_eps2"].shape == (2, T + 1, 2)


def test_golden_infer(xor_model, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.eye(2))
    out = tmp_path / "r.npz"
    assert main(["golden", str(xor_model), "--input", str(x), "--float", "--out", str(out)]) == 0
    with np.load(out) as r:
        assert r["output"].shape == (2, 2)


@pytest.mark.parametrize("argv, message", [
    (["info", "/nonexistent"], "no such model folder"),
    (["eval", "{model}", "--dataset", "digits"], "dataset digits has 64 inputs"),
    (["golden", "{model}", "--input", "{tmp}/missing.npy", "--out", "{tmp}/r.npz"],
     "missing.npy: no such file"),
    (["golden", "{model}", "--input", "{tmp}/bad.npy", "--out", "{tmp}/r.npz"],
     r"bad.npy: input has shape \(1, 3\), expected \(N, 2\)"),
    (["golden", "{model}", "--input", "{tmp}/good.npy", "--learn", "--out", "{tmp}/r.npz"],
     "--learn needs --target"),
    (["golden", "{model}", "--input", "{tmp}/good.npy", "--target", "{tmp}/good.npy",
      "--out", "{tmp}/r.npz"], "need --learn"),
    # Output paths are checked before any work (issue 15)
    (["golden", "{model}", "--input", "{tmp}/good.npy", "--out", "/nonexistent/r.npz"],
     "--out /nonexistent/r.npz: no such folder /nonexistent"),
    (["golden", "{model}", "--input", "{tmp}/good.npy", "--out", "{tmp}/file.npz/r.npz"],
     "no such folder .*file.npz"),
    (["init", "{model}", "--layers", "2,8,2"], r"already holds a model \(network.toml and "
     r"weights.npz\); pass --force"),
    (["init", "{tmp}/new", "--layers", "2,a,2"], "--layers '2,a,2': expected layer sizes"),
    (["init", "/proc/new", "--layers", "2,2"], "/proc/new: cannot create files in /proc"),
    (["init", "{tmp}/file.npz", "--layers", "2,2"], "exists and is not a folder"),
    (["verilog", "{model}", "-o", "{tmp}/v.v", "--top", "1 bad-name"],
     "--top '1 bad-name': not a Verilog module name"),
    (["verilog", "{model}", "-o", "{tmp}/v.v", "--top", "module"], "not a Verilog module name"),
    (["verilog", "{model}", "-o", "/proc/sub/v.v"], "cannot create files in /proc"),
    (["build", "{model}", "--board", "icebreaker", "-o", "/proc/b"], "cannot create files in"),
    (["report", "{model}", "-o", "/proc/r"], "/proc/r: cannot create files in /proc"),
    # Bad inputs are refused, not converted (issue 15)
    (["golden", "{model}", "--input", "{tmp}/complex.npy", "--out", "{tmp}/r.npz"],
     r"complex.npy: input is complex \(complex128\); give real numbers"),
    (["sim", "{model}", "--dataset", "digits"], "dataset digits has 64 inputs"),
    (["sim", "{model}", "--gaps", "1"], r"--gaps 1.0: a probability in \[0, 1\)"),
    # The link's speed: at most 3 Mbaud, within 2% of what the clock makes (issue 13)
    (["run", "{model}", "--port", "/dev/null", "--baud", "4000000"],
     "--baud 4000000: 4000000 baud is above the 3000000 baud"),
    (["run", "{model}", "--sim", "--baud", "3000000"],
     "--baud 3000000: 3000000 baud is too fast for a 1e[+]06 Hz clock"),
    (["build", "{model}", "--board", "ulx3s-85f", "-o", "{tmp}/b", "--baud", "3000000"],
     "--baud 3000000: .* gives 3125000 baud, 4.2% off"),
    # A dataset memory that does not fit is refused before the build, naming the sizes
    (["build", "{model}", "--board", "icebreaker", "-o", "{tmp}/b", "--data-memory", "65535"],
     r"a dataset memory of 65535 samples \(2 inputs of 16 bits and a label each: .* KiB\) and "
     r"the payload buffer need \d+ SPRAMs of 32 KiB, the device has 4 \(128 KiB\); at most "
     r"\d+ samples fit \(--data-memory \d+\)"),
])
def test_user_errors_are_one_line(xor_model, tmp_path, capsys, argv, message):
    np.save(tmp_path / "bad.npy", np.zeros((1, 3)))
    np.save(tmp_path / "good.npy", np.zeros((1, 2)))
    np.save(tmp_path / "complex.npy", np.zeros((1, 2)) + 1j)
    (tmp_path / "file.npz").write_text("not a folder")
    argv = [a.format(model=xor_model, tmp=tmp_path) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("pchw: error: ") and err.count("\n") == 1
    assert re.search(message, err)
    assert not (tmp_path / "r.npz").exists() and not (tmp_path / "v.v").exists()


def test_output_errors_come_before_the_work(xor_model, capsys):
    """`train -o` into a folder that cannot be written fails at once, not after training."""
    assert main(["train", str(xor_model), "--epochs", "1", "-o", "/proc/trained"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pchw: error: /proc/trained: cannot create files in /proc (")
    assert err.count("\n") == 1
    assert "epoch" not in err                                     # no training happened


def test_golden_says_the_file_it_wrote(xor_model, tmp_path, capsys):
    """numpy adds .npz to a name without it; the message names the file really written."""
    np.save(tmp_path / "x.npy", np.eye(2))
    (tmp_path / "out").mkdir()
    assert main(["golden", str(xor_model), "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "out")]) == 0
    assert f"wrote {tmp_path / 'out.npz'}: output" in capsys.readouterr().out
    assert (tmp_path / "out.npz").is_file()


def test_init_refuses_to_overwrite_a_model_without_force(xor_model, capsys):
    before = pchw.load(xor_model)
    assert main(["init", str(xor_model), "--layers", "2,8,2", "--seed", "5"]) == 1
    assert "--force" in capsys.readouterr().err
    assert np.array_equal(pchw.load(xor_model).weights[0], before.weights[0])   # untouched
    assert main(["init", str(xor_model), "--layers", "2,8,2", "--seed", "5", "--force"]) == 0
    assert not np.array_equal(pchw.load(xor_model).weights[0], before.weights[0])


@pytest.mark.parametrize("argv", [["run", "{model}", "--golden", "--samples", "-3"],
                                  ["sim", "{model}", "--samples", "-1"]])
def test_negative_samples_are_refused(xor_model, capsys, argv):
    assert main([a.format(model=xor_model) for a in argv]) == 2
    assert capsys.readouterr().err == "pchw: error: --samples must be at least 0\n"


def test_sim_refuses_a_model_without_dataset(tmp_path, capsys):
    """No silent fallback to digits: --dataset NAME or --random must be given."""
    assert main(["init", str(tmp_path / "m"), "--layers", "3,2"]) == 0
    capsys.readouterr()
    assert main(["sim", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "names no dataset: pass --dataset NAME" in err
    assert "--random" in err


def test_installed_command_reports_bad_description_without_traceback(xor_model):
    toml = xor_model / "network.toml"
    toml.write_text(re.sub(r"inference_rate = \S+", "inference_rate = 0.3", toml.read_text()))
    run = subprocess.run([sys.executable, "-m", "pchw.cli", "info", str(xor_model)],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().endswith("nearest allowed: 0.25 or 0.5")
    assert run.stderr.count("\n") == 1


def test_help_for_every_command():
    for command in ("info", "init", "train", "eval", "golden", "verilog", "sim", "run", "build",
                    "flash", "report"):
        run = subprocess.run([sys.executable, "-m", "pchw.cli", command, "--help"],
                             capture_output=True, text=True)
        assert run.returncode == 0 and "usage: pchw " + command in run.stdout


def test_verilog_writes_module_and_manifest(xor_model, tmp_path, capsys):
    import json

    from pchw.latency import command_latency
    from pchw.protocol import Opcode, network_id
    out = tmp_path / "v" / "xor.v"
    assert main(["verilog", str(xor_model), "-o", str(out)]) == 0
    text = out.read_text()
    assert "module pchw_xor(" in text and "i_stream__payload" in text
    manifest = json.loads(out.with_suffix(".json").read_text())
    net = pchw.load(xor_model)
    assert manifest["network_id"] == network_id(net).hex()
    assert manifest["latency_cycles"]["commands"]["LEARN"] == command_latency(net, Opcode.LEARN)
    assert {p["name"] for p in manifest["ports"]} >= {"clk", "rst", "o_stream__ready"}
    assert main(["verilog", str(xor_model), "-o", str(tmp_path / "xor.txt")]) == 1
    assert "must end in .v" in capsys.readouterr().err


def test_run_learns_on_the_chip_with_a_dataset_memory(xor_model, capsys):
    """`pchw run --learn` on a device with a dataset memory: LOAD_DATA once, a TRAIN and an EVAL
    per epoch, bit-exact with the golden model (issue 13)."""
    assert main(["run", str(xor_model), "--golden", "--data-memory", "8", "--learn",
                 "--epochs", "3"]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "LOAD_DATA: 8 samples (training and test split)" in text
    assert text.count("confusion counts equal the golden model's") == 3
    assert "weights after on-chip learning equal the golden model's, bit for bit" in text
    # a training split that does not fit: a LEARN command per sample, said so
    assert main(["run", str(xor_model), "--golden", "--data-memory", "2", "--learn"]) == 0
    assert "does not fit the device's dataset memory of 2 samples: one LEARN command per " \
        "sample" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["70000", "-1", "many"])
def test_data_memory_is_a_number_of_samples(xor_model, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["verilog", str(xor_model), "-o", "x.v", "--data-memory", value])
    assert exit_info.value.code == 2
    assert f"--data-memory: {value!r}: a number of samples in 0..65535" in capsys.readouterr().err
