"""Gate-level: the xor network synthesised for iCE40 (DSPs and block RAMs mapped by Yosys),
simulated in Icarus with Yosys's cell models, against the golden device model, byte for byte
and cycle for cycle."""

import json

import numpy as np

import pchw
from pchw import protocol, verilog
from pchw.datasets import load_dataset
from pchw.sim.gatelevel import ICE40_DEFINES, ice40_cell_models, ice40_netlist
from pchw.sim.network import TESTBENCH, dataset_commands

from .harness import build_dir_for, simulate, tools_or_skip


def test_xor_netlist_matches_golden(tmp_path):
    network = pchw.load("models/xor")
    name = verilog.module_name(network)
    with tools_or_skip():
        netlist = ice40_netlist(verilog.generate(network, name), name)
    assert "SB_RAM40_4K" in netlist or "SB_MAC16" in netlist      # hard blocks were inferred
    commands = dataset_commands(network, load_dataset("xor"), 4, learn=True)
    rng = np.random.default_rng(0)
    f0 = network.value_format(0)
    commands.insert(1, protocol.infer_command(network, f0.quantise(rng.uniform(-1, 1, 2))))
    summary = tmp_path / "summary.json"
    network.save(tmp_path / "model")         # exactly the network the netlist was made from
    simulate(netlist, name, TESTBENCH, "icarus", build_dir_for(f"{name}-ice40-gates", "icarus"),
             libraries=[ice40_cell_models()], defines=ICE40_DEFINES,
             test_data={"model": str(tmp_path / "model"), "commands": [c.hex() for c in commands],
                        "gaps": 0.0, "backpressure": 0.0, "summary": str(summary)})
    result = json.loads(summary.read_text())
    assert result["mismatches"] == 0 and result["replies"] == len(commands)
