"""Hardware throughput per committed model and board, and its ratio to the physical limit.

For each model and board: the lanes it is built with (``pchw.boards.lanes_for``), resources and
Fmax from the build report (``build/<board>/<model>/report.json``, built with ``pchw.build``
when missing or stale), core cycles per inference and per learning sample (``pchw.latency``,
held exact by the tests), samples/s of the core at the board clock and at Fmax
(``pchw.latency.throughput``), and the ratio to the limit

    samples/s / (multipliers on the device x Fmax / MACs per sample)
    = MACs per sample / (device multipliers x core cycles per sample)

(the share of the device's multiply-accumulate capacity the schedule turns into useful MACs).
A benchmark, not a test. Writes bench/results/board_throughput.{md,json}.
Usage: python bench/board_throughput.py [--build] [--models xor,iris] [--boards icebreaker]
"""

import argparse
import json
import platform
from datetime import date
from pathlib import Path

import pchw
from pchw import boards, build
from pchw.latency import macs_per_sample, throughput

RESULTS = Path(__file__).parent / "results"
MODELS = ["xor", "iris", "digits"]
BOARDS = ["icebreaker", "ulx3s-85f"]


def current_report(network, target, lanes):
    """The build report in the default folder if it is of this description, these lanes and
    these pchw sources."""
    path = build.default_dir(network, target.name) / "report.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    from pchw.sweep import fingerprint
    if report.get("description_hash") != network.description_hash() or \
            tuple(report.get("lanes", ())) != tuple(lanes) or report.get("errors") or \
            report.get("pchw_sources") != fingerprint("build")["pchw sources"]:
        return None                     # of another description, lanes or gateware
    return report


def row(name, board_name, allow_build):
    network = pchw.load(f"models/{name}")
    target = boards.board(board_name)
    lanes = boards.lanes_for(network, target)
    report = current_report(network, target, lanes)
    if report is None and allow_build:
        print(f"building {name} for {board_name} (lanes {lanes}) ...", flush=True)
        report = build.build(network, board_name, progress=lambda line: None).report
    built = network.with_lanes(lanes)
    rates = throughput(built, target.clock_hz)
    infer = rates["INFER"]["core_cycles"]
    learn = rates["LEARN"]["core_cycles"]               # a LEARN runs the feedforward first
    macs_infer, macs_learn = macs_per_sample(built, False), macs_per_sample(built, True)
    r = {"model": name, "board": board_name, "lanes": list(lanes),
         "core_cycles_infer": infer, "core_cycles_learn": learn,
         "macs_infer": macs_infer, "macs_learn": macs_learn,
         "device_multipliers": target.dsps, "clock_mhz": target.clock_hz / 1e6,
         # Both ratios are independent of the clock: MACs / (multipliers x cycles).
         "ratio_to_limit_infer": macs_infer / (target.dsps * infer),
         "ratio_to_limit_learn": macs_learn / (target.dsps * learn),
         "built": report is not None}
    for clock, key in ((target.clock_hz, "board_clock"), (None, "fmax")):
        if clock is None:
            if report is None or not report.get("fmax"):
                continue
            clock = report["fmax"]["achieved_mhz"] * 1e6
        rates = throughput(built, clock)
        r[f"infer_per_s_{key}"] = rates["INFER"]["samples_per_s_core"]
        r[f"learn_per_s_{key}"] = rates["LEARN"]["samples_per_s_core"]
    if report is not None:
        r["resources"] = report["resources"]
        r["fmax_mhz"] = report["fmax"]["achieved_mhz"] if report.get("fmax") else None
        r["timing_met"] = bool(report.get("fmax") and report["fmax"]["met"])
    return r


def markdown(rows):
    lines = [f"Hardware throughput, {date.today()}, {platform.machine()}; YoWASP Yosys/nextpnr. "
             "Cycles from pchw/latency.py (held exact by the tests); resources and Fmax from "
             "nextpnr; samples/s are compute only (core cycles; the UART adds its own time, see "
             "each build's report.md). Ratio to the limit = MACs per sample / (device "
             "multipliers x core cycles).", "",
             "| model | board | lanes | LUT | FF | DSP | BRAM | Fmax (board clock) | "
             "inferences/s at Fmax | learning samples/s at Fmax | ratio to limit infer / "
             "learn |", "|---|---|---|---:|---:|---:|---:|---|---:|---:|---|"]
    for r in rows:
        res = r.get("resources", {})

        def used(name):
            v = res.get(name)
            return f"{v['used']} / {v['available']}" if v else "-"
        bram = used("BRAM") + (f" (+{res['SPRAM']['used']} SPRAM)" if "SPRAM" in res else "")
        fmax = f"{r['fmax_mhz']} MHz ({r['clock_mhz']:g})" if r.get("fmax_mhz") else \
            f"not built ({r['clock_mhz']:g})"
        rate = (lambda k: f"{r[k]:,.0f}" if k in r else "-")
        lines.append(
            f"| {r['model']} | {r['board']} | {'/'.join(map(str, r['lanes']))} | {used('LUT')} | "
            f"{used('FF')} | {used('DSP')} | {bram} | {fmax} | {rate('infer_per_s_fmax')} | "
            f"{rate('learn_per_s_fmax')} | {r['ratio_to_limit_infer']:.2f} / "
            f"{r['ratio_to_limit_learn']:.2f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true",
                        help="build what has no current report (digits on ulx3s-85f: ~10 min)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--boards", default=",".join(BOARDS))
    args = parser.parse_args()
    rows = [row(name, board_name, args.build) for name in args.models.split(",")
            for board_name in args.boards.split(",")]
    for r in rows:
        print({k: v for k, v in r.items() if k != "resources"}, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "board_throughput.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / "board_throughput.md").write_text(markdown(rows))


if __name__ == "__main__":
    main()
