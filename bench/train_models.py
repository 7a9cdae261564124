"""Train the committed example models and write their READMEs from what was measured.

For each model: float64 backprop, float64 PC, fixed-point inference of the float-PC weights, and
fixed-point PC learning (trained entirely in the bit-exact model, whose weights are committed),
all from the same initialisation, sample order and learning rate. For digits also an
accuracy-versus-width table (round-to-nearest vs stochastic weight updates, standard and
fixed_prediction modes). The graph models (digits-cnn, digits-res) run in the golden model only
(their circuits are future work); their backprop is pchw.backprop.graph_gradients.

Usage: python bench/train_models.py [--only NAME ...] [--no-sweep] [--jobs N]
"""

import argparse
import json
import platform
import time
from datetime import date
from multiprocessing import Pool
from pathlib import Path

import pchw
from pchw import Format, Formats, Network, PCSettings
from pchw.datasets import load_dataset
from pchw.golden import make_model
from pchw.graph import Graph
from pchw.train import accuracy, train_backprop, train_pc

ROOT = Path(__file__).resolve().parent.parent
INIT_SEED = 0
ORDER_SEED = 0

MODELS = {
    "xor": dict(layers=[2, 8, 2], activations=["identity", "hardtanh"], epochs=400,
                pc=PCSettings(mode="standard", inference_steps=8, inference_rate=0.5,
                              learning_rate=2.0 ** -4),
                formats=Formats(Format(12, 8), Format(12, 9)), lanes=[2, 2]),
    "iris": dict(layers=[4, 16, 3], activations=["identity", "relu"], epochs=60,
                 pc=PCSettings(mode="standard", inference_steps=8, inference_rate=0.25,
                               learning_rate=2.0 ** -5),
                 formats=Formats(Format(16, 10), Format(16, 12)), lanes=[4, 2]),
    "digits": dict(layers=[64, 32, 10], activations=["identity", "relu"], epochs=30,
                   pc=PCSettings(mode="fixed_prediction", inference_steps=1, inference_rate=1.0,
                                 learning_rate=2.0 ** -5),
                   formats=Formats(Format(16, 10), Format(16, 12)), lanes=[8, 2]),
    # Graphs (docs/network-format.md, Graphs): fixed_prediction, gamma = 1, T = depth - 1.
    "digits-cnn": dict(dataset="digits", epochs=30, graph=[
        {"name": "image", "op": "input", "shape": [1, 8, 8]},
        {"name": "conv", "op": "conv2d", "inputs": ["image"], "channels": 8, "kernel": 3,
         "padding": 1, "activation": "relu"},
        {"name": "pool", "op": "avgpool", "inputs": ["conv"], "kernel": 2},
        {"name": "flat", "op": "flatten", "inputs": ["pool"]},
        {"name": "out", "op": "dense", "inputs": ["flat"], "units": 10}],
        pc=PCSettings(mode="fixed_prediction", inference_steps=3, inference_rate=1.0,
                      learning_rate=2.0 ** -5),
        formats=Formats(Format(16, 10), Format(16, 12))),
    "digits-res": dict(dataset="digits", epochs=30, graph=[
        {"name": "x", "op": "input", "shape": [64]},
        {"name": "h1", "op": "dense", "inputs": ["x"], "units": 32, "activation": "relu"},
        {"name": "h2", "op": "dense", "inputs": ["h1"], "units": 32, "activation": "relu"},
        {"name": "skip", "op": "add", "inputs": ["h1", "h2"]},
        {"name": "out", "op": "dense", "inputs": ["skip"], "units": 10}],
        pc=PCSettings(mode="fixed_prediction", inference_steps=3, inference_rate=1.0,
                      learning_rate=2.0 ** -5),
        formats=Formats(Format(16, 10), Format(16, 12))),
}


def initial_network(name, spec=None):
    """The untrained network of ``name`` (``spec`` default ``MODELS[name]``): the seed-0
    initialisation every training run starts from."""
    spec = spec or MODELS[name]
    if "graph" in spec:
        return Graph(spec["graph"], pc=spec["pc"], formats=spec["formats"], name=name,
                     dataset=spec["dataset"], init_seed=INIT_SEED)
    return Network(spec["layers"], spec["activations"], pc=spec["pc"], formats=spec["formats"],
                   lanes=spec["lanes"], name=name, dataset=name, init_seed=INIT_SEED)


