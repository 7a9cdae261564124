# amaranth: UnusedElaboratable=no
"""The board top through its UART lines against the golden device model, byte for byte.

Command frames are bit-banged into ``uart_rx``; ``uart_tx`` is decoded; every reply must equal
what :class:`pchw.protocol.DeviceModel` answers to exactly the bytes the UART delivered. Between
good commands the line carries garbage, corrupted and truncated frames, framing errors and
breaks; the device must answer each as the model does and keep its weights.

The first line silences Amaranth's unused-elaboratable warning for the BoardTop that
``test_bad_baud`` constructs and that raises in ``__init__``.
"""

import random

import numpy as np
import pytest
from amaranth.build import Attrs, Clock, Pins, Resource, Subsignal
from amaranth.hdl import Fragment
from amaranth.sim import Simulator
from amaranth.vendor import LatticeICE40Platform

import pchw
from pchw import protocol
from pchw.errors import PchwError
from pchw.gateware.board import BoardTop
from pchw.gateware.uart import BaudRateError
from pchw.latency import command_latency
from pchw.protocol import Opcode, Status

from ..test_protocol import check_every_loss_reported
from .test_uart import LineDriver, decode_line

CLOCK_HZ, BAUD = 1_000_000, 250_000             # 4 cycles per bit: a fast simulation


def tiny_network():
    return pchw.Network([3, 4, 2], ["identity", "relu"], init_seed=1, lanes=[2, 1],
                        pc=pchw.PCSettings(inference_steps=2, inference_rate=0.5))


# -- the host side: line actions and the bytes the UART delivers --------------------------------

