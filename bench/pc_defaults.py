"""PC that learns out of the box: what `pchw init` writes, trained, against float backprop.

The table of issue 17: for each network, `pchw init`'s initialisation (seed 0) and settings
(:func:`pchw.defaults.default_settings`) in the default mode, ``--mode standard`` and
``--mode incremental``, and the settings `pchw init` wrote before (standard, T = 8,
gamma = 2^-1, eta = 2^-5) for comparison; online (batch-1) learning, one sample order (seed 0),
test accuracy after each epoch. Backprop: float64 at eta = 2^-5, same initialisation and order.
PC: fixed point, the bit-exact golden model (what the chip learns).

Then the diagnosis of ``docs/pc-math.md`` ("Why standard PC oscillated"), in float64 on digits
64-16-10: accuracy per epoch at gamma 2^-1 (and at half the eta), 2^-2, 2^-3; per epoch the
share of samples whose relaxation is past its stability bound (gamma * lambda_max > 2, the
Hessian at the feedforward state) and the share the divergence guard flags; the energy over
relaxation steps. Figures: docs/pc-oscillation-{accuracy,energy}.png.

A benchmark, not a test. Writes bench/results/pc_defaults.{md,json}.
Usage: python bench/pc_defaults.py [--jobs N] [--epochs N] [--only NAME ...] [--modes ...]
       [--no-diagnosis | --diagnosis-only] [--merge] [--markdown-only]
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

from pchw.datasets import load_dataset  # noqa: E402
from pchw.defaults import DEFAULT_MODE, LEARNING_RATE, with_defaults  # noqa: E402
from pchw.golden import FloatModel, energy_rises  # noqa: E402
from pchw.network import Network, PCSettings  # noqa: E402
from pchw.train import DivergenceGuard, _batches, accuracy, train_backprop, train_pc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"

#: (dataset, layers) of the issue's table.
NETWORKS = {"digits-64-16-10": ("digits", [64, 16, 10]),
            "digits-64-32-10": ("digits", [64, 32, 10]),
            "wine-13-16-3": ("wine", [13, 16, 3]),
            "breast_cancer-30-16-2": ("breast_cancer", [30, 16, 2]),
            # Deeper (issue 17 asks for 1-3 hidden layers); run with --only ... --merge.
            "digits-64-32-16-10": ("digits", [64, 32, 16, 10]),
            "wine-13-16-16-3": ("wine", [13, 16, 16, 3]),
            "breast_cancer-30-16-16-16-2": ("breast_cancer", [30, 16, 16, 16, 2])}
#: The networks of issue 17's table, run by default.
TABLE = ("digits-64-16-10", "digits-64-32-10", "wine-13-16-3", "breast_cancer-30-16-2")
#: "old": what `pchw init` wrote before issue 17, for every network.
OLD = PCSettings(mode="standard", inference_steps=8, inference_rate=0.5, learning_rate=2.0 ** -5)
MODES = ("default", "standard", "incremental", "old")
#: The bounds of issue 17 (percentage points below float backprop).
BOUNDS = {"default": 1.0, "standard": 2.0, "incremental": 2.0}


def initial_network(layers):
    """`pchw init --layers ...`'s network before its settings (seed 0)."""
    return Network(layers, ["identity"] + ["relu"] * (len(layers) - 2), init_seed=0)


def configured(network, mode):
    """``network`` with the settings and formats of run ``mode``."""
    if mode == "old":
        return network.with_settings(**vars(OLD))       # and the formats it had: the defaults
    return with_defaults(network, DEFAULT_MODE if mode == "default" else mode)


def settings(network, mode):
    return configured(network, mode).pc


def run_key(network, mode):
    """What a run's result depends on besides the network's topology (all runs are
    deterministic): its settings and formats."""
    net = configured(network, mode)
    pc = net.pc
    return {"mode": pc.mode, "T": pc.inference_steps, "gamma": pc.inference_rate,
            "eta": pc.learning_rate, "rounding": pc.weight_rounding,
            "values": str(net.formats.value), "weights": str(net.formats.weight)}


