"""Smoke test of the RTL infrastructure: Amaranth -> Verilog -> cocotb on Icarus and Verilator.

The device is :class:`rtl_tests.smoke.Incrementer`; its testbench is :mod:`rtl_tests.smoke_tb`.
Besides proving both simulators run a stream testbench, these tests pin down the harness's own
promises: one build shared by several tests, failures reported to pytest, lint waivers enforced.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rtl_tests import harness
from rtl_tests.harness import (
    AMARANTH_WAIVERS, SIMULATORS, Waiver, build_dir_for, lint, simulate, verilog_of,
)
from rtl_tests.smoke import Incrementer

STEP = 3
TOPLEVEL = "incrementer"
TESTBENCH = "rtl_tests.smoke_tb"
CONFIG = f"smoke-incrementer-step{STEP}"

#: Lint waivers: the ones every Amaranth design needs, plus this design's own.
WAIVERS = AMARANTH_WAIVERS + (
    Waiver("UNUSEDSIGNAL", r"Bits of signal are not used: '\$\d+'\[8\]",
           "the Yosys temporary holding the 9-bit sum `payload + step`: its carry bit is dropped "
           "by the explicit `[:8]`, as the byte wraps modulo 256 by design"),
)


@dataclasses.dataclass(frozen=True)
class Design:
    verilog: str
    step: int
    latency: int

    def test_data(self, count: int = 300) -> dict:
        """What the testbench is told: the built-in step and latency (never restated there)."""
        return {"step": self.step, "latency": self.latency, "count": count}


@pytest.fixture(scope="module")
def design() -> Design:
    # Read step and latency from the converted component itself: a component constructed only to
    # read them would never be elaborated, and Amaranth warns about that (warnings are errors).
    dut = Incrementer(step=STEP)
    return Design(verilog_of(dut, TOPLEVEL), dut.step, dut.latency)


def test_verilog_ports(design):
    verilog = design.verilog
    header = verilog.split(";", 1)[0]
    for port in ("clk", "rst", "i_stream__payload", "i_stream__valid", "i_stream__ready",
                 "o_stream__payload", "o_stream__valid", "o_stream__ready"):
        assert port in header
    assert "timescale" not in verilog  # hence harness.TIMESCALE


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_stream_matches_model(design, simulator):
    results = simulate(design.verilog, TOPLEVEL, TESTBENCH, simulator,
                       build_dir_for(CONFIG, simulator), test_data=design.test_data())
    names = [case.name for case in results.passed]
    assert len(names) == 5, names  # 4 gap/back-pressure variants + full_throughput
    if results.built:
        print(f"{simulator} build of {TOPLEVEL}: {results.build_seconds:.1f} s")


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_build_is_shared(design, simulator):
    build_dir = build_dir_for(CONFIG, simulator)
    simulate(design.verilog, TOPLEVEL, TESTBENCH, simulator, build_dir, testcase="full_throughput",
             test_data=design.test_data(count=16))
    # A test's name selects all its @cocotb.parametrize variants; a full name selects one.
    again = simulate(design.verilog, TOPLEVEL, TESTBENCH, simulator, build_dir,
                     testcase="stream_matches_model", test_data=design.test_data(count=16))
    assert not again.built
    names = [case.name for case in again.passed]
    assert len(names) == 4 and all(name.startswith("stream_matches_model/") for name in names)
    one = simulate(design.verilog, TOPLEVEL, TESTBENCH, simulator, build_dir,
                   testcase="stream_matches_model/gaps=0.5/backpressure=0.5",
                   test_data=design.test_data(count=16))
    assert [case.name for case in one.passed] == ["stream_matches_model/gaps=0.5/backpressure=0.5"]


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_failure_reaches_pytest(design, simulator):
    # Tell the testbench a different step from the one built in: every byte must mismatch.
    data = design.test_data(count=16) | {"step": STEP + 1}
    with pytest.raises(harness.SimulationFailed, match=r"1 of 1 cocotb tests failed"):
        simulate(design.verilog, TOPLEVEL, TESTBENCH, simulator, build_dir_for(CONFIG, simulator),
                 testcase="full_throughput", test_data=data)


def test_no_test_run_is_a_failure(design):
    with pytest.raises(harness.SimulationFailed, match="no cocotb test ran"):
        simulate(design.verilog, TOPLEVEL, TESTBENCH, "icarus", build_dir_for(CONFIG, "icarus"),
                 testcase="no_such_test", test_data=design.test_data())


def test_lint_with_justified_waivers(design):
    waived = lint(design.verilog, WAIVERS, top=TOPLEVEL)
    assert waived


def test_lint_rejects_unwaived_and_stale(design, tmp_path: Path):
    path = tmp_path / f"{TOPLEVEL}.v"
    path.write_text(design.verilog)
    without_procassinit = tuple(w for w in WAIVERS if w.code != "PROCASSINIT")
    with pytest.raises(harness.LintFailed, match="PROCASSINIT"):
        lint(path, without_procassinit, top=TOPLEVEL)
    stale = Waiver("WIDTHTRUNC", "", "not raised by this design")
    with pytest.raises(harness.LintFailed, match="unused waiver: WIDTHTRUNC"):
        lint(path, WAIVERS + (stale,), top=TOPLEVEL)
    with pytest.raises(ValueError, match="needs a reason"):
        Waiver("PROCASSINIT", "", " ")
