"""cocotb testbench of the network top (``pchw verilog`` output).

Drives command frames into ``i_stream``, collects reply frames from ``o_stream``, and compares
each with the golden device model (:class:`pchw.protocol.DeviceModel`), byte for byte; with no
input gaps and no back-pressure it also holds each well-formed command's latency to
:func:`pchw.latency.command_latency`. The data comes from :func:`pchw.sim.network.run`:
``model`` (folder), ``commands`` (hex strings), ``gaps``, ``backpressure``, ``summary`` (path of
the JSON summary this writes) and optionally ``progress`` (path of a file this keeps holding
the number of commands answered, at most twice a second).

It fails fast instead of hanging: every command must be accepted and answered within
:func:`reply_budget` cycles (the latency model plus the time the bytes take on the streams), and
after the last expected reply the output must stay silent for :func:`drain_cycles` cycles: a
missing reply and a surplus byte are both failures.
"""

import json
import os
import random
import time

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout

import pchw
from pchw import protocol
from pchw.latency import command_latency, upset_cycles
from pchw.sim.streams import StreamSink, StreamSource
from pchw.sim.tb import ClockedTB, load_test_data

PERIOD_NS = 10          # the clock period of ClockedTB
LINK_MARGIN = 100       # cycles of slack on every command's budget (idle cycles between bytes
                        # are random: a stream of n bytes with gap probability p takes
                        # n / (1 - p) cycles on average; the budget allows twice that)


def worst_latency(network):
    """The longest reply latency of any well-formed command of ``network`` (cycles); malformed
    frames are answered sooner (:data:`pchw.latency.REPLY_OVERHEAD`)."""
    ops = [command_latency(network, op) for op in protocol.Opcode   # the layered ones below
           if op not in (protocol.Opcode.WRITE_PARAMS, protocol.Opcode.FAULT)
           and op not in protocol.DATASET_OPCODES]     # (which depend on their sample counts)
    ops += [command_latency(network, op, l) for l in range(network.L + 1)
            for op in (protocol.Opcode.WRITE_PARAMS, protocol.Opcode.FAULT)
            if protocol.payload_length(network, op, l) is not None]
    return max(ops)


def stream_cycles(count, idle_probability):
    """A bound on the cycles ``count`` bytes take on a stream that idles with that probability."""
    return int(2 * count / (1 - idle_probability)) + 1


def reply_budget(network, frame, replies, gaps, backpressure, upsets=None):
    """Cycles allowed from queueing ``frame`` to the end of its ``replies`` (the device model's):
    the frame on the input, the worst latency per reply, the replies on the output; in a
    fault-injection build, the ``upsets`` the device model flipped after it."""
    return (stream_cycles(len(frame), gaps) + len(replies) * worst_latency(network)
            + (upset_cycles(network, upsets) if upsets is not None else 0)
            + stream_cycles(sum(map(len, replies)), backpressure) + LINK_MARGIN)


def drain_cycles(network):
    """Cycles the output is watched after the last expected reply: any byte then is a surplus."""
    return worst_latency(network) + LINK_MARGIN


class TB(ClockedTB):
    """Clock, reset, a command source on ``i_stream`` and a reply sink on ``o_stream``."""

    def __init__(self, dut, *, gaps=0.0, backpressure=0.0):
        super().__init__(dut)
        dut.frame_abort.value = 0              # no link timeout on the bare streams
        dut.overrun.value = 0                  # nor a link that loses bytes
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


def _report_progress(path, done):
    """Write ``done`` into ``path`` atomically (a reader never sees a half-written number)."""
    with open(f"{path}.tmp", "w", encoding="utf-8") as f:
        f.write(str(done))
    os.replace(f"{path}.tmp", path)


class NoReply(AssertionError):
    """A command was not accepted or not answered within its budget of cycles."""


