"""``pchw report``: one self-contained HTML page about a model, for people to look at.

The page (``index.html``, its figures embedded as base64 PNG and also written beside it, and the
numbers in ``report.json``) shows the network and its fixed-point formats; the resources and
timing of its bitstreams, read from the ``report.json`` that ``pchw build`` left in
``build/<board>/<model>/`` (or how to build one); learning curves of fixed-point PC in the golden
model (bit for bit what the chip learns) against float64 PC and backprop, trained from a fresh
initialisation; the agreement of PC's weight update with backprop's gradient against the number
of relaxation steps; and the saturation counts per layer. Every number is computed when the page
is written (``pchw.quality``, ``pchw.latency``, the build report); nothing is copied in by hand.
"""

import base64
import html
import io
import json
import math
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from . import __version__
from .boards import BOARDS
from .boards import board as find_board
from .datasets import load_dataset
from .defaults import default_settings
from .errors import PchwError
from .golden import FixedModel
from .latency import (
    command_latency,
    core_infer_cycles,
    core_learn_cycles,
    macs_per_sample,
)
from .network import load
from .protocol import Opcode
from .quality import AGREEMENT_STEPS, gradient_agreement, learning_curves

__all__ = ["write_report", "default_epochs", "SAMPLE_BUDGET", "SECTIONS"]

#: Learning samples the default number of epochs aims at (at most 400 epochs).
SAMPLE_BUDGET = 20_000
MAX_EPOCHS = 400
#: Section ids of the page, in order.
SECTIONS = ("network", "hardware", "learning", "agreement", "saturation", "faults")
#: The faults section: this fraction of every hidden layer dies, then on-chip learning for at
#: most this many epochs (pchw.faults.recovery).
FAULT_FRACTION, FAULT_EPOCHS = 0.5, 2
AGREEMENT_BATCH = 32
#: The initialisation seed of the learning curves (the committed models were trained from it).
INIT_SEED = 0


