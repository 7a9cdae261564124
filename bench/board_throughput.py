"""Hardware throughput per committed model and board, and its ratio to the physical limit.

For each model and board: the lanes it is built with (``pchw.boards.lanes_for``), resources and
Fmax from the build report (``build/<board>/<model>/report.json``, built with ``pchw.build``
when missing or stale), core cycles per inference and per learning sample (``pchw.latency``,
held exact by the tests), samples/s of the core at the board clock and at Fmax
(``pchw.latency.throughput``), and two shares of multiply-accumulate capacity, counting only
the necessary MACs (``pchw.schedule.Schedule.necessary``: not, for instance, standard mode's
re-prediction of layer 1 in every relaxation step), both from ``pchw.latency.mac_utilisation``:

    ratio to the limit = samples/s at Fmax / (device multipliers x Fmax / necessary MACs per sample)
                       = necessary MACs per sample / (device multipliers x core cycles per sample)
    utilisation        = necessary MACs per sample / (multipliers instantiated x core cycles)

The device's multipliers are ``pchw.boards``' (``Board.dsps``); the ones instantiated are the
multiplier blocks the build report counts after place and route (``multipliers_source``
``"build report"``), or without a build the estimate's (``"estimate"``). A LEARN's cycles
include its feedforward. A benchmark, not a test. Writes bench/results/board_throughput.{md,json}.
Usage: python bench/board_throughput.py [--build] [--models xor,iris] [--boards icebreaker]
"""

import argparse
import json
import platform
from datetime import date
from pathlib import Path

import pchw
from pchw import boards, build
from pchw.latency import mac_utilisation, macs_per_sample, throughput
from pchw.schedule import schedule

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
    built = network.on_board(board_name).with_lanes(lanes)
    rates = throughput(built, target.clock_hz)
    infer = rates["INFER"]["core_cycles"]
    learn = rates["LEARN"]["core_cycles"]               # a LEARN runs the feedforward first
    if report is not None and "DSP" in report["resources"]:
        instantiated, source = report["resources"]["DSP"]["used"], "build report"
    else:
        instantiated, source = boards.estimate(built, target).dsps, "estimate"
    r = {"model": name, "board": board_name, "lanes": list(lanes),
         "core_cycles_infer": infer, "core_cycles_learn": learn,
         # performed (as the schedule runs them) and necessary multiply-accumulates
         "macs_infer": macs_per_sample(built, False), "macs_learn": macs_per_sample(built, True),
         "necessary_macs_infer": macs_per_sample(built, False, necessary=True),
         "necessary_macs_learn": macs_per_sample(built, True, necessary=True),
         "device_multipliers": target.dsps, "multipliers_instantiated": instantiated,
         "multipliers_source": source, "clock_mhz": target.clock_hz / 1e6,
         # All four are independent of the clock: necessary MACs / (multipliers x cycles).
         "ratio_to_limit_infer": mac_utilisation(built, target.dsps, False),
         "ratio_to_limit_learn": mac_utilisation(built, target.dsps, True),
         "utilisation_infer": mac_utilisation(built, instantiated, False),
         "utilisation_learn": mac_utilisation(built, instantiated, True),
         "phases_learn": phases(built), "built": report is not None}
    for clock, key in ((target.clock_hz, "board_clock"), (None, "fmax")):
        if clock is None:
            if report is None or not report.get("fmax"):
                continue
            clock = report["fmax"]["achieved_mhz"] * 1e6
        rates = throughput(built, clock)
        r[f"infer_per_s_{key}"] = rates["INFER"]["samples_per_s_core"]
        r[f"learn_per_s_{key}"] = rates["LEARN"]["samples_per_s_core"]
    if report is not None:
        # Whole commands at the board clock (the build's figures): back to back, and one at a
        # time over the UART at the build's baud rate.
        for op, rates in report["throughput"]["at_board_clock"].items():
            r[f"{op.lower()}_commands_per_s_board_clock"] = rates["samples_per_s_compute"]
            r[f"{op.lower()}_commands_per_s_uart"] = rates["samples_per_s_uart"]
        r["baud"] = report["baud"]
        stages = report["stage_seconds"]
        r["build_seconds"] = round(stages.get("total", sum(stages.values())))
        r["resources"] = report["resources"]
        r["fmax_mhz"] = report["fmax"]["achieved_mhz"] if report.get("fmax") else None
        r["timing_met"] = bool(report.get("fmax") and report["fmax"]["met"])
    return r


