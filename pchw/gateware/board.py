"""The board top: the network device behind a UART, with a heartbeat and an activity LED.

``uart_rx`` -> :class:`~pchw.gateware.uart.UARTReceiver` -> receive FIFO ->
:class:`~pchw.gateware.top.NetworkTop` -> :class:`~pchw.gateware.uart.UARTTransmitter` ->
``uart_tx``. On a board (an amaranth-boards style platform) the UART and LED pins are requested
from the platform; in simulation the UART lines are plain ports.
"""

from amaranth.build import ResourceError
from amaranth.hdl import ClockDomain, ClockSignal, Module, ResetSignal, Signal
from amaranth.lib import data, fifo, io, wiring
from amaranth.lib.wiring import In, Out

from .. import protocol
from ..errors import PchwError
from ..latency import DEFAULT_BAUD
from .clocks import PLLClock
from .top import NetworkTop
from .uart import UARTReceiver, UARTTransmitter, divisor_for

__all__ = ["RX_FIFO_DEPTH", "RX_FIFO_LATENCY", "HEARTBEAT_HZ", "ACTIVITY_HOLD_S", "RxEntry",
           "BoardTop"]

#: Entries buffered between the UART receiver and the network (:data:`pchw.protocol.RX_BUFFER_SIZE`,
#: the stream window IDENTIFY reports). The network takes no bytes while it works on a frame
#: and sends the reply (at the UART's pace); the bytes a host streams meanwhile, up to the
#: window, wait here. A byte that finds the buffer full is lost, and so is every byte after it
#: until the buffer has room for a loss mark: the network answers the mark with ERR_OVERRUN
#: (``NetworkTop.overrun``), so a loss is never silent.
RX_FIFO_DEPTH = protocol.RX_BUFFER_SIZE
#: Cycles from a byte offered to the receive FIFO (empty) to the byte offered to the network:
#: ``SyncFIFOBuffered`` writes its memory, then its output register.
RX_FIFO_LATENCY = 2
#: Blink rate of LED 0.
HEARTBEAT_HZ = 1
#: LED 1 stays lit this long (seconds) after the last activity, so that short commands show.
ACTIVITY_HOLD_S = 0.05
#: A command whose bytes stop for this long is dropped (USB-serial bridges can pause a stream
#: for a few milliseconds; a host gives up on a reply after much longer).
FRAME_TIMEOUT_S = 0.1


class RxEntry(data.Struct):
    """An entry of the receive FIFO: a received byte, or (``lost``) a mark where bytes were
    lost because the FIFO was full."""
    byte: 8
    lost: 1


