"""Learning end to end through the simulated board top, UART pins included (issue 13).

Per board, the digits network at its lanes and clock, with a dataset memory of the whole
training split, on Verilator (``pchw.sim.link_tb``: commands one at a time, bit-banged at the
board's baud rate, every reply compared with the golden device model's):

- **TRAIN**: LOAD_DATA of the training split (once), then one epoch of TRAIN; then READ_PARAMS
  of every layer, bit-exact with the golden model's TRAIN;
- **per-command LEARN**: LEARN commands one at a time over the link, at the fast baud rate and
  at 115200 baud (a second build).

Three learning rates side by side, in samples/s at the board's clock: the core's compute (one
sample = a LEARN's core cycles with its feedforward), per-command LEARN over the link (at each
baud rate), and TRAIN (the epoch's samples over the simulated time from the TRAIN command's
first start bit to its reply's last stop bit); ``epoch_end_to_end_over_compute`` is that time
over the core's compute time for the epoch (target <= 1.25). The cycles are also checked
against ``pchw.latency`` (the TRAIN command's latency plus its frames on the line).

Long (two Verilator builds of the digits board top per board, ~15 M simulated cycles):
``make bench FULL=1``. Writes bench/results/end_to_end.{json,md}.
Usage: python bench/end_to_end.py [--boards NAME ...] [--learn N] [--samples N]
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

import pchw
from pchw import protocol
from pchw.boards import board, check_fit, lanes_for, max_dataset
from pchw.datasets import load_dataset
from pchw.errors import PchwError
from pchw.gateware.board import BoardTop
from pchw.latency import DEFAULT_BAUD, MAX_BAUD, command_latency, core_infer_cycles, \
    core_learn_cycles
from pchw.sim import runner
from pchw.verilog import module_name

RESULTS = Path(__file__).parent / "results"
MODEL = Path(__file__).parent.parent / "models" / "digits"
#: The clock each board runs at here: the iCEBreaker's 12 MHz oscillator makes 3 Mbaud (4
#: cycles per bit); the ULX3S's 25 MHz does not (4.2% off), so its PLL's 60 MHz (20 cycles per
#: bit; `pchw build --clock 60`, below the digits build's measured Fmax of 72 MHz; its PLL makes
#: 46.875 MHz of `--clock 48`, 2.3% off 3 Mbaud).
BOARDS = {"icebreaker": 12_000_000, "ulx3s-85f": 60_000_000}


def phases_for(network, data, capacity, samples, learn):
    """The command phases of the fast-baud run and their golden replies."""
    device = protocol.DeviceModel(network, dataset=capacity)
    f0, fL = network.value_format(0), network.value_format(network.L)
    x, labels = f0.quantise(data.x_train[:samples]), data.y_train[:samples]
    chunk = protocol.load_chunk(network)
    tags = iter(np.arange(10_000) % 255 + 1)

    def phase(name, commands):
        return {"name": name, "commands": [c.hex() for c in commands],
                "replies": [b"".join(device.feed(c)).hex() for c in commands]}

    targets = fL.quantise(data.one_hot(data.y_train))
    return [
        phase("identify", [protocol.identify_command(tag=next(tags))]),
        phase("load", [protocol.load_data_command(network, at, x[at:at + chunk],
                                                  labels[at:at + chunk], tag=next(tags))
                       for at in range(0, samples, chunk)]),
        phase("train", [protocol.train_command(1, seed=0, count=samples, tag=next(tags))]),
        phase("read", [protocol.read_params_command(l, tag=next(tags))
                       for l in range(1, network.L + 1)]),
        phase("learn", [protocol.learn_command(network, x[i], targets[i], tag=next(tags))
                        for i in range(learn)]),
    ]


def simulate(network, clock_hz, baud, capacity, phases, label):
    top = BoardTop(network, clock_hz=clock_hz, baud=baud, dataset=capacity)
    name = f"{module_name(network)}_e2e"
    text = runner.verilog_of(top, name)
    build = runner.build_dir_for(f"{name}-{label}-d{top.divisor}-c{capacity}", "verilator")
    with tempfile.TemporaryDirectory() as tmp:
        results_file = Path(tmp) / "results.json"
        start = time.perf_counter()
        runner.simulate(text, name, "pchw.sim.link_tb", "verilator", build,
                        test_data={"divisor": top.divisor, "period_ns": 10,   # cycles count
                                   "results_file": str(results_file), "phases": phases},
                        log_file=Path(tmp) / "sim.log")
        seconds = time.perf_counter() - start
        return {r["name"]: r for r in json.loads(results_file.read_text())}, top, seconds


def line_cycles(frame_bytes, divisor):
    return frame_bytes * 10 * divisor


def board_row(name, samples, learn):
    target = board(name)
    clock = BOARDS[name]
    base = pchw.load(MODEL)
    network = base.with_lanes(lanes_for(base, target))
    data = load_dataset("digits")
    samples = samples or len(data.x_train)
    try:
        check_fit(network, target, samples)
        fits, why = True, ""
    except PchwError as error:
        fits, why = False, str(error).split(": ", 1)[1]
    core = core_infer_cycles(network) + core_learn_cycles(network)
    row = {"board": name, "model": "digits", "layers": list(network.layers),
           "lanes": list(network.lanes), "clock_hz": clock, "samples": samples,
           "fits_with_dataset_memory": fits, "fit_message": why,
           "max_dataset_samples": max_dataset(network, target),
           "core_cycles_per_sample": core,
           "samples_per_s_core_compute": round(clock / core, 1)}
    fast = MAX_BAUD
    phases = phases_for(network, data, samples, samples, learn)
    got, top, seconds = simulate(network, clock, fast, samples, phases, "fast")
    divisor = top.divisor
    train = got["train"]["cycles"]
    # The formula: TRAIN's frame on the line up to its last stop bit's middle, the UART path
    # and the command's latency, its reply up to the middle of its last stop bit.
    command = protocol.train_command(1, count=samples)
    formula = (line_cycles(len(command), divisor) - divisor // 2 + top.reply_overhead
               + command_latency(network, protocol.Opcode.TRAIN, samples=samples, epochs=1)
               + line_cycles(protocol.HEADER_SIZE + protocol.CRC_SIZE, divisor) - divisor // 2)
    row.update({
        "fast_baud": fast, "fast_divisor": divisor,
        "load_cycles": got["load"]["cycles"], "load_commands": got["load"]["commands"],
        "train_cycles": train, "train_cycles_formula": formula,
        "weights_bit_exact": got["read"]["mismatch_count"] == 0,
        "samples_per_s_train": round(samples / (train / clock), 1),
        "epoch_end_to_end_over_compute": round(train / (samples * core), 4),
        "epoch_with_load_over_compute": round((train + got["load"]["cycles"])
                                              / (samples * core), 4),
        f"samples_per_s_learn_command_{fast}": round(learn / (got["learn"]["cycles"] / clock),
                                                     1),
        "simulation_seconds_fast": round(seconds),
    })
    # A fresh device: the LEARN replies from the initial weights.
    fresh = protocol.DeviceModel(network, dataset=samples)
    slow = [{"name": p["name"], "commands": p["commands"],
             "replies": [b"".join(fresh.feed(bytes.fromhex(c))).hex() for c in p["commands"]]}
            for p in (phases[0], phases[-1])]
    got_slow, top_slow, seconds = simulate(network, clock, DEFAULT_BAUD, samples, slow, "slow")
    row.update({
        f"samples_per_s_learn_command_{DEFAULT_BAUD}": round(
            learn / (got_slow["learn"]["cycles"] / clock), 1),
        "slow_divisor": top_slow.divisor, "simulation_seconds_slow": round(seconds),
    })
    print(json.dumps(row, indent=1), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boards", nargs="*", choices=sorted(BOARDS), help="boards")
    parser.add_argument("--learn", type=int, default=16, metavar="N",
                        help="per-command LEARN commands timed at each baud rate (default 16)")
    parser.add_argument("--samples", type=int, default=0, metavar="N",
                        help="training samples (default: digits' whole training split)")
    parser.add_argument("--rewrite", action="store_true",
                        help="only rewrite end_to_end.md from end_to_end.json")
    args = parser.parse_args()
    rows = [] if args.rewrite else [board_row(name, args.samples, args.learn)
                                    for name in args.boards or BOARDS]
    # --boards: the other boards' records are kept from the last run
    path = RESULTS / "end_to_end.json"
    kept = json.loads(path.read_text())["boards"] if path.is_file() else {}
    done = {r["board"] for r in rows}
    rows += [r for name, r in kept.items() if name not in done]
    rows.sort(key=lambda r: list(BOARDS).index(r["board"]))
    when = str(date.today()) if not args.rewrite else \
        json.loads(path.read_text())["date"]
    lines = [f"Learning end to end, {when}, {platform.machine()}, {os.cpu_count()} "
             "cores: digits on the simulated board top (Verilator), UART pins included, "
             "commands one at a time; every reply and the weights read back after TRAIN equal "
             "the golden model's bit for bit. Samples/s of learning at the board's clock.", "",
             "| board | clock | lanes | core compute | LEARN commands at 115200 | LEARN commands "
             "at the fast baud | TRAIN | epoch end to end / compute | with LOAD_DATA | fits "
             "with a dataset memory |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        fits = "yes" if r["fits_with_dataset_memory"] else \
            f"no: at most {r['max_dataset_samples']} samples"
        lines.append(
            f"| {r['board']} | {r['clock_hz'] / 1e6:g} MHz | {r['lanes']} | "
            f"{r['samples_per_s_core_compute']:,.0f} | "
            f"{r[f'samples_per_s_learn_command_{DEFAULT_BAUD}']:,.1f} | "
            f"{r['samples_per_s_learn_command_' + str(r['fast_baud'])]:,.0f} "
            f"({r['fast_baud']} baud) | "
            f"{r['samples_per_s_train']:,.0f} | {r['epoch_end_to_end_over_compute']:.3f} | "
            f"{r['epoch_with_load_over_compute']:.3f} | {fits} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "end_to_end.md").write_text(text)
    if not args.rewrite:
        (RESULTS / "end_to_end.json").write_text(json.dumps(
            {"date": str(date.today()), "machine": platform.machine(),
             "boards": {r["board"]: r for r in rows}}, indent=2) + "\n")
    if not all(r["weights_bit_exact"] for r in rows):
        sys.exit("weights after TRAIN differ from the golden model's")


if __name__ == "__main__":
    main()
