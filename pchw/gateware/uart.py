"""A UART (8N1) for the host link: receiver, transmitter, and the baud divisor.

The command protocol (``docs/protocol.md``) runs over a plain byte stream; on a board that is a
UART at e.g. 115200 baud. Both directions are 8N1: one start bit (low), 8 data bits LSB first,
one stop bit (high); the idle line is high. A bit lasts ``divisor`` clock cycles, with
``divisor = round(clock_hz / baud)`` (:func:`divisor_for`).

The receiver is built to survive line noise: it cannot lock up on glitches, truncated bytes or a
break, and it drops (rather than stalls on) bytes its consumer does not take in time. The
protocol above recovers from lost or damaged bytes by CRC, error replies and host timeouts.
"""

import operator

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..errors import PchwError
from ..latency import MAX_BAUD

__all__ = ["MIN_DIVISOR", "MAX_BAUD", "MAX_BAUD_ERROR", "BaudRateError", "check_baud",
           "divisor_for", "UARTReceiver", "UARTTransmitter"]

#: Fewest clock cycles per bit: the receiver needs a middle to sample, away from both edges.
MIN_DIVISOR = 4
#: Largest relative baud rate error :func:`divisor_for` accepts. A receiver that samples the
#: middle of each bit tolerates a total mismatch of about 5% over the 9.5 bits up to the stop
#: bit's middle (less a cycle of sampling jitter, see :class:`UARTReceiver`); 2% at each end.
MAX_BAUD_ERROR = 0.02
#: Stages of the receiver's input synchroniser.
SYNC_STAGES = 2


class BaudRateError(PchwError, ValueError):
    """A baud rate the clock cannot make: too fast (below :data:`MIN_DIVISOR` cycles per bit) or
    too far (above :data:`MAX_BAUD_ERROR`) from any whole number of cycles per bit.

    A :class:`ValueError` for code that validates parameters, and a
    :class:`~pchw.errors.PchwError` so that the CLI reports it as a one-line message.
    """


def _check_divisor(divisor):
    divisor = operator.index(divisor)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be at least {MIN_DIVISOR} clock cycles per bit, "
                         f"not {divisor}")
    return divisor


def check_baud(baud):
    """``baud`` if it is a positive number up to :data:`MAX_BAUD` (what a host's serial port
    may be opened at); else a :class:`BaudRateError`."""
    if isinstance(baud, bool) or not isinstance(baud, (int, float)) or not baud > 0:
        raise BaudRateError(f"baud must be a positive number, not {baud!r}")
    if baud > MAX_BAUD:
        raise BaudRateError(f"{baud} baud is above the {MAX_BAUD} baud the boards' USB-serial "
                            "bridges make")
    return baud


