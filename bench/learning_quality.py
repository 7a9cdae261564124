"""Learning quality: accuracy per dataset and learning rule, gradient agreement, bit width.

Per dataset (xor, iris, wine, digits) and graph model (digits-cnn, digits-res), from one
initialisation, sample order and learning rate (``bench/train_models.py``'s settings; wine's
below): float64 backprop, float64 PC in each mode, and fixed-point PC trained in the bit-exact
golden model (PC trained on chip: bench/on_chip_learning.py). ``--only`` reruns some rows and
keeps the others (and the width sweep, unless it is rerun) from the last results.

Then the cosine between PC's weight update and backprop's gradient against the number of
relaxation steps T (``pchw.quality.gradient_agreement``), and the digits accuracy against bit
width with round-to-nearest and stochastic rounding (``train_models.sweep_point``; ``--full``
adds standard mode, which is 8 relaxation steps per sample and slow).

A benchmark, not a test. Writes bench/results/learning_quality.{md,json}.
Usage: python bench/learning_quality.py [--full] [--jobs N] [--only NAME ...]
"""

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # the runs are small; threads only contend
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from train_models import (MODELS, ORDER_SEED, initial_network, pct,  # noqa: E402
                          sweep_point, width_table)

from pchw import Format, Formats, PCSettings  # noqa: E402
from pchw.datasets import load_dataset  # noqa: E402
from pchw.quality import (AGREEMENT_STEPS, gradient_agreement, learning_curves,  # noqa: E402
                          millidge_setup)

RESULTS = Path(__file__).parent / "results"
MODES = ("standard", "fixed_prediction", "incremental")
AGREEMENT_MODES = ("standard", "fixed_prediction")

#: The committed models' settings, and wine's (no committed model): iris's network shape.
SPECS = {**MODELS, "wine": dict(
    layers=[13, 16, 3], activations=["identity", "relu"], epochs=60,
    pc=PCSettings(mode="standard", inference_steps=8, inference_rate=0.25,
                  learning_rate=2.0 ** -5),
    formats=Formats(Format(16, 10), Format(16, 12)), lanes=[4, 2])}

#: Relaxation settings of the modes a dataset's own mode does not fix: a model trained in
#: fixed_prediction with T = 1 (digits) runs standard and incremental PC at T = 8, gamma = 2^-2
#: (as the width sweep does); otherwise every mode keeps the model's T and gamma.
RELAXATION = dict(inference_steps=8, inference_rate=0.25)


def mode_settings(network):
    """``{mode: settings changes}`` for :func:`pchw.quality.learning_curves`."""
    pc = network.pc
    short = pc.mode == "fixed_prediction" and (pc.inference_steps < 2 or
                                               not hasattr(network, "layers"))   # or a graph
    return {mode: (RELAXATION if short and mode != pc.mode else {}) for mode in MODES}


def quality_row(name):
    """Final test accuracy of every learning rule on dataset ``name``."""
    spec = SPECS[name]
    network = initial_network(name, spec)
    data = load_dataset(spec.get("dataset", name))
    start = time.perf_counter()
    curves = learning_curves(network, data, spec["epochs"], seed=ORDER_SEED,
                             float_settings=mode_settings(network))
    final = {label: history[-1] for label, history in curves.histories.items()}
    shape = "-".join(map(str, spec["layers"])) if "layers" in spec else \
        "graph: " + ", ".join(n.op for n in network.nodes[1:])
    row = {"dataset": name, "network": shape, "epochs": spec["epochs"],
           "date": str(date.today()),
           "mode": network.pc.mode, "T": network.pc.inference_steps,
           "gamma": network.pc.inference_rate, "eta": network.pc.learning_rate,
           "describe": data.describe(), "accuracy": final,
           "saturations": curves.fixed_model.saturations.as_dict(),
           "seconds": time.perf_counter() - start}
    print(f"{name}: " + ", ".join(f"{k} {v:.2%}" for k, v in final.items())
          + f" ({row['seconds']:.0f} s)", flush=True)
    return row


def agreement_rows():
    """Cosine against T: the synthetic setting of docs/pc-math.md, and each dataset's network
    at its initialisation on a batch of 32 training samples, at the gamma its training uses
    (:func:`mode_settings`). Standard and fixed_prediction only: incremental PC changes the
    weights during relaxation, so its summed update depends on eta and is not one gradient."""
    rows = []
    net, x, y = millidge_setup()
    for mode in AGREEMENT_MODES:
        rows.append({"setting": "8-16-16-4 relu, gamma 2^-3 (docs/pc-math.md)", "mode": mode,
                     "cosines": gradient_agreement(net.with_settings(mode=mode), x, y)})
    for name, spec in SPECS.items():
        network = initial_network(name, spec)
        data = load_dataset(spec.get("dataset", name))
        x, y = data.x_train[:32], data.one_hot(data.y_train[:32])
        settings = mode_settings(network)
        for mode in AGREEMENT_MODES:
            gamma = settings[mode].get("inference_rate", network.pc.inference_rate)
            rows.append({"setting": f"{name} at initialisation, batch 32, gamma {gamma:g}",
                         "mode": mode, "cosines": gradient_agreement(
                             network.with_settings(mode=mode, inference_rate=gamma), x, y)})
    return rows


