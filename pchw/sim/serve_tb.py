"""cocotb testbench: the board top's UART pins behind a pseudo-terminal (``pchw serve --sim``).

Runs inside the simulator, started by :func:`pchw.serve.serve_simulation`, whose test data give
``divisor`` (cycles per UART bit), ``period_ns``, ``quiet_cycles``, ``ready_file``, ``link``,
``stop_file`` and ``parent_pid``. It opens the pty itself (a simulator started by cocotb does not
inherit its parent's descriptors), publishes its path, and serves until the stop file appears or
the ``pchw serve`` process is gone:

- a driver bit-banges each byte read from the pty into ``uart_rx`` (8N1, ``divisor`` cycles
  per bit, back to back as a USB-serial bridge sends them);
- a monitor decodes ``uart_tx`` (sampled in the middle of each bit) and queues the bytes for
  the pty;
- a poller moves bytes between the pty and those two every byte time while the board is busy.
  When the board is idle (nothing to send or receive, ``led_activity`` dark, and
  ``quiet_cycles`` since the last byte in, so that a partial frame has timed out as it would on
  the board) it blocks on the pty without simulating: an idle server costs no CPU.
"""

import collections
import os
import select
import signal

import cocotb
from cocotb.triggers import ClockCycles, Event, FallingEdge

from pchw.serve import open_pty, publish, stop_requested
from pchw.sim.tb import ClockedTB, load_test_data


class UARTBoardTB(ClockedTB):
    """Clock, reset, and the UART lines of the board top, joined to a pty."""

    def __init__(self, dut, data):
        super().__init__(dut, period_ns=data["period_ns"])
        self.divisor = int(data["divisor"])
        self.quiet_cycles = int(data["quiet_cycles"])
        self.to_board = collections.deque()        # bytes from the pty, not yet on uart_rx
        self.to_host = bytearray()                 # bytes from uart_tx, not yet in the pty
        self.sending = self.receiving = False
        self.since_input = 0                       # cycles since the last byte went onto uart_rx
        self.more = Event()
        self.dut.uart_rx.value = 1

    async def drive(self):
        """Bit-bang queued bytes into ``uart_rx``."""
        while True:
            if not self.to_board:
                self.more.clear()
                await self.more.wait()
                continue
            byte = self.to_board.popleft()
            self.sending = True
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                self.dut.uart_rx.value = bit
                await ClockCycles(self.clk, self.divisor)
            self.since_input = 0
            self.sending = bool(self.to_board)

    async def monitor(self):
        """Decode ``uart_tx`` into :attr:`to_host`; a byte with a low stop bit is logged."""
        half = self.divisor // 2
        while True:
            await FallingEdge(self.dut.uart_tx)
            self.receiving = True
            await ClockCycles(self.clk, half)                # the start bit's middle
            byte = 0
            for i in range(8):
                await ClockCycles(self.clk, self.divisor)
                byte |= int(self.dut.uart_tx.value) << i
            await ClockCycles(self.clk, self.divisor)        # the stop bit's middle
            if not int(self.dut.uart_tx.value):
                self.log.warning("uart_tx: framing error (stop bit low) after 0x%02X", byte)
            self.to_host.append(byte)
            self.receiving = False

    def idle(self):
        return not (self.to_board or self.to_host or self.sending or self.receiving
                    or int(self.dut.led_activity.value) or self.since_input < self.quiet_cycles)


def _read(fd):
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


@cocotb.test()
async def serve(dut):
    """Serve the board top on a pty until told to stop (passes when stopped cleanly)."""
    data = load_test_data()
    try:                      # Ctrl-C in the terminal reaches this process too: pchw serve
        signal.signal(signal.SIGINT, signal.SIG_IGN)      # stops it through the stop file
    except ValueError:
        pass
    tb = UARTBoardTB(dut, data)
    await tb.reset()
    controller, terminal, path = open_pty()
    publish(path, data["ready_file"], data.get("link"))
    cocotb.start_soon(tb.drive())
    cocotb.start_soon(tb.monitor())
    byte_time = 10 * tb.divisor
    parent = int(data["parent_pid"])
    served_in = served_out = 0
    try:
        while not stop_requested(data.get("stop_file"), parent):
            if tb.to_host:
                try:
                    written = os.write(controller, tb.to_host)
                    del tb.to_host[:written]
                    served_out += written
                except BlockingIOError:       # the client is not reading: the board waits
                    pass
            if tb.idle():
                select.select([controller], [], [], 0.2)       # simulated time stands still
            incoming = _read(controller)
            if incoming:
                tb.to_board.extend(incoming)
                served_in += len(incoming)
                tb.more.set()
            await ClockCycles(tb.clk, byte_time)
            if not tb.sending:
                tb.since_input += byte_time
    finally:
        os.close(controller)
        os.close(terminal)
        tb.log.info("served %d bytes in, %d bytes out", served_in, served_out)
