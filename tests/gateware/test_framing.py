# amaranth: UnusedElaboratable=no
"""The framing gateware against pchw.protocol: CRC, FrameReceiver, FrameTransmitter.

The first line silences Amaranth's unused-elaboratable warning for the components that
``test_receiver_rejects_bad_parameters`` constructs and that raise in ``__init__``.
"""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from pchw import protocol
from pchw.gateware.framing import (FrameCheck, FrameReceiver, FrameTransmitter, ReplyHeader,
                                   crc8_next)


def run(dut, *testbenches, background=()):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    for tb in background:
        sim.add_testbench(tb, background=True)
    sim.run()


async def put(ctx, s, payload):
    """Send ``payload`` on stream ``s``; returns when it has been taken."""
    ctx.set(s.payload, payload)
    ctx.set(s.valid, 1)
    await ctx.tick().until(s.ready)
    ctx.set(s.valid, 0)


def test_crc8_next_matches_protocol():
    m = Module()
    crc, byte, out = Signal(8), Signal(8), Signal(8)
    m.d.comb += out.eq(crc8_next(crc, byte))
    rng = random.Random(0)
    cases = [(0, b) for b in range(256)] + [(c, 0) for c in range(256)]
    cases += [(rng.randrange(256), rng.randrange(256)) for _ in range(500)]

    async def tb(ctx):
        for c, b in cases:
            ctx.set(crc, c)
            ctx.set(byte, b)
            assert ctx.get(out) == protocol.crc8_step(c, b), (c, b)

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()


def test_frame_check_matches_protocol():
    assert {c.name: c.value for c in FrameCheck} == \
        {c.name: c.value for c in protocol.FrameCheck}


# -- receiver -----------------------------------------------------------------------------------

LOST = None     # in a stream: a loss mark (the link lost bytes here), driven on ``overrun``


def parse(stream, max_payload):
    """The frames :class:`protocol.FrameParser` reads from ``stream`` (bytes and LOST marks)."""
    parser, frames = protocol.FrameParser(max_payload), []
    for item in stream:
        frames += parser.overrun() if item is LOST else parser.feed(bytes([item]))
    return frames


def receive(stream, max_payload, seed=0, gaps=0.3, hold=0.3):
    """Feed ``stream`` (bytes, or a list of bytes and LOST marks) into a FrameReceiver with
    random input gaps and a consumer that holds each frame for a random time; returns the frames
    seen as ``protocol.ReceivedFrame``s (payload read back from the buffer, empty for TOO_LONG
    and OVERRUN) and those of the protocol's FrameParser."""
    dut = FrameReceiver(max_payload)
    expected = parse(stream, max_payload)
    rng = random.Random(seed)
    seen = []

    async def producer(ctx):
        for item in stream:
            while rng.random() < gaps:
                await ctx.tick()
            if item is LOST:            # in a cycle in which a byte could be taken instead
                await ctx.tick().until(dut.i_stream.ready)
                ctx.set(dut.overrun, 1)
                await ctx.tick()
                ctx.set(dut.overrun, 0)
            else:
                await put(ctx, dut.i_stream, item)

    async def consumer(ctx):
        while len(seen) < len(expected):
            await ctx.tick().until(dut.o_frame.valid)
            info = ctx.get(dut.o_frame.p)
            payload = bytearray()
            if info.check not in (FrameCheck.TOO_LONG, FrameCheck.OVERRUN):
                for addr in range(info.length):
                    ctx.set(dut.buf_addr, addr)
                    await ctx.tick()
                    payload.append(ctx.get(dut.buf_data))
                assert info.first == (payload[0] if payload else 0)
            while rng.random() < hold:
                assert ctx.get(dut.i_stream.ready) == 0     # the buffer is held
                await ctx.tick()
            ctx.set(dut.o_frame.ready, 1)
            await ctx.tick()
            ctx.set(dut.o_frame.ready, 0)
            seen.append(protocol.ReceivedFrame(info.opcode, info.tag, info.length,
                                               bytes(payload),
                                               protocol.FrameCheck(info.check.value)))

    run(dut, producer, consumer)
    return seen, expected


