"""pchw.latency: the throughput every report quotes (the cycle counts themselves are held to the
circuit by tests/gateware/test_core.py and test_top.py)."""

import pytest

import pchw
from pchw import sweep
from pchw.latency import (HostLink, command_latency, core_infer_cycles, core_learn_cycles,
                          throughput)
from pchw.protocol import CRC_SIZE, HEADER_SIZE, Opcode


@pytest.fixture(scope="module")
def xor():
    return pchw.load("models/xor")


def test_throughput_without_the_host_link(xor):
    rates = throughput(xor, 12e6)
    assert set(rates) == {"INFER", "LEARN"}
    infer, learn = command_latency(xor, Opcode.INFER), command_latency(xor, Opcode.LEARN)
    core_infer = core_infer_cycles(xor)
    core_learn = core_infer + core_learn_cycles(xor)      # a LEARN runs the feedforward first
    assert rates["INFER"] == {"core_cycles": core_infer,
                              "samples_per_s_core": round(12e6 / core_infer, 1),
                              "command_latency_cycles": infer,
                              "samples_per_s_compute": round(12e6 / infer, 1)}
    assert rates["LEARN"] == {"core_cycles": core_learn,
                              "samples_per_s_core": round(12e6 / core_learn, 1),
                              "command_latency_cycles": learn,
                              "samples_per_s_compute": round(12e6 / learn, 1)}


def test_throughput_with_the_host_link(xor):
    """xor: 2 inputs and 2 outputs of Q12.8 (2 bytes each); frames are a header, the payload
    and a crc, 10 bits a byte on the line; the link adds 5 cycles of latency."""
    bare, linked = throughput(xor, 12e6), throughput(xor, 12e6, HostLink(115200, 5))
    frame = HEADER_SIZE + CRC_SIZE
    for op, command_bytes in (("INFER", frame + 4), ("LEARN", frame + 8)):
        cycles = bare[op]["command_latency_cycles"]
        line_s = 10 * (command_bytes + frame + 4) / 115200
        assert linked[op] == {**bare[op], "link_latency_cycles": cycles + 5,
                              "command_bytes": command_bytes, "reply_bytes": frame + 4,
                              "samples_per_s_uart": round(1 / (line_s + (cycles + 5) / 12e6), 1)}
        # The compute rate is the link's ceiling, and the link is the bottleneck here.
        assert linked[op]["samples_per_s_uart"] < linked[op]["samples_per_s_compute"] / 10


def test_the_sweep_quotes_it(xor):
    rates = throughput(xor, 25e6)
    row = sweep._rates(xor, 25e6)
    assert row == {"clock_mhz": 25.0,
                   "infer_cycles": rates["INFER"]["command_latency_cycles"],
                   "learn_cycles": rates["LEARN"]["command_latency_cycles"],
                   "infer_per_s": rates["INFER"]["samples_per_s_compute"],
                   "learn_per_s": rates["LEARN"]["samples_per_s_compute"]}
