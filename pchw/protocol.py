"""The host <-> device wire protocol, defined once: constants, frames, values, and the device.

Everything on the wire is described in ``docs/protocol.md``; this module is its one
implementation. The host driver builds commands and decodes replies with it, the gateware takes
its constants (sync bytes, CRC polynomial) from it, and :class:`DeviceModel` is the golden
reference of the whole device: it answers a byte stream exactly as the hardware must.

This module needs only NumPy (no Amaranth), so the host side runs without the HDL toolchain.

Frames
------
Command (host -> device): ``A5 opcode tag len_lo len_hi payload[len] crc``.
Reply (device -> host): ``5A status tag len_lo len_hi payload[len] crc``.
``crc`` is CRC-8/SMBUS (:func:`crc8`) over every byte after the sync byte up to the crc. A reply
echoes the tag of the command it answers, so a host matches every reply to its command.
"""

import enum
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from .errors import PchwError
from .golden import FixedModel

__all__ = [
    "SYNC_COMMAND", "SYNC_REPLY", "CRC_POLY", "CRC_INIT", "HEADER_SIZE", "CRC_SIZE",
    "MAX_LENGTH", "MAGIC", "PROTOCOL_VERSION", "NETWORK_ID_SIZE", "TAG_OFFSET", "NO_TAG",
    "RX_BUFFER_SIZE", "STREAM_WINDOW",
    "Opcode", "Status", "FrameCheck",
    "crc8_step", "crc8", "value_bytes", "encode_values", "decode_values",
    "command_frame", "reply_frame", "frame_size", "frame_tag", "parse_command", "parse_reply",
    "network_id", "payload_length", "max_payload", "FAULT_NETWORK", "StuckCode",
    "fault_mask_bytes", "fault_command", "stuck_command", "fault_commands", "decode_fault_masks",
    "upset_fields", "decode_upsets", "MAX_UPSETS", "MAX_DATASET", "sample_bytes", "load_chunk", "load_data_command",
    "train_command", "eval_command", "decode_eval", "eval_reply_length", "DATASET_OPCODES",
    "identify_command", "infer_command", "learn_command", "read_params_command",
    "write_params_command", "check_reply", "identify_payload", "decode_identify", "decode_outputs",
    "decode_params", "ReceivedFrame", "FrameParser", "DeviceModel",
]

SYNC_COMMAND = 0xA5         # first byte of every command frame
SYNC_REPLY = 0x5A           # first byte of every reply frame
CRC_POLY = 0x07             # CRC-8/SMBUS: x^8 + x^2 + x + 1, no reflection, no final xor
CRC_INIT = 0x00
HEADER_SIZE = 5             # sync, opcode/status, tag, length low byte, length high byte
TAG_OFFSET = 2              # the tag's byte in a frame
CRC_SIZE = 1
MAX_LENGTH = 0xFFFF         # the largest payload the 16-bit length field can express
MAGIC = b"PCHW"             # start of the IDENTIFY reply
PROTOCOL_VERSION = 3        # 2: the tag byte; ERR_OVERRUN; the stream window in IDENTIFY
                            # 3: the dataset commands; the dataset capacity in IDENTIFY
NETWORK_ID_SIZE = 8         # bytes of the network id in the IDENTIFY reply
NO_TAG = 0                  # the tag of an error reply to a frame whose tag never arrived; hosts
                            # tag their commands 1..255
#: Bytes a board buffers between its UART receiver and the frame receiver (the depth of
#: ``pchw.gateware.board``'s receive FIFO, which takes it from here).
RX_BUFFER_SIZE = 16
#: The stream window, reported by IDENTIFY: the bytes a host may send beyond the oldest command
#: whose reply it has not received completely. The oldest command's bytes pass straight through
#: the frame receiver; later ones wait in the receive buffer while the device works on it.
STREAM_WINDOW = RX_BUFFER_SIZE
WINDOW_SIZE = 2             # bytes of the window in the IDENTIFY reply (little-endian)
CAPACITY_SIZE = 2           # bytes of the dataset capacity in the IDENTIFY reply (little-endian)
#: The most samples a dataset memory can hold (its counts are 16-bit fields; the sample order's
#: permutation, :mod:`pchw.order`, covers up to 2**16 samples).
MAX_DATASET = 0xFFFF
FIELD_SIZE = 2              # bytes of each count, index, seed and epoch field (little-endian)
LOAD_HEADER = 2 * FIELD_SIZE - 1    # LOAD_DATA: the first index, then a 1-byte sample count
LABEL_SIZE = 1              # bytes of a stored sample's class label
COUNT_SIZE = 2              # bytes of each count of an EVAL reply (little-endian)


class Opcode(enum.IntEnum):
    """Command opcodes (the byte after :data:`SYNC_COMMAND`)."""
    IDENTIFY = 0x01         # empty payload
    INFER = 0x02            # n_0 input values
    LEARN = 0x03            # n_0 input values, then n_L target values
    READ_PARAMS = 0x04      # 1 byte: layer l in 1..L
    WRITE_PARAMS = 0x05     # 1 byte layer l, W_l row-major (n_l * n_{l-1} values), b_l (n_l)
    FAULT = 0x06            # fault-injection builds only: 1 byte target, then dead units and
                            # upsets (target 0) or the stuck weights of W_l (target l in 1..L)
    LOAD_DATA = 0x07        # first index, count, then count samples (dataset builds only)
    TRAIN = 0x08            # seed, first epoch, epochs, start, count (dataset builds only)
    EVAL = 0x09             # start, count (dataset builds only)


