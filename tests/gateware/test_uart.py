# amaranth: UnusedElaboratable=no
"""The UART against a Python model of the line: loopback, baud mismatch, noise, back-pressure.

The first line silences Amaranth's unused-elaboratable warning for the components that
``test_components_reject_bad_divisors`` constructs and that raise in ``__init__``.

The line model: :class:`LineDriver` bit-bangs frames into a receiver, with bit times in
fractional cycles (a sender with another clock); :func:`decode_line` is a UART receiver in
Python that decodes a recorded ``tx`` waveform.
"""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from pchw.errors import PchwError
from pchw.gateware.uart import (MAX_BAUD, MIN_DIVISOR, BaudRateError, UARTReceiver, UARTTransmitter,
                                divisor_for)


# -- the line model ---------------------------------------------------------------------------

def frame_bits(byte, stop=1):
    """The levels of an 8N1 frame: start bit, data LSB first, stop bit."""
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


class LineDriver:
    """Drives a UART line (a pin signal) from a testbench.

    ``bit_cycles`` may be fractional: level changes fall on the clock edge nearest to their
    ideal time, like a sender with its own clock. ``cycle`` counts the clock edges passed.
    """

    def __init__(self, ctx, pin, bit_cycles):
        self.ctx, self.pin, self.bit_cycles = ctx, pin, bit_cycles
        self.time = 0.0
        self.cycle = 0

    async def hold(self, level, cycles):
        """Put ``level`` on the line for ``cycles`` (from now on, in ideal time)."""
        self.ctx.set(self.pin, level)
        self.time += cycles
        n = round(self.time) - self.cycle
        if n > 0:
            await self.ctx.tick().repeat(n)
            self.cycle += n

    async def send(self, byte, stop=1):
        for level in frame_bits(byte, stop):
            await self.hold(level, self.bit_cycles)

    async def send_all(self, data):
        for byte in data:
            await self.send(byte)

    async def idle(self, bits):
        await self.hold(1, bits * self.bit_cycles)


def decode_line(levels, divisor):
    """UART receiver model: decode ``levels`` (the line after each clock edge).

    Returns ``[(start, byte, stop_ok)]``, ``start`` the index of the start bit's first low
    level; bits are sampled at ``start + divisor // 2 + j * divisor``.
    """
    frames, i, h = [], 1, divisor // 2
    while i < len(levels):
        if levels[i] == 0 and levels[i - 1] == 1:
            end = i + h + 9 * divisor
            if end >= len(levels):
                break
            bits = [levels[i + h + j * divisor] for j in range(10)]
            if bits[0] == 0:
                frames.append((i, sum(b << k for k, b in enumerate(bits[1:9])), bits[9] == 1))
                i = end
        i += 1
    return frames


class Collector:
    """Background testbench on a receiver: takes bytes from ``o_stream`` while ``ready(cycle)``
    holds, and logs them and the ``error`` / ``overflow`` pulses with the cycle (clock edges
    passed) at which they are seen."""

    def __init__(self, rx, ready=lambda cycle: True):
        self.rx, self.ready = rx, ready
        self.bytes, self.errors, self.overflows = [], [], []
        self.first_valid = []           # cycle at which each byte's valid was first seen

    async def run(self, ctx):
        rx, cycle, was_valid = self.rx, 0, False
        while True:
            ready = self.ready(cycle)
            ctx.set(rx.o_stream.ready, ready)
            valid = ctx.get(rx.o_stream.valid)
            if valid and not was_valid:
                self.first_valid.append(cycle)
            if valid and ready:
                self.bytes.append((cycle, ctx.get(rx.o_stream.payload)))
            if ctx.get(rx.error):
                self.errors.append(cycle)
            if ctx.get(rx.overflow):
                self.overflows.append(cycle)
            was_valid = valid and not ready
            await ctx.tick()
            cycle += 1

    @property
    def data(self):
        return [b for _, b in self.bytes]


def simulate(dut, testbench, *background):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    for tb in background:
        sim.add_testbench(tb, background=True)
    sim.run()


def random_bytes(rng, n):
    return [rng.randrange(256) for _ in range(n)]


# -- parameters -------------------------------------------------------------------------------

