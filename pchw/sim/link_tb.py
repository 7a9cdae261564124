"""cocotb testbench: timed command phases through the board top's UART pins.

Runs inside the simulator, started by ``bench/end_to_end.py`` through
:func:`pchw.sim.runner.simulate`, whose test data give ``divisor`` (cycles per UART bit),
``period_ns``, ``results_file`` and ``phases``: a list of ``{"name", "commands", "replies"}``
(hex strings). Each phase's commands go out one at a time, as a host that waits for each reply
sends them, bit-banged into ``uart_rx`` (8N1, back to back); the replies decoded from
``uart_tx`` are compared with the expected ones (the golden device model's). The results file
gets, per phase, the cycles from the first command's start bit to the middle of the last reply
byte's stop bit, and the replies that differ.
"""

import json

import cocotb
from cocotb.triggers import ClockCycles, Event, FallingEdge
from cocotb.utils import get_sim_time

from pchw.sim.tb import ClockedTB, load_test_data


class LinkTB(ClockedTB):
    def __init__(self, dut, data):
        super().__init__(dut, period_ns=data["period_ns"])
        self.period_ns = data["period_ns"]
        self.divisor = int(data["divisor"])
        self.received = bytearray()
        self.arrived = Event()
        self.dut.uart_rx.value = 1

    def cycle(self):
        return round(get_sim_time("ns") / self.period_ns)

    async def send(self, frame):
        for byte in frame:
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                self.dut.uart_rx.value = bit
                await ClockCycles(self.clk, self.divisor)

    async def monitor(self):
        half = self.divisor // 2
        while True:
            await FallingEdge(self.dut.uart_tx)
            await ClockCycles(self.clk, half)
            byte = 0
            for i in range(8):
                await ClockCycles(self.clk, self.divisor)
                byte |= int(self.dut.uart_tx.value) << i
            await ClockCycles(self.clk, self.divisor)
            self.received.append(byte)
            self.arrived.set()

    async def reply(self, size):
        while len(self.received) < size:
            self.arrived.clear()
            await self.arrived.wait()
        reply = bytes(self.received[:size])
        del self.received[:size]
        return reply


@cocotb.test()
async def timed_phases(dut):
    """Every phase's replies equal the expected ones; writes the cycles of each phase."""
    data = load_test_data()
    tb = LinkTB(dut, data)
    await tb.reset()
    cocotb.start_soon(tb.monitor())
    results = []
    for phase in data["phases"]:
        start, mismatches = tb.cycle(), []
        for i, (command, want) in enumerate(zip(phase["commands"], phase["replies"])):
            want = bytes.fromhex(want)
            await tb.send(bytes.fromhex(command))
            got = await tb.reply(len(want))
            if got != want:
                mismatches.append({"command": i, "got": got.hex(), "want": want.hex()})
        results.append({"name": phase["name"], "commands": len(phase["commands"]),
                        "cycles": tb.cycle() - start, "mismatches": mismatches[:3],
                        "mismatch_count": len(mismatches)})
        tb.log.info("%s: %d commands, %d cycles, %d mismatches", phase["name"],
                    len(phase["commands"]), results[-1]["cycles"], len(mismatches))
    with open(data["results_file"], "w") as f:
        json.dump(results, f, indent=1)
    assert all(not r["mismatch_count"] for r in results), results
