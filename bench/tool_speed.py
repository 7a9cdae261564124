"""Tool speed: seconds from a network description to Verilog, to a simulation, to a bitstream.

Per committed model: loading ``network.toml`` and generating the Verilog (``pchw.verilog``);
building the Verilog in a fresh build folder and simulating a few INFER commands against the
golden device model on Icarus Verilog and on Verilator (``pchw.sim.network.run``; Verilator's C++
compiles through ccache when it is installed, as ``pchw sim`` uses it); and with ``--full`` a
bitstream for one board (``pchw.build``: yosys, nextpnr, pack; xor unless
``--bitstream-models`` says otherwise). The simulated cycles per second
of each simulator are bench/hardware_cycles.py's (one measurement of each figure), quoted here.

A benchmark, not a test. Writes bench/results/tool_speed.{md,json}.
Usage: python bench/tool_speed.py [--full] [--board NAME] [--models NAME ...]
"""

import argparse
import json
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import pchw
from pchw import verilog

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
MODELS = ["xor", "iris", "digits"]
SIM_SAMPLES = 4


def seconds(run):
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def to_verilog(path):
    """Seconds to load the description and generate its Verilog; the Verilog's size."""
    elapsed, text = seconds(lambda: verilog.generate(pchw.load(path)))
    return elapsed, len(text.splitlines())


def to_simulation(path, simulator):
    """Seconds from the description to a finished, checked simulation in a new build folder."""
    from pchw.datasets import load_dataset
    from pchw.sim import network as simnet

    def run():
        network = pchw.load(path)
        commands = simnet.dataset_commands(network, load_dataset(network.dataset),
                                           SIM_SAMPLES, False)
        with tempfile.TemporaryDirectory() as build_dir:
            summary = simnet.run(network, simulator, commands, build_dir=Path(build_dir))
        assert summary["mismatches"] == 0
        return summary
    elapsed, summary = seconds(run)
    return elapsed, summary["seconds"]


def to_bitstream(path, board):
    from pchw import build

    def run():
        network = pchw.load(path)
        with tempfile.TemporaryDirectory() as directory:
            result = build.build(network, board, directory, force=True,
                                 progress=lambda line: print("    " + line, flush=True))
            return result.report["fmax"], result.report["stage_seconds"]
    return seconds(run)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="also build a bitstream")
    parser.add_argument("--board", default="ulx3s-85f", help="board of --full (ulx3s-85f)")
    parser.add_argument("--bitstream-models", nargs="*", default=["xor"], choices=MODELS,
                        help="models --full builds (default xor: a build takes minutes)")
    parser.add_argument("--models", nargs="*", default=MODELS, choices=MODELS)
    args = parser.parse_args()
    cycles_path = RESULTS / "hardware_cycles.json"
    saved = json.loads(cycles_path.read_text()) if cycles_path.exists() else {}
    cycles = {r["model"]: r for r in saved.get("models", [])}
    rows = []
    for name in args.models:
        path = ROOT / "models" / name
        row = {"model": name}
        row["verilog_s"], row["verilog_lines"] = to_verilog(path)
        print(f"{name}: Verilog in {row['verilog_s']:.2f} s", flush=True)
        for simulator in ("icarus", "verilator"):
            row[f"sim_{simulator}_s"], row[f"sim_{simulator}_testbench_s"] = \
                to_simulation(path, simulator)
            row[f"sim_cycles_per_s_{simulator}"] = cycles.get(name, {}).get(
                f"sim_cycles_per_s_{simulator}")
            print(f"  {simulator}: {row[f'sim_{simulator}_s']:.1f} s", flush=True)
        if args.full and name in args.bitstream_models:
            print(f"  bitstream for {args.board}:", flush=True)
            row["bitstream_s"], (fmax, stages) = to_bitstream(path, args.board)
            row["bitstream_board"], row["bitstream_fmax"] = args.board, fmax
            row["bitstream_stages"] = stages
        rows.append(row)

    def cell(v, fmt):
        return "-" if v is None else format(v, fmt)
    lines = [f"Tool speed, {date.today()}, {platform.machine()}, Python "
             f"{platform.python_version()}: seconds of wall time from `network.toml` to each "
             f"artefact, one process. Simulation: a new build folder, then IDENTIFY, "
             f"{SIM_SAMPLES} INFER and the READ_PARAMS of every layer, checked against the "
             "golden model (ccache holds Verilator's runtime objects after the first build on "
             "a machine). Simulated cycles/s: bench/hardware_cycles.py's LEARN runs "
             f"({saved.get('date', 'not run')}).", "",
             "| model | to Verilog (s) | Verilog lines | to simulation, Icarus (s) | to "
             "simulation, Verilator (s) | simulated cycles/s Icarus | simulated cycles/s "
             "Verilator | to bitstream (s) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        bit = f"{r['bitstream_s']:.0f} ({r['bitstream_board']})" if "bitstream_s" in r else \
            "not built" if args.full else "`--full`"
        lines.append(f"| {r['model']} | {r['verilog_s']:.2f} | {r['verilog_lines']:,} | "
                     f"{r['sim_icarus_s']:.1f} | {r['sim_verilator_s']:.1f} | "
                     f"{cell(r['sim_cycles_per_s_icarus'], ',.0f')} | "
                     f"{cell(r['sim_cycles_per_s_verilator'], ',.0f')} | {bit} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tool_speed.md").write_text(text)
    (RESULTS / "tool_speed.json").write_text(json.dumps(
        {"date": str(date.today()), "machine": platform.machine(), "full": args.full,
         "models": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
