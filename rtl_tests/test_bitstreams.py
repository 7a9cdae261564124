"""Bitstreams of the committed models, built with the real tools (YoWASP yosys and nextpnr).

Each design is built once per session (module-scoped fixtures) and its report checked: the
resources nextpnr placed against the device and the pre-synthesis estimate, Fmax against the
board clock, the cycle counts of :mod:`pchw.latency` for the lanes built, and the bitstream's
header. Every committed model is built for the iCEBreaker with its board lanes
(``hardware.board_lanes``), and the small ones for the ULX3S 85F (digits there takes longer:
``make bench FULL=1``); times are in ``boards/README.md``. The first run of the YoWASP tools on
a machine adds about 75 s to compile them.

Missing tools skip these tests (pip install 'pchw[boards]'), and fail them when ``CI`` is set:
``make test`` installs the tools, so CI cannot pass by skipping.
"""

import os
import time

import pytest

import pchw
from pchw import boards, build, latency
from pchw.cli import main
from pchw.protocol import Opcode

TOOLS = {"ice40": ["yosys", "nextpnr-ice40", "icepack"],
         "ecp5": ["yosys", "nextpnr-ecp5", "ecppack"]}


def require_tools(family):
    try:
        import amaranth_boards  # noqa: F401
        build.toolchain_env(TOOLS[family])
    except (ImportError, pchw.PchwError) as missing:
        if os.environ.get("CI"):
            pytest.fail(f"FPGA tools missing ({missing}); make test installs them (the dev extra)")
        pytest.skip(f"FPGA tools missing ({missing}): pip install 'pchw[boards]'")


