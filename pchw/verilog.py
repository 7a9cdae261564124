"""Verilog emission: the network top as one Verilog module, and a JSON manifest beside it.

The manifest states what a user (or a later build stage) needs to use the module without
reading it: ports, clock and reset, the protocol version and network id the device answers
IDENTIFY with, the formats, and the command latencies of :mod:`pchw.latency`.
"""

import json
import re
from pathlib import Path

from amaranth.back import verilog

from . import __version__, latency, protocol
from .errors import PchwError
from .gateware.top import NetworkTop
from .protocol import Opcode

__all__ = ["module_name", "generate", "manifest", "write"]


def module_name(network):
    """``pchw_<name>`` (the name made a Verilog identifier), or ``pchw_top``."""
    name = re.sub(r"\W", "_", network.name or "top")
    return f"pchw_{name}"


def generate(network, name=None, faults=False, dataset=0):
    """Verilog text of the network top (:class:`~pchw.gateware.top.NetworkTop`); ``faults``:
    with fault injection (the FAULT command, ``docs/faults.md``); ``dataset``: with a dataset
    memory of that many samples (LOAD_DATA, TRAIN, EVAL)."""
    return verilog.convert(NetworkTop(network, faults=faults, dataset=dataset),
                           name=name or module_name(network), emit_src=False)


def manifest(network, name=None, faults=False, dataset=0):
    """The manifest dictionary (see the module docstring); ``faults``: of a fault-injection
    build (the FAULT command and its latencies, by target; LEARN's with no upsets, and per
    upset)."""
    L = network.L
    cmd = {op.name: latency.command_latency(network, op) for op in
           (Opcode.IDENTIFY, Opcode.INFER, Opcode.LEARN, Opcode.READ_PARAMS)}
    cmd["WRITE_PARAMS"] = {str(l): latency.command_latency(network, Opcode.WRITE_PARAMS, l)
                           for l in range(1, L + 1)}
    if faults:      # by target; a LEARN runs its upsets too: so many cycles more a flip
        cmd["FAULT"] = {str(t): latency.command_latency(network, Opcode.FAULT, t)
                        for t in range(L + 1)}
        cmd["LEARN"] = latency.command_latency(network, Opcode.LEARN, upsets=0)
        cmd["LEARN_per_upset"] = (latency.upset_cycles(network, 1)
                                  - latency.upset_cycles(network, 0))
    return {
        "generator": f"pchw {__version__}",
        "top": name or module_name(network),
        "ports": [
            {"name": "clk", "direction": "input", "width": 1, "role": "clock (rising edge)"},
            {"name": "rst", "direction": "input", "width": 1,
             "role": "synchronous reset, active high"},
            {"name": "i_stream__payload", "direction": "input", "width": 8,
             "role": "command bytes (docs/protocol.md)"},
            {"name": "i_stream__valid", "direction": "input", "width": 1},
            {"name": "i_stream__ready", "direction": "output", "width": 1},
            {"name": "o_stream__payload", "direction": "output", "width": 8,
             "role": "reply bytes"},
            {"name": "o_stream__valid", "direction": "output", "width": 1},
            {"name": "o_stream__ready", "direction": "input", "width": 1},
            {"name": "frame_abort", "direction": "input", "width": 1,
             "role": "pulse to drop a partly received command (a link timeout); tie to 0"},
            {"name": "overrun", "direction": "input", "width": 1,
             "role": "pulse instead of a byte while i_stream__ready: the link lost bytes here "
                     "(answered with ERR_OVERRUN); tie to 0"},
        ],
        "protocol_version": protocol.PROTOCOL_VERSION,
        "fault_injection": faults,
        "dataset_capacity": dataset,
        "network_id": protocol.network_id(network).hex(),
        "max_payload_bytes": protocol.max_payload(network, faults),
        "network": network.to_toml_dict(),
        "formats": {
            "values": {str(l): str(network.value_format(l)) for l in range(L + 1)},
            "weights": {str(l): str(network.weight_format(l)) for l in range(1, L + 1)},
        },
        "latency_cycles": {
            "definition": "from the last command byte accepted to the first reply byte valid, "
                          "output stream always ready (pchw/latency.py)",
            "commands": cmd,
            "core_infer": latency.core_infer_cycles(network),
            "core_learn": latency.core_learn_cycles(network),
        },
        "macs_per_sample": {"infer": latency.macs_per_sample(network, learn=False),
                            "learn": latency.macs_per_sample(network, learn=True)},
        "memory_bits": network.memory_bits(),
    }


def write(network, path, name=None, faults=False, dataset=0):
    """Write ``path`` (Verilog) and ``path`` with suffix ``.json`` (the manifest); returns both."""
    path = Path(path)
    if path.suffix != ".v":
        raise PchwError(f"{path}: the Verilog output must end in .v")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(generate(network, name, faults, dataset))
    manifest_path = path.with_suffix(".json")
    manifest_path.write_text(json.dumps(manifest(network, name, faults, dataset), indent=2)
                             + "\n")
    return path, manifest_path