def train_one(name):
    spec, network = MODELS[name], initial_network(name)
    data = load_dataset(spec.get("dataset", name))
    epochs = spec["epochs"]
    start = time.perf_counter()
    _, bp = train_backprop(network, data, epochs, seed=ORDER_SEED)
    float_model, float_pc = train_pc(network, data, epochs, fixed=False, seed=ORDER_SEED)
    fixed_inference = accuracy(make_model(float_model.to_network(), True).predict,
                               data.x_test, data.y_test)
    fixed_model, fixed_pc = train_pc(network, data, epochs, fixed=True, seed=ORDER_SEED)
    trained = fixed_model.to_network()
    trained.save(ROOT / "models" / name)
    result = {"name": name, "epochs": epochs,
              **({"nodes": [f"{n.name}: {n.op}" for n in network.nodes]}
                 if isinstance(network, Graph) else {"layers": list(network.layers)}),
              "dataset": data.describe(),
              "backprop_float": bp[-1], "pc_float": float_pc[-1],
              "pc_float_weights_fixed_inference": fixed_inference,
              "pc_fixed_learning": fixed_pc[-1],
              "saturations": fixed_model.saturations.as_dict(),
              "seconds": time.perf_counter() - start, "date": str(date.today())}
    print(f"{name}: backprop {bp[-1]:.2%}, float PC {float_pc[-1]:.2%}, fixed inference "
          f"{fixed_inference:.2%}, fixed PC learning {fixed_pc[-1]:.2%} "
          f"({result['seconds']:.0f} s)", flush=True)
    return result


def width_formats(width):
    """Values Q<w>.<w-4> (range +-8, digits' inputs exact from 8 bits), weights Q<w>.<w-2>."""
    return Formats(Format(width, width - 4), Format(width, width - 2))


def sweep_point(args):
    """One point of the digits width sweep; ``width`` 0 is float64 PC (the reference).

    ``args``: ``(width, rounding, mode)``, optionally followed by the number of epochs (default
    the digits model's).
    """
    width, rounding, mode, *rest = args
    epochs = rest[0] if rest else MODELS["digits"]["epochs"]
    network = initial_network("digits")
    settings = dict(mode=mode, weight_rounding=rounding)
    if mode == "standard":
        settings.update(inference_steps=8, inference_rate=0.25)
    network = network.with_settings(**settings)
    if width:
        network = network.with_formats(width_formats(width))
    data = load_dataset("digits")
    model, history = train_pc(network, data, epochs, fixed=bool(width), seed=ORDER_SEED)
    sats = model.saturations
    print(f"  width {width:2d} {rounding:10s} {mode:16s} {history[-1]:.2%}  "
          f"saturations {sats.saturated()}  updates rounded to zero {sats.underflows()}",
          flush=True)
    return {"width": width, "rounding": rounding, "mode": mode, "epochs": epochs,
            "accuracy": history[-1],
            "saturated": sats.saturated(), "underflows": sats.underflows()}


def width_table(sweep):
    """The accuracy-versus-width table (markdown lines) of the points of :func:`sweep_point`,
    one column per mode and rounding; a ``*`` marks a run in which something saturated."""
    modes = [m for m in ("fixed_prediction", "standard") if any(p["mode"] == m for p in sweep)]
    lines = ["| width | " + " | ".join(f"{m}, {r}" for m in modes
                                       for r in ("nearest", "stochastic")) + " |",
             "|---" * (1 + 2 * len(modes)) + "|"]
    by_key = {(p["width"], p["mode"], p["rounding"]): p for p in sweep}
    for width in sorted({p["width"] for p in sweep if p["width"]}) + [0]:
        cells = []
        for mode in modes:
            for rounding in ("nearest", "stochastic"):
                p = by_key.get((width, mode, "nearest" if not width else rounding))
                cells.append(pct(p["accuracy"]) + ("*" if p["saturated"] else "") if p else "-")
        lines.append(f"| {width or 'float64'} | " + " | ".join(cells) + " |")
    return lines


def pct(v):
    return f"{100 * v:.2f}%"