class BoardTop(wiring.Component):
    """A network device on a board, talking over a UART (8N1).

    Parameters
    ----------
    network : Network
        The network the device runs (see :class:`~pchw.gateware.top.NetworkTop`).
    clock_hz : int or float
        Frequency of the ``sync`` domain. Only sets the UART divisor and the LED timings: the
        design runs on the ``sync`` domain as given (on a board, the platform's default clock).
    baud : int
        UART baud rate; ``round(clock_hz / baud)`` cycles per bit (:func:`divisor_for`).
    frame_timeout_s : float
        A command whose bytes stop for this long is dropped without a reply
        (:data:`FRAME_TIMEOUT_S` by default; longer than USB-serial bridges' buffering gaps).
    payload_ram_style : str, optional
        Yosys ``ram_style`` of the command payload buffer (``"huge"``: iCE40UP5K SPRAM).
    faults : bool
        A fault-injection build (the FAULT command, ``docs/faults.md``).
    dataset : int
        Samples of the dataset memory (LOAD_DATA, TRAIN, EVAL; 0: none).
    pll : PLLSettings, optional
        On a platform, make the ``sync`` domain (``clock_hz``) from the board's clock through
        this PLL (:class:`~pchw.gateware.clocks.PLLClock`); else the platform's default clock.

    Members
    -------
    uart_rx : In(1, init=1)
        The host-to-device line (idle high).
    uart_tx : Out(1, init=1)
        The device-to-host line (idle high).
    led_heartbeat : Out(1)
        Toggles every ``1 / (2 * HEARTBEAT_HZ)`` s: a 1 Hz blink that shows the clock runs.
    led_activity : Out(1)
        Lit while a frame is on either line or the network works on a command, and for
        :data:`ACTIVITY_HOLD_S` after.
    network_top, receiver, transmitter
        The :class:`NetworkTop`, :class:`UARTReceiver` and :class:`UARTTransmitter` inside.
    rx_fifo : SyncFIFOBuffered
        The receive FIFO (:data:`RX_FIFO_DEPTH` entries of :class:`RxEntry`); what enters it,
        bytes and loss marks in order, is what the network reads.

    A byte that completes on ``uart_rx`` while the FIFO is full (the UART receiver still holds
    the previous one) is lost, and so is every byte received after it until a loss mark has
    been written to the FIFO (as soon as it has room, behind the bytes received before the
    loss); the network answers the mark with ERR_OVERRUN. A host that keeps to the stream
    window (:data:`pchw.protocol.STREAM_WINDOW`) never causes a loss.

    Raises
    ------
    BaudRateError (a ValueError)
        If ``baud`` cannot be made from ``clock_hz`` (see :func:`divisor_for`).

    With a platform (amaranth-boards style), :meth:`elaborate` requests ``uart`` 0 (subsignals
    ``rx`` and ``tx``, as ``UARTResource`` makes them) and drives ``uart_rx`` from ``rx`` and
    ``tx`` from ``uart_tx`` through ``io.Buffer`` (the ports are requested with ``dir="-"``:
    Amaranth 0.5 deprecates the implicit buffers), so these ports must be left unconnected; it
    drives ``led`` 0 and 1 from ``led_heartbeat`` and ``led_activity`` if the platform has
    them. A platform without ``uart`` 0 raises :class:`~pchw.errors.PchwError`.

    Timing: the start bit of a reply's first byte begins (``uart_tx`` is low after the edge)
    :attr:`reply_overhead` ``+`` :func:`pchw.latency.command_latency` cycles after the edge
    that samples the middle of the command's last stop bit on ``uart_rx`` (see
    :class:`~pchw.gateware.uart.UARTReceiver`); each byte then takes ``10 * divisor`` cycles
    on the line, back to back.
    """

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    led_heartbeat: Out(1)
    led_activity: Out(1)

    def __init__(self, network, *, clock_hz, baud=DEFAULT_BAUD, frame_timeout_s=FRAME_TIMEOUT_S,
                 payload_ram_style=None, pll=None, faults=False, dataset=0):
        if pll is not None and pll.f_out != clock_hz:
            raise ValueError(f"clock_hz {clock_hz} is not the PLL's output {pll.f_out}")
        self._pll = pll
        self._divisor = divisor_for(clock_hz, baud)
        self._clock_hz, self._baud = clock_hz, baud
        self._frame_timeout_s = frame_timeout_s
        self.network_top = NetworkTop(network, payload_ram_style=payload_ram_style,
                                      faults=faults, dataset=dataset)
        self.receiver = UARTReceiver(self._divisor)
        self.transmitter = UARTTransmitter(self._divisor)
        self.rx_fifo = fifo.SyncFIFOBuffered(width=RxEntry.as_shape().size, depth=RX_FIFO_DEPTH)
        super().__init__()

    @property
    def pll(self):
        """The :class:`~pchw.gateware.clocks.PLLSettings`, or None."""
        return self._pll

    @property
    def clock_hz(self):
        """Frequency of the ``sync`` domain (the PLL's output when there is one)."""
        return self._clock_hz

    @property
    def faults(self):
        """Whether this build injects faults (the FAULT command)."""
        return self.network_top.faults

    @property
    def dataset(self):
        """Samples of the dataset memory (0: none)."""
        return self.network_top.dataset

    @property
    def divisor(self):
        """Clock cycles per UART bit."""
        return self._divisor

    @property
    def baud(self):
        return self._baud

    @property
    def reply_overhead(self):
        """Cycles the UART path adds to :func:`pchw.latency.command_latency`: the receiver's
        latency, :data:`RX_FIFO_LATENCY` and the transmitter's latency (2 + 2 + 1 = 5)."""
        return self.receiver.latency + RX_FIFO_LATENCY + self.transmitter.latency

    @property
    def frame_timeout_cycles(self):
        """Cycles of silence on ``uart_rx`` (with no byte waiting) after which a partly received
        command is dropped: a host that stopped mid-frame leaves the device ready for the next
        command."""
        return max(1, round(self._clock_hz * self._frame_timeout_s))

    @property
    def heartbeat_cycles(self):
        """Cycles between toggles of ``led_heartbeat``."""
        return max(1, round(self._clock_hz / (2 * HEARTBEAT_HZ)))

    @property
    def activity_hold_cycles(self):
        """Cycles ``led_activity`` stays lit after the last activity."""
        return max(1, round(self._clock_hz * ACTIVITY_HOLD_S))

    def elaborate(self, platform):
        if platform is not None:            # first: nothing is built if the board has no UART
            try:
                uart = platform.request("uart", 0, dir="-")
            except ResourceError as error:
                raise PchwError(f"{type(platform).__name__} has no UART (resource uart 0) for "
                                f"the host link: {error}") from None
            leds = []
            for index in range(2):
                try:
                    leds.append(platform.request("led", index, dir="-"))
                except ResourceError:
                    break

        m = Module()
        if platform is not None and self._pll is not None:
            m.submodules.clock = clock = PLLClock(self._pll)
            m.domains.sync = ClockDomain("sync")
            m.d.comb += [ClockSignal("sync").eq(clock.clk), ResetSignal("sync").eq(clock.rst)]
        m.submodules.receiver = rx = self.receiver
        m.submodules.rx_fifo = rx_fifo = self.rx_fifo
        m.submodules.network = top = self.network_top
        m.submodules.transmitter = tx = self.transmitter

        m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx)]
        wiring.connect(m, top.o_stream, tx.i_stream)

        # Receive FIFO input: the UART's bytes, and a mark where bytes were lost. The receiver
        # loses a byte (``overflow``) when it completes while the previous one still waits for
        # room; that one came before the loss and goes in first (``held``), then the mark; bytes
        # that arrive before the mark is in are lost with the rest (one mark per run of losses).
        w_entry = RxEntry(rx_fifo.w_stream.payload)
        pending = Signal()      # a loss not yet marked in the FIFO
        held = Signal()         # the receiver's byte came before that loss
        mark = pending & ~held
        written = rx.o_stream.valid & rx_fifo.w_stream.ready & ~mark
        with m.If(mark):
            m.d.comb += [rx_fifo.w_stream.valid.eq(1), w_entry.lost.eq(1),
                         rx.o_stream.ready.eq(1)]           # drops a byte after the loss
            with m.If(rx_fifo.w_stream.ready):
                m.d.sync += pending.eq(0)
        with m.Else():
            m.d.comb += [rx_fifo.w_stream.valid.eq(rx.o_stream.valid),
                         w_entry.byte.eq(rx.o_stream.payload),
                         rx.o_stream.ready.eq(rx_fifo.w_stream.ready)]
            with m.If(written):
                m.d.sync += held.eq(0)
        with m.If(rx.overflow):
            m.d.sync += [pending.eq(1), held.eq(~written)]

        # Receive FIFO output: bytes to the network's stream, marks to its ``overrun``.
        r_entry = RxEntry(rx_fifo.r_stream.payload)
        m.d.comb += [top.i_stream.payload.eq(r_entry.byte),
                     top.i_stream.valid.eq(rx_fifo.r_stream.valid & ~r_entry.lost),
                     top.overrun.eq(rx_fifo.r_stream.valid & r_entry.lost & top.i_stream.ready),
                     rx_fifo.r_stream.ready.eq(top.i_stream.ready)]

        # Inter-byte timeout: drop a partial command once the line has been quiet this long.
        quiet = Signal(range(self.frame_timeout_cycles + 1))
        with m.If(rx.busy | rx_fifo.r_stream.valid):
            m.d.sync += quiet.eq(0)
        with m.Elif(quiet != self.frame_timeout_cycles):
            m.d.sync += quiet.eq(quiet + 1)
        m.d.comb += top.frame_abort.eq(quiet == self.frame_timeout_cycles - 1)

        # LED 0: heartbeat.
        beat = Signal(range(self.heartbeat_cycles))
        with m.If(beat == self.heartbeat_cycles - 1):
            m.d.sync += [beat.eq(0), self.led_heartbeat.eq(~self.led_heartbeat)]
        with m.Else():
            m.d.sync += beat.eq(beat + 1)

        # LED 1: activity, stretched. The network's frame receiver refuses bytes exactly while
        # it holds a complete frame, i.e. from a command's end until its reply is handed over.
        # (A counter from 0 and an equality test: a clean carry chain and a LUT tree.)
        lit = Signal(range(self.activity_hold_cycles))
        dark = Signal(init=1)
        active = (rx.busy | rx_fifo.r_stream.valid | ~top.i_stream.ready | top.o_stream.valid |
                  ~tx.i_stream.ready)
        with m.If(active):
            m.d.sync += [lit.eq(0), dark.eq(0)]
        with m.Elif(~dark):
            m.d.sync += [lit.eq(lit + 1), dark.eq(lit == self.activity_hold_cycles - 1)]
        m.d.comb += self.led_activity.eq(active | ~dark)

        if platform is not None:
            m.submodules.uart_rx_buffer = rx_buffer = io.Buffer("i", uart.rx)
            m.submodules.uart_tx_buffer = tx_buffer = io.Buffer("o", uart.tx)
            m.d.comb += [self.uart_rx.eq(rx_buffer.i), tx_buffer.o.eq(self.uart_tx)]
            for index, (port, led) in enumerate(zip(leds, [self.led_heartbeat,
                                                             self.led_activity])):
                m.submodules[f"led_{index}_buffer"] = buffer = io.Buffer("o", port)
                m.d.comb += buffer.o.eq(led)
        return m