class Status(enum.IntEnum):
    """Reply statuses (the byte after :data:`SYNC_REPLY`)."""
    OK = 0x00
    ERR_CHECKSUM = 0x01     # the crc of the command did not match
    ERR_OPCODE = 0x02       # unknown opcode
    ERR_LENGTH = 0x03       # length wrong for the opcode, or above max_payload
    ERR_ARGUMENT = 0x04     # layer out of range
    ERR_OVERRUN = 0x05      # input bytes were lost here: the link's receive buffer was full
    ERR_NO_DATA = 0x06      # TRAIN or EVAL while no sample is stored (before LOAD_DATA)


class FrameCheck(enum.IntEnum):
    """What the frame receiver found about a frame before any decoding of its opcode."""
    OK = 0
    BAD_CRC = 1             # payload and crc were read; the crc did not match
    TOO_LONG = 2            # the length field is above max_payload; no payload was read
    OVERRUN = 3             # the link lost bytes: the frame (if any) ended there, incomplete


# -- CRC ----------------------------------------------------------------------------------------

def crc8_step(crc, byte):
    """The CRC register after one more byte (MSB first, polynomial :data:`CRC_POLY`).

    The gateware's ``crc8_next`` is generated from this function, so the two cannot disagree.
    """
    crc ^= byte
    for _ in range(8):
        crc = ((crc << 1) ^ CRC_POLY if crc & 0x80 else crc << 1) & 0xFF
    return crc


_CRC_TABLE = bytes(crc8_step(0, b) for b in range(256))


def crc8(data, crc=CRC_INIT):
    """CRC-8/SMBUS of ``data`` (``crc8(b"123456789") == 0xF4``); ``crc`` continues a running CRC."""
    for b in data:
        crc = _CRC_TABLE[crc ^ b]
    return crc


# -- values -------------------------------------------------------------------------------------

def value_bytes(fmt):
    """Bytes per value on the wire: ``ceil(width / 8)``."""
    return (fmt.width + 7) // 8


def encode_values(values, fmt):
    """Raw integers of ``fmt`` -> little-endian two's complement, ``value_bytes(fmt)`` bytes each,
    sign-extended into the unused top bits.

    Raises
    ------
    PchwError
        If a value is not an integer in ``fmt.min .. fmt.max``.
    """
    v = np.asarray(values).ravel()
    if v.size and not np.issubdtype(v.dtype, np.integer):
        if not np.all(np.mod(v.astype(np.float64), 1) == 0):
            raise PchwError(f"values for {fmt} must be raw integers")
    v = v.astype(np.int64)
    if v.size and (v.min() < fmt.min or v.max() > fmt.max):
        raise PchwError(f"value out of range for {fmt}: raw values are {fmt.min}..{fmt.max}")
    # The low bytes of a sign-extended little-endian int64 are exactly the encoding.
    return v.astype("<i8").view(np.uint8).reshape(-1, 8)[:, :value_bytes(fmt)].tobytes()


def decode_values(data, fmt, count):
    """``count`` values of ``fmt`` from ``data`` (exactly ``count * value_bytes(fmt)`` bytes).

    Only the low ``width`` bits of each value are used: top bits that are not a proper sign
    extension are ignored (the value is taken modulo ``2**width`` as two's complement), as the
    device does. Returns an int64 array.

    Raises
    ------
    PchwError
        If ``data`` has the wrong length.
    """
    size = value_bytes(fmt)
    if len(data) != count * size:
        raise PchwError(f"expected {count} values of {size} bytes ({count * size} bytes), "
                        f"got {len(data)} bytes")
    padded = np.zeros((count, 8), dtype=np.uint8)
    padded[:, :size] = np.frombuffer(bytes(data), dtype=np.uint8).reshape(count, size)
    u = padded.view("<u8").ravel() & np.uint64((1 << fmt.width) - 1)
    v = u.astype(np.int64)
    return np.where(v > fmt.max, v - (1 << fmt.width), v)


# -- frames -------------------------------------------------------------------------------------

def _frame(sync, code, payload, tag):
    payload = bytes(payload)
    if not 0 <= int(code) <= 0xFF:
        raise PchwError(f"opcode/status {code!r} does not fit in a byte")
    if not 0 <= int(tag) <= 0xFF:
        raise PchwError(f"tag {tag!r} does not fit in a byte")
    if len(payload) > MAX_LENGTH:
        raise PchwError(f"payload of {len(payload)} bytes is above the protocol's maximum of "
                        f"{MAX_LENGTH}")
    body = bytes([int(code), int(tag), len(payload) & 0xFF, len(payload) >> 8]) + payload
    return bytes([sync]) + body + bytes([crc8(body)])


def command_frame(opcode, payload=b"", tag=NO_TAG):
    """A complete command frame; ``opcode`` may be any byte (unknown ones are for tests)."""
    return _frame(SYNC_COMMAND, opcode, payload, tag)


def reply_frame(status, payload=b"", tag=NO_TAG):
    """A complete reply frame."""
    return _frame(SYNC_REPLY, status, payload, tag)


def frame_size(header):
    """Total size of the frame whose first :data:`HEADER_SIZE` bytes are ``header``."""
    if len(header) < HEADER_SIZE:
        raise PchwError(f"need {HEADER_SIZE} header bytes, got {len(header)}")
    return HEADER_SIZE + (header[HEADER_SIZE - 2] | header[HEADER_SIZE - 1] << 8) + CRC_SIZE


def frame_tag(frame):
    """The tag of a command or reply frame (its first :data:`HEADER_SIZE` bytes suffice)."""
    if len(frame) < HEADER_SIZE:
        raise PchwError(f"need {HEADER_SIZE} header bytes, got {len(frame)}")
    return frame[TAG_OFFSET]