def random_stream(rng, max_payload, frames, losses=False):
    """Good frames, corrupted crcs, too-long headers and garbage, in random order, with random
    tags; with ``losses``, also runs of bytes cut out and replaced by a LOST mark."""
    out = []
    for _ in range(frames):
        kind = rng.choice(["good", "good", "bad_crc", "too_long", "garbage"]
                          + ["lost"] * losses)
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(max_payload + 1)))
        frame = bytearray(protocol.command_frame(rng.randrange(256), payload,
                                                 tag=rng.randrange(256)))
        if kind == "bad_crc":
            frame[-1] ^= 1 << rng.randrange(8)
        elif kind == "too_long":
            length = rng.randrange(max_payload + 1, 0x10000)
            frame = bytearray([protocol.SYNC_COMMAND, rng.randrange(256), rng.randrange(256)])
            frame += length.to_bytes(2, "little")
            frame += bytes(rng.choice([0x00, 0x13, 0xFF]) for _ in range(rng.randrange(4)))
        elif kind == "garbage":
            frame = bytes(rng.randrange(256) & ~0x80 for _ in range(rng.randrange(1, 6)))
        elif kind == "lost":        # a frame cut anywhere, before its sync byte included
            cut = rng.randrange(len(frame))
            frame = list(frame[:cut]) + [LOST]
        out += list(frame)
    return out


@pytest.mark.parametrize("seed,max_payload", [(0, 12), (1, 1), (2, 0), (3, 40)])
def test_receiver_random_frames(seed, max_payload):
    rng = random.Random(seed)
    stream = random_stream(rng, max_payload, 40)
    seen, expected = receive(stream, max_payload, seed)
    assert seen == expected
    checks = {f.check for f in expected}
    assert protocol.FrameCheck.OK in checks and protocol.FrameCheck.BAD_CRC in checks


@pytest.mark.parametrize("seed,max_payload", [(4, 12), (5, 1), (6, 40)])
def test_receiver_loss_marks(seed, max_payload):
    """A loss mark ends the frame in progress (opcode and tag as received) or reports an empty
    one while hunting, as the protocol's FrameParser does."""
    rng = random.Random(seed)
    stream = random_stream(rng, max_payload, 60, losses=True)
    seen, expected = receive(stream, max_payload, seed)
    assert seen == expected
    overruns = [f for f in expected if f.check is protocol.FrameCheck.OVERRUN]
    assert len(overruns) == stream.count(LOST) > 3
    assert any(f.opcode == f.tag == 0 for f in overruns)        # a mark while hunting
    assert any(f.tag != 0 for f in overruns)                    # a mark after the tag


def test_receiver_too_long_then_good_frame():
    good = protocol.command_frame(0x02, bytes(range(8)), tag=0x11)
    bogus = bytes([protocol.SYNC_COMMAND, 0x05, 0x22, 9, 0]) + bytes(range(0x10, 0x19))
    seen, expected = receive(b"\x00\x5A\xFF" + bogus + b"\x01" + good, 8, seed=5)
    assert seen == expected == [
        protocol.ReceivedFrame(0x05, 0x22, 9, b"", protocol.FrameCheck.TOO_LONG),
        protocol.ReceivedFrame(0x02, 0x11, 8, bytes(range(8)), protocol.FrameCheck.OK),
    ]


def test_receiver_bad_crc_then_good_frame():
    bad = bytearray(protocol.command_frame(0x03, b"\x01\x02"))
    bad[-1] ^= 0x80
    good = protocol.command_frame(0x01)
    seen, expected = receive(bytes(bad) + good, 4)
    assert seen == expected
    assert [f.check for f in seen] == [protocol.FrameCheck.BAD_CRC, protocol.FrameCheck.OK]


def test_receiver_latency():
    """``o_frame.valid`` rises ``latency`` cycles after the crc byte is accepted; input is
    accepted every cycle while no frame is pending."""
    dut = FrameReceiver(4)
    assert dut.latency == 1 and dut.read_latency == 1
    frame = protocol.command_frame(0x04, b"\x01", tag=0xC3)

    async def tb(ctx):
        ctx.set(dut.i_stream.valid, 1)
        for byte in frame:
            ctx.set(dut.i_stream.payload, byte)
            assert ctx.get(dut.i_stream.ready) == 1
            assert ctx.get(dut.o_frame.valid) == 0
            await ctx.tick()            # the byte is accepted at this edge
        ctx.set(dut.i_stream.valid, 0)
        for _ in range(dut.latency - 1):
            assert ctx.get(dut.o_frame.valid) == 0
            await ctx.tick()
        assert ctx.get(dut.o_frame.valid) == 1
        assert ctx.get(dut.i_stream.ready) == 0
        info = ctx.get(dut.o_frame.p)
        assert (info.opcode, info.tag, info.length, info.check) == (0x04, 0xC3, 1, FrameCheck.OK)
        ctx.set(dut.o_frame.ready, 1)
        await ctx.tick()
        assert ctx.get(dut.o_frame.valid) == 0
        assert ctx.get(dut.i_stream.ready) == 1

    run(dut, tb)