def test_divisor_for():
    assert divisor_for(12_000_000, 115200) == 104
    assert divisor_for(48e6, 115200) == 417            # nearest, 0.08% off (416: 0.16%)
    assert divisor_for(1_000_000, 250_000) == MIN_DIVISOR
    assert divisor_for(100e6, 3_000_000) == 33          # 1.0% off
    assert divisor_for(12_000_000, 921_600) == 13       # 0.16% off
    assert divisor_for(12_000_000, MAX_BAUD) == MIN_DIVISOR     # the iCEBreaker at 3 Mbaud


@pytest.mark.parametrize("clock_hz, baud, message", [
    (1_000_000, 500_000, r"too fast .* 2\.00 cycles per bit, the UART needs at least 4"),
    (1_000_000, 230_400, r"nearest divisor, 4 cycles per bit, gives 250000 baud, 8\.5% off"),
    (1_000_000, 180_000, r"nearest divisor, 6 cycles per bit, gives 166667 baud, 7\.4% off"),
    (0, 9600, r"clock_hz must be a positive number"),
    (12e6, -1, r"baud must be a positive number"),
    (12e6, "9600", r"baud must be a positive number"),
    (400e6, 4_000_000, r"4000000 baud is above the 3000000 baud the boards' USB-serial bridges"),
    (25e6, 3_000_000, r"nearest divisor, 8 cycles per bit, gives 3125000 baud, 4\.2% off"),
])
def test_divisor_for_rejects(clock_hz, baud, message):
    with pytest.raises(BaudRateError, match=message) as info:
        divisor_for(clock_hz, baud)
    assert isinstance(info.value, ValueError) and isinstance(info.value, PchwError)


def test_components_reject_bad_divisors():
    for cls in (UARTReceiver, UARTTransmitter):
        with pytest.raises(ValueError, match="divisor must be at least 4 clock cycles per bit"):
            cls(3)
        with pytest.raises(TypeError):
            cls(4.5)
        assert cls(4).divisor == 4


# -- receiver ---------------------------------------------------------------------------------

@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_receiver_timing(divisor):
    """``o_stream.valid`` is up exactly ``sample_offset + 9 * divisor + latency`` cycles after
    the first edge that sees the start bit; the bytes are those sent."""
    rx = UARTReceiver(divisor)
    log = Collector(rx, ready=lambda cycle: False)
    sent, starts = [0x00, 0xFF, 0x5A, 0x01, 0x80], []

    async def tb(ctx):
        line = LineDriver(ctx, rx.rx, divisor)
        await line.idle(2)
        for byte in sent:
            starts.append(line.cycle + 1)           # edge 0: the first to see the start bit
            await line.send(byte)
            log.ready = lambda cycle: True          # take each byte right after it arrives
            await line.idle(1)
            log.ready = lambda cycle: False

    simulate(rx, tb, log.run)
    assert log.data == sent
    assert log.first_valid == [s + rx.sample_offset + 9 * divisor + rx.latency for s in starts]
    assert log.errors == [] and log.overflows == []