def markdown(result):
    q = result["quality"]
    lines = [f"Learning quality, {result['date']}, {result['machine']}. Online (batch-1) "
             "learning, each dataset's runs from one initialisation (seed 0), sample order and "
             "learning rate; test accuracy after the last epoch (stratified 20% hold-out; XOR "
             "on its four points). Float PC modes other than the dataset's own keep its T and "
             "gamma, except that digits (fixed_prediction, T = 1) and the graphs (digits-cnn, "
             "digits-res: fixed_prediction, gamma = 1) run standard and incremental PC at "
             "T = 8, gamma = 2^-2. Fixed point: the bit-exact golden model, what the chip "
             "computes (the graphs: no circuit yet). Each row's date is its run's.", "",
             "| dataset | network | epochs | PC settings | backprop float64 | PC standard "
             "float64 | PC fixed_prediction float64 | PC incremental float64 | **PC fixed "
             "point** | date |", "|---|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in q:
        a = r["accuracy"]
        fixed = a[f"PC {r['mode']} fixed point"]
        shape = r.get("network") or "-".join(map(str, r["layers"]))
        lines.append(
            f"| {r['dataset']} | {shape} | {r['epochs']} | "
            f"{r['mode']}, T={r['T']}, gamma={r['gamma']:g}, eta={r['eta']:g} | "
            f"{pct(a['backprop float64'])} | " + " | ".join(
                pct(a[f"PC {m} float64"]) for m in MODES)
            + f" | **{pct(fixed)}** | {r.get('date', result['date'])} |")
    lines += ["", "PC learning on chip (Verilator, bit-exact with the golden model): "
              "`bench/results/on_chip_learning.md` (`make bench FULL=1`)."]
    steps = result["agreement_steps"]
    lines += ["", "Cosine between the PC update of all parameters and -dLoss/dtheta against "
              "the relaxation steps T (Millidge, Tschantz & Buckley 2020; float64, "
              "`pchw.quality.gradient_agreement`):", "",
              "| setting | mode | " + " | ".join(f"T={t}" for t in steps) + " |",
              "|---|---" + "|---:" * len(steps) + "|"]
    for r in result["agreement"]:
        lines.append(f"| {r['setting']} | {r['mode']} | "
                     + " | ".join(f"{c:.4f}" for c in r["cosines"]) + " |")
    sweep = result["width_sweep"]
    if not sweep:
        return "\n".join(lines + ["", "(width sweep skipped)"]) + "\n"
    epochs = sweep[0]["epochs"]
    digits = [r for r in q if r["dataset"] == "digits"]
    backprop = pct(digits[0]["accuracy"]["backprop float64"]) if digits else "not run"
    lines += ["", f"Digits accuracy against bit width: fixed-point PC learning, {epochs} "
              "epochs, values `Q<w>.<w-4>`, weights `Q<w>.<w-2>`; fixed_prediction T = 1, "
              "gamma = 1; standard T = 8, gamma = 2^-2; eta = 2^-5 "
              f"(`bench/train_models.py`). Float backprop on the same split: {backprop}.",
              ""] + width_table(sweep)
    lines += ["", "\\* some values or weights saturated during training."]
    if not any(p["mode"] == "standard" for p in sweep):
        lines.append("Standard mode (8 relaxation steps per sample) is swept with "
                     "`make bench FULL=1`.")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="also the standard-mode sweep")
    parser.add_argument("--jobs", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--only", nargs="*", choices=sorted(SPECS), help="datasets")
    parser.add_argument("--no-sweep", action="store_true", help="skip the width sweep")
    parser.add_argument("--markdown-only", action="store_true",
                        help="rewrite learning_quality.md from learning_quality.json")
    args = parser.parse_args()
    if args.markdown_only:
        text = markdown(json.loads((RESULTS / "learning_quality.json").read_text()))
        (RESULTS / "learning_quality.md").write_text(text)
        print(text)
        return
    names = args.only or list(SPECS)
    start = time.perf_counter()
    modes = ("fixed_prediction", "standard") if args.full else ("fixed_prediction",)
    sweep_args = [(w, r, m) for m in modes for w in (8, 10, 12, 14, 16)
                  for r in ("nearest", "stochastic")] + [(0, "nearest", m) for m in modes]
    if args.no_sweep:
        sweep_args = []
    with Pool(args.jobs) as pool:
        quality = pool.map(quality_row, names)
        if sweep_args:
            print("digits width sweep:", flush=True)
        sweep = pool.map(sweep_point, sweep_args)
    print("gradient agreement", flush=True)
    agreement = agreement_rows()
    saved_file = RESULTS / "learning_quality.json"
    if args.only and saved_file.is_file():      # keep the rows and the sweep not rerun
        saved = json.loads(saved_file.read_text())
        fresh = {r["dataset"] for r in quality}
        kept = [dict(r, date=r.get("date", saved["date"])) for r in saved["quality"]
                if r["dataset"] not in fresh]
        quality = sorted(kept + quality, key=lambda r: list(SPECS).index(r["dataset"]))
        if not sweep_args:
            sweep = saved["width_sweep"]
    result = {"date": str(date.today()),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                         f"{platform.python_version()}, NumPy {np.__version__}",
              "full": args.full, "quality": quality,
              "agreement_steps": list(AGREEMENT_STEPS), "agreement": agreement,
              "width_sweep": sweep, "seconds": time.perf_counter() - start}
    text = markdown(result)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "learning_quality.md").write_text(text)
    (RESULTS / "learning_quality.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
