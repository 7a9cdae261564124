"""Framing of the wire protocol (``docs/protocol.md``): CRC, frame receiver, frame transmitter.

The byte-level rules come from :mod:`pchw.protocol` (sync bytes, CRC polynomial); the receiver
is checked against :class:`pchw.protocol.FrameParser` and the transmitter against
:func:`pchw.protocol.reply_frame`.
"""

import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import protocol

__all__ = ["crc8_next", "FrameCheck", "FrameInfo", "ReplyHeader", "FrameReceiver",
           "FrameTransmitter"]


def _crc8_taps():
    """For each bit ``i`` of the next CRC, the bits of ``crc ^ byte`` that are XORed into it.

    The CRC step is linear in ``crc ^ byte``, so its matrix is read off the Python step
    :func:`pchw.protocol.crc8_step` applied to each unit vector.
    """
    columns = [protocol.crc8_step(0, 1 << j) for j in range(8)]
    return [[j for j in range(8) if columns[j] >> i & 1] for i in range(8)]


_CRC8_TAPS = _crc8_taps()


def crc8_next(crc, byte):
    """Amaranth expression of the CRC-8 register after ``byte`` (both 8-bit values).

    Purely combinational: an XOR tree generated from :data:`pchw.protocol.CRC_POLY`.
    """
    d = Value.cast(crc)[:8] ^ Value.cast(byte)[:8]
    bits = []
    for taps in _CRC8_TAPS:
        bit = Const(0, 1)
        for j in taps:
            bit = bit ^ d[j]
        bits.append(bit)
    return Cat(*bits)


class FrameCheck(enum.Enum, shape=2):
    """The receiver's verdict on a frame (the values of :class:`pchw.protocol.FrameCheck`)."""
    OK = protocol.FrameCheck.OK.value
    BAD_CRC = protocol.FrameCheck.BAD_CRC.value
    TOO_LONG = protocol.FrameCheck.TOO_LONG.value
    OVERRUN = protocol.FrameCheck.OVERRUN.value


class FrameInfo(data.Struct):
    """A received command frame: its opcode and tag bytes, payload length, :class:`FrameCheck`,
    and its first payload byte (0 if it has none: the argument of a parameter command, here so
    that decoding it does not wait for the buffer)."""
    opcode: 8
    tag: 8
    length: 16
    check: FrameCheck
    first: 8


class ReplyHeader(data.Struct):
    """The header of a reply frame: status byte, tag byte and payload length."""
    status: 8
    tag: 8
    length: 16


def _check_max_payload(max_payload):
    max_payload = operator.index(max_payload)
    if not 0 <= max_payload <= protocol.MAX_LENGTH:
        raise ValueError(f"max_payload must be in 0..{protocol.MAX_LENGTH}, not {max_payload}")
    return max_payload