def write_readme(result, sweep=None, backprop_float=None):
    name = result["name"]
    network = pchw.load(ROOT / "models" / name)
    pc = network.pc
    if isinstance(network, Graph):
        what = [f"A graph ({len(network.nodes)} nodes, longest path {network.depth}, "
                f"{network.parameter_count} parameters; `network.toml`, "
                f"docs/network-format.md); {result['dataset']}:", "", "```",
                *network.summary().splitlines()[4:4 + len(network.nodes)], "```", "",
                "It runs in the golden model only (its circuits are future work: `pchw "
                "verilog` and `pchw build` refuse it). Backprop is "
                "`pchw.backprop.graph_gradients` (checked against torch autograd); float64 "
                "fixed-prediction PC with gamma = 1 and T = the longest path - 1 computes the "
                "same updates (docs/pc-math.md, Graphs)."]
    else:
        what = [f"{' -> '.join(map(str, network.layers))} network, activations "
                f"{', '.join(str(a) for a in network.activations)}; {result['dataset']}."]
    lines = [
        f"# {name}", "", *what, "",
        f"PC: mode `{pc.mode}`, T = {pc.inference_steps}, gamma = 2^-{pc.gamma_shift}, "
        f"eta = 2^-{pc.eta_shift}, weight rounding `{pc.weight_rounding}`. Formats: values "
        f"`{network.formats.value}`, weights `{network.formats.weight}` (`docs/fixed-point.md`).",
        "",
        f"Trained by `make models` (`bench/train_models.py`) on "
        f"{result.get('date', date.today())}: "
        f"{result['epochs']} epochs of online (batch-1) learning, all runs from the same "
        f"initialisation (seed {INIT_SEED}), sample order and learning rate; test accuracy after "
        + ("the last epoch on the four points (XOR has no hold-out)." if name == "xor" else
           "the last epoch on the stratified 20% hold-out (split seed 0)."), "",
        "| training | inference | test accuracy |", "|---|---|---|",
        f"| backprop, float64 | float64 | {pct(result['backprop_float'])} |",
        f"| PC, float64 | float64 | {pct(result['pc_float'])} |",
        f"| PC, float64 | fixed point | {pct(result['pc_float_weights_fixed_inference'])} |",
        f"| **PC, fixed point (bit-exact, as on chip)** | fixed point | "
        f"**{pct(result['pc_fixed_learning'])}** |", "",
        "`weights.npz` holds the parameters of the last row (exactly representable in the "
        "weight format).", "",
        f"Saturation and underflow events during fixed-point training: "
        f"{json.dumps(result['saturations']) if result['saturations'] else 'none'} "
        "(`dW_zero`/`db_zero`: nonzero updates that rounded to zero; no value or weight "
        "saturated unless listed).",
    ]
    if sweep:
        lines += ["", "## Accuracy against bit width", "",
                  "Fixed-point PC learning, same initialisation and schedule, values "
                  "`Q<w>.<w-4>` and weights `Q<w>.<w-2>`; `fixed_prediction` with T = 1, "
                  "gamma = 1; `standard` with T = 8, gamma = 2^-2; eta = 2^-5. Float backprop "
                  f"on the same split: {pct(backprop_float)}.", "",
                  ] + width_table(sweep)
        lines += ["", "\\* some values or weights saturated during training (counts in "
                  "`bench/results/models.json`).", "",
                  "Reading the table: with round-to-nearest, a weight update smaller than half "
                  "a weight LSB is lost (counted as `dW_zero`); at 8 and 10 bits most updates "
                  "are, and accuracy falls. Stochastic rounding keeps them in expectation and "
                  "recovers most of the loss in `fixed_prediction` mode. `standard` mode is below "
                  "backprop in float64 too (last row): its equilibrium errors are close to, not "
                  "equal to, backprop's deltas (`docs/pc-math.md`); at 16 bits the fixed-point "
                  "runs are within a few tenths of a point of their float64 row."]
    (ROOT / "models" / name / "README.md").write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(MODELS), help="models to train")
    parser.add_argument("--no-sweep", action="store_true", help="skip the digits width sweep")
    parser.add_argument("--jobs", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--readme-only", action="store_true",
                        help="rewrite the READMEs from bench/results/models.json")
    args = parser.parse_args()
    out = ROOT / "bench" / "results"
    if args.readme_only:
        saved = json.loads((out / "models.json").read_text())
        for result in saved["models"]:
            if not args.only or result["name"] in args.only:
                write_readme(result, saved["digits_width_sweep"] if result["name"] == "digits"
                             else None, result["backprop_float"])
        return
    names = args.only or list(MODELS)
    sweep_args = [(w, r, m) for m in ("fixed_prediction", "standard")
                  for w in (8, 10, 12, 14, 16) for r in ("nearest", "stochastic")]
    sweep_args += [(0, "nearest", m) for m in ("fixed_prediction", "standard")]
    with Pool(args.jobs) as pool:
        results = pool.map(train_one, names)
        sweep = None
        if "digits" in names and not args.no_sweep:
            print("digits width sweep:", flush=True)
            sweep = pool.map(sweep_point, sweep_args)
    # Keep what this run did not redo (--only): the other models' results and the sweep.
    saved = json.loads((out / "models.json").read_text()) if (out / "models.json").is_file() \
        else {"models": [], "digits_width_sweep": None}
    if sweep is None:
        sweep = saved.get("digits_width_sweep")
    fresh = {r["name"] for r in results}
    results = [r for r in saved["models"] if r["name"] not in fresh] + results
    results.sort(key=lambda r: list(MODELS).index(r["name"]))
    for result in results:
        if result["name"] in fresh:
            write_readme(result, sweep if result["name"] == "digits" else None,
                         result["backprop_float"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "models.json").write_text(json.dumps(
        {"date": str(date.today()), "machine": platform.machine(), "models": results,
         "digits_width_sweep": sweep}, indent=2) + "\n")


if __name__ == "__main__":
    main()