@cocotb.test()
async def commands_match_device_model(dut):
    """Every reply equals the device model's; well-formed commands take their stated latency;
    no reply is missing or late, and nothing follows the last one."""
    data = load_test_data()
    network = pchw.load(data["model"])
    device = protocol.DeviceModel(network, faults=bool(data.get("faults")))
    exact_timing = not data["gaps"] and not data["backpressure"]
    tb = TB(dut, gaps=data["gaps"], backpressure=data["backpressure"])
    await tb.reset()
    started, start_cycle = time.perf_counter(), tb.cycle
    mismatches, latencies, count, expected_bytes = [], {}, 0, 0
    reported = time.monotonic()

    async def within(awaitable, deadline, what):
        """``awaitable``, or :class:`NoReply` if it is not done by cycle ``deadline``."""
        try:
            return await with_timeout(awaitable, max(deadline - tb.cycle, 1) * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise NoReply(f"{what} by cycle {deadline} (the latency model plus the link); "
                          f"{len(tb.source.sent)} command bytes accepted, "
                          f"{len(tb.sink.received)} reply bytes received") from None

    try:
        for i, text in enumerate(data["commands"]):
            frame = bytes.fromhex(text)
            expected = device.feed(frame)
            expected_bytes += sum(map(len, expected))
            upsets = device.last_upsets if device.faults is not None else None
            deadline = tb.cycle + reply_budget(network, frame, expected, data["gaps"],
                                               data["backpressure"], upsets)
            first_byte = len(tb.source.sent)
            tb.source.send_nowait(frame)
            for k, want in enumerate(expected):
                got, reply_cycle = await within(
                    tb.reply(), deadline, f"command {i}: no reply {k + 1} of {len(expected)}")
                count += 1
                if got != want:
                    mismatches.append({"command": i, "got": got.hex(), "expected": want.hex()})
                    continue
                status = protocol.parse_reply(got)[0]
                clean_frame = frame[:1] == bytes([protocol.SYNC_COMMAND])   # no garbage first
                if exact_timing and clean_frame and status == protocol.Status.OK and \
                        len(expected) == 1:
                    await within(tb.source.wait_idle(), deadline, f"command {i}: not accepted")
                    accepted = tb.source.accept_cycles[first_byte + len(frame) - 1]
                    opcode, payload, _ = protocol.parse_command(frame)
                    layer = payload[0] if opcode in (protocol.Opcode.WRITE_PARAMS,
                                                     protocol.Opcode.FAULT) else None
                    want_latency = command_latency(
                        network, opcode, layer,
                        upsets if opcode == protocol.Opcode.LEARN else None)
                    name = protocol.Opcode(opcode).name
                    latencies.setdefault(name, set()).add(reply_cycle - accepted)
                    if reply_cycle - accepted != want_latency:
                        mismatches.append({"command": i, "latency": reply_cycle - accepted,
                                           "expected_latency": want_latency})
            await within(tb.source.wait_idle(), deadline, f"command {i}: not accepted")
            if data.get("progress") and time.monotonic() - reported > 0.5:
                _report_progress(data["progress"], i + 1)
                reported = time.monotonic()
        await ClockCycles(tb.clk, drain_cycles(network))
        surplus = len(tb.sink.received) - expected_bytes
        if surplus:
            mismatches.append({"surplus_bytes": surplus, "after": "the last expected reply",
                               "first": bytes(tb.sink.received[expected_bytes:][:16]).hex()})
    except NoReply as error:         # the rest would wait in vain: stop here
        mismatches.append({"error": str(error)})
    seconds = time.perf_counter() - started
    summary = {"commands": len(data["commands"]), "replies": count,
               "mismatches": len(mismatches), "first_mismatches": mismatches[:5],
               "latency_cycles": {k: sorted(v) for k, v in latencies.items()},
               "simulated_cycles": tb.cycle - start_cycle, "seconds": seconds}
    if data.get("summary"):
        with open(data["summary"], "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:3]}"