def _build(tmp_path_factory, network, board_name):
    require_tools(boards.board(board_name).family)
    directory = tmp_path_factory.mktemp(f"{board_name}-{network.name}")
    lines = []
    start = time.monotonic()
    result = build.build(network, board_name, directory, progress=lines.append)
    print(f"{network.name} on {board_name}: {time.monotonic() - start:.0f} s")
    return result, lines


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``built(model, board)``: the build of a committed model, made once per module."""
    cache = {}

    def get(model, board_name):
        if (model, board_name) not in cache:
            cache[model, board_name] = _build(tmp_path_factory, pchw.load(f"models/{model}"),
                                              board_name)
        return cache[model, board_name]
    return get


def check_report(result, described, target, lanes):
    r = result.report
    assert r["board"] == target.name and r["description_hash"] == described.description_hash()
    assert tuple(r["lanes"]) == lanes == boards.lanes_for(described, target)
    network = described.on_board(target.name).with_lanes(lanes)    # its multipliers a lane too
    res = r["resources"]
    assert set(res) >= {"LUT", "FF", "DSP", "BRAM"}
    for name, v in res.items():
        assert 0 <= v["used"] <= v["available"], name
    assert res["LUT"]["available"] == target.luts and res["DSP"]["available"] == target.dsps
    assert res["BRAM"]["available"] == target.bram_blocks
    est = boards.estimate(network, target)
    assert res["DSP"]["used"] == est.dsps                 # exact
    if target.family == "ice40":                          # exact on iCE40
        assert (res["BRAM"]["used"], res["SPRAM"]["used"]) == (est.bram_blocks, est.spram_blocks)
    else:                                                 # ECP5: shallow ones go to LUT RAM
        assert res["BRAM"]["used"] <= est.bram_blocks
    assert 0.5 < res["LUT"]["used"] / est.luts < 1.5      # the LUT estimate is rough
    f = r["fmax"]
    assert f["target_mhz"] == target.clock_hz / 1e6 and f["met"] and result.timing_met
    assert f["unanalysed_clocks"] == []           # every path (multipliers too) was timed
    assert r["cycles"]["core_infer"] == latency.core_infer_cycles(network)
    assert r["cycles"]["core_learn"] == latency.core_learn_cycles(network)
    infer = r["throughput"]["at_board_clock"]["INFER"]
    assert infer["command_latency_cycles"] == latency.command_latency(network, Opcode.INFER)
    assert infer["link_latency_cycles"] == infer["command_latency_cycles"] \
        + r["cycles"]["uart_path_overhead"]
    assert r["throughput"]["at_board_clock"] == latency.throughput(
        network, r["clock_hz"], latency.HostLink(r["baud"], r["cycles"]["uart_path_overhead"]))
    assert infer["samples_per_s_compute"] == round(
        target.clock_hz / infer["command_latency_cycles"], 1)
    assert (result.directory / "report.md").read_text().startswith(
        f"# {network.name} on {target.name}")
    assert result.bitstream.name == f"pchw_{network.name}{target.bitstream_suffix}"
    return result.bitstream.read_bytes()


def test_xor_on_ulx3s_85f(built):
    result, progress = built("xor", "ulx3s-85f")
    network, target = pchw.load("models/xor"), boards.board("ulx3s-85f")
    bitstream = check_report(result, network, target, (2, 2))
    assert b"Part: LFE5U-85F" in bitstream[:64] and b"\xff\xff\xbd\xb3" in bitstream[:64]
    assert [line.strip() for line in progress if line.strip().endswith("...")] == \
        ["synthesis ...", "place and route ...", "bitstream ..."]
    assert result.report["resources"]["LUTRAM"]["used"] > 0    # small memories: distributed RAM


def test_iris_on_ulx3s_85f(built):
    result, _ = built("iris", "ulx3s-85f")
    check_report(result, pchw.load("models/iris"), boards.board("ulx3s-85f"), (4, 2))
    assert result.report["resources"]["DSP"]["used"] == 12


@pytest.mark.parametrize("model, lanes", [("xor", (2, 2)), ("iris", (2, 2)), ("digits", (3, 1))])
def test_committed_models_on_icebreaker(model, lanes, built):
    result, progress = built(model, "icebreaker")
    described = pchw.load(f"models/{model}")
    bitstream = check_report(result, described, boards.board("icebreaker"), lanes)
    assert b"\x7e\xaa\x99\x7e" in bitstream[:16]                  # iCE40 sync word
    assert result.report["resources"]["SPRAM"]["used"] == 1     # the payload buffer
    # The board's lanes are announced when they differ from the description's default.
    announced = f"lanes {'/'.join(map(str, lanes))} on icebreaker"
    assert any(announced in line for line in progress) == (lanes != described.lanes)


def test_flash_hands_the_bitstream_to_the_programmer(built, tmp_path, monkeypatch, capsys):
    """``pchw flash`` runs the platform's programmer (here a stand-in for openFPGALoader) on
    the built bitstream; a model that was not built there is refused."""
    result, _ = built("xor", "ulx3s-85f")
    calls = tmp_path / "calls"
    programmer = tmp_path / "openFPGALoader"
    programmer.write_text(f'#!/bin/sh\necho "$@" > {calls}\n')
    programmer.chmod(0o755)
    monkeypatch.setenv("OPENFPGALOADER", str(programmer))
    assert main(["flash", "models/xor", "--board", "ulx3s-85f", "-o", str(result.directory)]) == 0
    args = calls.read_text().split()
    assert args[:3] == ["-b", "ulx3s", "-m"] and args[3].endswith("pchw_xor.bit")
    assert main(["flash", "models/iris", "--board", "ulx3s-85f", "-o",
                 str(result.directory)]) == 1
    assert "no bitstream" in capsys.readouterr().err


def test_pll_clock_on_icebreaker(tmp_path):
    """``--clock 16``: the design runs at the 16.125 MHz the iCE40 PLL makes from 12 MHz (the
    nearest; icepll's settings), nextpnr derives that constraint through the PLL, and the
    UART divisor and the report follow the new clock."""
    require_tools("ice40")
    network = pchw.load("models/xor")
    result = build.build(network, "icebreaker", tmp_path, clock_hz=16e6,
                         progress=lambda line: None)
    r = result.report
    assert r["pll"] == {"DIVR": 0, "DIVF": 85, "DIVQ": 6, "FILTER_RANGE": 1}
    assert r["clock_hz"] == 16.125e6 and r["oscillator_hz"] == 12e6
    assert r["uart_divisor"] == round(16.125e6 / 115200)
    assert abs(r["fmax"]["target_mhz"] - 16.125) < 0.05 and result.timing_met
    assert "Derived frequency constraint of 16.1 MHz" in (tmp_path / "pchw_xor.tim").read_text()
    assert r["throughput"]["at_board_clock"]["INFER"]["samples_per_s_compute"] == round(
        16.125e6 / r["throughput"]["at_board_clock"]["INFER"]["command_latency_cycles"], 1)
