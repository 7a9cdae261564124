"""The payload loader: bytes of the receiver's payload buffer -> little-endian values."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PayloadLoader"]


class PayloadLoader(wiring.Component):
    """Reads ``length`` bytes of the payload buffer from ``offset`` on, one per cycle, and
    assembles them into values of ``width`` bytes (little-endian, as
    :func:`pchw.protocol.encode_values` writes them).

    Every byte read is registered before it is used (the buffer's output is slow: a block RAM
    or SPRAM read), so the value on ``o_stream`` is one byte register and a shift from the
    memories it is written into.

    Members
    -------
    start : In(1)
        Begin a load (a one-cycle pulse, while no load is in progress) of ``length`` bytes
        from ``offset``, in values of ``width`` (1..4) bytes.
    buf_addr : Out(range(depth)), buf_data : In(8)
        The receiver's buffer port (:class:`~pchw.gateware.framing.FrameReceiver`, a read
        latency of one cycle).
    o_stream : Out(stream.Signature(value_width, always_ready=True))
        One value per ``width`` bytes, valid for one cycle each (no backpressure).

    Timing: byte ``i`` is read in cycle ``i + 1`` after ``start`` and is in the byte register
    :attr:`latency` cycles later; a value is valid in the cycle its last byte is.
    """

    def __init__(self, depth=1 << 16, value_width=32):
        """``depth``: the payload buffer's (``buf_addr`` is as wide as its address);
        ``value_width``: bits of the widest value loaded (the bits of its last byte above it
        are dropped)."""
        self._value_width = value_width
        super().__init__({
            "start": In(1), "offset": In(16), "length": In(16), "width": In(3),
            "buf_addr": Out(range(max(depth, 2))), "buf_data": In(8),
            "o_stream": Out(stream.Signature(value_width, always_ready=True)),
        })

    @property
    def latency(self):
        """Cycles from a byte's read to it in the byte register: 2 (the buffer's read, the
        register)."""
        return 2

    def elaborate(self, platform):
        m = Module()
        ptr, left = Signal(16), Signal(16)
        issued, got = Signal(), Signal()
        byte = Signal(8)
        k, last_k = Signal(3), Signal(3)
        word = Signal(self._value_width)
        value = Signal(self._value_width)
        m.d.comb += self.buf_addr.eq(ptr)

        with m.If(self.start):
            m.d.sync += [ptr.eq(self.offset), left.eq(self.length), k.eq(0), word.eq(0),
                         last_k.eq(self.width - 1)]
        with m.Elif(left != 0):
            m.d.sync += [ptr.eq(ptr + 1), left.eq(left - 1)]
        m.d.sync += [issued.eq(~self.start & (left != 0)), got.eq(issued),
                     byte.eq(self.buf_data)]

        m.d.comb += [value.eq(word | (byte << (k * 8))), self.o_stream.payload.eq(value)]
        with m.If(got):
            with m.If(k == last_k):
                m.d.comb += self.o_stream.valid.eq(1)
                m.d.sync += [k.eq(0), word.eq(0)]
            with m.Else():
                m.d.sync += [k.eq(k + 1), word.eq(value)]
        return m
