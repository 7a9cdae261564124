"""PC learning on chip: the Verilog, simulated on Verilator, learns each dataset.

Per dataset (bench/learning_quality.py's networks and initialisation): a run of LEARN commands
over the training split in index order (``pchw.sim.network.dataset_commands``), then a
READ_PARAMS of every layer. The simulation fails unless every reply and every weight read back
equals the golden model's, bit for bit; the test accuracy is then the golden model's after the
same commands, i.e. that of the weights on the chip.

A benchmark, not a test, and long (Verilator runs every cycle): ``make bench FULL=1``.
Writes bench/results/on_chip_learning.{md,json}.
Usage: python bench/on_chip_learning.py [--only NAME ...] [--samples N]
"""

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from learning_quality import SPECS as ALL_SPECS  # noqa: E402

#: The chains (graphs have no circuit yet).
SPECS = {name: spec for name, spec in ALL_SPECS.items() if "graph" not in spec}
from train_models import initial_network, pct  # noqa: E402

from pchw.datasets import load_dataset  # noqa: E402
from pchw.golden import FixedModel  # noqa: E402
from pchw.sim.network import run_dataset  # noqa: E402
from pchw.train import accuracy  # noqa: E402

RESULTS = Path(__file__).parent / "results"
XOR_SAMPLES = 400          # XOR's four points a hundred times; the others one epoch


def on_chip_row(name, samples):
    network = initial_network(name, SPECS[name])
    data = load_dataset(name)
    start = time.perf_counter()
    summary = run_dataset(network, "verilator", samples, True)
    seconds = time.perf_counter() - start
    assert summary["mismatches"] == 0, summary["first_mismatches"]
    golden = FixedModel(network)
    targets = data.one_hot(data.y_train)
    for i in np.arange(samples) % len(data.x_train):
        golden.learn(data.x_train[i:i + 1], targets[i:i + 1])
    before = accuracy(FixedModel(network).predict, data.x_test, data.y_test)
    after = accuracy(golden.predict, data.x_test, data.y_test)
    row = {"dataset": name, "layers": list(network.layers), "lanes": list(network.lanes),
           "samples": samples, "epochs": samples / len(data.x_train),
           "commands": summary["commands"], "mismatches": summary["mismatches"],
           "accuracy_before": before, "accuracy_on_chip": after,
           "simulated_cycles": summary["simulated_cycles"],
           "testbench_seconds": summary["seconds"], "seconds": seconds}
    print(f"{name}: {samples} LEARN commands on chip, {before:.2%} -> {after:.2%}, "
          f"{summary['mismatches']} mismatches ({seconds:.0f} s)", flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(SPECS), help="datasets")
    parser.add_argument("--samples", type=int, default=0, metavar="N",
                        help=f"LEARN commands per dataset (default one epoch; xor {XOR_SAMPLES})")
    args = parser.parse_args()
    rows = []
    for name in args.only or list(SPECS):
        samples = args.samples or (XOR_SAMPLES if name == "xor" else
                                   len(load_dataset(name).x_train))
        rows.append(on_chip_row(name, samples))
    lines = [f"PC learning on chip, {date.today()}, {platform.machine()}, {os.cpu_count()} "
             "cores: the generated Verilog on Verilator, from the initialisation of "
             "bench/learning_quality.py, LEARN commands over the training split in index order. "
             "Every reply and every weight read back at the end equals the golden model's bit "
             "for bit (mismatches column), so the accuracy is that of the weights on the chip.",
             "", "| dataset | network | lanes | LEARN commands | epochs | mismatches | test "
             "accuracy before | test accuracy after | simulated cycles | wall time (s) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {'-'.join(map(str, r['layers']))} | {r['lanes']} | "
                     f"{r['samples']} | {r['epochs']:.2f} | {r['mismatches']} | "
                     f"{pct(r['accuracy_before'])} | {pct(r['accuracy_on_chip'])} | "
                     f"{r['simulated_cycles']:,} | {r['seconds']:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "on_chip_learning.md").write_text(text)
    (RESULTS / "on_chip_learning.json").write_text(json.dumps(
        {"date": str(date.today()), "machine": platform.machine(), "rows": rows}, indent=2)
        + "\n")


if __name__ == "__main__":
    main()
