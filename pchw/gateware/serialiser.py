"""The serialiser: values -> little-endian bytes of a reply payload."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SerialValue", "ValueSerialiser"]


class SerialValue(data.Struct):
    """A value to send and how many of its low bytes (1..4) go on the wire."""
    value: 32
    width: 3


class ValueSerialiser(wiring.Component):
    """Sends each value as ``width`` bytes, least significant first (the two's complement
    bytes :func:`pchw.protocol.encode_values` writes; sign-extend narrower values to 32 bits).

    Members
    -------
    i_stream : In(stream.Signature(SerialValue))
        Ready while no value is being sent, and in the cycle its last byte is sent.
    o_stream : Out(stream.Signature(8))
        The bytes.

    Timing: the first byte is valid :attr:`latency` cycle after the value is accepted; with
    ``o_stream`` ready, one byte per cycle, values back to back.
    """

    i_stream: In(stream.Signature(SerialValue))
    o_stream: Out(stream.Signature(8))

    @property
    def latency(self):
        """Cycles from a value accepted to its first byte valid: 1."""
        return 1

    def elaborate(self, platform):
        m = Module()
        busy = Signal()
        word = Signal(32)
        left = Signal(3)                # bytes after the one on o_stream
        sending_last = self.o_stream.valid & self.o_stream.ready & (left == 0)
        m.d.comb += [self.i_stream.ready.eq(~busy | sending_last), self.o_stream.valid.eq(busy),
                     self.o_stream.payload.eq(word[:8])]
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += [word.eq(word >> 8), left.eq(left - 1)]
            with m.If(left == 0):
                m.d.sync += busy.eq(0)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [busy.eq(1), word.eq(self.i_stream.p.value),
                         left.eq(self.i_stream.p.width - 1)]
        return m
