"""The wire protocol: CRC, value encoding, frames, and the golden device model."""

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pchw import Format, Formats, Network, PchwError
from pchw import protocol as p
from pchw.golden import FixedModel

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def small():
    return Network([5, 7, 3], ["identity", "relu"], init_seed=1)


def narrow():
    """Odd widths: 3-byte inputs, 1-byte outputs, 2-bit and 12-bit weights."""
    return Network([4, 6, 2], ["hardtanh", "leaky_relu"], init_seed=2,
                   formats=Formats(Format(12, 6), Format(8, 6),
                                   value_overrides={0: Format(20, 10), 2: Format(5, 2)},
                                   weight_overrides={1: Format(2, 1), 2: Format(12, 9)}))


NETWORKS = [small, narrow]


def reply(device, frame):
    """The one reply of ``device`` to ``frame``, parsed."""
    replies = device.feed(frame)
    assert len(replies) == 1
    status, payload, rest = p.parse_reply(replies[0])
    assert rest == b""
    return status, payload


def read_all(device):
    net = device.network
    out = []
    for l in range(1, net.L + 1):
        status, payload = reply(device, p.read_params_command(l))
        assert status is p.Status.OK
        out.append(p.decode_params(net, l, payload))
    return out


def random_values(rng, fmt, n):
    return rng.integers(fmt.min, fmt.max + 1, size=n)


# -- CRC, values, frames ------------------------------------------------------------------------

def test_crc_check_value():
    assert p.crc8(b"123456789") == 0xF4
    assert p.crc8(b"") == 0
    assert p.crc8(b"56789", p.crc8(b"1234")) == 0xF4


