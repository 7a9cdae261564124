"""cocotb testbench of the smoke-test :class:`~rtl_tests.smoke.Incrementer`.

Run by :mod:`rtl_tests.test_smoke` through :func:`rtl_tests.harness.simulate`, which passes
``step``, ``latency`` and ``count`` as test data. Every byte out is checked against
:func:`~rtl_tests.smoke.increment_model`.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.handle import SimHandleBase

from rtl_tests.smoke import increment_model
from pchw.sim.streams import StreamSink, StreamSource
from pchw.sim.tb import ClockedTB, load_test_data


class TB(ClockedTB):
    """Clock, reset, a byte source on ``i_stream`` and a byte sink on ``o_stream``."""

    def __init__(self, dut: SimHandleBase, *, gaps: float = 0.0, backpressure: float = 0.0) -> None:
        super().__init__(dut)
        self.config = load_test_data()
        self.rng = random.Random(cocotb.RANDOM_SEED)
        self.source = StreamSource(dut, "i_stream", self.clk, reset=self.rst, gaps=gaps,
                                   rng=self.rng)
        self.sink = StreamSink(dut, "o_stream", self.clk, reset=self.rst,
                               backpressure=backpressure, rng=self.rng)

    def stimulus(self) -> list[int]:
        """Every byte value once, shuffled, then random bytes up to the configured count."""
        payloads = list(range(256))
        self.rng.shuffle(payloads)
        extra = max(0, self.config["count"] - len(payloads))
        return payloads + [self.rng.randrange(256) for _ in range(extra)]


@cocotb.test(timeout_time=1, timeout_unit="ms")
@cocotb.parametrize(gaps=[0.0, 0.5], backpressure=[0.0, 0.5])
async def stream_matches_model(dut: SimHandleBase, gaps: float, backpressure: float) -> None:
    """Every byte comes out incremented and in order, whatever the gaps and back-pressure."""
    tb = TB(dut, gaps=gaps, backpressure=backpressure)
    await tb.reset()
    stimulus = tb.stimulus()
    tb.source.send_nowait(stimulus)
    received = await tb.sink.recv_n(len(stimulus))
    expected = increment_model(stimulus, tb.config["step"])
    mismatches = [(i, got, want) for i, (got, want) in enumerate(zip(received, expected))
                  if got != want]
    assert not mismatches, \
        f"{len(mismatches)} bytes differ (index, got, expected): {mismatches[:8]}"
    assert tb.source.sent == stimulus
    latency = tb.config["latency"]
    for accepted, delivered in zip(tb.source.accept_cycles, tb.sink.transfer_cycles):
        assert delivered >= accepted + latency
    await tb.cycles(4)
    assert tb.sink.empty(), "the design produced more bytes than it was given"


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def full_throughput(dut: SimHandleBase) -> None:
    """With no gaps and no back-pressure a byte moves every cycle, exactly ``latency`` late."""
    tb = TB(dut)
    await tb.reset()
    stimulus = tb.stimulus()
    await tb.source.send(stimulus)
    received = await tb.sink.recv_n(len(stimulus))
    assert received == increment_model(stimulus, tb.config["step"])
    accepted, delivered = tb.source.accept_cycles, tb.sink.transfer_cycles
    assert accepted == list(range(accepted[0], accepted[0] + len(stimulus))), "input stalled"
    assert delivered == [cycle + tb.config["latency"] for cycle in accepted]