async def monitor_tx(ctx, tx, d, received, starts):
    """Decode the line ``tx`` (``d`` cycles per bit) forever: append each byte to ``received``
    and the cycle of its first low level to ``starts``."""
    cycle = 0                                                   # clock edges passed
    while True:
        await ctx.tick()
        cycle += 1
        if ctx.get(tx):
            continue
        start = cycle
        await ctx.tick().repeat(d // 2)
        assert ctx.get(tx) == 0, "glitch on uart_tx"
        byte = 0
        for i in range(8):
            await ctx.tick().repeat(d)
            byte |= ctx.get(tx) << i
        await ctx.tick().repeat(d)
        assert ctx.get(tx) == 1, "framing error on uart_tx"
        cycle += d // 2 + 9 * d
        received.append(byte)
        starts.append(start)


class Chunk:
    """What the host puts on the line between two looks at the replies: a list of line actions
    and the bytes the device's UART receiver delivers for them."""

    def __init__(self, name):
        self.name, self.actions, self.delivered = name, [], bytearray()

    def bytes(self, data):
        self.actions.append(("bytes", bytes(data)))
        self.delivered += bytes(data)
        return self

    def framing_error(self, byte):
        """A byte whose stop bit is low: dropped by the receiver (then a bit of idle line)."""
        self.actions.append(("bad_stop", byte))
        return self

    def line_break(self, byte_times):
        """The line held low, then a bit of idle line: delivers nothing."""
        self.actions.append(("break", byte_times))
        return self


class BoardBench:
    """Runs chunks through a BoardTop and a DeviceModel side by side."""

    def __init__(self, network, clock_hz=CLOCK_HZ, baud=BAUD):
        self.network = network
        self.dut = BoardTop(network, clock_hz=clock_hz, baud=baud)
        self.divisor = self.dut.divisor
        self.model = protocol.DeviceModel(network)
        self.received = bytearray()         # decoded from uart_tx
        self.starts = []                    # the cycle of each received byte's first low level
        self.log = []                       # (chunk name, expected replies, received replies)
        self.chunk_ends = []                # the cycle at which each chunk's last level ends

    async def _monitor(self, ctx):
        await monitor_tx(ctx, self.dut.uart_tx, self.divisor, self.received, self.starts)

    def run(self, chunks, timeout=30_000):
        d = self.divisor

        async def bench(ctx):
            line = LineDriver(ctx, self.dut.uart_rx, d)
            await line.idle(2)
            expected_total = 0
            for chunk in chunks:
                for kind, arg in chunk.actions:
                    if kind == "bytes":
                        await line.send_all(arg)
                    elif kind == "bad_stop":
                        await line.send(arg, stop=0)
                        await line.idle(1)
                    elif kind == "break":
                        await line.hold(0, arg * 10 * d)
                        await line.idle(1)
                self.chunk_ends.append(line.cycle)
                expected = b"".join(self.model.feed(bytes(chunk.delivered)))
                begin = expected_total
                expected_total += len(expected)
                waited = 0
                while len(self.received) < expected_total and waited < timeout:
                    await line.idle(1)
                    waited += d
                self.log.append((chunk.name, expected,
                                 bytes(self.received[begin:expected_total])))
            await line.idle(60)             # anything more would be a reply too many
            self.extra = bytes(self.received[expected_total:])

        sim = Simulator(self.dut)
        sim.add_clock(1 / CLOCK_HZ)
        sim.add_testbench(bench)
        sim.add_testbench(self._monitor, background=True)
        sim.run()
        for name, expected, got in self.log:
            assert got == expected, f"{name}: expected {expected.hex(' ')}, got {got.hex(' ')}"
        assert self.extra == b"", f"unexpected bytes at the end: {self.extra.hex(' ')}"


def replies(frames):
    """Parse a byte string of reply frames: [(status, payload)]."""
    out = []
    while frames:
        status, payload, frames = protocol.parse_reply(frames)
        out.append((status, payload))
    return out


def random_inputs(network, rng):
    f0, fL = network.value_format(0), network.value_format(network.L)
    x = rng.integers(f0.quantise(-2.0), f0.quantise(2.0), network.layers[0])
    y = rng.integers(0, fL.quantise(1.0), network.layers[-1])
    return x, y


# -- tests ------------------------------------------------------------------------------------

def test_commands_match_device_model():
    """IDENTIFY, INFER, LEARN, READ_PARAMS and WRITE_PARAMS through the UART: every reply is
    the device model's, byte for byte; LEARN and WRITE_PARAMS change the weights as it does."""
    net = tiny_network()
    rng = np.random.default_rng(5)
    bench = BoardBench(net)
    chunks = [Chunk("identify").bytes(protocol.identify_command())]
    for i in range(2):
        x, y = random_inputs(net, rng)
        chunks.append(Chunk(f"infer {i}").bytes(protocol.infer_command(net, x)))
        chunks.append(Chunk(f"learn {i}").bytes(protocol.learn_command(net, x, y)))
    for l in (1, 2):
        chunks.append(Chunk(f"read_params {l}").bytes(protocol.read_params_command(l)))
    fmt = net.weight_format(2)
    W = rng.integers(fmt.quantise(-1.0), fmt.quantise(1.0), (2, 4))
    b = rng.integers(fmt.quantise(-1.0), fmt.quantise(1.0), 2)
    chunks.append(Chunk("write_params 2").bytes(protocol.write_params_command(net, 2, W, b)))
    chunks.append(Chunk("read_params 2 again").bytes(protocol.read_params_command(2)))
    chunks.append(Chunk("infer after write").bytes(protocol.infer_command(net, x)))
    bench.run(chunks)

    got = {name: replies(reply) for name, _, reply in bench.log}
    assert got["identify"][0][1][:4] == protocol.MAGIC
    assert all(status == Status.OK for r in got.values() for status, _ in r)
    W2, b2 = protocol.decode_params(net, 2, got["read_params 2 again"][0][1])
    assert np.array_equal(W2, W) and np.array_equal(b2, b)


def test_reply_timing():
    """The first reply byte's start bit follows the command's last stop-bit sample by
    the UART and FIFO overhead plus the network top's command latency."""
    net = tiny_network()
    bench = BoardBench(net)
    commands = [protocol.identify_command(), protocol.read_params_command(1),
                protocol.infer_command(net, [0, 512, -512])]
    chunks = [Chunk(f"command {i}").bytes(c) for i, c in enumerate(commands)]
    bench.run(chunks)
    d = bench.divisor
    # The last stop bit is sampled by the edges chunk_end - d + 1 .. chunk_end.
    ends = [end - d + 1 + d // 2 for end in bench.chunk_ends]
    firsts, at = [], 0
    for _, expected, _ in bench.log:
        firsts.append(bench.starts[at])
        at += len(expected)
    for command, end, first in zip(commands, ends, firsts):
        opcode = Opcode(command[1])
        assert first - end == bench.dut.reply_overhead + command_latency(net, opcode, 1), \
            opcode.name


def test_recovers_from_line_noise_and_bad_frames():
    """Garbage, corrupted frames, a truncated frame, framing errors and a break between good
    commands: each gets the model's answer (an error reply, or none), the next good command
    its right reply, and READ_PARAMS shows that only the good commands changed the weights."""
    net = tiny_network()
    rng = np.random.default_rng(11)
    prng = random.Random(11)
    bench = BoardBench(net)
    clean = protocol.DeviceModel(net)           # fed only the good commands
    chunks = []

    def good(name, frame):
        clean.feed(frame)
        chunks.append(Chunk(name).bytes(frame))

    def corrupt(frame, index, bit=0):
        frame = bytearray(frame)
        frame[index] ^= 1 << bit
        return bytes(frame)

    x, y = random_inputs(net, rng)
    infer, learn = protocol.infer_command(net, x), protocol.learn_command(net, x, y)
    identify = protocol.identify_command()

    good("identify", identify)
    chunks.append(Chunk("garbage without sync").bytes(
        [prng.choice([b for b in range(256) if b != protocol.SYNC_COMMAND]) for _ in range(20)]))
    good("infer after garbage", infer)
    chunks.append(Chunk("infer, payload bit flipped").bytes(corrupt(infer, 5, 3)))
    chunks.append(Chunk("learn, crc bit flipped").bytes(corrupt(learn, -1, 7)))
    good("learn", learn)
    chunks.append(Chunk("unknown opcode").bytes(protocol.command_frame(0x7E, b"\x01\x02")))
    chunks.append(Chunk("read_params, bad layer").bytes(protocol.read_params_command(9)))
    chunks.append(Chunk("too long").bytes(bytes([protocol.SYNC_COMMAND, 2, 0x21, 0xFF, 0x7F, 1,
                                                 2])))
    good("infer after errors", infer)
    # A framing error inside a command: the frame is one byte short and eats the next
    # command's sync byte as its crc; the rest of that command is hunted through.
    broken = Chunk("learn with a framing error").bytes(learn[:7]).framing_error(learn[7])
    chunks.append(broken.bytes(learn[8:]))
    chunks.append(Chunk("identify completes it").bytes(identify))
    good("identify after framing error", identify)
    chunks.append(Chunk("break").line_break(3))
    good("infer after break", infer)
    # A truncated frame: the next command's bytes complete it as a bad frame.
    chunks.append(Chunk("truncated infer").bytes(infer[:7]))
    chunks.append(Chunk("read_params completes it").bytes(protocol.read_params_command(1)))
    good("identify after truncated", identify)
    # Bytes that arrive while the device sends an error reply wait in the receive FIFO: a
    # truncated frame completed by junk, then at once a command, gets both replies.
    chunks.append(Chunk("truncated read_params").bytes(protocol.read_params_command(2)[:4]))
    chunks.append(Chunk("junk completes it, then identify").bytes(b"\x00\x01\x02" + identify))
    chunks.append(Chunk("garbage with sync bytes").bytes(
        bytes([protocol.SYNC_COMMAND, 0x99, 3, 0, 7, 7, 7, 7]) + bytes(prng.randrange(256)
                                                                     for _ in range(12))))
    chunks.append(Chunk("zeros to flush a partial frame").bytes(bytes(40)))
    good("learn again", learn)
    for l in (1, 2):
        good(f"read_params {l}", protocol.read_params_command(l))
    bench.run(chunks)

    got = {name: (expected, replies(reply)) for name, expected, reply in bench.log}
    # The model's verdicts that the test relies on (the device matched them, byte for byte):
    assert got["infer, payload bit flipped"][1] == [(Status.ERR_CHECKSUM, bytes([Opcode.INFER]))]
    assert got["unknown opcode"][1] == [(Status.ERR_OPCODE, b"\x7e")]
    assert got["read_params, bad layer"][1] == [(Status.ERR_ARGUMENT, bytes([Opcode.READ_PARAMS]))]
    assert got["too long"][1] == [(Status.ERR_LENGTH, bytes([Opcode.INFER]))]
    assert got["learn with a framing error"][1] == []
    assert [s for s, _ in got["identify completes it"][1]] == [Status.ERR_CHECKSUM]
    assert got["break"][1] == []
    assert got["truncated infer"][1] == []
    assert len(got["read_params completes it"][1]) == 1
    assert got["read_params completes it"][1][0][0] != Status.OK
    assert [s for s, _ in got["junk completes it, then identify"][1]] == \
        [Status.ERR_CHECKSUM, Status.OK]
    for name in ("identify", "infer after garbage", "learn", "infer after errors",
                 "identify after framing error", "infer after break", "identify after truncated",
                 "learn again", "read_params 1", "read_params 2"):
        assert [s for s, _ in got[name][1]] == [Status.OK], name
    # The weights are those of the good commands alone.
    for l in (1, 2):
        W, b = protocol.decode_params(net, l, got[f"read_params {l}"][1][0][1])
        assert np.array_equal(W, clean.model.W[l - 1]) and np.array_equal(b, clean.model.b[l - 1])


def test_leds():
    """LED 0 toggles every half second; LED 1 is lit from a command's start bit until its
    reply has gone out, and for the hold time after."""
    net = tiny_network()
    dut = BoardTop(net, clock_hz=1000, baud=250)          # 4 cycles per bit, 1 Hz = 1000 cycles
    assert dut.heartbeat_cycles == 500 and dut.activity_hold_cycles == 50
    beat, activity, tx = [], [], []

    async def monitor(ctx):
        while True:
            await ctx.tick()
            beat.append(ctx.get(dut.led_heartbeat))
            activity.append(ctx.get(dut.led_activity))
            tx.append(ctx.get(dut.uart_tx))

    sent_at = []

    async def bench(ctx):
        line = LineDriver(ctx, dut.uart_rx, 4)
        await line.idle(100)
        sent_at.append(line.cycle + 1)
        await line.send_all(protocol.identify_command())
        await line.idle(300)

    sim = Simulator(dut)
    sim.add_clock(1e-3)
    sim.add_testbench(bench)
    sim.add_testbench(monitor, background=True)
    sim.run()
    # beat[k] is the level after edge k + 1: toggles after edges 500, 1000, ...
    assert [k + 1 for k in range(1, len(beat)) if beat[k] != beat[k - 1]] == \
        list(range(500, len(beat) + 1, 500))
    lit = [k + 1 for k, v in enumerate(activity) if v]
    assert lit[0] == sent_at[0] + 2                      # the synchroniser, then `busy`
    frames = decode_line([1] + tx, 4)
    assert bytes(b for _, b, _ in frames) == protocol.DeviceModel(net).feed(
        protocol.identify_command())[0]
    reply_end = frames[-1][0] + 10 * 4                   # the edge that ends the last stop bit
    assert lit == list(range(lit[0], lit[-1] + 1))       # continuously lit
    # The hold time counts from the transmitter's going idle in the stop bit's last cycle.
    assert reply_end + dut.activity_hold_cycles - 2 <= lit[-1] <= \
        reply_end + dut.activity_hold_cycles


class _TestBoard(LatticeICE40Platform):
    device, package = "iCE40HX1K", "VQ100"
    default_clk = "clk12"
    resources = [
        Resource("clk12", 0, Pins("15", dir="i"), Clock(12e6),
                 Attrs(GLOBAL=True, IO_STANDARD="SB_LVCMOS")),
        Resource("led", 0, Pins("1", dir="o"), Attrs(IO_STANDARD="SB_LVCMOS")),
        Resource("led", 1, Pins("2", dir="o"), Attrs(IO_STANDARD="SB_LVCMOS")),
        Resource("uart", 0, Subsignal("rx", Pins("3", dir="i")),
                 Subsignal("tx", Pins("4", dir="o")), Attrs(IO_STANDARD="SB_LVCMOS")),
    ]
    connectors = []


class _NoLedBoard(_TestBoard):
    resources = [r for r in _TestBoard.resources if r.name != "led"]


class _NoUartBoard(_TestBoard):
    resources = [r for r in _TestBoard.resources if r.name != "uart"]


@pytest.mark.parametrize("board, pins", [
    (_TestBoard, {"uart_0__rx__io": "3", "uart_0__tx__io": "4", "led_0__io": "1", "led_1__io": "2"}),
    (_NoLedBoard, {"uart_0__rx__io": "3", "uart_0__tx__io": "4"}),
])
def test_platform_build(board, pins):
    """With a platform, the UART and LED pins are requested and the design prepares."""
    plan = board().build(BoardTop(tiny_network(), clock_hz=12e6), do_build=False)
    pcf = plan.files["top.pcf"]
    placed = dict(line.split()[-2:] for line in pcf.splitlines() if line.startswith("set_io"))
    assert {k: v for k, v in placed.items() if k != "clk12_0__io"} == pins


def test_platform_without_uart():
    dut = BoardTop(tiny_network(), clock_hz=12e6)
    with pytest.raises(PchwError, match="_NoUartBoard has no UART"):
        _NoUartBoard().build(dut, do_build=False)
    Fragment.get(dut, None)     # uses the parts, which Amaranth would warn about otherwise


def test_bad_baud():
    with pytest.raises(BaudRateError, match="too fast"):
        BoardTop(tiny_network(), clock_hz=1e6, baud=1_000_000)


def test_a_host_that_stops_mid_frame_leaves_the_device_ready():
    """After a cut-off command and a quiet line for the frame timeout, the next command gets
    its own reply (no error reply for the dropped frame)."""
    from pchw.host import Device, SimulationTransport
    network = pchw.Network([3, 4, 2], ["identity", "relu"], init_seed=1, lanes=[2, 1])
    top = BoardTop(network, clock_hz=1_000_000, baud=250_000, frame_timeout_s=0.0005)
    transport = SimulationTransport(top, 1_000_000, top.divisor)
    device = Device(transport, network, timeout=0.002)
    cut = protocol.learn_command(network, np.zeros(3, dtype=int), np.zeros(2, dtype=int))[:6]
    transport.write(cut)
    assert transport.read(1, 0.002) == b""                  # quiet: the frame times out
    device.identify()                                       # answered, not an error reply


# -- streaming: the window, and overruns past it ------------------------------------------------

def mixed_frames(network, rng, count):
    """``count`` self-delimiting command frames, good and bad, with random tags 1..255 (some
    preceded by garbage without a sync byte): each gets exactly one reply."""
    L = network.L
    frames = []
    for _ in range(count):
        tag = int(rng.integers(1, 256))
        x, y = random_inputs(network, rng)
        kind = rng.choice(["infer", "infer", "learn", "identify", "read", "write", "bad_crc",
                           "opcode", "length", "layer", "too_long"])
        if kind == "infer":
            frame = protocol.infer_command(network, x, tag=tag)
        elif kind == "learn":
            frame = protocol.learn_command(network, x, y, tag=tag)
        elif kind == "identify":
            frame = protocol.identify_command(tag=tag)
        elif kind == "read":
            frame = protocol.read_params_command(int(rng.integers(1, L + 1)), tag=tag)
        elif kind == "write":
            l = int(rng.integers(1, L + 1))
            fmt = network.weight_format(l)
            W = rng.integers(fmt.quantise(-1.0), fmt.quantise(1.0),
                             (network.layers[l], network.layers[l - 1]))
            b = rng.integers(fmt.quantise(-1.0), fmt.quantise(1.0), network.layers[l])
            frame = protocol.write_params_command(network, l, W, b, tag=tag)
        elif kind == "bad_crc":             # a bit of the opcode, payload or crc flipped
            frame = bytearray(protocol.infer_command(network, x, tag=tag))
            at = [1] + list(range(protocol.HEADER_SIZE, len(frame)))
            frame[at[int(rng.integers(len(at)))]] ^= 1 << int(rng.integers(8))
        elif kind == "opcode":
            frame = protocol.command_frame(int(rng.choice([0, 6, 0x42, 0xFF])), b"\x01", tag)
        elif kind == "length":
            frame = protocol.command_frame(protocol.Opcode.INFER, bytes(1), tag)
        elif kind == "layer":
            frame = protocol.read_params_command(L + 1 + int(rng.integers(5)), tag=tag)
        else:                               # only the header: answered at once
            length = int(rng.integers(protocol.max_payload(network) + 1, 0x10000))
            frame = bytes([protocol.SYNC_COMMAND, protocol.Opcode.INFER, tag]) + \
                length.to_bytes(2, "little")
        if rng.random() < 0.1:
            frame = bytes(int(b) for b in rng.integers(0, 0x80, int(rng.integers(1, 4)))) + frame
        frames.append(bytes(frame))
    return frames


class StreamBench:
    """A host streaming frames into the board's ``uart_rx``: each as soon as the stream window
    allows (``window``; None: back to back, ignoring replies). Records the replies from
    ``uart_tx`` and what the receive FIFO took, bytes and loss marks, in order."""

    def __init__(self, network, frames, window):
        self.network, self.frames, self.window = network, frames, window
        self.dut = BoardTop(network, clock_hz=CLOCK_HZ, baud=BAUD)
        self.received = bytearray()
        self.fifo_input = []                # bytes, and None for a loss mark
        self.most_buffered = 0

    async def _fifo_monitor(self, ctx):
        w, fifo = self.dut.rx_fifo.w_stream, self.dut.rx_fifo
        while True:
            _, _, valid, ready, payload, level = await ctx.tick().sample(
                w.valid, w.ready, w.payload, fifo.level)
            self.most_buffered = max(self.most_buffered, level)
            if valid and ready:
                self.fifo_input.append(None if payload >> 8 else payload & 0xFF)

    def run(self, reply_sizes=None):
        """``reply_sizes``: each frame's reply length, needed to keep to the window."""
        d = self.dut.divisor
        ends = np.cumsum(reply_sizes) if reply_sizes is not None else None

        async def tx_monitor(ctx):
            await monitor_tx(ctx, self.dut.uart_tx, d, self.received, [])

        async def host(ctx):
            line = LineDriver(ctx, self.dut.uart_rx, d)
            await line.idle(2)
            for i, frame in enumerate(self.frames):
                while self.window is not None:
                    done = int(np.searchsorted(ends, len(self.received), side="right"))
                    ahead = sum(len(f) for f in self.frames[done + 1:i]) + len(frame)
                    if done == i or ahead <= self.window:
                        break
                    await line.idle(1)
                await line.send_all(frame)
            quiet = 0
            while quiet < 400:                  # until the replies stop (40 byte times)
                before = len(self.received)
                await line.idle(1)
                quiet = 0 if len(self.received) != before else quiet + 1

        sim = Simulator(self.dut)
        sim.add_clock(1 / CLOCK_HZ)
        sim.add_testbench(host)
        sim.add_testbench(tx_monitor, background=True)
        sim.add_testbench(self._fifo_monitor, background=True)
        sim.run()

    def model_replies(self):
        """The golden device model's replies to what the FIFO took, bytes and marks in order."""
        model, replies = protocol.DeviceModel(self.network), []
        for item in self.fifo_input:
            replies += model.overrun() if item is None else model.feed(bytes([item]))
        return replies


def test_streaming_at_the_window_matches_the_device_model():
    """Mixed good and bad frames, each sent as soon as the stream window allows: nothing is
    lost, and every reply byte is the golden device model's, with the command's tag."""
    net = tiny_network()
    rng = np.random.default_rng(21)
    frames = mixed_frames(net, rng, 200)
    model = protocol.DeviceModel(net)
    expected = [model.feed(frame) for frame in frames]
    assert all(len(r) == 1 for r in expected)
    bench = StreamBench(net, frames, protocol.STREAM_WINDOW)
    bench.run([len(r[0]) for r in expected])
    assert None not in bench.fifo_input                 # no byte was lost
    want = b"".join(r[0] for r in expected)
    assert len(bench.received) == len(want)
    for i, (frame, [reply]) in enumerate(zip(frames, expected)):
        at = sum(len(r[0]) for r in expected[:i])
        assert bytes(bench.received[at:at + len(reply)]) == reply, f"reply {i}"
        assert protocol.frame_tag(reply) == frame[frame.index(protocol.SYNC_COMMAND) + 2]
    statuses = {protocol.parse_reply(r[0])[0] for r in expected}
    # Every status but the overrun's, and ERR_NO_DATA (which only a build with a dataset memory
    # answers: here TRAIN and EVAL are unknown opcodes).
    assert statuses == set(protocol.Status) - {protocol.Status.ERR_OVERRUN,
                                               protocol.Status.ERR_NO_DATA}
    # At the limit: the buffer filled up to the window (the UART receiver holds one byte more).
    assert protocol.STREAM_WINDOW - 4 <= bench.most_buffered <= protocol.STREAM_WINDOW


@pytest.mark.parametrize("kind", ["too_long_headers", "mixed"])
def test_streaming_past_the_window_reports_every_loss(kind):
    """Frames back to back, ignoring the window, overrun the receive FIFO: each run of lost
    bytes is answered with ERR_OVERRUN where it happened (the model, told where the FIFO took a
    loss mark, predicts every reply byte), and every frame without a reply is covered by one.
    (Protocol version 1 lost 12 of 40 over-length headers streamed like this, silently.)"""
    net = tiny_network()
    rng = np.random.default_rng(23)
    if kind == "too_long_headers":
        frames = [bytes([protocol.SYNC_COMMAND, protocol.Opcode.INFER, tag, 0xFF, 0xFF])
                  for tag in range(1, 41)]
    else:
        frames = mixed_frames(net, rng, 120)
        for i, frame in enumerate(frames):                  # distinct tags
            start = frame.index(protocol.SYNC_COMMAND)
            frames[i] = retag(frame[start:], i + 1)
    bench = StreamBench(net, frames, window=None)
    bench.run()
    replies = bench.model_replies()
    assert bytes(bench.received) == b"".join(replies)
    marks = bench.fifo_input.count(None)
    overruns = [r for r in replies if protocol.parse_reply(r)[0] is protocol.Status.ERR_OVERRUN]
    assert len(overruns) == marks >= 1
    answered, lost = check_every_loss_reported(frames, replies)
    assert lost >= 1 and answered + lost == len(frames)


def retag(frame, tag):
    """``frame`` with another tag (and its crc recomputed); a bad crc stays bad."""
    body = bytearray(frame[1:-1])
    good = protocol.crc8(body) == frame[-1]
    body[protocol.TAG_OFFSET - 1] = tag
    crc = protocol.crc8(body) ^ (0 if good else 0x5A)
    return frame[:1] + bytes(body) + bytes([crc]) if len(frame) > protocol.HEADER_SIZE else \
        frame[:protocol.TAG_OFFSET] + bytes([tag]) + frame[protocol.TAG_OFFSET + 1:]


def test_host_after_an_overrun():
    """A client that blasted frames past the window, then a Device on the same line: its command
    is answered right, or the Device reports the overrun (never a wrong or stale answer); after
    Device.resync() it works as before."""
    from pchw.golden import FixedModel
    from pchw.host import Device, SimulationTransport
    net = tiny_network()
    top = BoardTop(net, clock_hz=CLOCK_HZ, baud=BAUD)
    transport = SimulationTransport(top, CLOCK_HZ, top.divisor)
    device, golden = Device(transport, net, timeout=0.02), FixedModel(net)
    device.identify()
    x = np.array([0.5, -0.25, 1.0])
    tags = [t for t in range(1, 256) if t != device._tag % 255 + 1][:40]   # not the next one
    for tag in tags:                    # replies longer than the commands: the FIFO overruns
        transport.write(protocol.read_params_command(1, tag=tag))
    try:
        assert np.array_equal(device.infer(x), golden.infer(x[None])[0])
    except pchw.PchwError as error:
        assert "lost input bytes before the reply to INFER" in str(error)
    assert device.overruns >= 1 and device.stale_replies >= 1
    device.resync()
    device.identify()
    assert np.array_equal(device.infer(x), golden.infer(x[None])[0])
