"""Software peers: online (batch-1) learning samples/s of the same network on this machine.

The NumPy golden model's figures are bench/golden_throughput.py's (run first; one measurement of
each figure), measured here again only if its results are missing or for another model. Beside
them, with the same timing loop (``golden_throughput.rate``): float64 backprop SGD in NumPy
(``pchw.backprop``), and PyTorch on the CPU (autograd backprop SGD, float32, one thread) when
it is importable. The FPGA row is the core's compute rate from ``pchw.latency``'s cycles, at the
board clock and, if ``pchw build`` left a report in build/<board>/<model>/, at the Fmax nextpnr
reached there.

A benchmark, not a test. Writes bench/results/software_peers.{md,json}.
Usage: python bench/software_peers.py [MODEL] (default models/digits)
"""

import json
import os
import platform
import sys
from datetime import date
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import board_throughput  # noqa: E402
import golden_throughput  # noqa: E402

from pchw import backprop  # noqa: E402
from pchw import boards  # noqa: E402
from pchw.latency import throughput  # noqa: E402

RESULTS = Path(__file__).parent / "results"
ONLINE = "learning, online (batch 1)"
STEPS = 50                      # learning steps per timed call, as golden_throughput's


def golden_rows(model_path):
    """The golden model's online-learning rates from golden_throughput.json (measured by it)."""
    path = RESULTS / "golden_throughput.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    if Path(saved.get("model", "")).resolve() != Path(model_path).resolve():
        print(f"{path} is missing or for another model: running bench/golden_throughput.py",
              flush=True)
        sys.argv[1:] = [model_path]
        golden_throughput.main()
        saved = json.loads(path.read_text())
    return [{"peer": f"pchw golden model, NumPy {r['arithmetic']} PC",
             "samples_per_s": r["samples_per_s"], "source": "bench/golden_throughput.py"}
            for r in saved["results"] if r["workload"] == ONLINE]


def numpy_backprop(network, x, targets):
    weights = [w.copy() for w in network.weights]
    biases = [b.copy() for b in network.biases]
    eta = network.pc.learning_rate
    return golden_throughput.rate(lambda: [backprop.sgd_step(
        network, weights, biases, x[i:i + 1], targets[i:i + 1], eta) for i in range(STEPS)],
        STEPS)


def torch_backprop(network, x, targets):
    """Samples/s of PyTorch SGD on the same network, or a string saying why it was skipped."""
    try:
        import torch
    except ImportError as missing:
        return f"skipped: PyTorch is not importable ({missing}); pip install 'pchw[torch]'"
    if any(str(a) not in ("identity", "relu") for a in network.activations):
        return "skipped: this benchmark maps only identity and relu activations to PyTorch"
    torch.set_num_threads(1)
    layers = []
    for l in range(1, network.L + 1):
        if str(network.activations[l - 1]) == "relu":
            layers.append(torch.nn.ReLU())
        linear = torch.nn.Linear(network.layers[l - 1], network.layers[l])
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(network.weights[l - 1]))
            linear.bias.copy_(torch.tensor(network.biases[l - 1]))
        layers.append(linear)
    model = torch.nn.Sequential(*layers)
    optimiser = torch.optim.SGD(model.parameters(), lr=network.pc.learning_rate)
    xs = torch.tensor(x, dtype=torch.float32)
    ts = torch.tensor(targets, dtype=torch.float32)

    def run():
        for i in range(STEPS):
            optimiser.zero_grad()
            loss = 0.5 * ((model(xs[i:i + 1]) - ts[i:i + 1]) ** 2).sum()
            loss.backward()
            optimiser.step()
    return golden_throughput.rate(run, STEPS), torch.__version__


def fpga_rows(network):
    """Compute-only learning samples/s of the core on each board, with the lanes it is built
    with there: clock / (feedforward + learning cycles), at the board's oscillator and, when a
    current build report exists (bench/board_throughput.py), at its Fmax."""
    rows = []
    for name in board_throughput.BOARDS:
        target = boards.board(name)
        lanes = boards.lanes_for(network, target)
        built = network.on_board(name).with_lanes(lanes)
        learn = throughput(built, target.clock_hz)["LEARN"]
        cycles = learn["core_cycles"]
        where = f"FPGA {name}, lanes {'/'.join(map(str, lanes))}"
        rows.append({"peer": f"{where}, at the {target.clock_hz / 1e6:g} MHz board clock",
                     "samples_per_s": learn["samples_per_s_core"], "cycles": cycles,
                     "source": "pchw.latency cycles"})
        report = board_throughput.current_report(network, target, lanes)
        if report and report.get("fmax"):
            mhz = report["fmax"]["achieved_mhz"]
            rows.append({"peer": f"{where}, at Fmax {mhz} MHz (nextpnr)",
                         "samples_per_s": throughput(built, mhz * 1e6)["LEARN"][
                             "samples_per_s_core"], "cycles": cycles,
                         "source": "pchw.latency cycles, build report Fmax"})
    return rows


def main():
    model_path = sys.argv[1] if len(sys.argv) > 1 else "models/digits"
    network, x, targets = golden_throughput.workload(model_path)
    rows = golden_rows(model_path)
    rows.append({"peer": "NumPy float64 backprop SGD (pchw.backprop)",
                 "samples_per_s": numpy_backprop(network, x, targets), "source": "measured"})
    torch_result = torch_backprop(network, x, targets)
    if isinstance(torch_result, str):
        torch_note = torch_result
    else:
        rows.append({"peer": f"PyTorch {torch_result[1]} CPU float32 backprop SGD (autograd, "
                     "one thread)", "samples_per_s": torch_result[0], "source": "measured"})
        torch_note = None
    rows += fpga_rows(network)
    pc = network.pc
    lines = [f"Online (batch-1) learning, {model_path} ({' -> '.join(map(str, network.layers))},"
             f" {pc.mode}, T = {pc.inference_steps}), {date.today()}, {platform.machine()}, "
             f"{os.cpu_count()} cores, Python {platform.python_version()}, NumPy "
             f"{np.__version__}, one process, one BLAS thread. Software rows are measured on "
             "this machine; FPGA rows are the core's compute rate, clock / (feedforward + "
             "learning cycles from `pchw.latency`), without the host link.", "",
             "| peer | learning samples/s | source |", "|---|---:|---|"]
    lines += [f"| {r['peer']} | {r['samples_per_s']:,.0f} | {r['source']} |" for r in rows]
    if torch_note:
        lines += ["", f"PyTorch: {torch_note}."]
    if not any("Fmax" in r["peer"] for r in rows):
        lines += ["", f"No build report for {network.name} in build/<board>/: `pchw build "
                  f"{model_path} --board NAME` adds the FPGA at the Fmax it reaches."]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "software_peers.md").write_text(text)
    (RESULTS / "software_peers.json").write_text(json.dumps(
        {"model": model_path, "date": str(date.today()), "machine": platform.machine(),
         "torch": torch_note or "measured", "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
