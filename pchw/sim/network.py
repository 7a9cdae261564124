"""Simulate a network's Verilog against the golden device model (``pchw sim``).

Builds the command stream (IDENTIFY, then INFER or LEARN per dataset sample, then READ_PARAMS
of every layer so learning is checked weight for weight), runs
:mod:`pchw.sim.network_tb` on Icarus Verilog or Verilator, and returns its summary.
"""

import json
import tempfile
from pathlib import Path

import numpy as np

from .. import protocol, verilog
from ..datasets import load_dataset
from . import runner

__all__ = ["dataset_commands", "run"]

TESTBENCH = "pchw.sim.network_tb"


def dataset_commands(network, data, samples, learn):
    """IDENTIFY, then ``samples`` INFER commands (or, to learn, one INFER and ``samples`` LEARN
    commands) from the training split, then a READ_PARAMS of every layer."""
    f0, fL = network.value_format(0), network.value_format(network.L)
    order = np.arange(samples) % len(data.x_train)
    targets = data.one_hot(data.y_train)
    commands = [protocol.identify_command()]
    if learn and samples:
        commands.append(protocol.infer_command(network, f0.quantise(data.x_train[0])))
    for i in order:
        x = f0.quantise(data.x_train[i])
        if learn:
            commands.append(protocol.learn_command(network, x, fL.quantise(targets[i])))
        else:
            commands.append(protocol.infer_command(network, x))
    commands += [protocol.read_params_command(l) for l in range(1, network.L + 1)]
    return commands


def run(network, simulator, commands, *, gaps=0.0, backpressure=0.0, waves=False,
        build_dir=None, config=None):
    """Simulate ``commands`` (frames) on ``network``'s Verilog; returns the testbench summary
    (with ``run_dir``, where the simulator ran and left its waveforms).

    Raises
    ------
    pchw.sim.runner.SimulationFailed
        On any mismatch with the device model (the summary is attached as ``.summary``).
    pchw.sim.runner.ToolMissing
        If the simulator is not installed.
    """
    name = verilog.module_name(network)
    text = verilog.generate(network, name)
    build_dir = build_dir or runner.build_dir_for(
        config or f"{name}-{protocol.network_id(network).hex()}", simulator)
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "summary.json"
        network.save(Path(tmp) / "model")       # exactly the network the Verilog was made from
        data = {"model": str(Path(tmp) / "model"), "commands": [c.hex() for c in commands],
                "gaps": gaps, "backpressure": backpressure, "summary": str(summary_path)}
        try:
            results = runner.simulate(text, name, TESTBENCH, simulator, build_dir,
                                      test_data=data, waves=waves)
        except runner.SimulationFailed as failure:
            failure.summary = _read(summary_path)
            raise
        summary = _read(summary_path)
        summary["run_dir"] = str(results.results_xml.parent)
        return summary


def _read(path):
    return json.loads(path.read_text()) if path.exists() else None


def run_dataset(network, simulator, samples, learn, **kwargs):
    """:func:`run` on ``samples`` samples of the model's dataset."""
    data = load_dataset(network.dataset or "digits")
    return run(network, simulator, dataset_commands(network, data, samples, learn), **kwargs)