def test_receiver_rejects_bad_parameters():
    with pytest.raises(ValueError):
        FrameReceiver(0x10000)
    with pytest.raises(TypeError):
        FrameReceiver(1.5)


# -- transmitter --------------------------------------------------------------------------------

def transmit(replies, seed, stall=0.3, gaps=0.3):
    """Send ``replies`` ``[(status, payload, tag)]`` through a FrameTransmitter with random
    output back-pressure and payload gaps; returns the bytes sent."""
    dut = FrameTransmitter()
    rng = random.Random(seed)
    out = bytearray()
    total = sum(len(protocol.reply_frame(*r)) for r in replies)

    async def headers(ctx):
        for status, payload, tag in replies:
            await put(ctx, dut.i_header, ReplyHeader.const({"status": status, "tag": tag,
                                                            "length": len(payload)}))

    async def payloads(ctx):
        for _, payload, _ in replies:
            for byte in payload:
                while rng.random() < gaps:
                    await ctx.tick()
                await put(ctx, dut.i_payload, byte)

    async def sink(ctx):
        while len(out) < total:
            ready = rng.random() >= stall
            ctx.set(dut.o_stream.ready, ready)
            _, _, valid, byte = await ctx.tick().sample(dut.o_stream.valid, dut.o_stream.payload)
            if valid and ready:
                out.append(byte)

    run(dut, headers, payloads, sink)
    return bytes(out)


@pytest.mark.parametrize("seed", range(4))
def test_transmitter_random_replies(seed):
    rng = random.Random(seed)
    replies = [(rng.choice(list(protocol.Status)),
                bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 2, 5, 17]))),
                rng.randrange(256))
               for _ in range(25)]
    expected = b"".join(protocol.reply_frame(*r) for r in replies)
    assert transmit(replies, seed) == expected


def test_transmitter_timing():
    """Sync byte ``latency`` cycles after the header is accepted, then one byte per cycle."""
    dut = FrameTransmitter()
    assert dut.latency == 1
    payload = bytes([0x10, 0x20, 0x30])
    expected = protocol.reply_frame(protocol.Status.OK, payload, tag=0x5B)

    async def tb(ctx):
        ctx.set(dut.o_stream.ready, 1)
        ctx.set(dut.i_payload.valid, 1)
        ctx.set(dut.i_header.p, ReplyHeader.const({"status": 0, "tag": 0x5B,
                                                   "length": len(payload)}))
        ctx.set(dut.i_header.valid, 1)
        assert ctx.get(dut.i_header.ready) == 1
        await ctx.tick()                # the header is accepted at this edge
        ctx.set(dut.i_header.valid, 0)
        for _ in range(dut.latency - 1):
            assert ctx.get(dut.o_stream.valid) == 0
            await ctx.tick()
        sent = bytearray()
        while len(sent) < len(expected):
            assert ctx.get(dut.o_stream.valid) == 1     # one byte every cycle
            assert ctx.get(dut.i_header.ready) == 0
            if ctx.get(dut.i_payload.ready):
                ctx.set(dut.i_payload.payload, payload[len(sent) - protocol.HEADER_SIZE])
            sent.append(ctx.get(dut.o_stream.payload))
            await ctx.tick()
        assert bytes(sent) == expected
        assert ctx.get(dut.o_stream.valid) == 0
        assert ctx.get(dut.i_header.ready) == 1         # next header right after the crc

    run(dut, tb)


def test_transmitter_error_reply():
    reply = (protocol.Status.ERR_OPCODE, b"\x42", 0x07)
    assert transmit([reply], seed=9) == protocol.reply_frame(*reply)
