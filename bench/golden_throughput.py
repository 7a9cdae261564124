"""Golden-model throughput: samples/s of inference and learning, float64 and fixed point.

A benchmark, not a test: it measures this machine and writes bench/results/golden_throughput.*
Usage: python bench/golden_throughput.py [MODEL] (default models/digits)
"""

import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # one thread: comparable across machines
import numpy as np  # noqa: E402 (after the thread setting)

import pchw  # noqa: E402
from pchw.datasets import load_dataset
from pchw.golden import make_model

RESULTS = Path(__file__).parent / "results"


def rate(run, samples, min_seconds=1.0):
    """Samples per second of ``run()``, repeated until ``min_seconds`` have passed."""
    run()                                    # warm up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        run()
        count += samples
    return count / (time.perf_counter() - start)


def workload(model_path):
    """The model and 1000 test inputs and one-hot targets of its dataset (repeated if fewer)."""
    network = pchw.load(model_path)
    data = load_dataset(network.dataset or "digits")
    x = np.resize(data.x_test, (1000, data.n_features))
    return network, x, data.one_hot(np.resize(data.y_test, 1000))


def main():
    model_path = sys.argv[1] if len(sys.argv) > 1 else "models/digits"
    network, x, targets = workload(model_path)
    rows = []
    for fixed in (False, True):
        model = make_model(network, fixed)
        arithmetic = "fixed" if fixed else "float64"
        rows.append((arithmetic, "inference, batch of 1000", rate(lambda: model.infer(x), 1000)))
        rows.append((arithmetic, "inference, one sample at a time",
                     rate(lambda: [model.infer(x[i:i + 1]) for i in range(100)], 100)))
        rows.append((arithmetic, "learning, online (batch 1)",
                     rate(lambda: [model.learn(x[i:i + 1], targets[i:i + 1])
                                   for i in range(50)], 50)))
        rows.append((arithmetic, "learning, minibatch of 32",
                     rate(lambda: model.learn(x[:32], targets[:32]), 32)))
    pc = network.pc
    header = (f"Golden model throughput, {model_path} ({' -> '.join(map(str, network.layers))}, "
              f"mode {pc.mode}, T = {pc.inference_steps}), {date.today()}, "
              f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
              f"NumPy {np.__version__}, one process, one BLAS thread")
    lines = [header, "", "| arithmetic | workload | samples/s |", "|---|---|---|"]
    lines += [f"| {a} | {w} | {r:,.0f} |" for a, w, r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "golden_throughput.md").write_text(text)
    (RESULTS / "golden_throughput.json").write_text(json.dumps(
        {"model": model_path, "date": str(date.today()), "machine": platform.machine(),
         "results": [{"arithmetic": a, "workload": w, "samples_per_s": r} for a, w, r in rows]},
        indent=2) + "\n")


if __name__ == "__main__":
    main()
