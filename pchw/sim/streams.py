"""cocotb drivers for Amaranth ``lib.stream`` ports: a source with gaps, a sink with back-pressure.

Amaranth's Verilog flattens a stream port ``i_stream`` into ``i_stream__payload``,
``i_stream__valid`` and ``i_stream__ready``; both classes take the port's name as *prefix*.
Only a plain unsigned payload is handled (a ``data.Struct`` payload is one flat vector in the
Verilog, so callers pack and unpack it as an integer).

Timing discipline (the same on Icarus Verilog and Verilator): both drivers write their outputs
just after a rising edge of the clock, then wait for the read-only phase of that time step and
sample ``valid``, ``ready`` and ``payload`` there. Those settled values are exactly what the
design sees at the next rising edge, so a transfer is recorded when ``valid and ready`` held in
the read-only phase, and takes effect at the following edge. Reading signals right at a rising
edge is avoided: whether a register's new value is visible there differs between simulators.

While the optional *reset* signal is high no transfer is counted, matching a design whose stream
registers sit in a synchronously reset domain.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Iterable

import cocotb
from cocotb.handle import SimHandleBase
from cocotb.queue import Queue
from cocotb.triggers import Event, ReadOnly, RisingEdge


def _port(dut: SimHandleBase, prefix: str, member: str) -> SimHandleBase:
    name = f"{prefix}__{member}"
    try:
        return getattr(dut, name)
    except AttributeError:
        raise AttributeError(f"{dut._name} has no port {name!r} (stream {prefix!r})") from None


def _check_probability(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), not {value}")
    return value


class _StreamPort:
    """What a stream driver and a monitor share: the port's signals, its clock and reset, the
    random generator, and whether the design has been through its reset yet."""

    def __init__(self, dut: SimHandleBase, prefix: str, clk: SimHandleBase,
                 reset: SimHandleBase | None, rng: random.Random | None) -> None:
        self._payload = _port(dut, prefix, "payload")
        self._valid = _port(dut, prefix, "valid")
        self._ready = _port(dut, prefix, "ready")
        self._clk = clk
        self._reset = reset
        self._rng = rng if rng is not None else random.Random(cocotb.RANDOM_SEED)
        self._was_reset = False

    def _out_of_reset(self) -> bool:
        """Whether the design has been through its reset (if there is one) and is out of it.

        Before the first reset a design's outputs may be X (Icarus leaves combinational outputs
        undefined until their inputs first change), so nothing is sampled until then. Call it
        every cycle: it tracks the reset.
        """
        if self._reset is None:
            return True
        in_reset = bool(self._reset.value)
        self._was_reset = self._was_reset or in_reset
        return self._was_reset and not in_reset


class StreamSource(_StreamPort):
    """Drive a stream input port of the design from a queue of payload integers.

    Starts its own coroutine (``cocotb.start_soon``) when created. ``valid`` is held until the
    design accepts the payload, as the stream protocol requires; between payloads a gap (a cycle
    with ``valid`` low) is inserted with probability :attr:`gaps`.

    Parameters
    ----------
    dut:
        The toplevel handle.
    prefix:
        Name of the stream port, e.g. ``"i_stream"``.
    clk:
        The clock handle the port is synchronous to.
    reset:
        Optional active-high synchronous reset; no transfer happens while it is high.
    gaps:
        Probability, per cycle, of holding ``valid`` low before presenting the next payload.
    rng:
        Random generator for the gaps; defaults to one seeded from ``cocotb.RANDOM_SEED``.

    Members
    -------
    sent:
        Every payload the design has accepted, in order.
    accept_cycles:
        The cycle number (rising edges since creation) at which each of :attr:`sent` transferred.
    """

    def __init__(
        self,
        dut: SimHandleBase,
        prefix: str,
        clk: SimHandleBase,
        *,
        reset: SimHandleBase | None = None,
        gaps: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(dut, prefix, clk, reset, rng)
        self._width = len(self._payload)
        self.gaps = _check_probability("gaps", gaps)
        self._queue: collections.deque[int] = collections.deque()
        self._idle = Event()
        self._idle.set()
        self.sent: list[int] = []
        self.accept_cycles: list[int] = []
        self._valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send_nowait(self, payloads: Iterable[int]) -> None:
        """Queue *payloads* for sending and return at once."""
        for payload in payloads:
            payload = int(payload)
            if not 0 <= payload < 1 << self._width:
                raise ValueError(f"payload {payload} does not fit in {self._width} bits")
            self._queue.append(payload)
        if self._queue:
            self._idle.clear()

    async def send(self, payloads: Iterable[int]) -> None:
        """Queue *payloads* and wait until the design has accepted all of them."""
        self.send_nowait(payloads)
        await self.wait_idle()

    async def wait_idle(self) -> None:
        """Wait until every queued payload has been accepted."""
        await self._idle.wait()

    @property
    def idle(self) -> bool:
        """Whether every queued payload has been accepted."""
        return self._idle.is_set()

    def stop(self) -> None:
        """Stop driving (``valid`` keeps its last value); queued payloads are dropped."""
        self._task.cancel()

    async def _run(self) -> None:
        current: int | None = None  # the payload on the port, not yet accepted
        fired = False
        cycle = 0
        while True:
            await RisingEdge(self._clk)
            cycle += 1
            if fired:
                assert current is not None
                self.sent.append(current)
                self.accept_cycles.append(cycle)
                current = None
                if not self._queue:
                    self._idle.set()
            if current is None and self._queue and not self._rng.random() < self.gaps:
                current = self._queue.popleft()
            if current is None:
                self._valid.value = 0
            else:
                self._payload.value = current
                self._valid.value = 1
            await ReadOnly()
            live = self._out_of_reset()      # every cycle: it tracks the reset
            fired = current is not None and live and bool(self._ready.value)


class StreamSink(_StreamPort):
    """Receive from a stream output port of the design, with random back-pressure.

    Starts its own coroutine (``cocotb.start_soon``) when created. Each cycle ``ready`` is held
    low with probability :attr:`backpressure`.

    Parameters
    ----------
    dut:
        The toplevel handle.
    prefix:
        Name of the stream port, e.g. ``"o_stream"``.
    clk:
        The clock handle the port is synchronous to.
    reset:
        Optional active-high synchronous reset; no transfer happens while it is high.
    backpressure:
        Probability, per cycle, of holding ``ready`` low.
    rng:
        Random generator for the back-pressure; defaults to one seeded from ``cocotb.RANDOM_SEED``.

    Members
    -------
    received:
        Every payload received so far, in order (including those already taken by :meth:`recv`).
    transfer_cycles:
        The cycle number (rising edges since creation) at which each of :attr:`received`
        transferred.

    Raises
    ------
    ValueError
        (from the coroutine, failing the test) if ``payload`` holds X or Z during a transfer.
    """

    def __init__(
        self,
        dut: SimHandleBase,
        prefix: str,
        clk: SimHandleBase,
        *,
        reset: SimHandleBase | None = None,
        backpressure: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(dut, prefix, clk, reset, rng)
        self.backpressure = _check_probability("backpressure", backpressure)
        self._queue: Queue[int] = Queue()
        self.received: list[int] = []
        self.transfer_cycles: list[int] = []
        self._ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def recv(self) -> int:
        """Wait for and return the next payload."""
        return await self._queue.get()

    async def recv_n(self, count: int) -> list[int]:
        """Wait for and return the next *count* payloads."""
        return [await self._queue.get() for _ in range(count)]

    def empty(self) -> bool:
        """Whether no received payload is waiting to be taken by :meth:`recv`."""
        return self._queue.empty()

    def stop(self) -> None:
        """Stop receiving (``ready`` keeps its last value)."""
        self._task.cancel()

    async def _run(self) -> None:
        pending: int | None = None  # payload sampled in a cycle whose transfer is at the next edge
        cycle = 0
        while True:
            await RisingEdge(self._clk)
            cycle += 1
            if pending is not None:
                self.received.append(pending)
                self.transfer_cycles.append(cycle)
                self._queue.put_nowait(pending)
                pending = None
            ready = not self._rng.random() < self.backpressure
            self._ready.value = int(ready)
            await ReadOnly()
            if not self._out_of_reset():
                continue
            if ready and bool(self._valid.value):
                pending = self._payload.value.to_unsigned()