#: What the runs before formats and rounding were recorded ran with.
LEGACY = {"rounding": "nearest", "values": "Q16.10", "weights": "Q16.12"}


def stale(row, name, mode):
    """Whether a stored run ``row`` of network ``name`` was run with other settings or formats
    than run ``mode`` has now."""
    return any(row.get(k, LEGACY.get(k)) != v
               for k, v in run_key(initial_network(NETWORKS[name][1]), mode).items())


def backprop_run(args):
    name, epochs = args
    dataset, layers = NETWORKS[name]
    network = initial_network(layers).with_settings(learning_rate=LEARNING_RATE)
    start = time.perf_counter()
    _, history = train_backprop(network, load_dataset(dataset), epochs)
    return {"network": name, "run": "backprop float64", "history": history,
            "seconds": time.perf_counter() - start}


def pc_run(args):
    name, mode, epochs = args
    dataset, layers = NETWORKS[name]
    initial = initial_network(layers)
    network = configured(initial, mode)
    warnings = []
    start = time.perf_counter()
    model, history = train_pc(network, load_dataset(dataset), epochs, fixed=True,
                              warn=warnings.append)
    row = {"network": name, "run": mode, **run_key(initial, mode), "history": history,
           "warnings": warnings, "saturations": model.saturations.as_dict(),
           "seconds": time.perf_counter() - start, "date": str(date.today())}
    print(f"{name} {mode}: {history[-1]:.2%} ({row['seconds']:.0f} s)", flush=True)
    return row


# -- the diagnosis (float64, digits 64-16-10) ---------------------------------------------------

def _hessian_max(model, x):
    """lambda_max of the relaxation's Hessian ``I + D W_2^T W_2 D`` (one hidden layer) at the
    feedforward state of input ``x``."""
    a = model.arith
    hidden = model._feedforward(a.input(x))[1][0]
    w = model.W[1] * (hidden > 0)
    return float(np.linalg.eigvalsh(np.eye(len(hidden)) + w.T @ w)[-1])


def diagnosis_run(args):
    """Float64 standard PC on digits 64-16-10 at ``gamma``, ``eta``: per epoch the accuracy,
    the share of probed samples past the relaxation's stability bound, and the share the guard
    flags; and the energy over 16 relaxation steps of the probe samples after some epochs."""
    gamma, eta, epochs = args
    data = load_dataset("digits")
    network = initial_network([64, 16, 10]).with_settings(
        mode="standard", inference_steps=8, inference_rate=gamma, learning_rate=eta)
    model = FloatModel(network)
    targets = data.one_hot(data.y_train)
    probe = np.arange(0, len(data.x_train), 8)
    rows, energy = [], {}
    for epoch in range(epochs):
        unstable, flagged = [], []
        for i, idx in enumerate(_batches(len(data.x_train), epoch, 0, 1)):
            watch = i % 8 == 0
            if watch:
                unstable.append(gamma * _hessian_max(model, data.x_train[idx]) > 2)
            result = model.learn(data.x_train[idx], targets[idx], energy=watch)
            if watch:
                flagged.append(energy_rises(result.energy)[0] > DivergenceGuard.RISE)
        rows.append({"epoch": epoch + 1,
                     "accuracy": accuracy(model.predict, data.x_test, data.y_test),
                     "past_bound": float(np.mean(unstable)), "flagged": float(np.mean(flagged))})
        if epoch + 1 in (1, 5, 10):
            # The relaxation alone (16 steps, no learning) of the probe samples.
            probe_model = FloatModel(model.to_network().with_settings(
                inference_steps=16, learning_rate=2.0 ** -30))
            e = probe_model.learn(data.x_train[probe], targets[probe], energy=True).energy
            energy[str(epoch + 1)] = {str(q): np.percentile(e / e[0], q, axis=1).tolist()
                                      for q in (50, 90)}
    return {"gamma": gamma, "eta": eta, "epochs": rows, "energy_percentiles": energy}


