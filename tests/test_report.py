"""``pchw report``: the page, its sections and figures, the build table, and the user errors."""

import json

import pytest

import pchw
from pchw.cli import main
from pchw.report import SECTIONS, default_epochs, write_report

pytest.importorskip("matplotlib",
                    reason="pchw report draws with matplotlib (pip install 'pchw[report]')")


@pytest.fixture
def xor_model(tmp_path):
    path = tmp_path / "xor"
    assert main(["init", str(path), "--layers", "2,4,2", "--activations", "identity,hardtanh",
                 "--dataset", "xor", "--seed", "1", "--mode", "standard"]) == 0
    return path


def _build_report(network, board="ulx3s-85f", **changes):
    """A report.json in the layout pchw.build writes (only the fields the page reads)."""
    report = {
        "generator": "pchw test", "board": board, "device": "LFE5U-85F",
        "description_hash": network.description_hash(),
        "resources": {"LUT": {"cell": "TRELLIS_COMB", "used": 1234, "available": 83640},
                      "DSP": {"cell": "MULT18X18D", "used": 4, "available": 156}},
        "fmax": {"name": "clk", "achieved_mhz": 61.5, "target_mhz": 25.0, "met": True},
        "throughput": {"at_board_clock": {"INFER": {
            "command_latency_cycles": 40, "samples_per_s_compute": 625000.0,
            "samples_per_s_uart": 900.0}}},
        "errors": [],
    }
    report.update(changes)
    return report


def test_report_has_every_section_and_figure(xor_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)                    # no build/ here: "not built"
    out = tmp_path / "report"
    assert main(["report", str(xor_model), "-o", str(out), "--epochs", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    page = (out / "index.html").read_text()
    for key in SECTIONS:
        assert f'<section id="{key}">' in page
    assert page.count('src="data:image/png;base64,') >= 2       # self-contained figures
    for png in ("learning_curves.png", "gradient_agreement.png", "faults_recovery.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")
    assert "Not built" in page and f"pchw build {xor_model} --board NAME" in page
    assert "Q16.10" in page                                    # the formats
    numbers = json.loads((out / "report.json").read_text())
    histories = numbers["learning"]["histories"]
    assert set(histories) == {"backprop float64", "PC standard float64",
                              "PC standard fixed point"}
    assert all(len(h) == 2 for h in histories.values())
    assert set(numbers["agreement"]) == {"fixed_prediction", "standard"}
    assert len(numbers["agreement"]["standard"]) == len(numbers["agreement_steps"])
    faults = numbers["faults"]                          # half the hidden units dead
    assert faults["fault"]["dead"] == [{"layer": 1, "fraction": 0.5}]
    assert faults["surviving_layers"] == [2, 2, 2] and faults["epochs"] == 2
    assert "Cutting the substrate" in page and "surviving size (2-2-2) from scratch" in page


def test_report_reads_the_build_report(xor_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    network = pchw.load(xor_model)
    folder = tmp_path / "build" / "ulx3s-85f" / network.name
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(_build_report(network)))
    page = write_report(xor_model, "ulx3s-85f", tmp_path / "r", epochs=1,
                        progress=lambda line: None).read_text()
    assert "MULT18X18D" in page and "1,234" in page and "83,640" in page
    assert "Fmax 61.5 MHz" in page and "timing met" in page
    assert "another description" not in page
    # A build of other weights is flagged; a board without a build says how to make one.
    (folder / "report.json").write_text(json.dumps(_build_report(network,
                                                                 description_hash="0" * 64)))
    page = write_report(xor_model, None, tmp_path / "r", epochs=1,
                        progress=lambda line: None).read_text()
    assert "another description or other weights" in page
    page = write_report(xor_model, "icebreaker", tmp_path / "r", epochs=1,
                        progress=lambda line: None).read_text()
    assert f"pchw build {xor_model} --board icebreaker" in page


@pytest.mark.parametrize("argv, message", [
    (["report", "no/such/model"], "no/such/model"),
    (["report", "{model}", "--board", "nope"], "unknown board 'nope'"),
    (["report", "{model}", "--epochs", "0"], "--epochs must be at least 1"),
])
def test_bad_input_is_one_line(xor_model, tmp_path, capsys, argv, message):
    argv = [a.format(model=xor_model) for a in argv]
    assert main(argv + ["-o", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pchw: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_model_without_dataset(tmp_path, capsys):
    path = tmp_path / "plain"
    assert main(["init", str(path), "--layers", "2,3,2"]) == 0
    assert main(["report", str(path), "-o", str(tmp_path / "r")]) == 1
    assert "network.dataset" in capsys.readouterr().err


def test_default_epochs():
    assert default_epochs(4) == 400                 # xor: capped
    assert default_epochs(1438) == 14               # digits: about 20,000 samples
    assert default_epochs(10 ** 6) == 1
