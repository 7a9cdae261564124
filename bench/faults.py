"""Faults: cut the substrate, then let on-chip PC learning relearn around the damage.

For the committed models (digits; iris for a small network), in the bit-exact fixed-point golden
model (``pchw.faults``, ``docs/faults.md``):

- dead units: half of the hidden units (three seeds: which units die matters), a quarter, and
  three quarters: accuracy intact, just after the damage, after 2 epochs (and after 5) of online
  on-chip PC learning with the damage in place, against a network of the surviving size trained
  from scratch (30 epochs of PC, same settings) and float64 backprop fine-tuning of the damaged
  network (same epochs, order and learning rate);
- stuck-at weights: 10% and 30% of every weight matrix stuck at 0;
- single-event upsets in the weight memory: accuracy over an epoch at several rates (bit flips
  per LEARN command), with on-chip learning on and off;
- an on-chip segment: the first ``--on-chip`` LEARN commands of the first scenario on the
  simulated circuit of a fault-injection build (Verilator), every reply bit-exact with the
  golden model that ran the whole curve; and as many with every kind of fault at once (half
  the hidden units dead, 10% of every weight matrix stuck at 0, 0.5 upsets per LEARN
  command), every reply and latency bit- and cycle-exact with the golden device model.

The scenarios and upset runs are a grid of tasks on the sweep's dask machinery
(``pchw.sweep.map_tasks``: a LocalCluster of ``--workers`` processes, or ``--scheduler``'s
cluster), each result cached under its content hash in ``build/bench-faults/`` (a re-run
computes only what changed; an interrupted run resumes). The on-chip segment runs here.

A benchmark, not a test. Writes bench/results/faults.{json,md,png}.
Usage: python bench/faults.py [--quick] [--workers N | --scheduler ADDRESS]
"""

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

import pchw  # noqa: E402
from pchw.datasets import load_dataset  # noqa: E402
from pchw.faults import (DeadUnits, FaultSpec, StuckWeights, grid_task,  # noqa: E402
                         on_chip_segment, plot_recovery)
from pchw.sweep import Cache, map_tasks, task_key  # noqa: E402

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).parent.parent
CACHE = ROOT / "build" / "bench-faults"
REFERENCE_EPOCHS = 30
UPSET_RATES = (0.01, 0.02, 0.05, 0.25, 1.0)


def dead(network, fraction, seed):
    return FaultSpec(dead=tuple(DeadUnits(l, fraction=fraction) for l in range(1, network.L)),
                     seed=seed)


def stuck(network, fraction, seed=0):
    return FaultSpec(stuck=tuple(StuckWeights(l, fraction, 0.0)
                                 for l in range(1, network.L + 1)), seed=seed)


def scenarios(quick):
    yield "digits", lambda n: dead(n, 0.5, 0), 2
    if quick:
        return
    yield "digits", lambda n: dead(n, 0.5, 0), 5
    for seed in (1, 2):
        yield "digits", lambda n, s=seed: dead(n, 0.5, s), 2
    yield "digits", lambda n: dead(n, 0.25, 0), 2
    yield "digits", lambda n: dead(n, 0.75, 0), 2
    yield "digits", lambda n: stuck(n, 0.1), 2
    yield "digits", lambda n: stuck(n, 0.3), 2
    yield "iris", lambda n: dead(n, 0.5, 0), 2