DIAGNOSIS = [(0.5, 2.0 ** -5), (0.5, 2.0 ** -6), (0.25, 2.0 ** -5), (0.125, 2.0 ** -5)]


def figures(diagnosis, result):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for d in diagnosis:
        label = f"gamma 2^{int(np.log2(d['gamma']))}, eta 2^{int(np.log2(d['eta']))}"
        epochs = [r["epoch"] for r in d["epochs"]]
        ax.plot(epochs, [100 * r["accuracy"] for r in d["epochs"]], label=label)
        bx.plot(epochs, [100 * r["past_bound"] for r in d["epochs"]], label=label)
    bp = [r for r in result["runs"] if r["network"] == "digits-64-16-10"
          and r["run"] == "backprop float64"]
    if bp:
        ax.plot(range(1, len(bp[0]["history"]) + 1), [100 * v for v in bp[0]["history"]],
                "k--", label="backprop float64")
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", ylim=(60, 100),
           title="digits 64-16-10, standard PC, T = 8, float64")
    bx.set(xlabel="epoch", ylabel="samples past the bound (%)",
           title="gamma * lambda_max(Hessian) > 2 at the feedforward state")
    ax.legend(fontsize=8)
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(DOCS / "pc-oscillation-accuracy.png", dpi=90)
    plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), sharey=True)
    for ax, epoch in zip(axes, ("1", "5", "10")):
        for i, d in enumerate(d for d in diagnosis if d["eta"] == 2.0 ** -5):
            e = d["energy_percentiles"].get(epoch)
            if e is None:
                continue
            color = f"C{i}"
            ax.semilogy(range(len(e["90"])), e["90"], marker=".", color=color,
                        label=f"gamma 2^{int(np.log2(d['gamma']))}, 90th percentile")
            ax.semilogy(range(len(e["50"])), e["50"], ":", color=color)
        ax.set(title=f"weights after epoch {epoch}", xlabel="relaxation step t")
    axes[0].set_ylabel("F_t / F_0 over 180 samples")
    axes[0].text(0.02, 0.02, "dotted: median", transform=axes[0].transAxes, fontsize=8)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(DOCS / "pc-oscillation-energy.png", dpi=90)
    plt.close(fig)


def pct(v):
    return f"{100 * v:.2f}%"


def _carried(runs, today):
    """A sentence naming the runs kept from an earlier date (``--changed``)."""
    older = sorted({r.get("date", "") for r in runs if r["run"] != "backprop float64"
                    and r.get("date", "") != today})
    if not older:
        return ""
    n = sum(r.get("date", "") != today for r in runs if r["run"] != "backprop float64")
    return (f" {n} PC runs whose settings and formats did not change were kept from "
            f"{', '.join(d or 'an earlier run' for d in older)} (`--changed`: the runs are "
            "deterministic, so a rerun gives the same figures); the others were run "
            f"{today}.")