@pytest.mark.parametrize("divisor", [4, 7, 16])
@pytest.mark.parametrize("mismatch", [-0.015, 0.0, +0.015])
def test_receiver_baud_mismatch(divisor, mismatch):
    """Back-to-back frames from a sender 1.5% fast or slow arrive intact."""
    rx = UARTReceiver(divisor)
    log = Collector(rx)
    sent = random_bytes(random.Random(divisor), 40) + [0x00, 0xFF, 0x55, 0xAA]

    async def tb(ctx):
        line = LineDriver(ctx, rx.rx, divisor * (1 + mismatch))
        await line.idle(1.3)
        await line.send_all(sent)
        await line.idle(2)

    simulate(rx, tb, log.run)
    assert log.data == sent
    assert log.errors == [] and log.overflows == []


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_receiver_ignores_short_glitches(divisor):
    """Low pulses of up to half a bit on the idle line are not start bits."""
    rx = UARTReceiver(divisor)
    log = Collector(rx)
    rng = random.Random(divisor)
    sent = random_bytes(rng, 12)

    async def tb(ctx):
        line = LineDriver(ctx, rx.rx, divisor)
        await line.idle(1)
        for byte in sent:
            for _ in range(3):
                await line.hold(0, rng.randint(1, divisor // 2))
                await line.hold(1, rng.randint(divisor, 2 * divisor))
            await line.send(byte)
        await line.idle(2)

    simulate(rx, tb, log.run)
    assert log.data == sent
    assert log.errors == [] and log.overflows == []


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_receiver_framing_error(divisor):
    """A low stop bit: one ``error`` pulse and no byte, then the next frame arrives. A frame
    that starts right after a low stop bit is lost (its falling edge is not seen) but the
    receiver resynchronises once the line has idled for a frame time."""
    rx = UARTReceiver(divisor)
    log = Collector(rx)
    error_at = []

    async def tb(ctx):
        line = LineDriver(ctx, rx.rx, divisor)
        await line.idle(1)
        await line.send(0x3C)
        error_at.append(line.cycle + 1 + rx.sample_offset + 9 * divisor + rx.latency)
        await line.send(0xC3, stop=0)
        await line.idle(1)
        await line.send(0x96)
        await line.send(0xC3, stop=0)
        await line.send(0x96)           # misread from the first 1-to-0 edge inside it
        await line.idle(11)
        await line.send_all([0x12, 0x34])
        await line.idle(2)

    simulate(rx, tb, log.run)
    assert log.errors[0] == error_at[0] and len(log.errors) >= 2
    assert log.data[:2] == [0x3C, 0x96] and log.data[-2:] == [0x12, 0x34]
    assert log.overflows == []


@pytest.mark.parametrize("divisor", [4, 16])
def test_receiver_break(divisor):
    """A break (line low for 3 byte times): one ``error`` pulse, then good bytes arrive."""
    rx = UARTReceiver(divisor)
    log = Collector(rx)
    sent = [0xA5, 0x01, 0x00, 0x00, 0x6B]

    async def tb(ctx):
        line = LineDriver(ctx, rx.rx, divisor)
        await line.idle(1)
        await line.send(0x42)
        await line.hold(0, 30 * divisor)
        await line.idle(1)
        await line.send_all(sent)
        await line.hold(0, 30 * divisor)
        await line.hold(1, 1)                # the shortest return to idle: one cycle
        await line.send_all(sent)
        await line.idle(2)

    simulate(rx, tb, log.run)
    assert log.data == [0x42] + sent + sent
    assert len(log.errors) == 2
    assert log.overflows == []


@pytest.mark.parametrize("divisor", [4, 7])
def test_receiver_survives_noise(divisor):
    """Random levels, truncated frames and glitches of any length never lock the receiver up:
    after the line has idled for a frame time, good bytes arrive intact."""
    rx = UARTReceiver(divisor)
    log = Collector(rx)
    rng = random.Random(1000 + divisor)
    good, received_before = [], []      # the good bytes; bytes received at the end of each try

    async def tb(ctx):
        line = LineDriver(ctx, rx.rx, divisor)
        for trial in range(12):
            kind = trial % 3
            if kind == 0:                            # random levels, random lengths
                for _ in range(rng.randint(1, 30)):
                    await line.hold(rng.randrange(2), rng.randint(1, 3 * divisor))
            elif kind == 1:                          # a frame cut short
                bits = frame_bits(rng.randrange(256))[:rng.randint(1, 9)]
                for level in bits:
                    await line.hold(level, divisor)
            else:                                    # a burst of 1-cycle glitches
                for _ in range(rng.randint(1, 20)):
                    await line.hold(rng.randrange(2), 1)
            await line.idle(11)                      # at least one frame time
            data = random_bytes(rng, 3)
            good.extend(data)
            await line.send_all(data)
            await line.idle(1)
            received_before.append(len(log.bytes))

    simulate(rx, tb, log.run)
    # Each try's good bytes are the last ones received in it, after whatever the noise made.
    for k, end in enumerate(received_before):
        assert log.data[end - 3:end] == good[3 * k:3 * k + 3], k
    assert log.overflows == []


def test_receiver_backpressure():
    """Bytes that complete while ``o_stream`` is full are dropped and counted; the byte held
    stays stable, and the receiver carries on once its consumer does."""
    divisor = 5
    rx = UARTReceiver(divisor)
    taking = [False]
    log = Collector(rx, ready=lambda cycle: taking[0])
    held = []

    async def tb(ctx):
        line = LineDriver(ctx, rx.rx, divisor)
        await line.idle(1)
        await line.send_all([0x11, 0x22, 0x33])
        held.append(ctx.get(rx.o_stream.payload))
        await line.send(0x44)
        held.append(ctx.get(rx.o_stream.payload))
        assert ctx.get(rx.o_stream.valid)
        taking[0] = True
        await line.idle(1)
        await line.send_all([0x55, 0x66])
        await line.idle(1)
        taking[0] = False
        await line.send_all([0x77, 0x88])   # 0x77 waits in the register, 0x88 is dropped
        await line.idle(1)
        taking[0] = True
        await line.idle(1)

    simulate(rx, tb, log.run)
    assert held == [0x11, 0x11]
    assert log.data == [0x11, 0x55, 0x66, 0x77]
    assert len(log.overflows) == 4
    assert log.errors == []


# -- transmitter ------------------------------------------------------------------------------

@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_transmitter(divisor):
    """Bytes offered with random gaps go out LSB first, each bit exactly ``divisor`` cycles,
    the start bit ``latency`` cycle after acceptance, back to back when offered so."""
    tx = UARTTransmitter(divisor)
    rng = random.Random(divisor)
    sent = random_bytes(rng, 30)
    accepted, levels = [], []

    async def monitor(ctx):
        levels.append(ctx.get(tx.tx))
        while True:
            await ctx.tick()
            levels.append(ctx.get(tx.tx))

    async def tb(ctx):
        cycle = 0
        for byte in sent:
            for _ in range(rng.choice([0, 0, 0, rng.randint(1, 15 * divisor)])):
                await ctx.tick()
                cycle += 1
            ctx.set(tx.i_stream.valid, 1)
            ctx.set(tx.i_stream.payload, byte)
            while not ctx.get(tx.i_stream.ready):
                await ctx.tick()
                cycle += 1
            await ctx.tick()
            cycle += 1
            accepted.append(cycle)
            ctx.set(tx.i_stream.valid, 0)
        await ctx.tick().repeat(11 * divisor)

    simulate(tx, tb, monitor)
    frames = decode_line(levels, divisor)
    assert [b for _, b, _ in frames] == sent
    assert all(ok for _, _, ok in frames)
    # The start bit follows the accepting edge; every bit lasts exactly `divisor` cycles.
    assert [start for start, _, _ in frames] == [a + tx.latency - 1 for a in accepted]
    for start, byte, _ in frames:
        for j, level in enumerate(frame_bits(byte)):
            assert levels[start + j * divisor:start + (j + 1) * divisor] == [level] * divisor
    # Bytes offered while one is being sent go out back to back.
    gaps = [b - a for a, b in zip(accepted, accepted[1:])]
    assert min(gaps) == 10 * divisor
    assert levels[0] == 1 and levels[-1] == 1


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_loopback(divisor):
    """Python sender -> UARTReceiver -> UARTTransmitter -> Python receiver: random bytes,
    back to back and with gaps, come back unchanged."""
    m = Module()
    m.submodules.rx = rx = UARTReceiver(divisor)
    m.submodules.tx = tx = UARTTransmitter(divisor)
    wiring.connect(m, rx.o_stream, tx.i_stream)
    rng = random.Random(divisor)
    sent = random_bytes(rng, 60)
    levels = []

    async def monitor(ctx):
        while True:
            await ctx.tick()
            levels.append(ctx.get(tx.tx))

    async def tb(ctx):
        line = LineDriver(ctx, rx.rx, divisor)
        await line.idle(1)
        for i, byte in enumerate(sent):
            await line.send(byte)
            if i % 7 == 6:
                await line.idle(rng.uniform(0.1, 3))
        await line.idle(13)

    simulate(m, tb, monitor)
    frames = decode_line([1] + levels, divisor)
    assert [b for _, b, _ in frames] == sent
    assert all(ok for _, _, ok in frames)
