"""Streaming through the board top's Verilog (Verilator, behind ``pchw serve --sim``'s pty): at
the stream window every reply byte is the golden device model's; past it, every loss is
reported (protocol version 2, ``docs/protocol.md``)."""

import time
from collections import deque

import numpy as np
import pytest

import pchw
from pchw import protocol
from pchw.golden import FixedModel
from pchw.host import Device, SerialTransport
from tests.gateware.test_board import mixed_frames, retag
from tests.test_protocol import check_every_loss_reported

from .test_serve import MODEL, _serve_args, served

TIMEOUT_S = 20          # per reply: the simulated board answers in milliseconds of real time


def read_exactly(transport, count):
    data = transport.read(count, TIMEOUT_S)
    assert len(data) == count, f"{len(data)} of {count} reply bytes within {TIMEOUT_S} s"
    return data


def read_until_quiet(transport, quiet_s=1.0):
    data = bytearray()
    while chunk := transport.read(4096, quiet_s):
        data += chunk
    return bytes(data)


def test_device_streams_within_the_window(tmp_path):
    """``Device.learn_many`` / ``infer_many`` over a serial port: 300 samples each, streamed
    within the window IDENTIFY reports, bit for bit the golden model's; nothing stale, no
    overrun."""
    network, golden = pchw.load(MODEL), FixedModel(pchw.load(MODEL))
    rng = np.random.default_rng(31)
    X = rng.uniform(-1, 1, (300, network.layers[0]))
    Y = rng.uniform(0, 1, (300, network.layers[-1]))
    with served(tmp_path, *_serve_args("verilator")) as link:
        with SerialTransport(str(link)) as transport:
            device = Device(transport, network, timeout=TIMEOUT_S)
            device.identify()
            assert device.window == protocol.STREAM_WINDOW
            learned = device.learn_many(X, Y)
            inferred = device.infer_many(X)
            assert read_until_quiet(transport) == b""
    assert np.array_equal(learned, np.concatenate(
        [golden.learn(x[None], y[None]).output for x, y in zip(X, Y)]))
    assert np.array_equal(inferred, golden.infer(X))
    assert device.stale_replies == device.overruns == 0


def test_mixed_frames_at_the_window_match_the_device_model(tmp_path):
    """2000 good and bad frames, each written as soon as the window allows: every reply byte
    equals the golden device model's, nothing more comes."""
    network = pchw.load(MODEL)
    frames = mixed_frames(network, np.random.default_rng(37), 2000)
    model = protocol.DeviceModel(network)
    expected = [model.feed(frame) for frame in frames]
    assert all(len(r) == 1 for r in expected)
    window = protocol.STREAM_WINDOW
    received, outstanding, ahead = bytearray(), deque(), 0      # (frame bytes, reply bytes)
    with served(tmp_path, *_serve_args("verilator")) as link:
        with SerialTransport(str(link)) as transport:
            for frame, [reply] in zip(frames, expected):
                while outstanding and ahead + len(frame) > window:
                    received += read_exactly(transport, outstanding.popleft()[1])
                    ahead -= outstanding[0][0] if outstanding else 0
                transport.write(frame)
                ahead += len(frame) if outstanding else 0
                outstanding.append((len(frame), len(reply)))
            while outstanding:
                received += read_exactly(transport, outstanding.popleft()[1])
            extra = read_until_quiet(transport)
    at = 0
    for i, [reply] in enumerate(expected):
        assert bytes(received[at:at + len(reply)]) == reply, f"reply {i}"
        at += len(reply)
    assert extra == b""
    statuses = {protocol.parse_reply(r[0])[0] for r in expected}
    # (ERR_NO_DATA exists only in a build with a dataset memory)
    assert statuses == set(protocol.Status) - {protocol.Status.ERR_OVERRUN,
                                               protocol.Status.ERR_NO_DATA}


@pytest.mark.parametrize("kind", ["too_long_headers", "mixed"])
def test_streaming_past_the_window_reports_every_loss(kind, tmp_path):
    """Frames written all at once overrun the board's receive FIFO: the replies that come are
    well-formed, at least one is ERR_OVERRUN, and every frame without its own reply is covered
    by one."""
    network = pchw.load(MODEL)
    if kind == "too_long_headers":
        frames = [bytes([protocol.SYNC_COMMAND, protocol.Opcode.INFER, tag, 0xFF, 0xFF])
                  for tag in range(1, 41)]
    else:
        frames = mixed_frames(network, np.random.default_rng(41), 200)
        frames = [retag(f[f.index(protocol.SYNC_COMMAND):], i + 1) for i, f in enumerate(frames)]
    with served(tmp_path, *_serve_args("verilator")) as link:
        with SerialTransport(str(link)) as transport:
            transport.write(b"".join(frames))
            time.sleep(0.5)
            stream = read_until_quiet(transport, quiet_s=3.0)
    replies = []
    while stream:
        status, payload, rest = protocol.parse_reply(stream)
        replies.append(stream[:len(stream) - len(rest)])
        stream = rest
    overruns = [r for r in replies if protocol.parse_reply(r)[0] is protocol.Status.ERR_OVERRUN]
    assert overruns
    answered, lost = check_every_loss_reported(frames, replies)
    assert lost >= 1 and answered + lost == len(frames)