def _parse(data, sync, kind):
    data = bytes(data)
    if not data:
        raise PchwError(f"no {kind} frame: no data")
    if data[0] != sync:
        raise PchwError(f"no {kind} frame: first byte is 0x{data[0]:02X}, not 0x{sync:02X}")
    if len(data) < HEADER_SIZE or len(data) < frame_size(data):
        raise PchwError(f"incomplete {kind} frame: {len(data)} bytes")
    end = frame_size(data)
    if crc8(data[1:end - 1]) != data[end - 1]:
        raise PchwError(f"{kind} frame has a bad crc: 0x{data[end - 1]:02X}, expected "
                        f"0x{crc8(data[1:end - 1]):02X}")
    return data[1], data[HEADER_SIZE:end - 1], data[end:]


def parse_command(data):
    """``(opcode, payload, rest)`` of the command frame at the start of ``data``.

    ``opcode`` is an int (it may be unknown). Raises PchwError on anything else.
    """
    return _parse(data, SYNC_COMMAND, "command")


def parse_reply(data):
    """``(status, payload, rest)`` of the reply frame at the start of ``data``.

    Raises
    ------
    PchwError
        If ``data`` does not start with a complete, valid reply frame with a known status.
    """
    status, payload, rest = _parse(data, SYNC_REPLY, "reply")
    try:
        return Status(status), payload, rest
    except ValueError:
        raise PchwError(f"reply has unknown status 0x{status:02X}") from None


# -- the network's commands ---------------------------------------------------------------------

def network_id(network):
    """8 bytes identifying the description without weights: the start of the SHA-256 of the
    canonical JSON (sorted keys, no spaces) of ``network.to_toml_dict()`` without its
    ``hardware`` table (lanes change the timing, never a reply: one id for every build)."""
    description = {k: v for k, v in network.to_toml_dict().items() if k != "hardware"}
    text = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).digest()[:NETWORK_ID_SIZE]


def _param_bytes(network, l):
    n_out, n_in = network.layers[l], network.layers[l - 1]
    return (n_out * n_in + n_out) * value_bytes(network.weight_format(l))


def payload_length(network, opcode, layer=None, samples=1):
    """The payload length ``opcode`` needs on ``network``.

    For WRITE_PARAMS and FAULT it depends on ``layer`` (the payload's first byte; FAULT's target
    :data:`FAULT_NETWORK` or a layer): None if ``layer`` is None or outside 1..L (0..L for
    FAULT), in which case any length >= 1 passes the length check and the reply is
    ERR_ARGUMENT. For LOAD_DATA it depends on the sample count in its third byte,
    ``samples``: :data:`LOAD_HEADER` ``+ samples *`` :func:`sample_bytes`.
    """
    opcode = Opcode(opcode)
    n, L = network.layers, network.L
    inputs = n[0] * value_bytes(network.value_format(0))
    outputs = n[L] * value_bytes(network.value_format(L))
    if opcode is Opcode.IDENTIFY:
        return 0
    if opcode is Opcode.INFER:
        return inputs
    if opcode is Opcode.LEARN:
        return inputs + outputs
    if opcode is Opcode.READ_PARAMS:
        return 1
    if opcode is Opcode.FAULT and layer == FAULT_NETWORK:
        return 1 + sum(fault_mask_bytes(network)) + UPSET_BYTES
    if opcode is Opcode.LOAD_DATA:
        return LOAD_HEADER + samples * sample_bytes(network)
    if opcode is Opcode.TRAIN:
        return 5 * FIELD_SIZE
    if opcode is Opcode.EVAL:
        return 2 * FIELD_SIZE
    if layer is None or not 1 <= layer <= L:
        return None
    if opcode is Opcode.FAULT:
        return 1 + value_bytes(network.weight_format(layer)) + n[layer] * n[layer - 1]
    return 1 + _param_bytes(network, layer)


#: The commands of a build with a dataset memory (``--data-memory N``); others answer ERR_OPCODE.
DATASET_OPCODES = (Opcode.LOAD_DATA, Opcode.TRAIN, Opcode.EVAL)


def sample_bytes(network):
    """Bytes of one sample in a LOAD_DATA payload: its ``n_0`` inputs (layer 0's value format),
    then its class label (:data:`LABEL_SIZE` byte, ``0..n_L - 1``)."""
    return network.layers[0] * value_bytes(network.value_format(0)) + LABEL_SIZE


