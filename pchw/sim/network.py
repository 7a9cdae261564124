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
from ..errors import PchwError
from . import runner

__all__ = ["dataset_commands", "random_commands", "run", "run_dataset"]

TESTBENCH = "pchw.sim.network_tb"


def _commands(network, xs, ys, learn):
    """IDENTIFY, then an INFER per input (or, to learn, one INFER of the first input and a LEARN
    per pair), then a READ_PARAMS of every layer; ``xs``, ``ys`` as floats."""
    f0, fL = network.value_format(0), network.value_format(network.L)
    commands = [protocol.identify_command()]
    if learn and len(xs):
        commands.append(protocol.infer_command(network, f0.quantise(xs[0])))
    for x, y in zip(xs, ys):
        if learn:
            commands.append(protocol.learn_command(network, f0.quantise(x), fL.quantise(y)))
        else:
            commands.append(protocol.infer_command(network, f0.quantise(x)))
    commands += [protocol.read_params_command(l) for l in range(1, network.L + 1)]
    return commands


def dataset_commands(network, data, samples, learn):
    """IDENTIFY, then ``samples`` INFER commands (or, to learn, one INFER and ``samples`` LEARN
    commands) from the training split (repeated as needed), then a READ_PARAMS of every layer."""
    order = np.arange(samples) % len(data.x_train)
    return _commands(network, data.x_train[order], data.one_hot(data.y_train)[order], learn)


def random_commands(network, samples, learn, seed=0):
    """As :func:`dataset_commands`, on inputs and targets drawn uniformly from ``[-1, 1]``
    (seeded by ``seed``) in the model's shape: a model without a dataset can be simulated."""
    rng = np.random.default_rng(seed)
    xs = rng.uniform(-1, 1, (samples, network.layers[0]))
    ys = rng.uniform(-1, 1, (samples, network.layers[-1]))
    return _commands(network, xs, ys, learn)


def run(network, simulator, commands, *, gaps=0.0, backpressure=0.0, waves=False,
        build_dir=None, config=None, log_file=None, progress=None, faults=False):
    """Simulate ``commands`` (frames) on ``network``'s Verilog; returns the testbench summary
    (with ``run_dir``, where the simulator ran and left its waveforms). ``faults``: a
    fault-injection build (FAULT sets dead units; ``docs/faults.md``), checked against the
    device model with fault injection.

    ``log_file`` takes the tools' output instead of the terminal (see
    :func:`pchw.sim.runner.simulate`); ``progress(done, total)`` is called from another thread,
    at most about twice a second, with the number of commands answered so far.

    Raises
    ------
    pchw.sim.runner.SimulationFailed
        On any mismatch with the device model (the summary is attached as ``.summary``).
    pchw.sim.runner.ToolMissing
        If the simulator is not installed.
    """
    name = verilog.module_name(network)
    text = verilog.generate(network, name, faults=faults)
    build_dir = build_dir or runner.build_dir_for(
        config or f"{name}-{protocol.network_id(network).hex()}{'-faults' if faults else ''}",
        simulator)
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "summary.json"
        network.save(Path(tmp) / "model")       # exactly the network the Verilog was made from
        data = {"model": str(Path(tmp) / "model"), "commands": [c.hex() for c in commands],
                "gaps": gaps, "backpressure": backpressure, "summary": str(summary_path),
                "faults": faults}
        watcher = None
        if progress is not None:
            data["progress"] = str(Path(tmp) / "progress")
            watcher = _Watcher(Path(data["progress"]), len(commands), progress)
        try:
            results = runner.simulate(text, name, TESTBENCH, simulator, build_dir,
                                      test_data=data, waves=waves, log_file=log_file)
        except runner.SimulationFailed as failure:
            failure.summary = _read(summary_path)
            raise
        finally:
            if watcher is not None:
                watcher.stop()
        summary = _read(summary_path)
        summary["run_dir"] = str(results.results_xml.parent)
        return summary


class _Watcher:
    """Polls the testbench's progress file in a thread, calling ``progress(done, total)`` when
    the number changes."""

    def __init__(self, path, total, progress):
        import threading
        self._path, self._total, self._progress = path, total, progress
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        last = None
        while not self._stopped.wait(0.5):
            try:
                done = int(self._path.read_text())
            except (OSError, ValueError):
                continue
            if done != last:
                self._progress(done, self._total)
                last = done

    def stop(self):
        self._stopped.set()
        self._thread.join()


def _read(path):
    return json.loads(path.read_text()) if path.exists() else None


def run_dataset(network, simulator, samples, learn, **kwargs):
    """:func:`run` on ``samples`` samples of the model's dataset (``network.dataset``)."""
    if not network.dataset:
        raise PchwError(f"{network.source}: names no dataset (network.dataset)")
    data = load_dataset(network.dataset)
    return run(network, simulator, dataset_commands(network, data, samples, learn), **kwargs)