class FrameReceiver(wiring.Component):
    """Splits a byte stream into command frames and buffers each payload.

    Follows :class:`pchw.protocol.FrameParser`: bytes other than ``SYNC_COMMAND`` are dropped
    while hunting; after sync, opcode, tag and length are read; a length above ``max_payload``
    is reported as ``TOO_LONG`` right after the length's high byte (no payload is read, hunting
    resumes); otherwise the payload is written to the buffer and the crc byte checked
    (``OK`` / ``BAD_CRC``). Opcodes and lengths are not checked here. A pulse on ``overrun``
    ends the frame in progress, or an empty one while hunting, as ``OVERRUN``
    (:meth:`pchw.protocol.FrameParser.overrun`).

    Parameters
    ----------
    max_payload : int
        Longest payload accepted (0..65535); the buffer has ``max(1, max_payload)`` bytes.
    ram_style : str, optional
        A Yosys ``ram_style`` for the buffer, e.g. ``"huge"`` for the iCE40UP5K's single-port
        SPRAM. The buffer is single-port either way: one address, written while a payload
        arrives, read otherwise (reads are disabled while writing, so the read data holds).

    Members
    -------
    i_stream : In(stream.Signature(8))
        Command bytes. One byte accepted per cycle, except while ``o_frame`` is valid.
    o_frame : Out(stream.Signature(FrameInfo))
        A complete frame. While it is valid and not taken, ``i_stream.ready`` is 0 and the
        buffer is stable; assert ``ready`` once finished with the buffer.
    buf_addr : In(range(max(1, max_payload)))
        Read address into the payload buffer.
    buf_data : Out(8)
        The payload byte at ``buf_addr``, valid :attr:`read_latency` cycle after the address.
    abort : In(1)
        Drops a partly received frame (after its sync byte, before its crc) and resumes
        hunting, with no frame reported: a link layer's inter-byte timeout. Ignored otherwise.
    overrun : In(1)
        A mark in the stream, between two bytes: the link lost bytes here. Honoured in a cycle
        in which ``i_stream.ready`` is 1 and ``i_stream.valid`` is 0 (a link layer asserts it
        instead of a byte): the frame in progress (opcode and tag as received, else 0; length
        0) or, while hunting, an empty frame is reported as ``OVERRUN``, and hunting resumes.

    Timing: ``o_frame.valid`` rises :attr:`latency` cycle after the cycle in which the crc byte
    (or, for ``TOO_LONG``, the length's high byte; for ``OVERRUN``, the mark) is accepted. After
    ``o_frame`` is taken, ``i_stream.ready`` is 1 from the next cycle on.
    """

    #: The buffer's submodule name (Yosys scripts select its memory by it).
    BUFFER_NAME = "payload_buffer"

    def __init__(self, max_payload, *, ram_style=None):
        self._max_payload = _check_max_payload(max_payload)
        self._depth = max(1, self._max_payload)
        self._ram_style = ram_style
        super().__init__({
            "i_stream": In(stream.Signature(8)),
            "o_frame": Out(stream.Signature(FrameInfo)),
            "buf_addr": In(range(self._depth)),
            "buf_data": Out(8),
            "abort": In(1),
            "overrun": In(1),
        })

    @property
    def max_payload(self):
        return self._max_payload

    @property
    def latency(self):
        """Cycles from the last byte of a frame accepted to ``o_frame.valid``: 1."""
        return 1

    @property
    def read_latency(self):
        """Cycles from ``buf_addr`` to ``buf_data``: 1 (a synchronous read port)."""
        return 1

    def elaborate(self, platform):
        m = Module()
        attrs = {"ram_style": self._ram_style} if self._ram_style else None
        buffer = memory.Memory(shape=8, depth=self._depth, init=[], attrs=attrs)
        m.submodules[self.BUFFER_NAME] = buffer
        write = buffer.write_port()
        read = buffer.read_port()
        info = Signal(FrameInfo)
        crc = Signal(8)
        count = Signal(16)
        left = Signal(16)               # payload bytes after the one arriving (no subtractor)
        # One address for both ports (a single-port RAM): the payload count while writing.
        addr = Signal.like(write.addr)
        m.d.comb += [addr.eq(Mux(write.en, count, self.buf_addr)), write.addr.eq(addr),
                     read.addr.eq(addr), read.en.eq(~write.en), self.buf_data.eq(read.data)]

        byte = self.i_stream.payload
        take = self.i_stream.valid & self.i_stream.ready
        m.d.comb += self.o_frame.p.eq(info)
        with m.If(take):        # every byte; the sync byte resets it (below), the crc is unused
            m.d.sync += crc.eq(crc8_next(crc, byte))

        def end_on_overrun():           # in every state that takes bytes; after the rest
            with m.If(self.overrun):
                m.d.sync += [info.check.eq(FrameCheck.OVERRUN), info.length.eq(0)]
                m.next = "DONE"

        def drop_on_abort():            # in every state between the sync byte and the crc
            with m.If(self.abort):
                m.next = "HUNT"
            end_on_overrun()

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += self.i_stream.ready.eq(1)
                with m.If(take & (byte == protocol.SYNC_COMMAND)):
                    m.d.sync += [crc.eq(protocol.CRC_INIT), info.opcode.eq(0),
                                 info.tag.eq(protocol.NO_TAG), info.first.eq(0)]
                    m.next = "OPCODE"
                with m.If(self.overrun):
                    m.d.sync += [info.opcode.eq(0), info.tag.eq(protocol.NO_TAG),
                                 info.first.eq(0)]
                end_on_overrun()
            with m.State("OPCODE"):
                m.d.comb += self.i_stream.ready.eq(1)
                with m.If(take):
                    m.d.sync += info.opcode.eq(byte)
                    m.next = "TAG"
                drop_on_abort()
            with m.State("TAG"):
                m.d.comb += self.i_stream.ready.eq(1)
                with m.If(take):
                    m.d.sync += info.tag.eq(byte)
                    m.next = "LENGTH_LOW"
                drop_on_abort()
            with m.State("LENGTH_LOW"):
                m.d.comb += self.i_stream.ready.eq(1)
                with m.If(take):
                    m.d.sync += info.length[:8].eq(byte)
                    m.next = "LENGTH_HIGH"
                drop_on_abort()
            with m.State("LENGTH_HIGH"):
                m.d.comb += self.i_stream.ready.eq(1)
                length = Cat(info.length[:8], byte)
                with m.If(take):
                    m.d.sync += [info.length[8:].eq(byte), count.eq(0), left.eq(length - 1)]
                    with m.If(length > self._max_payload):
                        m.d.sync += info.check.eq(FrameCheck.TOO_LONG)
                        m.next = "DONE"
                    with m.Elif(length == 0):
                        m.next = "CRC"
                    with m.Else():
                        m.next = "PAYLOAD"
                drop_on_abort()
            with m.State("PAYLOAD"):
                m.d.comb += [
                    self.i_stream.ready.eq(1),
                    write.data.eq(byte),
                    write.en.eq(take),
                ]
                with m.If(take):
                    m.d.sync += [count.eq(count + 1), left.eq(left - 1)]
                    with m.If(count == 0):
                        m.d.sync += info.first.eq(byte)
                    with m.If(left == 0):
                        m.next = "CRC"
                drop_on_abort()
            with m.State("CRC"):
                m.d.comb += self.i_stream.ready.eq(1)
                with m.If(take):
                    with m.If(crc == byte):
                        m.d.sync += info.check.eq(FrameCheck.OK)
                    with m.Else():
                        m.d.sync += info.check.eq(FrameCheck.BAD_CRC)
                    m.next = "DONE"
                drop_on_abort()
            with m.State("DONE"):
                m.d.comb += self.o_frame.valid.eq(1)
                with m.If(self.o_frame.ready):
                    m.next = "HUNT"
        return m


