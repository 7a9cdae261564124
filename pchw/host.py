"""The host runtime: talk to a pchw device like to the golden model.

:class:`Device` speaks the command protocol (``pchw.protocol``, ``docs/protocol.md``) over an
abstract :class:`Transport`; the same code drives a board over its serial port
(:class:`SerialTransport`) and the simulated board top, UART pins included
(:class:`SimulationTransport`). Its API mirrors the golden model: floats in, floats out, values
quantised to the network's formats exactly as :class:`~pchw.golden.FixedModel` does.
"""

import time

import numpy as np

from . import protocol
from .errors import PchwError
from .protocol import Opcode, Status

__all__ = ["Transport", "GoldenTransport", "SerialTransport", "SimulationTransport", "Device"]


class Transport:
    """A byte pipe to a device. ``read`` returns what arrived within ``timeout`` seconds (of
    device time for a simulation), possibly fewer bytes than asked for."""

    def write(self, data):
        raise NotImplementedError

    def read(self, count, timeout):
        raise NotImplementedError

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class GoldenTransport(Transport):
    """The golden device model (:class:`pchw.protocol.DeviceModel`) as a device: what the
    hardware must answer, instantly. For trying the host side without a board or a simulator."""

    def __init__(self, network):
        self.device = protocol.DeviceModel(network)
        self._received = bytearray()

    def write(self, data):
        for reply in self.device.feed(bytes(data)):
            self._received += reply

    def read(self, count, timeout):
        data = bytes(self._received[:count])
        del self._received[:count]
        return data


class SerialTransport(Transport):
    """A serial port (pyserial), e.g. the board's USB UART ``/dev/ttyUSB1``, 8N1."""

    def __init__(self, port, baud=115200):
        try:
            import serial
        except ImportError:
            raise PchwError("the serial transport needs pyserial: pip install 'pchw[boards]'")
        try:
            self._port = serial.Serial(port, baud, timeout=0)
        except (serial.SerialException, OSError) as error:
            raise PchwError(f"{port}: cannot open serial port: {error}")

    def write(self, data):
        self._port.write(data)
        self._port.flush()

    def read(self, count, timeout):
        deadline = time.monotonic() + timeout
        data = bytearray()
        while len(data) < count:
            self._port.timeout = max(0.0, deadline - time.monotonic())
            chunk = self._port.read(count - len(data))
            if not chunk:
                break
            data += chunk
        return bytes(data)

    def close(self):
        self._port.close()


