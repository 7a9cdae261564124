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
  golden model that ran the whole curve.

A benchmark, not a test. Writes bench/results/faults.{json,md,png}.
Usage: python bench/faults.py [--quick]
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
from pchw.faults import (DeadUnits, FaultSpec, StuckWeights, on_chip_segment,  # noqa: E402
                         plot_recovery, recovery, upset_run)

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).parent.parent
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
    args = parser.parse_args()
    started = time.time()
    records, upsets = [], []
    cache = {}
    for model, make, epochs in scenarios(args.quick):
        network = pchw.load(ROOT / "models" / model)
        data = cache.setdefault(model, load_dataset(network.dataset))
        spec = make(network)
        print(f"{model}: {spec.describe()} (seed {spec.seed}), {epochs} epochs", flush=True)
        record = recovery(network, data, spec, epochs=epochs,
                          reference_epochs=REFERENCE_EPOCHS, progress=print)
        scratch = dict(record["reference_scratch_curve"])
        record["model"] = model
        record["accuracy_reference_scratch_same_epochs"] = scratch[epochs]
        record["gap_to_scratch_points"] = round(
            100 * (record["accuracy_reference_scratch"] - record["accuracy_recovered"]), 2)
        if args.on_chip and not records:
            record["on_chip"] = on_chip_segment(network, data, spec, args.on_chip)
            print(f"  on chip: {record['on_chip']}", flush=True)
        records.append(record)

    network = pchw.load(ROOT / "models" / "digits")
    data = cache.setdefault("digits", load_dataset(network.dataset))
    intact = records[0]["accuracy_intact"]
    for rate in UPSET_RATES[:1] if args.quick else UPSET_RATES:
        spec = FaultSpec(upset_rate=rate, seed=3)
        curves = {learn: upset_run(network, data, spec, epochs=1, learn=learn)
                  for learn in (False, True)}
        upsets.append({"model": "digits", "fault": spec.to_dict(), "epochs": 1,
                       "accuracy_intact": intact,
                       "accuracy_end_learning_off": curves[False][-1][1],
                       "accuracy_end_learning_on": curves[True][-1][1],
                       "min_learning_off": min(a for _, a in curves[False]),
                       "min_learning_on": min(a for _, a in curves[True]),
                       "curve_learning_off": curves[False], "curve_learning_on": curves[True]})
        print(f"upsets {rate:g}/LEARN: learning off {pct(curves[False][-1][1])}, on "
              f"{pct(curves[True][-1][1])} (intact {pct(intact)})", flush=True)

    meta = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, Python "
            f"{platform.python_version()}, NumPy {np.__version__}",
            "seconds": round(time.time() - started, 1), "reference_epochs": REFERENCE_EPOCHS,
            "quick": args.quick}
    RESULTS.mkdir(exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (RESULTS / f"faults{suffix}.json").write_text(json.dumps(
        {"meta": meta, "records": records, "upsets": upsets}, indent=1) + "\n")
    plot_recovery([r for r in records if r["model"] == "digits"][:3],
                  RESULTS / f"faults{suffix}.png")
    _upset_figure(upsets, RESULTS / f"faults-upsets{suffix}.png")
    (RESULTS / f"faults{suffix}.md").write_text(_markdown(meta, records, upsets))
    print(f"wrote {RESULTS / f'faults{suffix}.json'} ({meta['seconds']} s)")


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


def _markdown(meta, records, upsets):
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
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