class FrameTransmitter(wiring.Component):
    """Sends reply frames: ``SYNC_REPLY``, status, tag, length (low, high), payload, crc.

    Members
    -------
    i_header : In(stream.Signature(ReplyHeader))
        The next reply's status, tag and payload length; accepted only when idle, i.e. after the
        previous frame's crc byte has been sent.
    i_payload : In(stream.Signature(8))
        Exactly ``length`` payload bytes per frame, passed through to ``o_stream`` (its
        ``ready`` is ``o_stream.ready`` while the payload is being sent, else 0).
    o_stream : Out(stream.Signature(8))
        The reply bytes.

    Timing: the sync byte is valid on ``o_stream`` :attr:`latency` cycle after the cycle in
    which ``i_header`` is accepted. With ``o_stream`` always ready and the payload always
    valid, a frame takes one cycle per byte (``length + 6``), and the next header is accepted
    in the cycle after the crc byte is sent.
    """

    i_header: In(stream.Signature(ReplyHeader))
    i_payload: In(stream.Signature(8))
    o_stream: Out(stream.Signature(8))

    @property
    def latency(self):
        """Cycles from ``i_header`` accepted to the sync byte valid on ``o_stream``: 1."""
        return 1

    def elaborate(self, platform):
        m = Module()
        header = Signal(ReplyHeader)
        crc = Signal(8)
        remaining = Signal(16)      # payload bytes still to send (counted down: no comparator)
        in_crc = Signal()           # the byte on o_stream is covered by the crc
        out = self.o_stream
        sent = out.valid & out.ready
        with m.If(sent & in_crc):
            m.d.sync += crc.eq(crc8_next(crc, out.payload))

        def send(value, next_state, covered=True):
            m.d.comb += [out.valid.eq(1), out.payload.eq(value), in_crc.eq(covered)]
            with m.If(out.ready):
                m.next = next_state

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i_header.ready.eq(1)
                with m.If(self.i_header.valid):
                    m.d.sync += [header.eq(self.i_header.p), crc.eq(protocol.CRC_INIT),
                                 remaining.eq(self.i_header.p.length)]
                    m.next = "SYNC"
            with m.State("SYNC"):
                send(protocol.SYNC_REPLY, "STATUS", covered=False)
            with m.State("STATUS"):
                send(header.status, "TAG")
            with m.State("TAG"):
                send(header.tag, "LENGTH_LOW")
            with m.State("LENGTH_LOW"):
                send(header.length[:8], "LENGTH_HIGH")
            with m.State("LENGTH_HIGH"):
                send(header.length[8:], "CRC")
                with m.If(out.ready & (header.length != 0)):
                    m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [
                    out.valid.eq(self.i_payload.valid),
                    out.payload.eq(self.i_payload.payload),
                    self.i_payload.ready.eq(out.ready),
                    in_crc.eq(1),
                ]
                with m.If(sent):
                    m.d.sync += remaining.eq(remaining - 1)
                    with m.If(remaining == 1):
                        m.next = "CRC"
            with m.State("CRC"):
                send(crc, "IDLE", covered=False)
        return m