class SimulationTransport(Transport):
    """The board top (:class:`pchw.gateware.board.BoardTop`) in amaranth.sim, driven through its
    UART pins: written bytes are bit-banged into ``uart_rx``, ``uart_tx`` is decoded.

    ``timeout`` in :meth:`read` is simulated time. A UART bit takes ``divisor`` cycles, so pick
    a small divisor (a fast simulated baud rate) to keep it quick.
    """

    def __init__(self, board_top, clock_hz, divisor):
        from amaranth.sim import Simulator
        self._dut, self._divisor = board_top, divisor
        self._period = 1 / clock_hz
        self._pending = bytearray()       # to send
        self._received = bytearray()
        self._sim = Simulator(board_top)
        self._sim.add_clock(self._period)
        self._sim.add_testbench(self._drive, background=True)
        self._sim.add_testbench(self._monitor, background=True)
        self._now = 0.0

    # Plain tick loops (not ``tick().until()``/``repeat()``): these testbenches never finish,
    # and suspended async generators complain when they are collected at exit.
    async def _ticks(self, ctx, count):
        for _ in range(count):
            await ctx.tick()

    async def _drive(self, ctx):
        ctx.set(self._dut.uart_rx, 1)
        while True:
            if not self._pending:
                await ctx.tick()
                continue
            byte = self._pending.pop(0)
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                ctx.set(self._dut.uart_rx, bit)
                await self._ticks(ctx, self._divisor)

    async def _monitor(self, ctx):
        divisor = self._divisor
        while True:
            while ctx.get(self._dut.uart_tx):                          # wait for a start bit
                await ctx.tick()
            await self._ticks(ctx, divisor // 2)                       # its middle
            byte = 0
            for i in range(8):
                await self._ticks(ctx, divisor)
                byte |= ctx.get(self._dut.uart_tx) << i
            await self._ticks(ctx, divisor)                            # stop bit
            self._received.append(byte)

    def write(self, data):
        self._pending += data

    def read(self, count, timeout):
        deadline = self._now + timeout
        step = self._period * self._divisor * 10                       # one byte time
        while len(self._received) < count and self._now < deadline:
            self._now += step
            self._sim.run_until(self._now)
        data = bytes(self._received[:count])
        del self._received[:count]
        return data


class Device:
    """A pchw device running ``network``, over ``transport``.

    Raises :class:`~pchw.errors.PchwError` on a timeout (no complete reply within ``timeout``
    seconds), a garbled reply, or an error status; :meth:`resync` then brings a device that was
    left in the middle of a frame (e.g. by a host that disconnected) back to a clean state.
    """

    def __init__(self, transport, network, timeout=2.0):
        self.transport, self.network, self.timeout = transport, network, timeout
        self._f0 = network.value_format(0)
        self._fL = network.value_format(network.L)

    def _exchange(self, opcode, frame):
        self.transport.write(frame)
        header = self.transport.read(protocol.HEADER_SIZE, self.timeout)
        if len(header) < protocol.HEADER_SIZE:
            raise PchwError(f"no reply to {Opcode(opcode).name} within {self.timeout} s "
                            "(is the bitstream loaded and the port right?)")
        if header[0] != protocol.SYNC_REPLY:
            raise PchwError(f"garbled reply to {Opcode(opcode).name}: starts with "
                            f"0x{header[0]:02X}; try again after Device.resync()")
        rest = self.transport.read(protocol.frame_size(header) - len(header), self.timeout)
        try:
            status, payload, _ = protocol.parse_reply(header + rest)
        except PchwError as error:
            raise PchwError(f"garbled reply to {Opcode(opcode).name}: {error}")
        if status != Status.OK:
            raise PchwError(f"the device answered {Opcode(opcode).name} with "
                            f"{Status(status).name}")
        return payload

    def resync(self):
        """Complete any partial frame with zero bytes and drop what comes back: a partial frame
        gets exactly one error reply, and zeros outside a frame are ignored."""
        self.transport.write(bytes(protocol.max_payload(self.network) + protocol.HEADER_SIZE
                                   + protocol.CRC_SIZE))
        while self.transport.read(1, self.timeout / 4):
            pass

    def identify(self, check=True):
        """``(protocol version, network id)``; with ``check``, refuse a device that runs
        another network or protocol."""
        version, network_id = protocol.decode_identify(
            self._exchange(Opcode.IDENTIFY, protocol.identify_command()))
        if check and version != protocol.PROTOCOL_VERSION:
            raise PchwError(f"the device speaks protocol version {version}, this host "
                            f"{protocol.PROTOCOL_VERSION}")
        if check and network_id != protocol.network_id(self.network):
            raise PchwError(f"the device runs another network (id {network_id.hex()}, expected "
                            f"{protocol.network_id(self.network).hex()}): build and flash this "
                            "model's bitstream")
        return version, network_id

    def infer(self, x):
        """Outputs (floats) for one input vector."""
        payload = self._exchange(Opcode.INFER, protocol.infer_command(
            self.network, self._f0.quantise(np.asarray(x, dtype=np.float64).ravel())))
        return self._fL.dequantise(protocol.decode_outputs(self.network, payload))

    def learn(self, x, target):
        """One on-chip PC learning step; returns the prediction before the update (floats)."""
        payload = self._exchange(Opcode.LEARN, protocol.learn_command(
            self.network, self._f0.quantise(np.asarray(x, dtype=np.float64).ravel()),
            self._fL.quantise(np.asarray(target, dtype=np.float64).ravel())))
        return self._fL.dequantise(protocol.decode_outputs(self.network, payload))

    def read_params(self, layer):
        """``(W_l, b_l)`` as floats (exact values of the weight format)."""
        W, b = protocol.decode_params(self.network, layer, self._exchange(
            Opcode.READ_PARAMS, protocol.read_params_command(layer)))
        fmt = self.network.weight_format(layer)
        return fmt.dequantise(W), fmt.dequantise(b)

    def write_params(self, layer, W, b):
        """Set ``W_l`` and ``b_l`` (floats, quantised to the weight format)."""
        fmt = self.network.weight_format(layer)
        self._exchange(Opcode.WRITE_PARAMS, protocol.write_params_command(
            self.network, layer, fmt.quantise(W), fmt.quantise(b)))