def divisor_for(clock_hz, baud):
    """Clock cycles per bit for ``baud`` from a ``clock_hz`` clock: ``round(clock_hz / baud)``.

    Raises
    ------
    BaudRateError (a ValueError)
        If either is not a positive number, if ``baud`` is above :data:`MAX_BAUD`, if the divisor is below :data:`MIN_DIVISOR`, or if
        the baud rate it gives, ``clock_hz / divisor``, is more than :data:`MAX_BAUD_ERROR`
        (2%) off ``baud``.
    """
    for name, value in (("clock_hz", clock_hz), ("baud", baud)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise BaudRateError(f"{name} must be a positive number, not {value!r}")
    check_baud(baud)
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise BaudRateError(
            f"{baud} baud is too fast for a {clock_hz:g} Hz clock: {clock_hz / baud:.2f} cycles "
            f"per bit, the UART needs at least {MIN_DIVISOR} (at most "
            f"{clock_hz / MIN_DIVISOR:.0f} baud)")
    actual = clock_hz / divisor
    error = abs(actual - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise BaudRateError(
            f"{baud} baud cannot be made from a {clock_hz:g} Hz clock: the nearest divisor, "
            f"{divisor} cycles per bit, gives {actual:.0f} baud, {error:.1%} off (at most "
            f"{MAX_BAUD_ERROR:.0%} works reliably); pick another baud rate or clock")
    return divisor


class UARTReceiver(wiring.Component):
    """Receives 8N1 bytes from the ``rx`` pin.

    ``rx`` first passes a :data:`SYNC_STAGES`-flop synchroniser (it is asynchronous to the
    clock). A falling edge on the idle line starts a frame; the start bit is checked again in
    its middle, so a low glitch of up to ``divisor // 2`` cycles is ignored. The 8 data bits and
    the stop bit are sampled once each, in their middles. A low stop bit is a framing error:
    the byte is dropped, ``error`` pulses, and the receiver waits for the line to return high
    before it looks for the next start bit (so a break, a line held low, gives one ``error``
    pulse and nothing else).

    There is a one-byte output register and no other buffer: a byte that completes while the
    previous one is still waiting on ``o_stream`` (not taken within a byte time) is dropped and
    ``overflow`` pulses. The host protocol recovers from lost bytes through its CRC, error
    replies and timeouts; a consumer that may be busy for longer than a byte time should put a
    FIFO behind ``o_stream``.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR` (see :func:`divisor_for`).

    Members
    -------
    rx : In(1, init=1)
        The line (idle high).
    o_stream : Out(stream.Signature(8))
        Received bytes. ``valid`` stays up, with ``payload`` stable, until the byte is taken.
    error : Out(1)
        Pulses for one cycle on a framing error (stop bit low).
    overflow : Out(1)
        Pulses for one cycle when a good byte is dropped because ``o_stream`` still held the
        previous one.
    busy : Out(1)
        1 from a start bit's detection until its stop bit is sampled.

    Raises
    ------
    ValueError
        If ``divisor`` is below :data:`MIN_DIVISOR`.

    Timing: let edge 0 be the first clock edge at which ``rx`` is low for a start bit (the
    synchroniser's first flop takes it then). Bit ``j`` of the frame (0 start, 1..8 data LSB
    first, 9 stop) is the value of ``rx`` at edge :attr:`sample_offset` ``+ j * divisor``, and
    ``o_stream.valid`` (or ``error``, or ``overflow``) rises :attr:`latency` cycles after the
    stop bit's sample edge: it is 1 after edge ``sample_offset + 9 * divisor + latency``. A
    start bit is recognised from the sample edge of the previous stop bit on, so frames may
    follow each other without any idle time.

    Baud tolerance: with ``h = divisor // 2``, a sender whose bits are up to
    ``h / (9 * divisor)`` longer or ``(divisor - h - 1) / (10 * divisor)`` shorter than
    ``divisor`` cycles is received (the start edge is seen up to one cycle late): 5.5% / 2.5%
    at divisor 4, 5.5% / 4.4% at divisor 16, about 5.5% / 5% for the large divisors of real
    baud rates.
    """

    rx: In(1, init=1)
    o_stream: Out(stream.Signature(8))
    error: Out(1)
    overflow: Out(1)
    busy: Out(1)

    def __init__(self, divisor):
        self._divisor = _check_divisor(divisor)
        super().__init__()

    @property
    def divisor(self):
        return self._divisor

    @property
    def sample_offset(self):
        """Cycles from a bit's first edge to its sample edge: ``divisor // 2``."""
        return self._divisor // 2

    @property
    def latency(self):
        """Cycles from the stop bit's sample edge on ``rx`` to ``o_stream.valid``:
        :data:`SYNC_STAGES` (the synchroniser; the output register absorbs the decision)."""
        return SYNC_STAGES

    def elaborate(self, platform):
        m = Module()
        d, half = self._divisor, self.sample_offset
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1, stages=SYNC_STAGES)

        timer = Signal(range(d))        # cycles to the next sample edge, minus one
        bit = Signal(range(8))          # data bit being received
        shift = Signal(8)               # data bits so far, the newest at the top
        sample = timer == 0
        out = self.o_stream

        m.d.sync += [self.error.eq(0), self.overflow.eq(0)]
        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)

        with m.FSM():
            with m.State("WAIT_HIGH"):
                # After reset or a framing error: the line may be held low (a break).
                with m.If(line):
                    m.next = "IDLE"
            with m.State("IDLE"):
                with m.If(~line):       # the line was high: a falling edge
                    m.d.sync += timer.eq(half - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += timer.eq(timer - 1)
                with m.If(sample):
                    m.d.sync += [timer.eq(d - 1), bit.eq(0)]
                    with m.If(line):    # high again in the start bit's middle: a glitch
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += timer.eq(timer - 1)
                with m.If(sample):
                    m.d.sync += [timer.eq(d - 1), bit.eq(bit + 1), shift.eq(Cat(shift[1:], line))]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += timer.eq(timer - 1)
                with m.If(sample):
                    with m.If(line):
                        with m.If(~out.valid | out.ready):
                            m.d.sync += [out.payload.eq(shift), out.valid.eq(1)]
                        with m.Else():
                            m.d.sync += self.overflow.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.error.eq(1)
                        m.next = "WAIT_HIGH"
        return m


class UARTTransmitter(wiring.Component):
    """Sends the bytes of ``i_stream`` on the ``tx`` pin, 8N1.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR` (see :func:`divisor_for`).

    Members
    -------
    i_stream : In(stream.Signature(8))
        Bytes to send. ``ready`` is 1 only while the transmitter is idle, which includes the
        last cycle of a stop bit.
    tx : Out(1, init=1)
        The line (idle high), driven straight from a register.

    Raises
    ------
    ValueError
        If ``divisor`` is below :data:`MIN_DIVISOR`.

    Timing: ``tx`` goes low for the start bit :attr:`latency` cycle after the edge that accepts
    a byte; each bit lasts ``divisor`` cycles, the data bits LSB first, then the stop bit
    (high). The next byte can be accepted at the edge that ends the stop bit, so a stream of
    bytes goes out back to back, one every ``10 * divisor`` cycles.
    """

    i_stream: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor):
        self._divisor = _check_divisor(divisor)
        super().__init__()

    @property
    def divisor(self):
        return self._divisor

    @property
    def latency(self):
        """Cycles from the edge accepting a byte to its start bit on ``tx``: 1."""
        return 1

    def elaborate(self, platform):
        m = Module()
        d = self._divisor
        busy = Signal()
        timer = Signal(range(d))        # cycles left in the current bit, minus one
        left = Signal(range(10))        # bits still to send after the current one
        bits = Signal(9)                # data bits still to send, then the stop bit
        # timer == 0 and left == 0, kept in registers: ``ready`` is one gate from flip-flops
        # (the reply path behind it is long).
        bit_end, last_bit = Signal(), Signal()
        done = bit_end & last_bit

        m.d.comb += self.i_stream.ready.eq(~busy | done)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [self.tx.eq(0), bits.eq(Cat(self.i_stream.payload, 1)),
                         timer.eq(d - 1), bit_end.eq(d == 1), left.eq(9), last_bit.eq(0),
                         busy.eq(1)]
        with m.Elif(busy):
            m.d.sync += [timer.eq(timer - 1), bit_end.eq(timer == 1)]
            with m.If(done):
                m.d.sync += busy.eq(0)
            with m.Elif(bit_end):
                m.d.sync += [self.tx.eq(bits[0]), bits.eq(bits[1:]), left.eq(left - 1),
                             last_bit.eq(left == 1), timer.eq(d - 1), bit_end.eq(d == 1)]
        return m
