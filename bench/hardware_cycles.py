"""Cycles, MAC utilisation and simulation speed of the generated circuits, per committed model.

Cycle counts come from pchw/latency.py (which the tests hold the circuits to, cycle for cycle);
the simulation speed is measured by running `pchw sim`'s testbench on Icarus and Verilator.
A benchmark, not a test. Writes bench/results/hardware_cycles.{md,json}.
Usage: python bench/hardware_cycles.py [--samples N]
"""

import argparse
import json
import platform
from datetime import date
from pathlib import Path

import pchw
from pchw import boards
from pchw.latency import command_latency, core_infer_cycles, core_learn_cycles, mac_utilisation
from pchw.protocol import Opcode
from pchw.sim.network import run_dataset

RESULTS = Path(__file__).parent / "results"
MODELS = ["xor", "iris", "digits"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=16, help="LEARN commands per simulation")
    args = parser.parse_args()
    rows = []
    for name in MODELS:
        network = pchw.load(f"models/{name}")
        infer = core_infer_cycles(network)
        learn = infer + core_learn_cycles(network)          # a LEARN runs the feedforward first
        # The multipliers instantiated (two a lane; the count is the same on every board).
        multipliers = boards.estimate(network, boards.board("ulx3s-85f")).multipliers
        row = {"model": name, "layers": list(network.layers), "lanes": list(network.lanes),
               "mode": network.pc.mode, "T": network.pc.inference_steps,
               "core_cycles_infer": infer, "core_cycles_learn": learn,
               "latency_infer": command_latency(network, Opcode.INFER),
               "latency_learn": command_latency(network, Opcode.LEARN),
               "multipliers": multipliers,
               "mac_utilisation_infer": mac_utilisation(network, multipliers, False),
               "mac_utilisation_learn": mac_utilisation(network, multipliers, True)}
        for simulator in ("icarus", "verilator"):
            samples = max(2, args.samples // 8) if simulator == "icarus" else args.samples
            summary = run_dataset(network, simulator, samples, True)
            assert summary["mismatches"] == 0
            row[f"sim_cycles_per_s_{simulator}"] = summary["simulated_cycles"] / summary["seconds"]
        rows.append(row)
        print(row, flush=True)
    lines = [f"Generated circuits, {date.today()}, {platform.machine()}; cycles from "
             "pchw/latency.py (held exact by the tests); utilisation = necessary MACs per "
             "sample (pchw.schedule.Schedule.necessary) / (multipliers instantiated x core "
             "cycles); simulation speed of the cocotb testbench.", "",
             "| model | lanes | core cycles / inference | core cycles / learning sample | "
             "MAC utilisation infer / learn | latency INFER / LEARN (cycles) | "
             "sim cycles/s Icarus | sim cycles/s Verilator |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} ({'-'.join(map(str, r['layers']))}, {r['mode']}, T={r['T']}) | "
            f"{r['lanes']} | {r['core_cycles_infer']} | {r['core_cycles_learn']} | "
            f"{r['mac_utilisation_infer']:.0%} / {r['mac_utilisation_learn']:.0%} | "
            f"{r['latency_infer']} / {r['latency_learn']} | "
            f"{r['sim_cycles_per_s_icarus']:,.0f} | {r['sim_cycles_per_s_verilator']:,.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hardware_cycles.md").write_text(text)
    (RESULTS / "hardware_cycles.json").write_text(json.dumps(
        {"date": str(date.today()), "machine": platform.machine(), "models": rows}, indent=2)
        + "\n")


if __name__ == "__main__":
    main()