def summary(runs):
    """One row per network: backprop, then each PC run's last accuracy (the README's table)."""
    table = {}
    runs_by = {(r["network"], r["run"]): r for r in runs}
    for r in runs:
        table.setdefault(r["network"], {})[r["run"]] = r["history"][-1]
    lines = ["| network | backprop float64 | default | standard | incremental | old defaults |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in NETWORKS:
        row = table.get(name)
        if not row:
            continue
        bp = row.get("backprop float64")
        cells = []
        for run in ("default", "standard", "incremental", "old"):
            acc = row.get(run)
            outside = (acc is not None and bp is not None and run in BOUNDS
                       and 100 * (acc - bp) < -BOUNDS[run])
            text = "-" if acc is None else f"**{pct(acc)}**" if outside else pct(acc)
            if acc is not None and stale(runs_by[name, run], name, run):
                text += " (previous rule, not rerun)"
            cells.append(text)
        lines.append(f"| {name.replace('-', ' ', 1)} | {pct(bp) if bp is not None else '-'} | "
                     + " | ".join(cells) + " |")
    return lines


def markdown(result):
    runs = result["runs"]
    epochs = result["epochs"]
    lines = [f"PC learning with `pchw init`'s settings, {result['date']}, {result['machine']}. "
             f"Online (batch-1) learning, {epochs} epochs, initialisation seed 0, one sample "
             "order; test accuracy after the last epoch (and the lowest of the last 10 "
             "epochs). Backprop: float64 at eta = 2^-5. PC: fixed point (the bit-exact golden "
             "model; value and weight formats in the settings column), settings and formats "
             "from `pchw.defaults.with_defaults` (docs/pc-math.md, Defaults); `old`: standard, "
             "T = 8, gamma = 2^-1, eta = 2^-5, Q16.10 values, what `pchw init` wrote before. "
             "Bound: issue 17's target, points below backprop."
             + _carried(runs, result["date"]), "",
             "| network | run | settings | backprop float64 | PC fixed point (min last 10) "
             "| PC - backprop | bound | guard |", "|---|---|---|---:|---:|---:|---:|---|"]
    backprop = {r["network"]: r["history"] for r in runs if r["run"] == "backprop float64"}
    for r in runs:
        if r["run"] == "backprop float64":
            continue
        bp = backprop.get(r["network"])
        h = r["history"]
        gap = 100 * (h[-1] - bp[-1]) if bp else None
        bound = BOUNDS.get(r["run"])
        verdict = "" if bound is None or gap is None else (" (within)" if gap >= -bound
                                                           else " (**outside**)")
        guard = "; ".join(w.split(":")[0] + (": energy" if "energy" in w else ": accuracy")
                          for w in r["warnings"]) or "quiet"
        if r["network"] in NETWORKS and stale(r, r["network"], r["run"]):
            guard += " (**not rerun**: pchw.defaults now gives other settings or formats)"
        lines.append(
            f"| {r['network']} | {r['run']} | {r['mode']}, T={r['T']}, gamma=2^"
            f"{int(np.log2(r['gamma']))}, eta=2^{int(np.log2(r['eta']))}, "
            f"{r.get('values', 'Q16.10')}/{r.get('weights', 'Q16.12')}"
            f"{', stochastic' if r.get('rounding') == 'stochastic' else ''} | "
            f"{pct(bp[-1]) if bp else '-'} | {pct(h[-1])} ({pct(min(h[-10:]))}) | "
            f"{'-' if gap is None else f'{gap:+.2f}'}{verdict} | "
            f"{'-' if bound is None else bound} | {guard} |")
    lines += ["", "Summary (test accuracy after the last epoch; PC in fixed point; **bold**: "
              "outside issue 17's bound):", ""] + summary(runs)
    if result.get("diagnosis"):
        lines += ["", "Diagnosis, float64 standard PC on digits 64-16-10, T = 8: test accuracy "
                  "per epoch (every 3rd), and in brackets the share of probed samples (one in 8) "
                  "whose relaxation is past its stability bound, gamma * lambda_max > 2:", "",
                  "| gamma, eta | " + " | ".join(
                      f"ep {r['epoch']}" for r in result["diagnosis"][0]["epochs"][2::3]) + " |",
                  "|---" + "|---:" * len(result["diagnosis"][0]["epochs"][2::3]) + "|"]
        for d in result["diagnosis"]:
            lines.append(f"| 2^{int(np.log2(d['gamma']))}, 2^{int(np.log2(d['eta']))} | "
                         + " | ".join(f"{pct(r['accuracy'])} ({100 * r['past_bound']:.0f}%)"
                                      for r in d["epochs"][2::3]) + " |")
        lines += ["", "Figures: docs/pc-oscillation-accuracy.png, docs/pc-oscillation-energy.png."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs (default 30)")
    parser.add_argument("--only", nargs="*", choices=sorted(NETWORKS), help="networks")
    parser.add_argument("--modes", nargs="*", choices=MODES, default=list(MODES), help="runs")
    parser.add_argument("--no-diagnosis", action="store_true", help="skip the float diagnosis")
    parser.add_argument("--diagnosis-only", action="store_true",
                        help="rerun only the diagnosis, keeping pc_defaults.json's table")
    parser.add_argument("--merge", action="store_true",
                        help="add these runs to pc_defaults.json (replacing the same ones)")
    parser.add_argument("--changed", action="store_true",
                        help="rerun only the PC runs of pc_defaults.json whose settings or "
                             "formats differ from pchw.defaults' now (implies --merge)")
    parser.add_argument("--markdown-only", action="store_true",
                        help="rewrite pc_defaults.md (and the figures) from pc_defaults.json")
    args = parser.parse_args()
    if args.markdown_only:
        result = json.loads((RESULTS / "pc_defaults.json").read_text())
        if result.get("diagnosis"):
            figures(result["diagnosis"], result)
    elif args.diagnosis_only:
        result = json.loads((RESULTS / "pc_defaults.json").read_text())
        with Pool(args.jobs) as pool:
            result["diagnosis"] = pool.map(diagnosis_run,
                                           [(g, e, result["epochs"]) for g, e in DIAGNOSIS])
        (RESULTS / "pc_defaults.json").write_text(json.dumps(result, indent=2) + "\n")
        figures(result["diagnosis"], result)
    else:
        names = args.only or list(TABLE)
        start = time.perf_counter()
        # Longest first: standard and incremental PC relax T steps per sample.
        tasks = [(n, m, args.epochs) for m in args.modes for n in names]
        if args.changed:
            args.merge = True
            stored = {(r["network"], r["run"]): r for r in
                      json.loads((RESULTS / "pc_defaults.json").read_text())["runs"]}
            names = sorted({r[0] for r in stored})
            tasks = [(n, m, args.epochs) for n in names for m in args.modes
                     if (n, m) in stored and stale(stored[n, m], n, m)]
            names = []                          # backprop: deterministic, unchanged
            args.no_diagnosis = True            # float64 at fixed settings: unchanged
        tasks.sort(key=lambda t: -settings(initial_network(NETWORKS[t[0]][1]), t[1])
                   .inference_steps * len(NETWORKS[t[0]][1]) * (4 if "digits" in t[0] else 1))
        with Pool(args.jobs) as pool:
            diagnosis = [] if args.no_diagnosis else pool.map_async(
                diagnosis_run, [(g, e, args.epochs) for g, e in DIAGNOSIS])
            backprop = pool.map_async(backprop_run, [(n, args.epochs) for n in names])
            pc = pool.map(pc_run, tasks)
            runs = backprop.get() + pc
            diagnosis = diagnosis.get() if diagnosis else []
        if diagnosis:
            figures(diagnosis, {"runs": runs})
        if args.merge:
            old = json.loads((RESULTS / "pc_defaults.json").read_text())
            new = {(r["network"], r["run"]): r for r in runs}
            kept = [new.pop((r["network"], r["run"]), {"date": old["date"], **r})
                    for r in old["runs"]]
            runs = kept + list(new.values())
            diagnosis = diagnosis or old["diagnosis"]
        result = {"date": str(date.today()),
                  "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                             f"{platform.python_version()}, NumPy {np.__version__}",
                  "epochs": args.epochs, "runs": runs, "diagnosis": diagnosis,
                  "seconds": time.perf_counter() - start + (old["seconds"] if args.merge else 0)}
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "pc_defaults.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (RESULTS / "pc_defaults.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