def load_chunk(network):
    """The most samples one LOAD_DATA carries: as many as fit the receive buffer
    (:func:`max_payload`, at least one), at most 255 (the count is one byte)."""
    return min(0xFF, (max_payload(network) - LOAD_HEADER) // sample_bytes(network))


def _field(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
            not 0 <= value <= 0xFFFF:
        raise PchwError(f"{what} {value!r} does not fit its 16-bit field (0..65535)")
    return int(value).to_bytes(FIELD_SIZE, "little")


def load_data_command(network, first, x_raw, labels, tag=NO_TAG):
    """LOAD_DATA: store the samples ``first``, ``first + 1``, ... of the dataset memory. Rows
    of ``x_raw``: ``n_0`` raw integers of ``network.value_format(0)``; ``labels``: class labels
    ``0..n_L - 1``. At most :func:`load_chunk` samples (none: the stored set is cut to
    ``first`` samples)."""
    x = np.asarray(x_raw).reshape(-1, network.layers[0]) if np.size(x_raw) else \
        np.zeros((0, network.layers[0]), dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if len(x) != len(labels):
        raise PchwError(f"{len(x)} inputs but {len(labels)} labels")
    if len(x) > load_chunk(network):
        raise PchwError(f"a LOAD_DATA carries at most {load_chunk(network)} samples, not "
                        f"{len(x)}")
    if labels.size and (labels.min() < 0 or labels.max() >= network.layers[-1]):
        raise PchwError(f"labels must be classes 0..{network.layers[-1] - 1}")
    fmt = network.value_format(0)
    payload = bytearray(_field(first, "first sample") + bytes([len(x)]))
    for row, label in zip(x, labels):
        payload += encode_values(row, fmt) + bytes([int(label)])
    return command_frame(Opcode.LOAD_DATA, bytes(payload), tag)


def train_command(epochs, seed=0, first_epoch=0, start=0, count=None, stored=None, tag=NO_TAG):
    """TRAIN: ``epochs`` epochs of online learning over the stored samples ``start`` ..
    ``start + count - 1`` (``count``: all ``stored`` from ``start`` if None), in the order of
    :func:`pchw.order.epoch_order` for ``seed`` and the epochs ``first_epoch``,
    ``first_epoch + 1``, ..."""
    if count is None:
        if stored is None:
            raise PchwError("TRAIN needs a count of samples (or the stored count)")
        count = stored - start
    return command_frame(Opcode.TRAIN, _field(seed, "seed") + _field(first_epoch, "first epoch")
                         + _field(epochs, "epochs") + _field(start, "start")
                         + _field(count, "count"), tag)


def eval_command(start, count, tag=NO_TAG):
    """EVAL: infer the stored samples ``start`` .. ``start + count - 1``; the reply counts the
    right answers and the confusions (:func:`decode_eval`)."""
    return command_frame(Opcode.EVAL, _field(start, "start") + _field(count, "count"), tag)


def eval_reply_length(network):
    """Bytes of an OK EVAL reply: the right answers, then the ``n_L x n_L`` confusion counts,
    :data:`COUNT_SIZE` bytes each."""
    return COUNT_SIZE * (1 + network.layers[-1] ** 2)


def decode_eval(network, payload):
    """``(correct, confusion)`` from an EVAL reply: the samples whose predicted class (the
    first largest output) is their label, and ``confusion[label, predicted]`` (int arrays)."""
    if len(payload) != eval_reply_length(network):
        raise PchwError(f"an EVAL reply has {eval_reply_length(network)} bytes, not "
                        f"{len(payload)}")
    counts = np.frombuffer(bytes(payload), dtype="<u2").astype(np.int64)
    n = network.layers[-1]
    return int(counts[0]), counts[1:].reshape(n, n)


#: FAULT's target byte for the network-wide faults (dead units, upsets); 1..L: stuck weights.
FAULT_NETWORK = 0
#: The upset fields of a network-wide FAULT: flips (2 bytes), threshold (4), seed (3).
UPSET_BYTES = 9
#: The most upsets per LEARN command a FAULT can set (its 2-byte count, plus the fraction).
MAX_UPSETS = 0xFFFF


class StuckCode(enum.IntFlag):
    """A weight's byte in a stuck-weights FAULT (bits 2..7 are ignored)."""
    FREE = 0        # learning and upsets change it
    STUCK = 1       # held at its value: learning and upsets never change it
    SET = 2         # it takes the command's value first (STUCK | SET: stuck at that value)


def fault_mask_bytes(network):
    """Bytes of each layer's dead-unit mask in a FAULT payload: ``ceil(n_l / 8)``, l = 0..L."""
    return [-(-n // 8) for n in network.layers]


def upset_fields(rate):
    """``(flips, threshold)`` of an upset rate (``docs/faults.md``): LEARN command ``k`` flips
    ``flips`` bits, plus one when ``h(k, 0) < threshold``; the same decisions as the golden
    model's ``h(k, 0) / 2**32 < rate - floor(rate)`` for every 32-bit ``h``."""
    import math
    if not 0 <= rate < MAX_UPSETS + 1:
        raise PchwError(f"FAULT: an upset rate of {rate!r} is outside 0 .. {MAX_UPSETS + 1} "
                        "(exclusive) flips per LEARN command")
    flips = int(rate)
    threshold = math.ceil((rate - flips) * 2.0 ** 32)
    if threshold == 1 << 32:        # every h(k, 0) is below it: one more flip, always
        flips, threshold = flips + 1, 0
    if flips > MAX_UPSETS:
        raise PchwError(f"FAULT: an upset rate of {rate!r} needs more than {MAX_UPSETS} flips")
    return flips, threshold


def fault_command(network, dead, upset_rate=0.0, seed=0, tag=NO_TAG):
    """FAULT of the network-wide faults: target :data:`FAULT_NETWORK`, then the dead units of
    every layer (``dead[l]``: booleans or indices of layer ``l``'s units, l = 0..L; all-False /
    empty revives them all; layer by layer, bit ``i % 8`` of byte ``i // 8`` of layer ``l``'s
    mask is unit ``i``; the padding bits are ignored), then the upsets (:func:`upset_fields` of
    ``upset_rate``, ``seed``): flips (2 bytes), threshold (4), seed (3), little-endian. It also
    restarts the LEARN count that keys the upsets."""
    payload = bytearray([FAULT_NETWORK])
    if len(dead) != network.L + 1:
        raise PchwError(f"FAULT needs a mask for each of the {network.L + 1} layers, got "
                        f"{len(dead)}")
    for l, (n, units) in enumerate(zip(network.layers, dead)):
        mask = np.zeros(n, dtype=bool)
        units = np.asarray(units)
        if units.dtype == bool:
            if units.shape != (n,):
                raise PchwError(f"FAULT: layer {l} has {n} units, its mask {units.shape}")
            mask = units
        elif units.size:
            if units.min() < 0 or units.max() >= n:
                raise PchwError(f"FAULT: layer {l} has units 0..{n - 1}")
            mask[units.astype(int)] = True
        payload += np.packbits(mask, bitorder="little").tobytes()
    from .faults import MAX_SEED
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or \
            not 0 <= seed <= MAX_SEED:
        raise PchwError(f"FAULT: seed {seed!r} is outside 0..{MAX_SEED}")
    flips, threshold = upset_fields(upset_rate)
    payload += flips.to_bytes(2, "little") + threshold.to_bytes(4, "little") + \
        int(seed).to_bytes(3, "little")
    return command_frame(Opcode.FAULT, bytes(payload), tag)


def stuck_command(network, layer, codes, value=0, tag=NO_TAG):
    """FAULT of the stuck weights of ``W_layer``: target ``layer``, the stuck value (raw, in the
    weight format, as in WRITE_PARAMS), then one :class:`StuckCode` per weight, row-major
    (``codes``: ``n_l x n_{l-1}``). Replaces the layer's stuck set: a weight with ``STUCK`` is
    held, ``SET`` first writes ``value`` into it (the host's write, as WRITE_PARAMS: a stuck
    weight takes what the host writes and holds it)."""
    layer = _check_layer(network, layer)
    shape = (network.layers[layer], network.layers[layer - 1])
    codes = np.asarray(codes)
    if codes.shape != shape or codes.size and (codes.min() < 0 or codes.max() > 3):
        raise PchwError(f"FAULT: the stuck codes of W_{layer} must be {shape[0]} x {shape[1]} "
                        "values in 0..3")
    fmt = network.weight_format(layer)
    payload = bytes([layer]) + encode_values(np.array([value]), fmt) + \
        codes.astype(np.uint8).tobytes()
    return command_frame(Opcode.FAULT, payload, tag)


def fault_commands(network, faults, tags=None):
    """The FAULT commands that put the resolved ``faults`` (:class:`pchw.faults.Faults`) on a
    device: the network-wide one (dead units, upsets), then one per weight layer (its stuck
    weights, one command per distinct stuck value, each keeping the ones before stuck).
    ``tags``: an iterator of tags (default :data:`NO_TAG`)."""
    def tag():
        return next(tags) if tags is not None else NO_TAG
    commands = [fault_command(network, faults.dead, faults.spec.upset_rate, faults.spec.seed,
                              tag=tag())]
    for l in range(1, network.L + 1):
        mask = faults.stuck_mask[l - 1]
        raw = network.weight_format(l).quantise(faults.stuck_value[l - 1])
        codes = np.zeros(mask.shape, dtype=np.uint8)
        values = np.unique(raw[mask]) if mask.any() else [0]
        for v in values:
            now = mask & (raw == v)
            codes[now] = StuckCode.STUCK | StuckCode.SET
            commands.append(stuck_command(network, l, codes, int(v), tag=tag()))
            codes[now] = StuckCode.STUCK
    return commands


def decode_fault_masks(network, payload):
    """The dead-unit masks (one boolean array per layer 0..L) of a network-wide FAULT payload
    (after its target byte)."""
    masks, offset = [], 0
    for n, size in zip(network.layers, fault_mask_bytes(network)):
        bits = np.unpackbits(np.frombuffer(bytes(payload[offset:offset + size]), np.uint8),
                             bitorder="little")
        masks.append(bits[:n].astype(bool))
        offset += size
    return masks


def decode_upsets(network, payload):
    """``(rate, seed)`` of a network-wide FAULT payload (after its target byte)."""
    at = sum(fault_mask_bytes(network))
    flips = int.from_bytes(payload[at:at + 2], "little")
    threshold = int.from_bytes(payload[at + 2:at + 6], "little")
    return flips + threshold / 2.0 ** 32, int.from_bytes(payload[at + 6:at + 9], "little")


def max_payload(network, faults=False):
    """The largest valid payload of any command for ``network`` (MAX_PAYLOAD); ``faults``: of a
    fault-injection build (with FAULT's).

    Raises
    ------
    PchwError
        If it is above 65535 bytes: a WRITE_PARAMS of the largest layer would not fit the
        16-bit length field, so the network is too big for this protocol.
    """
    lengths = [payload_length(network, op) or 0 for op in Opcode    # LOAD_DATA: one sample
               if op is not Opcode.FAULT]
    lengths += [payload_length(network, Opcode.WRITE_PARAMS, l) for l in range(1, network.L + 1)]
    if faults:
        lengths += [payload_length(network, Opcode.FAULT, l) for l in range(network.L + 1)]
    longest = max(lengths)
    if longest > MAX_LENGTH:
        raise PchwError(f"{network.source}: a command payload of {longest} bytes (WRITE_PARAMS "
                        f"of the largest layer) is above the protocol's maximum of {MAX_LENGTH}")
    return longest


def _check_layer(network, l):
    if isinstance(l, bool) or not isinstance(l, (int, np.integer)) or not 1 <= l <= network.L:
        raise PchwError(f"layer {l!r} does not exist (weight layers are 1..{network.L})")
    return int(l)


def identify_command(tag=NO_TAG):
    return command_frame(Opcode.IDENTIFY, tag=tag)


def infer_command(network, x_raw, tag=NO_TAG):
    """INFER of one input: ``x_raw`` are n_0 raw integers of ``network.value_format(0)``
    (from floats: ``network.value_format(0).quantise(x)``)."""
    return command_frame(Opcode.INFER, _vector(network, 0, x_raw, "input"), tag)


def learn_command(network, x_raw, y_raw, tag=NO_TAG):
    """LEARN of one sample: n_0 raw inputs (format of layer 0), n_L raw targets (layer L)."""
    return command_frame(Opcode.LEARN, _vector(network, 0, x_raw, "input")
                         + _vector(network, network.L, y_raw, "target"), tag)


def read_params_command(l, tag=NO_TAG):
    """READ_PARAMS of weight layer ``l`` (1..L; any byte is sent, the device checks it)."""
    if not 0 <= l <= 0xFF:
        raise PchwError(f"layer {l!r} does not fit the layer byte")
    return command_frame(Opcode.READ_PARAMS, bytes([l]), tag)


def write_params_command(network, l, W_raw, b_raw, tag=NO_TAG):
    """WRITE_PARAMS of layer ``l``: raw integers of ``network.weight_format(l)``, ``W_raw`` of
    shape ``(n_l, n_{l-1})`` (sent row-major), ``b_raw`` of shape ``(n_l,)``."""
    l = _check_layer(network, l)
    shape = (network.layers[l], network.layers[l - 1])
    W, b = np.asarray(W_raw), np.asarray(b_raw)
    if W.shape != shape or b.shape != shape[:1]:
        raise PchwError(f"W_{l} must have shape {shape} and b_{l} shape {shape[:1]}, got "
                        f"{W.shape} and {b.shape}")
    fmt = network.weight_format(l)
    return command_frame(Opcode.WRITE_PARAMS,
                         bytes([l]) + encode_values(W, fmt) + encode_values(b, fmt), tag)


def _vector(network, l, values, what):
    v = np.asarray(values).ravel()
    if v.size != network.layers[l]:
        raise PchwError(f"{what} needs {network.layers[l]} values, got {v.size}")
    return encode_values(v, network.value_format(l))


def check_reply(reply, opcode):
    """The payload of an OK reply ``(status, payload)`` to ``opcode``; PchwError otherwise."""
    status, payload = reply[0], reply[1]
    if status is not Status.OK:
        raise PchwError(f"device replied {Status(status).name} to {Opcode(opcode).name}")
    return payload


def identify_payload(network_id, window=STREAM_WINDOW, capacity=0):
    """The OK reply payload of IDENTIFY: :data:`MAGIC`, version, network id, stream window,
    dataset capacity (0: no dataset memory, no LOAD_DATA / TRAIN / EVAL)."""
    return (MAGIC + bytes([PROTOCOL_VERSION]) + network_id
            + window.to_bytes(WINDOW_SIZE, "little") + capacity.to_bytes(CAPACITY_SIZE, "little"))


def decode_identify(payload):
    """``(version, network_id, window, capacity)`` from an IDENTIFY reply payload (all but the
    version None if the device speaks another protocol version)."""
    payload = bytes(payload)
    if len(payload) <= len(MAGIC) or payload[:len(MAGIC)] != MAGIC:
        raise PchwError(f"not a pchw device: IDENTIFY replied {payload!r}")
    version = payload[len(MAGIC)]
    if version != PROTOCOL_VERSION:
        return version, None, None, None
    if len(payload) != len(identify_payload(bytes(NETWORK_ID_SIZE))):
        raise PchwError(f"not a pchw device: IDENTIFY replied {payload!r}")
    start = len(MAGIC) + 1
    window = start + NETWORK_ID_SIZE
    return (version, payload[start:window],
            int.from_bytes(payload[window:window + WINDOW_SIZE], "little"),
            int.from_bytes(payload[window + WINDOW_SIZE:], "little"))


def decode_outputs(network, payload):
    """The n_L raw outputs (format of layer L) of an INFER or LEARN reply payload."""
    L = network.L
    return decode_values(payload, network.value_format(L), network.layers[L])


def decode_params(network, l, payload):
    """``(W_raw, b_raw)`` of layer ``l`` from a READ_PARAMS reply payload."""
    l = _check_layer(network, l)
    n_out, n_in = network.layers[l], network.layers[l - 1]
    values = decode_values(payload, network.weight_format(l), n_out * n_in + n_out)
    return values[:n_out * n_in].reshape(n_out, n_in), values[n_out * n_in:]


# -- the device ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReceivedFrame:
    """A command frame as the receiver saw it: ``payload`` is empty for TOO_LONG and OVERRUN;
    for OVERRUN, ``opcode`` and ``tag`` are those received before the loss (else 0) and
    ``length`` is 0."""
    opcode: int
    tag: int
    length: int
    payload: bytes
    check: FrameCheck


class FrameParser:
    """The receiver's framing, byte by byte (the golden model of the gateware FrameReceiver).

    While hunting, bytes other than :data:`SYNC_COMMAND` are dropped. After the sync byte come
    the opcode, the tag and the two length bytes; a length above ``max_payload`` ends the frame
    at once (``TOO_LONG``, back to hunting: the rest of the bogus frame is hunted through as
    garbage). Otherwise ``length`` payload bytes and the crc follow and the frame is ``OK`` or
    ``BAD_CRC``. :meth:`overrun` marks where the link lost bytes: it ends the frame in progress,
    if any, as ``OVERRUN`` (or reports an empty one while hunting).

    Parameters
    ----------
    max_payload : int
        The longest payload accepted.
    """

    def __init__(self, max_payload):
        self.max_payload = max_payload
        self._frame = None          # bytes after the sync byte; None while hunting

    @property
    def hunting(self):
        return self._frame is None

    def feed(self, data):
        """Consume ``data`` (any split of the stream); returns the frames completed by it."""
        frames = []
        after_sync = HEADER_SIZE - 1            # opcode, tag, length low, length high
        for byte in bytes(data):
            if self._frame is None:
                if byte == SYNC_COMMAND:
                    self._frame = bytearray()
                continue
            f = self._frame
            f.append(byte)
            if len(f) < after_sync:
                continue
            length = f[2] | f[3] << 8
            if len(f) == after_sync and length > self.max_payload:
                frames.append(ReceivedFrame(f[0], f[1], length, b"", FrameCheck.TOO_LONG))
                self._frame = None
            elif len(f) == after_sync + length + CRC_SIZE:
                check = FrameCheck.OK if crc8(f[:-1]) == f[-1] else FrameCheck.BAD_CRC
                frames.append(ReceivedFrame(f[0], f[1], length, bytes(f[after_sync:-1]), check))
                self._frame = None
        return frames

    def overrun(self):
        """The link lost bytes here: the frame in progress ends as ``OVERRUN`` (with the opcode
        and tag received so far, 0 for those not received); while hunting, an ``OVERRUN`` frame
        with opcode and tag 0. Returns ``[frame]``; hunting resumes."""
        f = self._frame or b""
        self._frame = None
        return [ReceivedFrame(f[0] if len(f) > 0 else 0, f[1] if len(f) > 1 else NO_TAG, 0, b"",
                              FrameCheck.OVERRUN)]


class DeviceModel:
    """The golden reference of the device: bytes in, reply frames out, as the hardware must.

    Parameters
    ----------
    network : Network
        The network the device was built for (its weights are the initial parameters).
    faults : bool
        A fault-injection build: FAULT sets the dead units, the upsets and the stuck weights
        (:mod:`pchw.faults`, ``docs/faults.md``). Without, FAULT is an
        unknown opcode (ERR_OPCODE), as in every normal build.
    dataset : int
        The capacity of the dataset memory in samples (a build with ``--data-memory N``): LOAD_DATA
        stores samples, TRAIN learns from them, EVAL counts right answers and confusions
        (``docs/protocol.md``). 0 (the default): no dataset memory, and those opcodes are
        unknown (ERR_OPCODE).

    Members
    -------
    model : FixedModel
        The device state; parameters ``model.W[l-1]``, ``model.b[l-1]`` (raw int64 arrays).
    max_payload : int
    network_id : bytes
    window : int
        The stream window IDENTIFY reports (:data:`STREAM_WINDOW`).
    data_x, data_labels : int64 arrays
        The dataset memory (``dataset`` rows of ``n_0`` raw inputs; the labels);
        ``stored`` samples of it are valid.

    Every complete frame gets exactly one reply, with the frame's tag; errors never change the
    parameters. A frame is checked in this order: crc (ERR_CHECKSUM), opcode (ERR_OPCODE),
    length (ERR_LENGTH), layer (ERR_ARGUMENT). A too-long length is answered with ERR_LENGTH
    right after the header.

    The stream has no notion of time, so it cannot know when a board's receive buffer overruns
    (a host that keeps to the window never makes it overrun); the link layer says where bytes
    were lost with :meth:`overrun`, which is answered with ERR_OVERRUN. With the bytes and the
    losses in the order the board received them, the model predicts every reply byte.
    """

    def __init__(self, network, faults=False, dataset=0):
        self.network = network
        if isinstance(dataset, bool) or not isinstance(dataset, (int, np.integer)) or \
                not 0 <= dataset <= MAX_DATASET:
            raise PchwError(f"dataset capacity {dataset!r}: a number of samples in "
                            f"0..{MAX_DATASET}")
        self.capacity = int(dataset)
        self.data_x = np.zeros((self.capacity, network.layers[0]), dtype=np.int64)
        self.data_labels = np.zeros(self.capacity, dtype=np.int64)
        self.stored = 0
        self.model = FixedModel(network)
        self.faults = None
        #: Upset flips after the last LEARN command (fault-injection builds; its latency).
        self.last_upsets = 0
        if faults:
            from .faults import FaultSpec, damage
            self.faults = damage(self.model, FaultSpec().resolve(network)).faults
        self.max_payload = max_payload(network, faults)
        self.network_id = network_id(network)
        self.window = STREAM_WINDOW
        self.parser = FrameParser(self.max_payload)

    def feed(self, data):
        """Consume ``data`` (possibly part of a frame); returns the complete reply frames."""
        return [self._execute(frame) for frame in self.parser.feed(data)]

    def overrun(self):
        """The link lost input bytes here (its receive buffer was full): drops the frame in
        progress, if any, and returns the one ERR_OVERRUN reply (its payload the opcode, its tag
        that of the frame cut short, 0 for those not received)."""
        return [self._execute(frame) for frame in self.parser.overrun()]

    def _execute(self, frame):
        net, L, payload = self.network, self.network.L, frame.payload

        def reply(status, payload=b""):
            return reply_frame(status, payload, frame.tag)

        def error(status):
            return reply(status, bytes([frame.opcode]))

        if frame.check is FrameCheck.OVERRUN:
            return error(Status.ERR_OVERRUN)
        if frame.check is FrameCheck.TOO_LONG:
            return error(Status.ERR_LENGTH)
        if frame.check is FrameCheck.BAD_CRC:
            return error(Status.ERR_CHECKSUM)
        try:
            opcode = Opcode(frame.opcode)
        except ValueError:
            return error(Status.ERR_OPCODE)
        if opcode is Opcode.FAULT and self.faults is None:
            return error(Status.ERR_OPCODE)
        if opcode in DATASET_OPCODES:
            if not self.capacity:
                return error(Status.ERR_OPCODE)
            return self._dataset(opcode, payload, reply, error)
        layered = opcode in (Opcode.READ_PARAMS, Opcode.WRITE_PARAMS, Opcode.FAULT)
        layer = payload[0] if layered and payload else None
        need = payload_length(net, opcode, layer)
        if (layered and not payload) or (need is not None and len(payload) != need):
            return error(Status.ERR_LENGTH)
        if layered and not (FAULT_NETWORK if opcode is Opcode.FAULT else 1) <= layer <= L:
            return error(Status.ERR_ARGUMENT)

        if opcode is Opcode.IDENTIFY:
            return reply(Status.OK, identify_payload(self.network_id, self.window,
                                                     self.capacity))
        if opcode is Opcode.FAULT:
            self._fault(layer, payload[1:])
            return reply(Status.OK)
        if opcode in (Opcode.INFER, Opcode.LEARN):
            f0, fL = net.value_format(0), net.value_format(L)
            split = net.layers[0] * value_bytes(f0)
            x = f0.dequantise(decode_values(payload[:split], f0, net.layers[0]))[None]
            if opcode is Opcode.INFER:
                out = self.model.infer(x)
            else:
                y = fL.dequantise(decode_values(payload[split:], fL, net.layers[L]))[None]
                out = self._learn(x, y).output
            raw = np.rint(np.ldexp(out[0], fL.frac)).astype(np.int64)   # exact: out is on grid
            return reply(Status.OK, encode_values(raw, fL))
        fmt = net.weight_format(layer)
        if opcode is Opcode.READ_PARAMS:
            return reply(Status.OK, encode_values(self.model.W[layer - 1], fmt)
                         + encode_values(self.model.b[layer - 1], fmt))
        W, b = decode_params(net, layer, payload[1:])
        self.model.W[layer - 1], self.model.b[layer - 1] = W, b
        if self.faults is not None:     # a stuck weight holds what the host writes
            self.model.arith.stuck[layer - 1] = W.copy()
        return reply(Status.OK)

    def _learn(self, x, y):
        """One learning step; in a fault-injection build, with its upsets after it
        (:func:`pchw.faults.learn_command`)."""
        if self.faults is None:
            return self.model.learn(x, y)
        from .faults import learn_command
        result = learn_command(self.model, x, y)
        self.last_upsets = self.faults.last_upsets
        return result

    def _fault(self, target, payload):
        """FAULT (docs/protocol.md): the network-wide faults, or the stuck weights of a layer."""
        from .faults import FaultSpec
        net, faults = self.network, self.faults
        if target == FAULT_NETWORK:
            faults.dead = decode_fault_masks(net, payload)
            rate, seed = decode_upsets(net, payload)
            faults.spec = FaultSpec(faults.spec.dead, faults.spec.stuck, rate, seed)
            faults.commands = 0
            return
        fmt = net.weight_format(target)
        size = value_bytes(fmt)
        value = decode_values(payload[:size], fmt, 1)[0]
        codes = np.frombuffer(bytes(payload[size:]), np.uint8).reshape(
            net.layers[target], net.layers[target - 1])
        W = self.model.W[target - 1]
        W[(codes & StuckCode.SET) != 0] = value
        faults.stuck_mask[target - 1] = (codes & StuckCode.STUCK) != 0
        self.model.arith.stuck[target - 1] = W.copy()

    def _dataset(self, opcode, payload, reply, error):
        """LOAD_DATA, TRAIN and EVAL (a build with a dataset memory), checked in the order
        length (ERR_LENGTH), stored set (ERR_NO_DATA), arguments (ERR_ARGUMENT)."""
        net, L = self.network, self.network.L
        f0, fL = net.value_format(0), net.value_format(L)
        fields = [int.from_bytes(payload[i:i + FIELD_SIZE], "little")
                  for i in range(0, len(payload) - 1, FIELD_SIZE)]
        if opcode is Opcode.LOAD_DATA:
            count = payload[LOAD_HEADER - 1] if len(payload) >= LOAD_HEADER else None
            if count is None or len(payload) != payload_length(net, opcode, samples=count):
                return error(Status.ERR_LENGTH)
            first, size = fields[0], sample_bytes(net)
            samples = [payload[LOAD_HEADER + i * size:LOAD_HEADER + (i + 1) * size]
                       for i in range(count)]
            if first > self.stored or first + count > self.capacity or \
                    any(sample[-1] >= net.layers[L] for sample in samples):
                return error(Status.ERR_ARGUMENT)
            for i, sample in enumerate(samples):
                self.data_x[first + i] = decode_values(sample[:-LABEL_SIZE], f0, net.layers[0])
                self.data_labels[first + i] = sample[-1]
            self.stored = first + count
            return reply(Status.OK)
        if len(payload) != payload_length(net, opcode):
            return error(Status.ERR_LENGTH)
        if not self.stored:
            return error(Status.ERR_NO_DATA)
        start, count = fields[-2:]
        if count == 0 or start + count > self.stored or \
                (opcode is Opcode.TRAIN and fields[2] == 0):
            return error(Status.ERR_ARGUMENT)
        x = f0.dequantise(self.data_x[start:start + count])
        labels = self.data_labels[start:start + count]
        if opcode is Opcode.TRAIN:
            from .order import epoch_order
            seed, first_epoch, epochs = fields[:3]
            targets = fL.dequantise(fL.quantise(np.eye(net.layers[L])))[labels]
            for epoch in range(first_epoch, first_epoch + epochs):
                for i in epoch_order(count, seed, epoch & 0xFFFF):
                    # the dataset unit runs the core directly: dead units and stuck
                    # weights hold, but upsets follow LEARN commands only
                    self.model.learn(x[i][None], targets[i][None])
            return reply(Status.OK)
        predicted = np.argmax(self.model.infer(x), axis=1)
        confusion = np.zeros((net.layers[L],) * 2, dtype=np.int64)
        np.add.at(confusion, (labels, predicted), 1)
        counts = np.concatenate([[np.trace(confusion)], confusion.ravel()])
        return reply(Status.OK, counts.astype("<u2").tobytes())