@given(st.integers(2, 32), st.data())
def test_values_round_trip(width, data):
    fmt = Format(width, data.draw(st.integers(0, width - 1)))
    values = data.draw(st.lists(st.integers(fmt.min, fmt.max), max_size=20))
    encoded = p.encode_values(np.array(values, dtype=np.int64), fmt)
    assert len(encoded) == len(values) * ((width + 7) // 8)
    assert list(p.decode_values(encoded, fmt, len(values))) == values
    for v, chunk in zip(values, (encoded[i:i + p.value_bytes(fmt)]
                                 for i in range(0, len(encoded), p.value_bytes(fmt)))):
        assert int.from_bytes(chunk, "little", signed=True) == v     # proper sign extension


@given(st.integers(2, 32), st.data())
def test_decode_uses_low_bits(width, data):
    fmt = Format(width, 0)
    size = p.value_bytes(fmt)
    raw = data.draw(st.integers(0, (1 << (8 * size)) - 1))
    low = raw & ((1 << width) - 1)
    expected = low - (1 << width) if low >> (width - 1) else low
    assert p.decode_values(raw.to_bytes(size, "little"), fmt, 1)[0] == expected


def test_encode_rejects_out_of_range():
    with pytest.raises(PchwError, match="out of range"):
        p.encode_values([8], Format(4, 0))
    with pytest.raises(PchwError, match="raw integers"):
        p.encode_values([0.5], Format(4, 0))
    with pytest.raises(PchwError, match="expected 2 values"):
        p.decode_values(b"\x00", Format(4, 0), 2)


def test_frames():
    frame = p.command_frame(p.Opcode.INFER, b"\x01\x02", tag=0x9C)
    assert frame == bytes([0xA5, 0x02, 0x9C, 0x02, 0x00, 0x01, 0x02,
                           p.crc8(b"\x02\x9C\x02\x00\x01\x02")])
    assert p.parse_command(frame + b"xy") == (2, b"\x01\x02", b"xy")
    assert p.frame_size(frame[:5]) == len(frame)
    assert p.frame_tag(frame) == 0x9C and p.frame_tag(p.command_frame(1)) == p.NO_TAG == 0
    r = p.reply_frame(p.Status.ERR_LENGTH, b"\x07", tag=0x9C)
    assert r[:5] == bytes([0x5A, 0x03, 0x9C, 0x01, 0x00]) and p.frame_tag(r) == 0x9C
    assert p.parse_reply(r) == (p.Status.ERR_LENGTH, b"\x07", b"")
    with pytest.raises(PchwError, match="tag 256"):
        p.command_frame(1, tag=256)
    with pytest.raises(PchwError, match="not 0x5A"):
        p.parse_reply(b"\x00" + r)
    with pytest.raises(PchwError, match="incomplete"):
        p.parse_reply(r[:-1])
    with pytest.raises(PchwError, match="bad crc"):
        p.parse_reply(r[:-1] + bytes([r[-1] ^ 1]))
    with pytest.raises(PchwError, match="unknown status"):
        p.parse_reply(p.reply_frame(0x77))
    with pytest.raises(PchwError, match="ERR_LENGTH"):
        p.check_reply(p.parse_reply(r), p.Opcode.INFER)


def test_identify_example_in_docs():
    text = DOC.read_text()
    example = re.search(r"IDENTIFY command with tag 1:\s*`([0-9A-F ]+)`", text).group(1)
    assert bytes.fromhex(example) == p.identify_command(tag=1)
    reply = re.search(r"\(default settings\):\s*`([0-9A-F ]+)`", text).group(1)
    device = p.DeviceModel(Network([5, 7, 3], ["identity", "relu"]))
    assert device.feed(p.identify_command(tag=1)) == [bytes.fromhex(reply)]


def test_network_id_ignores_weights_only():
    net = small()
    assert len(p.network_id(net)) == 8
    assert p.network_id(net) == p.network_id(net.with_params(*net.init_params(7)))
    assert p.network_id(net) == p.network_id(net.with_lanes([3] * net.L))
    assert p.network_id(net) != p.network_id(net.with_settings(inference_steps=3))
    assert p.network_id(net) != p.network_id(narrow())


def test_max_payload():
    net = small()                                   # Q16: 2 bytes per value
    assert p.max_payload(net) == 1 + (7 * 5 + 7) * 2
    assert p.payload_length(net, p.Opcode.LEARN) == (5 + 3) * 2
    assert p.payload_length(narrow(), p.Opcode.LEARN) == 4 * 3 + 2 * 1
    with pytest.raises(PchwError, match="above the protocol's maximum"):
        p.max_payload(Network([200, 200, 2], ["relu", "relu"]))


# -- the device model ---------------------------------------------------------------------------

@pytest.mark.parametrize("make", NETWORKS)
def test_identify(make):
    net = make()
    status, payload = reply(p.DeviceModel(net), p.identify_command())
    assert status is p.Status.OK
    assert payload[:4] == b"PCHW"
    assert p.decode_identify(payload) == (3, p.network_id(net), p.STREAM_WINDOW, 0)
    assert p.STREAM_WINDOW == p.RX_BUFFER_SIZE == int.from_bytes(payload[-4:-2], "little") == 16


@pytest.mark.parametrize("make", NETWORKS)
def test_infer_and_learn_match_fixed_model(make):
    net = make()
    device, model = p.DeviceModel(net), FixedModel(net)
    f0, fL = net.value_format(0), net.value_format(net.L)
    rng = np.random.default_rng(0)
    for step in range(6):
        x = random_values(rng, f0, net.layers[0]) // 4
        y = random_values(rng, fL, net.layers[-1]) // 2
        status, payload = reply(device, p.infer_command(net, x))
        assert status is p.Status.OK
        expected = fL.quantise(model.infer(f0.dequantise(x)[None])[0])
        assert np.array_equal(p.decode_outputs(net, payload), expected)
        status, payload = reply(device, p.learn_command(net, x, y))
        assert status is p.Status.OK
        result = model.learn(f0.dequantise(x)[None], fL.dequantise(y)[None])
        assert np.array_equal(p.decode_outputs(net, payload), fL.quantise(result.output[0]))
        assert device.model.updates == model.updates == step + 1
        for l, (W, b) in enumerate(read_all(device), start=1):
            assert np.array_equal(W, model.W[l - 1]) and np.array_equal(b, model.b[l - 1])


@pytest.mark.parametrize("make", NETWORKS)
def test_write_then_read_params(make):
    net = make()
    device = p.DeviceModel(net)
    rng = np.random.default_rng(1)
    written = []
    for l in range(1, net.L + 1):
        fmt = net.weight_format(l)
        W = random_values(rng, fmt, net.layers[l] * net.layers[l - 1])
        W = W.reshape(net.layers[l], net.layers[l - 1])
        b = random_values(rng, fmt, net.layers[l])
        assert reply(device, p.write_params_command(net, l, W, b)) == (p.Status.OK, b"")
        written.append((W, b))
    for (W, b), (W2, b2), W3, b3 in zip(written, read_all(device), device.model.W, device.model.b):
        assert np.array_equal(W, W2) and np.array_equal(b, b2)
        assert np.array_equal(W, W3) and np.array_equal(b, b3)
    # Inference now uses the written parameters.
    model = FixedModel(net)
    model.W = [w for w, _ in written]
    model.b = [b for _, b in written]
    x = random_values(rng, net.value_format(0), net.layers[0])
    _, payload = reply(device, p.infer_command(net, x))
    fL = net.value_format(net.L)
    expected = fL.quantise(model.infer(net.value_format(0).dequantise(x)[None])[0])
    assert np.array_equal(p.decode_outputs(net, payload), expected)


def test_read_params_initial_values():
    net = small()
    device = p.DeviceModel(net)
    for l, (W, b) in enumerate(read_all(device), start=1):
        assert np.array_equal(W, net.weight_format(l).quantise(net.weights[l - 1]))
        assert np.array_equal(b, net.weight_format(l).quantise(net.biases[l - 1]))


def test_garbage_before_frame_is_skipped():
    device = p.DeviceModel(small())
    assert device.feed(bytes([0x00, 0x5A, 0xFF, 0x01, 0x02])) == []
    status, _ = reply(device, p.identify_command())
    assert status is p.Status.OK


def test_improper_sign_extension_uses_low_bits():
    net = narrow()                                  # inputs are Q20.10 in 3 bytes
    device = p.DeviceModel(net)
    x = np.array([1, -2, 3, -4])
    payload = bytearray(p.encode_values(x, net.value_format(0)))
    payload[2] ^= 0xF0                              # flip the 4 unused top bits of x[0]
    reference = reply(device, p.infer_command(net, x))
    assert reply(device, p.command_frame(p.Opcode.INFER, payload)) == reference


def _bad_frames(net):
    """(name, frame, expected status, opcode byte echoed)."""
    good_infer = p.infer_command(net, np.zeros(net.layers[0], dtype=int))
    corrupted = good_infer[:-1] + bytes([good_infer[-1] ^ 0x55])
    W = np.zeros((net.layers[1], net.layers[0]), dtype=int)
    write1 = p.write_params_command(net, 1, W, np.zeros(net.layers[1], dtype=int))
    return [
        ("crc", corrupted, p.Status.ERR_CHECKSUM, 0x02),
        ("crc of unknown opcode", p.command_frame(0x42)[:-1] + bytes([p.crc8(b"\x42\0\0") ^ 1]),
         p.Status.ERR_CHECKSUM, 0x42),
        ("opcode", p.command_frame(0x42, b"\x01"), p.Status.ERR_OPCODE, 0x42),
        ("opcode zero", p.command_frame(0x00), p.Status.ERR_OPCODE, 0x00),
        ("identify length", p.command_frame(p.Opcode.IDENTIFY, b"\x00"), p.Status.ERR_LENGTH, 1),
        ("infer length", p.command_frame(p.Opcode.INFER, good_infer[p.HEADER_SIZE:-2]),
         p.Status.ERR_LENGTH, 2),
        ("read empty", p.command_frame(p.Opcode.READ_PARAMS), p.Status.ERR_LENGTH, 4),
        ("read long", p.command_frame(p.Opcode.READ_PARAMS, b"\x01\x01"), p.Status.ERR_LENGTH, 4),
        ("write empty", p.command_frame(p.Opcode.WRITE_PARAMS), p.Status.ERR_LENGTH, 5),
        ("write short", p.command_frame(p.Opcode.WRITE_PARAMS, p.parse_command(write1)[1][:-2]),
         p.Status.ERR_LENGTH, 5),
        ("read layer 0", p.read_params_command(0), p.Status.ERR_ARGUMENT, 4),
        ("read layer L+1", p.read_params_command(net.L + 1), p.Status.ERR_ARGUMENT, 4),
        ("write layer 0", p.command_frame(p.Opcode.WRITE_PARAMS, b"\x00" + bytes(10)),
         p.Status.ERR_ARGUMENT, 5),
        ("write layer 9", p.command_frame(p.Opcode.WRITE_PARAMS, b"\x09"), p.Status.ERR_ARGUMENT,
         5),
    ]


@pytest.mark.parametrize("make", NETWORKS)
def test_errors_reply_and_change_nothing(make):
    net = make()
    device = p.DeviceModel(net)
    before = read_all(device)
    x = np.arange(net.layers[0]) % 3
    good = reply(device, p.infer_command(net, x))
    for name, frame, status, opcode in _bad_frames(net):
        assert reply(device, frame) == (status, bytes([opcode])), name
        assert device.parser.hunting, name
        assert reply(device, p.infer_command(net, x)) == good, name
    after = read_all(device)
    for (W, b), (W2, b2) in zip(before, after):
        assert np.array_equal(W, W2) and np.array_equal(b, b2)
    assert device.model.updates == 0


def test_too_long_is_answered_after_the_header():
    net = small()
    device = p.DeviceModel(net)
    too_long = p.max_payload(net) + 1
    header = bytes([p.SYNC_COMMAND, p.Opcode.INFER, 0x33]) + too_long.to_bytes(2, "little")
    assert device.feed(header[:-1]) == []
    replies = device.feed(header[-1:])
    assert replies == [p.reply_frame(p.Status.ERR_LENGTH, b"\x02", tag=0x33)]
    assert device.parser.hunting
    # The rest of the bogus frame is hunted through as garbage; the next command works.
    assert device.feed(bytes(range(0x10, 0x60))) == []
    assert reply(device, p.identify_command())[0] is p.Status.OK
    # The largest valid length is not too long.
    W = np.zeros((7, 5), dtype=int)
    assert reply(device, p.write_params_command(net, 1, W, np.zeros(7, dtype=int)))[0] \
        is p.Status.OK


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_split_frames(data):
    net = small()
    stream = (b"\x13" + p.identify_command() + p.infer_command(net, [1, 2, 3, 4, 5])
              + p.read_params_command(2) + p.command_frame(0x66)
              + p.learn_command(net, [1, 2, 3, 4, 5], [0, 512, -512]))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    whole = p.DeviceModel(net).feed(stream)
    device, replies = p.DeviceModel(net), []
    for a, b in zip([0] + cuts, cuts + [len(stream)]):
        replies += device.feed(stream[a:b])
    assert replies == whole
    assert [p.parse_reply(r)[0] for r in whole] == [p.Status.OK] * 3 + [p.Status.ERR_OPCODE,
                                                                       p.Status.OK]


def test_byte_by_byte():
    net = small()
    device = p.DeviceModel(net)
    frame = p.read_params_command(1)
    for byte in frame[:-1]:
        assert device.feed(bytes([byte])) == []
    [r] = device.feed(frame[-1:])
    assert p.parse_reply(r)[0] is p.Status.OK


def test_command_helpers_validate():
    net = small()
    with pytest.raises(PchwError, match="needs 5 values"):
        p.infer_command(net, [1, 2])
    with pytest.raises(PchwError, match="shape"):
        p.write_params_command(net, 1, np.zeros((5, 7), dtype=int), np.zeros(7, dtype=int))
    with pytest.raises(PchwError, match="does not exist"):
        p.write_params_command(net, 3, np.zeros((3, 7), dtype=int), np.zeros(3, dtype=int))
    with pytest.raises(PchwError, match="not a pchw device"):
        p.decode_identify(b"XXXX" + bytes(11))
    with pytest.raises(PchwError, match="not a pchw device"):
        p.decode_identify(b"PCHW\x03" + bytes(11))
    assert p.decode_identify(b"PCHW\x02" + bytes(10)) == (2, None, None, None)  # another version


# -- many frames: tags, order, and losses (properties of the golden device model) ---------------

KINDS = ["identify", "infer", "learn", "read", "write", "bad_crc", "opcode", "length", "layer",
         "too_long"]
STATUS_OF = {"identify": p.Status.OK, "infer": p.Status.OK, "learn": p.Status.OK,
             "read": p.Status.OK, "write": p.Status.OK, "bad_crc": p.Status.ERR_CHECKSUM,
             "opcode": p.Status.ERR_OPCODE, "length": p.Status.ERR_LENGTH,
             "layer": p.Status.ERR_ARGUMENT, "too_long": p.Status.ERR_LENGTH}


def make_frame(net, kind, tag, rng):
    """A self-delimiting frame of ``kind`` (each gets exactly one reply, of STATUS_OF[kind])."""
    L, f0, fL = net.L, net.value_format(0), net.value_format(net.L)
    x = random_values(rng, f0, net.layers[0]) // 4
    if kind == "identify":
        return p.identify_command(tag=tag)
    if kind == "infer":
        return p.infer_command(net, x, tag=tag)
    if kind == "learn":
        return p.learn_command(net, x, random_values(rng, fL, net.layers[L]) // 4, tag=tag)
    if kind == "read":
        return p.read_params_command(int(rng.integers(1, L + 1)), tag=tag)
    if kind == "write":
        l = int(rng.integers(1, L + 1))
        fmt = net.weight_format(l)
        W = random_values(rng, fmt, net.layers[l] * net.layers[l - 1]) // 2
        return p.write_params_command(net, l, W.reshape(net.layers[l], -1),
                                      random_values(rng, fmt, net.layers[l]) // 2, tag=tag)
    if kind == "bad_crc":                   # any bit of the opcode, payload or crc
        frame = bytearray(p.infer_command(net, x, tag=tag))
        at = [1] + list(range(p.HEADER_SIZE, len(frame)))
        frame[at[int(rng.integers(len(at)))]] ^= 1 << int(rng.integers(8))
        return bytes(frame)
    if kind == "opcode":
        return p.command_frame(int(rng.choice([0, 6, 0x42, 0xA5, 0xFF])), b"\x01", tag)
    if kind == "length":
        return p.command_frame(p.Opcode.INFER, bytes(int(rng.integers(0, 3))), tag)
    if kind == "layer":
        return p.read_params_command(int(rng.choice([0, L + 1, 0xFF])), tag=tag)
    length = int(rng.integers(p.max_payload(net) + 1, 0x10000))      # too long: header only
    return bytes([p.SYNC_COMMAND, p.Opcode.INFER, tag]) + length.to_bytes(2, "little")


def garbage(rng):
    """A few bytes without a sync byte: no reply, no effect."""
    return bytes(int(b) for b in rng.choice([b for b in range(256) if b != p.SYNC_COMMAND],
                                            int(rng.integers(0, 4))))


def check_every_loss_reported(frames, replies):
    """Each frame's tag (all distinct) comes back in order, or the frame lies between two
    answered ones (or the ends) with an ERR_OVERRUN among the replies between theirs. An
    ERR_OVERRUN with a frame's tag is that frame's answer (cut short: lost); after a loss the
    link may reparse lost bytes as a frame whose tag is an earlier frame's, and such a stale
    reply answers nothing. Returns ``(answered, lost)``."""
    tags = [p.frame_tag(f[f.index(p.SYNC_COMMAND):]) for f in frames]
    assert len(set(tags)) == len(tags)
    position = {tag: i for i, tag in enumerate(tags)}
    answered, lost, next_frame, overrun_since = 0, 0, 0, False
    for reply in replies:
        status, tag = p.parse_reply(reply)[0], p.frame_tag(reply)
        if status is p.Status.ERR_OVERRUN:
            if tag in position and position[tag] >= next_frame:      # the frame cut short
                skipped = position[tag] - next_frame
                assert skipped == 0 or overrun_since, f"frames {next_frame}.. lost without a report"
                lost, next_frame = lost + skipped + 1, position[tag] + 1
            overrun_since = True
        elif tag in position and position[tag] >= next_frame:
            skipped = position[tag] - next_frame
            assert skipped == 0 or overrun_since, f"frames {next_frame}.. lost without a report"
            lost, answered = lost + skipped, answered + 1
            next_frame, overrun_since = position[tag] + 1, False
    skipped = len(frames) - next_frame
    assert skipped == 0 or overrun_since, "frames at the end lost without a report"
    return answered, lost + skipped


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(50, 400), st.sampled_from(NETWORKS))
def test_many_frames_each_answered_in_order_with_its_tag(seed, count, make):
    """Streams of good and bad frames with garbage between them, fed in random pieces: one
    reply per frame, in order, with the frame's tag and the status its kind calls for; the OK
    replies are those of a device that saw only the good frames."""
    net = make()
    rng = np.random.default_rng(seed)
    kinds = [KINDS[i] for i in rng.integers(len(KINDS), size=count)]
    tags = rng.integers(256, size=count)
    frames = [garbage(rng) + make_frame(net, k, int(t), rng) for k, t in zip(kinds, tags)]
    stream = b"".join(frames)
    device, replies, at = p.DeviceModel(net), [], 0
    for cut in sorted(rng.integers(len(stream), size=count // 3)) + [len(stream)]:
        replies += device.feed(stream[at:cut])
        at = cut
    assert len(replies) == count
    clean = p.DeviceModel(net)
    for kind, tag, frame, reply in zip(kinds, tags, frames, replies):
        status, payload, _ = p.parse_reply(reply)
        assert (status, p.frame_tag(reply)) == (STATUS_OF[kind], tag), kind
        if status is p.Status.OK:
            assert clean.feed(frame) == [reply], kind
    assert device.parser.hunting


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(20, 250))
def test_every_loss_is_reported(seed, count):
    """Runs of bytes cut out of a stream of frames (anywhere: in a frame, across several, before
    a sync byte), each marked where it was (``overrun``): one ERR_OVERRUN per mark, and every
    frame without its own reply is covered by one."""
    net = small()
    rng = np.random.default_rng(seed)
    kinds = [KINDS[i] for i in rng.integers(len(KINDS), size=count)]
    frames = [make_frame(net, k, t, rng) for k, t in zip(kinds, range(1, count + 1))]
    stream = b"".join(frames)
    cuts = sorted(set(rng.integers(len(stream), size=int(rng.integers(1, 1 + count // 10)))))
    device, replies, at, marks = p.DeviceModel(net), [], 0, 0
    for cut in cuts:
        if cut < at:
            continue
        replies += device.feed(stream[at:cut]) + device.overrun()
        marks += 1
        at = cut + int(rng.integers(1, 40))                         # the bytes lost
    replies += device.feed(stream[at:])
    overruns = [r for r in replies if p.parse_reply(r)[0] is p.Status.ERR_OVERRUN]
    assert len(overruns) == marks
    answered, lost = check_every_loss_reported(frames, replies)
    assert answered + lost == count and lost >= 1


@pytest.mark.parametrize("rate", [0.0, 0.02, 0.5, 1.0, 2.75, 1 - 2.0 ** -40, 3 + 2.0 ** -33,
                                  65535.5])
def test_upset_fields_decide_as_the_golden_model(rate):
    """FAULT's (flips, threshold) make the same decision as the golden model's
    h / 2**32 < rate - floor(rate) for every 32-bit h (checked at the edges), and the device
    model's decoded rate places the same upsets."""
    from pchw.faults import FaultSpec, upset_positions
    flips, threshold = p.upset_fields(rate)
    frac = rate - int(rate)
    for h in {0, 1, max(threshold - 1, 0), threshold, min(threshold + 1, 2 ** 32 - 1),
              2 ** 32 - 1}:
        if h < 2 ** 32:
            assert flips + (h < threshold) == int(rate) + (h < frac * 2.0 ** 32)
    net = small()
    frame = p.fault_command(net, [[]] * (net.L + 1), rate, seed=77)
    decoded, seed = p.decode_upsets(net, p.parse_command(frame)[1][1:])
    assert seed == 77
    for k in range(20):
        assert upset_positions(FaultSpec(upset_rate=decoded, seed=seed), k, 1000) == \
            upset_positions(FaultSpec(upset_rate=rate, seed=seed), k, 1000)


def test_fault_commands_refuse_what_they_cannot_carry():
    net = small()
    dead = [[]] * (net.L + 1)
    with pytest.raises(PchwError, match="upset rate of 65536"):
        p.fault_command(net, dead, 65536.0)
    with pytest.raises(PchwError, match="seed 16777216 is outside"):
        p.fault_command(net, dead, 0.5, seed=1 << 24)
    with pytest.raises(PchwError, match="stuck codes of W_1 must be"):
        p.stuck_command(net, 1, np.zeros((2, 2), dtype=int))
    with pytest.raises(PchwError, match="stuck codes of W_1 must be"):
        p.stuck_command(net, 1, np.full((net.layers[1], net.layers[0]), 4))
    with pytest.raises(PchwError, match="does not exist"):
        p.stuck_command(net, net.L + 1, [])


def test_fault_lengths_and_targets_in_the_device_model():
    """FAULT in a fault-injection device model: empty -> ERR_LENGTH; a target above L ->
    ERR_ARGUMENT; a wrong length for the target -> ERR_LENGTH; none changes anything."""
    net = small()
    device = p.DeviceModel(net, faults=True)
    before = [w.copy() for w in device.model.W]
    good = p.stuck_command(net, 1, np.full((net.layers[1], net.layers[0]), 3), 5)
    payload = p.parse_command(good)[1]
    for frame, status in ((p.command_frame(p.Opcode.FAULT, b""), p.Status.ERR_LENGTH),
                          (p.command_frame(p.Opcode.FAULT, bytes([net.L + 1, 0])),
                           p.Status.ERR_ARGUMENT),
                          (p.command_frame(p.Opcode.FAULT, payload[:-1]), p.Status.ERR_LENGTH),
                          (p.command_frame(p.Opcode.FAULT, b"\x00" * 3), p.Status.ERR_LENGTH)):
        assert p.parse_reply(device.feed(frame)[0])[0] == status
    assert all(np.array_equal(a, b) for a, b in zip(before, device.model.W))
    assert not device.faults.stuck_mask[0].any()
    assert p.parse_reply(device.feed(good)[0])[0] == p.Status.OK
    assert device.faults.stuck_mask[0].all() and (device.model.W[0] == 5).all()
