"""Depth scaling: cycles per relaxation step and per learning sample against network depth.

Networks of equal width (every layer ``WIDTH`` neurons, ``LANES`` MAC lanes per weight layer)
with 1..6 hidden layers. The layer-parallel figures are those of the generated circuits, taken
from ``pchw.latency`` (which the tests hold the circuits to, cycle for cycle), so they follow the
gateware. The sequential figures are the same passes on the same lanes run one layer at a time,
as a backprop-style schedule would: hidden layer after hidden layer, each as the circuit of a
one-hidden-layer network relaxes (:func:`sequential_step_cycles`).

A benchmark, not a test (it measures nothing but the formulas, in milliseconds). Writes
bench/results/depth_scaling.{md,json}. Usage: python bench/depth_scaling.py
"""

import json
import platform
from datetime import date
from pathlib import Path

from pchw import Network, PCSettings
from pchw.latency import core_infer_cycles, core_learn_cycles

RESULTS = Path(__file__).parent / "results"
WIDTH, LANES = 32, 4
DEPTHS = range(1, 7)                   # hidden layers; L = depth + 1 weight layers
STANDARD_T = 8

def network(depth, mode, T):
    """``depth`` hidden layers of :data:`WIDTH` between a :data:`WIDTH` input and output."""
    L = depth + 1
    return Network([WIDTH] * (L + 1), ["identity"] + ["relu"] * depth, lanes=[LANES] * L,
                   pc=PCSettings(mode=mode, inference_steps=T))


def parallel_step_cycles(net):
    """Cycles of one relaxation step of the circuits (every layer relaxes at once):
    ``core_learn_cycles`` at ``T + 1`` steps minus at ``T`` (it is linear in ``T``)."""
    return (core_learn_cycles(net.with_settings(inference_steps=2))
            - core_learn_cycles(net.with_settings(inference_steps=1)))


def sequential_step_cycles(net):
    """Cycles of one relaxation step when the hidden layers take turns on the same lanes.

    Hidden layer ``l`` relaxes alone, with the errors around it computed afresh, as the circuit
    of the one-hidden-layer network ``n_{l-1} - n_l - n_{l+1}`` (lanes ``P_l``, ``P_{l+1}``)
    does in one step::

        sequential step = sum_{l=1..L-1} parallel_step(n_{l-1}, n_l, n_{l+1})

    so both columns come from the same ``pchw.latency`` formulas.
    """
    return sum(parallel_step_cycles(Network(
        list(net.layers[l - 1:l + 2]), ["identity", net.activations[l]],
        lanes=list(net.lanes[l - 1:l + 1]), pc=net.pc)) for l in range(1, net.L))


def row(depth, mode, T):
    """One table row: per step and per learning sample (feedforward included), both schedules.

    The sequential sample is the circuit's sample with each of its ``T`` steps replaced by the
    sequential step: ``infer + learn(T) - T * parallel_step + T * sequential_step`` (feedforward,
    held-error phase and weight update as built).
    """
    net = network(depth, mode, T)
    par_step, seq_step = parallel_step_cycles(net), sequential_step_cycles(net)
    par_sample = core_infer_cycles(net) + core_learn_cycles(net)
    seq_sample = par_sample + T * (seq_step - par_step)
    return {"depth": depth, "layers": list(net.layers), "lanes": list(net.lanes), "mode": mode,
            "T": T, "parallel_step": par_step, "sequential_step": seq_step,
            "parallel_sample": par_sample, "sequential_sample": seq_sample,
            "speedup_step": seq_step / par_step, "speedup_sample": seq_sample / par_sample}


def rows():
    """Standard PC at T = 8, and fixed_prediction at T = L - 1 (backprop's gradient at gamma 1)."""
    out = [row(d, "standard", STANDARD_T) for d in DEPTHS]
    out += [row(d, "fixed_prediction", d) for d in DEPTHS]
    return out


def markdown(table):
    lines = [f"Depth scaling, {date.today()}: networks of width {WIDTH} (every layer), "
             f"{LANES} MAC lanes per weight layer, 1..6 hidden layers. Layer-parallel: the "
             "generated circuits, from `pchw.latency` (cycle-exact with the gateware); one "
             "relaxation step = `core_learn_cycles(T=2) - core_learn_cycles(T=1)`. Sequential: "
             "the same passes on the same lanes, one hidden layer at a time, each relaxing (with "
             "the errors around it computed afresh) as the circuit of the one-hidden-layer "
             "network around it does, also from `pchw.latency`:", "",
             "    sequential step   = sum_{l=1..L-1} parallel step of n_{l-1} - n_l - n_{l+1}",
             "    sequential sample = circuit sample + T * (sequential step - parallel step)",
"", "Per sample: the feedforward, then the learning (`core_infer_cycles + "
             "core_learn_cycles`), as one LEARN command keeps the core busy.", "",
             "| mode | T | hidden layers | step, layer-parallel | step, sequential | speed-up "
             "| sample, layer-parallel | sample, sequential | speed-up |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table:
        lines.append(f"| {r['mode']} | {r['T']} | {r['depth']} | {r['parallel_step']} | "
                     f"{r['sequential_step']} | {r['speedup_step']:.2f}x | "
                     f"{r['parallel_sample']} | {r['sequential_sample']} | "
                     f"{r['speedup_sample']:.2f}x |")
    lines += ["", "In `standard` mode every layer relaxes in every step, so the layer-parallel "
              "step costs one layer's pass however deep the network, and the sequential one "
              "grows with depth. In `fixed_prediction` with T = L - 1 only one layer's error "
              "changes per step (step t reaches layer L - t): a backprop sweep that skips the "
              "layers whose error is still zero needs one pass per layer in all, as many "
              "cycles as the layer-parallel schedule's T steps, so there parallel relaxation "
              "buys nothing over backprop itself; the sequential column counts every layer "
              "in every step."]
    return "\n".join(lines) + "\n"


def main():
    table = rows()
    text = markdown(table)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "depth_scaling.md").write_text(text)
    (RESULTS / "depth_scaling.json").write_text(json.dumps(
        {"date": str(date.today()), "machine": platform.machine(), "width": WIDTH,
         "lanes_per_layer": LANES, "rows": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