def default_epochs(n_train):
    """Epochs of about :data:`SAMPLE_BUDGET` learning samples: ``ceil(budget / n_train)``,
    clamped to ``1..400``."""
    return max(1, min(MAX_EPOCHS, math.ceil(SAMPLE_BUDGET / max(n_train, 1))))


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise PchwError("pchw report needs matplotlib: pip install 'pchw[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


class _Figures:
    """PNG figures: written into the output folder and embedded in the page."""

    def __init__(self, directory):
        self.directory = directory
        self.plt = _pyplot()

    def save(self, fig, name):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        self.plt.close(fig)
        data = buffer.getvalue()
        (self.directory / name).write_bytes(data)
        return (f'<img alt="{html.escape(name)}" src="data:image/png;base64,'
                f'{base64.b64encode(data).decode()}">')


def _table(header, rows, numeric_from=1):
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f'<td class="{"num" if i >= numeric_from else ""}">{c}</td>'
                        for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _section(key, title, body):
    return f'<section id="{key}"><h2>{html.escape(title)}</h2>\n{body}\n</section>'


def _p(text):
    return f"<p>{text}</p>"


def _code(text):
    return f"<code>{html.escape(str(text))}</code>"


# -- sections ------------------------------------------------------------------------------------

def _network_section(network, model):
    rows = []
    for l in range(network.L + 1):
        act = html.escape(str(network.activations[l])) if l < network.L else "(output)"
        rows.append([str(l), str(network.layers[l]), act, _code(network.value_format(l)),
                     _code(network.weight_format(l)) if l else "",
                     str(network.lanes[l - 1]) if l else ""])
    pc = network.pc
    cycles = [["INFER", core_infer_cycles(network), command_latency(network, Opcode.INFER),
               macs_per_sample(network, False)],
              ["LEARN", core_infer_cycles(network) + core_learn_cycles(network),
               command_latency(network, Opcode.LEARN), macs_per_sample(network, True)]]
    return "\n".join([
        f"<pre>{html.escape(network.summary())}</pre>",
        _p(f"PC mode {_code(pc.mode)}, T = {pc.inference_steps}, gamma = 2^-{pc.gamma_shift}, "
           f"eta = 2^-{pc.eta_shift}, weight rounding {_code(pc.weight_rounding)}. Formats "
           f"{_code('Q<width>.<fraction bits>')}, sign bit included (docs/fixed-point.md)."),
        _table(["layer", "neurons", "activation f_l", "values x_l", "weights W_l, b_l",
                "MAC lanes"], rows),
        _p("Cycles of the generated circuit (<code>pchw.latency</code>, which the tests hold "
           "the gateware to cycle for cycle):"),
        _table(["command", "core cycles", "command latency (cycles)", "multiply-accumulates"],
               [[c[0], f"{c[1]:,}", f"{c[2]:,}", f"{c[3]:,}"] for c in cycles]),
    ]), {"model": str(model), "layers": list(network.layers), "cycles": cycles}


def _build_reports(network, board_name):
    """``[(board, path, report or None)]`` for ``board_name``, or every board with a report."""
    from .build import default_dir
    names = [board_name] if board_name else list(BOARDS)
    found = []
    for name in names:
        path = default_dir(network, name) / "report.json"
        if path.exists():
            try:
                found.append((name, path, json.loads(path.read_text())))
            except ValueError as error:
                raise PchwError(f"{path}: not a build report ({error})") from None
        elif board_name:
            found.append((name, path, None))
    return found


def _hardware_section(network, model, board_name):
    reports = _build_reports(network, board_name)
    parts, data = [], []
    if not reports:
        folder = f"build/<board>/{network.name or 'top'}"
        parts.append(_p(f"Not built: no build report in {_code(folder)} for any board. Build "
                        f"one with {_code(f'pchw build {model} --board NAME')} (boards: "
                        f"{', '.join(BOARDS)}), then write this report again."))
    for name, path, r in reports:
        if r is None:
            parts.append(_p(f"<b>{html.escape(name)}</b>: not built (no {_code(path)}). Build it "
                            f"with {_code(f'pchw build {model} --board {name}')}."))
            continue
        data.append({"board": name, "path": str(path), "report": r})
        note = ""
        if r.get("description_hash") != network.description_hash():
            note = (" <b>This build is of another description or other weights than the model "
                    "now</b>: rebuild it for current figures.")
        if r.get("errors"):
            note += " <b>The build failed:</b> " + html.escape("; ".join(r["errors"]))
        rows = [[html.escape(k), _code(v.get("cell", "")), f"{v['used']:,}",
                 f"{v['available']:,}",
                 f"{100 * v['used'] / v['available']:.0f}%" if v["available"] else "-"]
                for k, v in r.get("resources", {}).items()]
        f = r.get("fmax")
        timing = (f"Fmax {f['achieved_mhz']} MHz against the {f['target_mhz']} MHz clock: "
                  f"timing {'met' if f['met'] else '<b>failed</b>'}.") if f else \
            "nextpnr reported no Fmax."
        tput = []
        for label, key in (("board clock", "at_board_clock"), ("Fmax", "at_fmax")):
            for op, t in r.get("throughput", {}).get(key, {}).items():
                tput.append([op, label, f"{t['command_latency_cycles']:,}",
                             f"{t['samples_per_s_compute']:,.0f}",
                             f"{t['samples_per_s_uart']:,.0f}"])
        parts += [f"<h3>{html.escape(name)} ({html.escape(str(r.get('device', '')))})</h3>",
                  _p(f"From {_code(path)} ({html.escape(str(r.get('generator', '')))}), lanes "
                     f"{'/'.join(map(str, r.get('lanes', [])))}.{note}"),
                  _table(["resource", "cell", "used", "available", "%"], rows, numeric_from=2),
                  _p(timing),
                  _table(["command", "clock", "latency (cycles)", "samples/s, compute",
                          "samples/s over the UART"], tput, numeric_from=2)]
    return "\n".join(parts), data


def _learning_section(network, data, epochs, figures, progress):
    start = network.with_params(*network.init_params(INIT_SEED))
    warnings = []

    def warn(message):
        warnings.append(message)
        progress(f"warning: {message}")
    curves = learning_curves(start, data, epochs, progress=lambda label: progress(
        f"  training {label}, {epochs} epoch(s) of {len(data.x_train)} samples"), warn=warn)
    fig, ax = figures.plt.subplots(figsize=(6.4, 3.6))
    x = np.arange(1, epochs + 1)
    for label, history in curves.histories.items():
        ax.plot(x, 100 * np.asarray(history), label=label,
                linewidth=2.2 if "fixed" in label else 1.4)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{network.name or 'model'}: online learning from a fresh initialisation")
    ax.grid(alpha=0.3)
    ax.legend()
    img = figures.save(fig, "learning_curves.png")
    rows = [[html.escape(label), f"{100 * h[-1]:.2f}%", f"{100 * max(h):.2f}%"]
            for label, h in curves.histories.items()]
    parts = [
        _p(f"{html.escape(data.describe())}. {epochs} epoch(s) of online (batch-1) learning "
           f"from a fresh initialisation (seed {INIT_SEED}), every run in the same "
           "sample order; test accuracy after each epoch. The fixed-point run is the bit-exact "
           "golden model: PC learning on the chip gives the same weights bit for bit "
           f"({_code('pchw sim MODEL --learn')} checks them)."),
        img, _table(["training", "after the last epoch", "best epoch"], rows)]
    if warnings:
        parts.append(_p("<strong>Divergence guard</strong> (docs/pc-math.md): "
                        + "; ".join(html.escape(w) for w in warnings)))
    body = "\n".join(parts)
    return body, curves


def _agreement_section(network, data, figures):
    x = data.x_train[:AGREEMENT_BATCH]
    y = data.one_hot(data.y_train[:AGREEMENT_BATCH])
    start = network.with_params(*network.init_params(INIT_SEED))
    # At a gamma where standard PC's relaxation is stable (pchw.defaults), not the model's own:
    # past the bound the figure shows the divergence, not PC.
    gamma = default_settings(start, "standard").inference_rate
    rows = {mode: gradient_agreement(start.with_settings(mode=mode, inference_rate=gamma), x, y)
            for mode in ("fixed_prediction", "standard")}
    fig, ax = figures.plt.subplots(figsize=(6.4, 3.6))
    steps = np.array(AGREEMENT_STEPS)
    for mode, cosines in rows.items():
        ax.plot(np.maximum(steps, 0.5), cosines, marker="o", label=mode)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("relaxation steps T (T = 0 drawn at 0.5)")
    ax.set_ylabel("cosine(PC update, -gradient)")
    ax.set_title(f"gradient agreement, gamma = {gamma:g}")
    ax.grid(alpha=0.3)
    ax.legend()
    img = figures.save(fig, "gradient_agreement.png")
    table = _table(["mode"] + [f"T={t}" for t in AGREEMENT_STEPS],
                   [[mode] + [f"{c:.4f}" for c in cosines] for mode, cosines in rows.items()])
    body = "\n".join([
        _p("Cosine similarity between the PC update of all parameters and backprop's "
           "-dLoss/dtheta, against the number of relaxation steps T (the figure of Millidge, "
           f"Tschantz &amp; Buckley 2020): float64 PC at gamma = {gamma:g}, the inference rate "
           "at which standard PC's relaxation is stable for these initial weights "
           "(docs/pc-math.md, Defaults; the model's own may be past that bound), one "
           f"learning step on the first {len(x)} training samples, at the initialisation of "
           "the learning curves. With the fixed prediction assumption the errors converge to "
           "backprop's deltas; standard PC converges to its own equilibrium, close to the "
           "gradient, not onto it (docs/pc-math.md)."), img, table])
    return body, rows


def _saturation_section(network, data, curves, figures):
    trained = FixedModel(network)
    trained.infer(np.concatenate([data.x_train, data.x_test]))
    runs = {"training (fixed-point learning curves)": curves.fixed_model.saturations.counts,
            "inference of the model's weights (both splits)": trained.saturations.counts}
    quantities = sorted({q for counts in runs.values() for q, _ in counts})
    layers = range(network.L + 1)
    parts = [_p("Events counted by the fixed-point golden model (<code>pchw.fixedpoint."
                "Saturations</code>): a value clamped to its format (input, target, mu, eps, "
                "message, dx, x, dW, W, db, b) and, as <code>dW_zero</code> / "
                "<code>db_zero</code>, a nonzero parameter update that rounded to zero (a "
                "learning rate or format too small to learn).")]
    for run, counts in runs.items():
        if not counts:
            parts.append(_p(f"{html.escape(run)}: no saturation and no update lost."))
            continue
        rows = [[_code(q)] + [f"{counts.get((q, l), 0):,}" for l in layers]
                for q in quantities if any((q, l) in counts for l in layers)]
        parts += [f"<h3>{html.escape(run)}</h3>",
                  _table(["quantity"] + [f"layer {l}" for l in layers], rows)]
    training = runs["training (fixed-point learning curves)"]
    if training:
        fig, ax = figures.plt.subplots(figsize=(6.4, 3.2))
        labels = [f"{q}[{l}]" for q, l in sorted(training)]
        ax.bar(labels, [training[k] for k in sorted(training)])
        ax.set_yscale("log")
        ax.set_ylabel("events in training")
        ax.tick_params(axis="x", rotation=45)
        ax.set_title("saturations and lost updates per layer")
        parts.insert(1, figures.save(fig, "saturations.png"))
    return "\n".join(parts), {run: {f"{q}[{l}]": n for (q, l), n in sorted(c.items())}
                              for run, c in runs.items()}


# -- the page ------------------------------------------------------------------------------------

STYLE = """body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;
padding:.2em .6em}td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto}img{max-width:100%}h2{border-bottom:1px solid
#ddd;margin-top:1.6em}code{background:#f3f3f3;padding:0 .2em}"""


def _faults_section(network, data, epochs, figures):
    """Half of every hidden layer dead (seed 0), then on-chip PC learning with the damage in
    place, against the surviving size from scratch and backprop fine-tuning (docs/faults.md)."""
    from .faults import FaultSpec, recovery, recovery_figure
    if network.L < 2:
        return _p("The network has no hidden layer to damage."), None
    spec = FaultSpec(dead=FaultSpec.kill_hidden(network, FAULT_FRACTION))
    record = recovery(network, data, spec, epochs=min(FAULT_EPOCHS, epochs),
                      reference_epochs=epochs)
    img = figures.save(recovery_figure([record]), "faults_recovery.png")
    pct = "{:.2%}".format
    rows = [["intact", pct(record["accuracy_intact"])],
            ["damaged, before learning", pct(record["accuracy_damaged"])],
            [f"after {record['epochs']} epoch(s) of on-chip PC learning",
             pct(record["accuracy_recovered"])],
            [f"surviving size ({'-'.join(map(str, record['surviving_layers']))}) from scratch, "
             f"{record['reference_epochs']} epochs", pct(record["accuracy_reference_scratch"])],
            ["float backprop fine-tuning of the damaged network",
             pct(record["accuracy_reference_backprop"])]]
    text = _p(f"{FAULT_FRACTION:.0%} of every hidden layer's units dead (chosen from seed 0): "
              "their values, predictions and errors are zero at every step, and the network "
              "learns on around them with its own PC settings in the bit-exact fixed-point model "
              "(what the chip does; a <code>--faults</code> build injects the same damage on "
              "chip). Which units die matters: a ReLU that the trained network never activates "
              "cannot be revived by any gradient (docs/faults.md; <code>pchw faults</code> for "
              "other faults).")
    return "\n".join([text, img, _table(["", "test accuracy"], rows)]), record


def write_report(model, board=None, output=None, epochs=None, progress=print):
    """Write the report of the model folder ``model`` into ``output`` (default
    ``build/report/<model name>``); returns the path of ``index.html``.

    ``board`` limits the hardware section to one board (default: every board with a build
    report). ``epochs`` of the learning curves default to :func:`default_epochs`.

    Raises
    ------
    PchwError
        A missing or malformed model, an unknown board, a model without a dataset, or no
        matplotlib.
    """
    start_time = time.perf_counter()
    if board is not None:
        find_board(board)
    from .graph import hardware_network
    network = hardware_network(load(model), "report")
    if epochs is not None and epochs < 1:
        raise PchwError("--epochs must be at least 1")
    if not network.dataset:
        raise PchwError(f"{model}: the report trains and evaluates on the model's dataset; set "
                        "network.dataset in network.toml")
    data = load_dataset(network.dataset)
    if data.n_features != network.layers[0] or data.n_classes != network.layers[-1]:
        raise PchwError(f"dataset {network.dataset} has {data.n_features} inputs and "
                        f"{data.n_classes} classes, but the network is {network.layers[0]} -> "
                        f"{network.layers[-1]}")
    epochs = epochs or default_epochs(len(data.x_train))
    directory = Path(output or Path("build") / "report" / (network.name or "model"))
    directory.mkdir(parents=True, exist_ok=True)
    figures = _Figures(directory)
    title = f"pchw report: {network.name or model}"
    progress(f"report of {model} into {directory}")
    sections, numbers = [], {}
    body, numbers["network"] = _network_section(network, model)
    sections.append(_section("network", "The network and its formats", body))
    body, numbers["hardware"] = _hardware_section(network, model, board)
    sections.append(_section("hardware", "Resources and timing", body))
    progress("learning curves")
    body, curves = _learning_section(network, data, epochs, figures, progress)
    numbers["learning"] = {"epochs": epochs, "histories": curves.histories}
    sections.append(_section("learning", "Learning curves", body))
    progress("gradient agreement")
    body, numbers["agreement"] = _agreement_section(network, data, figures)
    numbers["agreement_steps"] = list(AGREEMENT_STEPS)
    sections.append(_section("agreement", "Agreement with backprop", body))
    body, numbers["saturation"] = _saturation_section(network, data, curves, figures)
    sections.append(_section("saturation", "Saturation counts per layer", body))
    progress("faults and recovery")
    body, numbers["faults"] = _faults_section(network, data, epochs, figures)
    sections.append(_section("faults", "Cutting the substrate: recovery by on-chip learning",
                             body))
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    page = "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _p(f"Model {_code(model)}, description hash "
           f"{_code(network.description_hash()[:16])}; written by pchw {__version__} on "
           f"{stamp} in {time.perf_counter() - start_time:.0f} s."),
        "<nav>" + " · ".join(f'<a href="#{k}">{k}</a>' for k in SECTIONS) + "</nav>",
        *sections, "</body></html>"])
    index = directory / "index.html"
    index.write_text(page)
    (directory / "report.json").write_text(json.dumps(
        {"model": str(model), "written": stamp, "generator": f"pchw {__version__}", **numbers},
        indent=2, default=str) + "\n")
    return index