def pct(v):
    return f"{100 * v:.2f}%"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one scenario, one upset rate")
    parser.add_argument("--on-chip", type=int, default=200, metavar="N",
                        help="LEARN commands of the on-chip segment (default 200; 0: none)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="worker processes of the local dask cluster (default: the cores)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the grid on this dask scheduler's cluster instead")
    args = parser.parse_args()
    started = time.time()
    networks = {}

    def task(model, **fields):
        network = networks.setdefault(model, pchw.load(ROOT / "models" / model))
        t = {"model": str(ROOT / "models" / model), **fields}
        key = task_key("faults", network, {k: v for k, v in t.items() if k != "model"})
        return t, key

    # The grid: every recovery scenario, and each upset rate with learning off and on.
    tasks, keys, labels = [], [], []
    for model, make, epochs in scenarios(args.quick):
        spec = make(networks.setdefault(model, pchw.load(ROOT / "models" / model)))
        t, key = task(model, kind="recovery", spec=spec.to_dict(), epochs=epochs,
                      reference_epochs=REFERENCE_EPOCHS)
        tasks.append(t)
        keys.append(key)
        labels.append(f"{model}: {spec.describe()} (seed {spec.seed}), {epochs} epochs")
    rates = UPSET_RATES[:1] if args.quick else UPSET_RATES
    for rate in rates:
        for learn in (False, True):
            t, key = task("digits", kind="upsets", spec=FaultSpec(upset_rate=rate,
                                                                  seed=3).to_dict(),
                          epochs=1, learn=learn)
            tasks.append(t)
            keys.append(key)
            labels.append(f"digits: {rate:g} upsets per LEARN, learning "
                          f"{'on' if learn else 'off'}")
    results = map_tasks(grid_task, tasks, Cache(CACHE), keys=keys, labels=labels, kind="faults",
                        scheduler=args.scheduler, workers=args.workers, summary=_summary)
    failed = [(label, r) for label, r in zip(labels, results) if r["status"] != "ok"]
    if failed:
        raise SystemExit(f"{len(failed)} task(s) failed, first: {failed[0][0]}: "
                         f"{failed[0][1]['reason']}")

    records, upsets, on_chip_all = [], [], None
    for t, result in zip(tasks, results):
        if t["kind"] != "recovery":
            continue
        record, epochs = dict(result["record"]), t["epochs"]
        scratch = {int(e): a for e, a in record["reference_scratch_curve"]}
        record["model"] = Path(t["model"]).name
        record["accuracy_reference_scratch_same_epochs"] = scratch[epochs]
        record["gap_to_scratch_points"] = round(
            100 * (record["accuracy_reference_scratch"] - record["accuracy_recovered"]), 2)
        records.append(record)
    if args.on_chip:
        first = records[0]
        network = networks[first["model"]]
        spec = FaultSpec.from_dict(first["fault"])
        first["on_chip"] = on_chip_segment(network, load_dataset(network.dataset), spec,
                                           args.on_chip)
        print(f"  on chip: {first['on_chip']}", flush=True)
        network = networks["digits"]
        every = FaultSpec(dead(network, 0.5, 0).dead, stuck(network, 0.1).stuck,
                          upset_rate=0.5, seed=3)
        on_chip_all = {"fault": every.to_dict(), "description": every.describe(),
                       **on_chip_segment(network, load_dataset(network.dataset), every,
                                         args.on_chip)}
        print(f"  on chip, every fault: {on_chip_all}", flush=True)

    intact = records[0]["accuracy_intact"]
    curves = {(t["spec"]["upsets"]["rate"], t["learn"]): r["record"]["curve"]
              for t, r in zip(tasks, results) if t["kind"] == "upsets"}
    for rate in rates:
        off, on = curves[rate, False], curves[rate, True]
        spec = FaultSpec(upset_rate=rate, seed=3)
        upsets.append({"model": "digits", "fault": spec.to_dict(), "epochs": 1,
                       "accuracy_intact": intact,
                       "accuracy_end_learning_off": off[-1][1],
                       "accuracy_end_learning_on": on[-1][1],
                       "min_learning_off": min(a for _, a in off),
                       "min_learning_on": min(a for _, a in on),
                       "curve_learning_off": off, "curve_learning_on": on})
        print(f"upsets {rate:g}/LEARN: learning off {pct(off[-1][1])}, on "
              f"{pct(on[-1][1])} (intact {pct(intact)})", flush=True)

    cluster = args.scheduler or f"a LocalCluster of {args.workers or os.cpu_count()} workers"
    runner = f"pchw.sweep.map_tasks on {cluster}, cached in {CACHE.relative_to(ROOT)}"
    meta = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, Python "
            f"{platform.python_version()}, NumPy {np.__version__}",
            "seconds": round(time.time() - started, 1), "reference_epochs": REFERENCE_EPOCHS,
            "quick": args.quick, "tasks": len(tasks), "runner": runner}
    RESULTS.mkdir(exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (RESULTS / f"faults{suffix}.json").write_text(json.dumps(
        {"meta": meta, "records": records, "upsets": upsets, "on_chip_every_fault": on_chip_all},
        indent=1) + "\n")
    plot_recovery([r for r in records if r["model"] == "digits"][:3],
                  RESULTS / f"faults{suffix}.png")
    _upset_figure(upsets, RESULTS / f"faults-upsets{suffix}.png")
    (RESULTS / f"faults{suffix}.md").write_text(_markdown(meta, records, upsets, on_chip_all))
    print(f"wrote {RESULTS / f'faults{suffix}.json'} ({meta['seconds']} s)")


def _summary(result):
    record = result["record"]
    if "curve" in record and "accuracy_recovered" not in record:
        return f"end of the curve {pct(record['curve'][-1][1])}"
    return (f"damaged {pct(record['accuracy_damaged'])}, recovered "
            f"{pct(record['accuracy_recovered'])}, from scratch "
            f"{pct(record['accuracy_reference_scratch'])}")


def _upset_figure(upsets, path):
    from pchw.report import _pyplot
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for i, u in enumerate(upsets):
        color = f"C{i}"
        rate = u["fault"]["upsets"]["rate"]
        for key, style, label in (("curve_learning_off", "--", "off"),
                                  ("curve_learning_on", "-", "on")):
            e, a = zip(*u[key])
            ax.plot(e, [100 * v for v in a], style, color=color,
                    label=f"{rate:g} flips/LEARN, learning {label}")
    ax.axhline(100 * upsets[0]["accuracy_intact"], color="0.5", ls=":", label="intact")
    ax.set_xlabel("epochs (LEARN command slots / training samples)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("digits: single-event upsets in the weight memory", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(meta, records, upsets, on_chip_all):
    lines = [f"Faults and recovery, {meta['date']}, {meta['machine']}, bit-exact fixed-point "
             f"golden model ({meta['seconds']} s). Reference: the surviving size trained from "
             f"scratch for {meta['reference_epochs']} epochs of PC (same settings).", "",
             "| model | fault | epochs | intact | damaged | recovered (on-chip PC) | "
             "best point | from scratch (same epochs) | from scratch (30 epochs) | "
             "backprop fine-tuning | gap to scratch (points) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(
            f"| {r['model']} | {r['description']} (seed {r['fault']['seed']}) | {r['epochs']} | "
            f"{pct(r['accuracy_intact'])} | {pct(r['accuracy_damaged'])} | "
            f"{pct(r['accuracy_recovered'])} | {pct(r['best_recovered'])} | "
            f"{pct(r['accuracy_reference_scratch_same_epochs'])} | "
            f"{pct(r['accuracy_reference_scratch'])} | "
            f"{pct(r['accuracy_reference_backprop'])} | {r['gap_to_scratch_points']:+.2f} |")
    lines += ["", "Upsets (digits, one epoch of LEARN command slots):", "",
              "| flips per LEARN | intact | end, learning off | lowest, learning off | "
              "end, learning on | lowest, learning on |", "|---|---|---|---|---|---|"]
    for u in upsets:
        lines.append(f"| {u['fault']['upsets']['rate']:g} | {pct(u['accuracy_intact'])} | "
                     f"{pct(u['accuracy_end_learning_off'])} | {pct(u['min_learning_off'])} | "
                     f"{pct(u['accuracy_end_learning_on'])} | {pct(u['min_learning_on'])} |")
    chip = next((r["on_chip"] for r in records if "on_chip" in r), None)
    if chip:
        lines += ["", f"On chip: the first {chip['learn_commands']} LEARN commands of the first "
                  f"scenario on the simulated fault-injection build ({chip['simulator']}): "
                  f"{chip['replies']} replies, {chip['mismatches']} differ from the golden model "
                  f"({chip['simulated_cycles']:,} cycles)."]
    if on_chip_all:
        c = on_chip_all
        lines += ["", f"On chip with every fault ({c['description']}, seed "
                  f"{c['fault']['seed']}): {c['fault_commands']} FAULT and {c['learn_commands']} "
                  f"LEARN commands ({c['upsets']} upset flips) on {c['simulator']}: "
                  f"{c['replies']} replies, {c['mismatches']} differ from the golden device "
                  f"model, in bytes or in cycles ({c['simulated_cycles']:,} cycles)."]
    lines += ["", f"Runner: {meta['runner']} ({meta['tasks']} tasks)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