def phases(network):
    """Where a learning sample's core cycles go: per op of the schedule (the feedforward
    included), its cycles and its performed and necessary multiply-accumulates."""
    by_op = {}
    for step, necessary in schedule(network).necessary(learn=True):
        op = by_op.setdefault(step.op.value, {"cycles": 0, "macs": 0, "necessary_macs": 0})
        op["cycles"] += step.cycles
        op["macs"] += step.macs
        op["necessary_macs"] += necessary
    return by_op


def markdown(rows):
    lines = [f"Hardware throughput, {date.today()}, {platform.machine()}; YoWASP Yosys/nextpnr. "
             "Cycles from pchw/latency.py (held exact by the tests); resources and Fmax from "
             "nextpnr; samples/s are compute only (core cycles; the UART adds its own time, see "
             "each build's report.md). MACs: the necessary ones per sample (pchw.schedule."
             "Schedule.necessary; performed in brackets where more). Ratio to the limit = "
             "necessary MACs per sample / (device multipliers x core cycles); utilisation = "
             "necessary MACs per sample / (multipliers instantiated x core cycles), with the "
             "multipliers instantiated from the build report (estimated where marked *).", "",
             "| model | board | lanes | LUT | FF | DSP | BRAM | Fmax (board clock) | "
             "inferences/s at Fmax | learning samples/s at Fmax | MACs per inference / "
             "learning sample | ratio to limit infer / learn | utilisation infer / learn |",
             "|---|---|---|---:|---:|---:|---:|---|---:|---:|---|---|---|"]
    for r in rows:
        res = r.get("resources", {})

        def used(name):
            v = res.get(name)
            return f"{v['used']} / {v['available']}" if v else "-"
        bram = used("BRAM") + (f" (+{res['SPRAM']['used']} SPRAM)" if "SPRAM" in res else "")
        fmax = f"{r['fmax_mhz']} MHz ({r['clock_mhz']:g})" if r.get("fmax_mhz") else \
            f"not built ({r['clock_mhz']:g})"
        rate = (lambda k: f"{r[k]:,.0f}" if k in r else "-")
        macs = " / ".join(f"{r['necessary_' + k]}" + (f" ({r[k]})" if r[k] != r["necessary_" + k]
                                                        else "")
                          for k in ("macs_infer", "macs_learn"))
        mark = "" if r["multipliers_source"] == "build report" else "*"
        lines.append(
            f"| {r['model']} | {r['board']} | {'/'.join(map(str, r['lanes']))} | {used('LUT')} | "
            f"{used('FF')} | {used('DSP')} | {bram} | {fmax} | {rate('infer_per_s_fmax')} | "
            f"{rate('learn_per_s_fmax')} | {macs} | {r['ratio_to_limit_infer']:.3f} / "
            f"{r['ratio_to_limit_learn']:.3f} | {r['utilisation_infer']:.2f} / "
            f"{r['utilisation_learn']:.2f}{mark} |")
    ops = ["feedforward", "errors", "relax", "predict", "update"]
    lines += ["", "Where a learning sample's core cycles go: per op of the schedule "
              "(pchw/schedule.py), its share of the cycles and the utilisation of the multipliers "
              "instantiated during it (necessary MACs / (multipliers x its cycles)).", "",
              "| model | board | " + " | ".join(ops) + " |", "|---|---|" + "---|" * len(ops)]
    for r in rows:
        total = sum(p["cycles"] for p in r["phases_learn"].values())

        def share(op):
            p = r["phases_learn"].get(op)
            if p is None:
                return "-"
            busy = p["necessary_macs"] / (r["multipliers_instantiated"] * p["cycles"])
            return f"{p['cycles'] / total:.0%} ({busy:.2f})"
        lines.append(f"| {r['model']} | {r['board']} | " + " | ".join(map(share, ops)) + " |")
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
