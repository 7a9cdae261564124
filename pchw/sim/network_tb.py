"""cocotb testbench of the network top (``pchw verilog`` output).

Drives command frames into ``i_stream``, collects reply frames from ``o_stream``, and compares
each with the golden device model (:class:`pchw.protocol.DeviceModel`), byte for byte; with no
input gaps and no back-pressure it also holds each well-formed command's latency to
:func:`pchw.latency.command_latency`. The data comes from :func:`pchw.sim.network.run`:
``model`` (folder), ``commands`` (hex strings), ``gaps``, ``backpressure``, ``summary`` (path of
the JSON summary this writes).
"""

import json
import random
import time

import cocotb
from cocotb.triggers import RisingEdge

import pchw
from pchw import protocol
from pchw.latency import command_latency
from pchw.sim.streams import StreamSink, StreamSource
from pchw.sim.tb import ClockedTB, load_test_data


class TB(ClockedTB):
    """Clock, reset, a command source on ``i_stream`` and a reply sink on ``o_stream``."""

    def __init__(self, dut, *, gaps=0.0, backpressure=0.0):
        super().__init__(dut)
        dut.frame_abort.value = 0              # no link timeout on the bare streams
        self.rng = random.Random(cocotb.RANDOM_SEED)
        self.source = StreamSource(dut, "i_stream", self.clk, reset=self.rst, gaps=gaps,
                                   rng=self.rng)
        self.sink = StreamSink(dut, "o_stream", self.clk, reset=self.rst,
                               backpressure=backpressure, rng=self.rng)
        self.cycle = 0
        cocotb.start_soon(self._count())

    async def _count(self):
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1

    async def reply(self):
        """The next complete reply frame, and the sink's transfer cycle of its first byte."""
        first_index = len(self.sink.received)
        header = bytes(await self.sink.recv_n(protocol.HEADER_SIZE))
        rest = bytes(await self.sink.recv_n(protocol.frame_size(header) - protocol.HEADER_SIZE))
        return header + rest, self.sink.transfer_cycles[first_index]


# A bound on simulated time (10 ns cycles): 60 million cycles, far above any test here.
@cocotb.test(timeout_time=600, timeout_unit="sec")
async def commands_match_device_model(dut):
    """Every reply equals the device model's; well-formed commands take their stated latency."""
    data = load_test_data()
    network = pchw.load(data["model"])
    device = protocol.DeviceModel(network)
    exact_timing = not data["gaps"] and not data["backpressure"]
    tb = TB(dut, gaps=data["gaps"], backpressure=data["backpressure"])
    await tb.reset()
    started, start_cycle = time.perf_counter(), tb.cycle
    mismatches, latencies, count = [], {}, 0
    for i, text in enumerate(data["commands"]):
        frame = bytes.fromhex(text)
        expected = device.feed(frame)
        first_byte = len(tb.source.sent)
        tb.source.send_nowait(frame)
        for want in expected:
            got, reply_cycle = await tb.reply()
            count += 1
            if got != want:
                mismatches.append({"command": i, "got": got.hex(), "expected": want.hex()})
                continue
            status = protocol.parse_reply(got)[0]
            clean_frame = frame[:1] == bytes([protocol.SYNC_COMMAND])   # no garbage before it
            if exact_timing and clean_frame and status == protocol.Status.OK and \
                    len(expected) == 1:
                await tb.source.wait_idle()
                accepted = tb.source.accept_cycles[first_byte + len(frame) - 1]
                opcode, payload, _ = protocol.parse_command(frame)
                layer = payload[0] if opcode == protocol.Opcode.WRITE_PARAMS else None
                want_latency = command_latency(network, opcode, layer)
                name = protocol.Opcode(opcode).name
                latencies.setdefault(name, set()).add(reply_cycle - accepted)
                if reply_cycle - accepted != want_latency:
                    mismatches.append({"command": i, "latency": reply_cycle - accepted,
                                       "expected_latency": want_latency})
        await tb.source.wait_idle()
    seconds = time.perf_counter() - started
    summary = {"commands": len(data["commands"]), "replies": count,
               "mismatches": len(mismatches), "first_mismatches": mismatches[:5],
               "latency_cycles": {k: sorted(v) for k, v in latencies.items()},
               "simulated_cycles": tb.cycle - start_cycle, "seconds": seconds}
    if data.get("summary"):
        with open(data["summary"], "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:3]}"
