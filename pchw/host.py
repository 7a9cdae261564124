"""The host runtime: talk to a pchw device like to the golden model.

:class:`Device` speaks the command protocol (``pchw.protocol``, ``docs/protocol.md``) over an
abstract :class:`Transport`; the same code drives a board over its serial port
(:class:`SerialTransport`) and the simulated board top, UART pins included
(:class:`SimulationTransport`). Its API mirrors the golden model: floats in, floats out, values
quantised to the network's formats exactly as :class:`~pchw.golden.FixedModel` does.
"""

import random
import time
from collections import deque

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
    hardware must answer, instantly. For trying the host side without a board or a simulator.
    ``faults``, ``dataset``: of a fault-injection build, of a build with a dataset memory."""

    def __init__(self, network, dataset=0, faults=False):
        self.device = protocol.DeviceModel(network, faults=faults, dataset=dataset)
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

    Every command carries a tag (1, 2, ..., 255, 1, ...) that its reply echoes; a reply with
    another tag (a late reply to a command the host gave up on) is discarded and counted in
    :attr:`stale_replies`, never taken for the awaited one. :meth:`infer_many` and
    :meth:`learn_many` stream commands within the device's stream window (IDENTIFY).

    Raises :class:`~pchw.errors.PchwError` on a timeout (no complete reply within ``timeout``
    seconds), a garbled reply, an error status, or an ERR_OVERRUN that may concern the awaited
    command; :meth:`resync` then brings the device and the stream back to a clean state.

    Members
    -------
    window : int or None
        The stream window in bytes, from :meth:`identify` (None before).
    capacity : int or None
        Samples the device's dataset memory holds, from :meth:`identify` (0: none, so no
        :meth:`load_data`, :meth:`train`, :meth:`evaluate`; None before).
    stale_replies : int
        Replies discarded because their tag was not the awaited one.
    overruns : int
        ERR_OVERRUN replies received: runs of input bytes the device lost.
    """

    def __init__(self, transport, network, timeout=2.0):
        self.transport, self.network, self.timeout = transport, network, timeout
        self._f0 = network.value_format(0)
        self._fL = network.value_format(network.L)
        self.window = None
        self.capacity = None
        self.stale_replies = 0
        self.overruns = 0
        # A random first tag: a reply left over from an earlier host is unlikely to carry ours.
        self._tag = random.randrange(255)

    def _next_tag(self):
        """The next command tag: 1..255, never NO_TAG (0, the tag of an error reply to a frame
        whose tag byte never arrived)."""
        self._tag = self._tag % 255 + 1
        return self._tag

    def _exchange(self, opcode, frame):
        self.transport.write(frame)
        return self._reply(opcode, protocol.frame_tag(frame))

    def _reply(self, opcode, tag):
        """The payload of the OK reply tagged ``tag``, the next reply with that tag; replies
        with other tags are discarded (:attr:`stale_replies`)."""
        name = Opcode(opcode).name
        while True:
            header = self.transport.read(protocol.HEADER_SIZE, self.timeout)
            if len(header) < protocol.HEADER_SIZE:
                raise PchwError(
                    f"no reply to {name} within {self.timeout} s (is the bitstream loaded and "
                    "the port right?); a late reply will be discarded by its tag, and "
                    "Device.resync() brings back a device left in the middle of a frame")
            if header[0] != protocol.SYNC_REPLY:
                raise PchwError(f"garbled reply to {name}: starts with 0x{header[0]:02X}; try "
                                "again after Device.resync()")
            rest = self.transport.read(protocol.frame_size(header) - len(header), self.timeout)
            try:
                status, payload, _ = protocol.parse_reply(header + rest)
            except PchwError as error:
                raise PchwError(f"garbled reply to {name}: {error}; try again after "
                                "Device.resync()")
            got = protocol.frame_tag(header)
            if status is Status.ERR_OVERRUN:
                self.overruns += 1
                if got in (tag, protocol.NO_TAG):
                    raise PchwError(
                        f"the device lost input bytes before the reply to {name} (its receive "
                        f"buffer overran: more than the stream window of {self.window} bytes "
                        "sent ahead of a reply), so it may not have been executed; call "
                        "Device.resync() and send it again")
            if got != tag:
                self.stale_replies += 1
                continue
            if status != Status.OK:
                raise PchwError(f"the device answered {name} with {Status(status).name}")
            return payload

    def _stream(self, commands, total=None, progress=None):
        """Send ``commands`` (``(opcode, frame)`` pairs, made when sent) within the stream
        window: a command goes out when no command is outstanding (sent, its reply not yet
        read), or when it and the outstanding ones after the oldest fit :attr:`window` bytes.
        Returns the OK reply payloads, in order; ``progress(replies, total)`` is called after
        each reply if given."""
        if self.window is None:
            self.identify()
        outstanding, payloads = deque(), []      # (opcode, tag, bytes) of commands in flight
        ahead = 0                                # bytes of the outstanding ones but the oldest
        for opcode, frame in commands:
            while outstanding and ahead + len(frame) > self.window:
                oldest_opcode, tag, _ = outstanding.popleft()
                payloads.append(self._reply(oldest_opcode, tag))
                ahead -= outstanding[0][2] if outstanding else 0
                if progress:
                    progress(len(payloads), total)
            self.transport.write(frame)
            if outstanding:
                ahead += len(frame)
            outstanding.append((opcode, protocol.frame_tag(frame), len(frame)))
        while outstanding:
            opcode, tag, _ = outstanding.popleft()
            payloads.append(self._reply(opcode, tag))
            if progress:
                progress(len(payloads), total)
        return payloads

    def resync(self):
        """Complete any partial frame with zero bytes and drop what comes back: a partial frame
        gets exactly one error reply, and zeros outside a frame are ignored."""
        self.transport.write(bytes(protocol.max_payload(self.network, faults=True)
                                   + protocol.HEADER_SIZE
                                   + protocol.CRC_SIZE))
        while self.transport.read(1, self.timeout / 4):
            pass

    def identify(self, check=True):
        """``(protocol version, network id)``; with ``check``, refuse a device that runs
        another network or protocol. Sets :attr:`window`."""
        version, network_id, window, capacity = protocol.decode_identify(self._exchange(
            Opcode.IDENTIFY, protocol.identify_command(tag=self._next_tag())))
        if check and version != protocol.PROTOCOL_VERSION:
            raise PchwError(f"the device speaks protocol version {version}, this host "
                            f"{protocol.PROTOCOL_VERSION}: build and flash the bitstream with "
                            "this pchw")
        if window is not None:
            self.window, self.capacity = window, capacity
        if check and network_id != protocol.network_id(self.network):
            raise PchwError(f"the device runs another network (id {network_id.hex()}, expected "
                            f"{protocol.network_id(self.network).hex()}): build and flash this "
                            "model's bitstream")
        return version, network_id

    def _infer_command(self, x):
        return Opcode.INFER, protocol.infer_command(
            self.network, self._f0.quantise(np.asarray(x, dtype=np.float64).ravel()),
            tag=self._next_tag())

    def _learn_command(self, x, target):
        return Opcode.LEARN, protocol.learn_command(
            self.network, self._f0.quantise(np.asarray(x, dtype=np.float64).ravel()),
            self._fL.quantise(np.asarray(target, dtype=np.float64).ravel()), tag=self._next_tag())

    def _outputs(self, payloads):
        return np.array([self._fL.dequantise(protocol.decode_outputs(self.network, p))
                         for p in payloads]).reshape(len(payloads), self.network.layers[-1])

    def infer(self, x):
        """Outputs (floats) for one input vector."""
        return self._outputs([self._exchange(*self._infer_command(x))])[0]

    def learn(self, x, target):
        """One on-chip PC learning step; returns the prediction before the update (floats)."""
        return self._outputs([self._exchange(*self._learn_command(x, target))])[0]

    def infer_many(self, X, progress=None):
        """Outputs (floats, one row per sample) for the rows of ``X``, the commands streamed
        within the stream window (IDENTIFY first if not done yet); ``progress(done, total)``
        after each reply if given (e.g. a :class:`pchw.progress.Progress`)."""
        return self._outputs(self._stream((self._infer_command(x) for x in X), len(X),
                                          progress))

    def learn_many(self, X, targets, progress=None):
        """One learning step per row of ``X`` and ``targets``, in order, streamed within the
        window; returns the predictions before each update (one row per sample)."""
        if len(X) != len(targets):
            raise PchwError(f"{len(X)} inputs but {len(targets)} targets")
        return self._outputs(self._stream(
            (self._learn_command(x, y) for x, y in zip(X, targets)), len(X), progress))

    def read_params(self, layer):
        """``(W_l, b_l)`` as floats (exact values of the weight format)."""
        W, b = protocol.decode_params(self.network, layer, self._exchange(
            Opcode.READ_PARAMS, protocol.read_params_command(layer, tag=self._next_tag())))
        fmt = self.network.weight_format(layer)
        return fmt.dequantise(W), fmt.dequantise(b)

    def write_params(self, layer, W, b):
        """Set ``W_l`` and ``b_l`` (floats, quantised to the weight format)."""
        fmt = self.network.weight_format(layer)
        self._exchange(Opcode.WRITE_PARAMS, protocol.write_params_command(
            self.network, layer, fmt.quantise(W), fmt.quantise(b), tag=self._next_tag()))

    def set_dead(self, dead):
        """Fault injection (a build with it, ``pchw build --faults``; ``docs/faults.md``): the
        dead units of every layer, ``dead[l]`` the indices (or a boolean mask) of layer ``l``'s,
        l = 0..L; empty lists revive every unit. No upsets (the network-wide FAULT sets both);
        stuck weights stay as they are."""
        self._fault(protocol.fault_command(self.network, dead, tag=self._next_tag()))

    def set_faults(self, faults):
        """Fault injection: every fault of ``faults`` (a :class:`pchw.faults.FaultSpec`, resolved
        on the network, or a resolved :class:`pchw.faults.Faults`): the dead units, the upsets
        (their LEARN count restarts) and the stuck weights of every layer, which take their
        stuck values (:func:`pchw.protocol.fault_commands`). The device then runs as
        :func:`pchw.faults.damage` of its golden model."""
        from .faults import FaultSpec
        if isinstance(faults, FaultSpec):
            faults = faults.resolve(self.network)
        tags = iter(self._next_tag, None)
        for command in protocol.fault_commands(self.network, faults, tags):
            self._fault(command)

    def _fault(self, command):
        try:
            self._exchange(Opcode.FAULT, command)
        except PchwError as error:
            if "ERR_OPCODE" in str(error):
                raise PchwError("the device has no fault injection: build it with --faults "
                                "(pchw build, pchw serve, pchw verilog)") from None
            raise

    # -- the dataset on the chip (a build with --dataset; docs/protocol.md) ---------------------

    def _dataset_command(self, opcode, frame):
        if self.capacity is None:
            self.identify()
        if not self.capacity:
            raise PchwError(f"the device has no dataset memory for {Opcode(opcode).name}: build "
                            "it with --data-memory N (pchw build, pchw serve, pchw verilog)")
        return self._exchange(opcode, frame)

    def load_data(self, X, labels, first=0, progress=None):
        """Store the rows of ``X`` (floats, quantised to layer 0's format) with their class
        ``labels`` as samples ``first``, ``first + 1``, ... of the device's dataset memory, in
        LOAD_DATA chunks (the stored set then ends after them); ``progress(done, total)``
        after each chunk. Returns the number of samples stored."""
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        labels = np.asarray(labels).ravel()
        if len(X) != len(labels):
            raise PchwError(f"{len(X)} inputs but {len(labels)} labels")
        if self.capacity is None:
            self.identify()
        if first + len(X) > (self.capacity or 0):
            raise PchwError(f"{first + len(X)} samples do not fit the device's dataset memory "
                            f"of {self.capacity} (build it with --data-memory {first + len(X)})")
        chunk = protocol.load_chunk(self.network)
        for at in range(0, max(len(X), 1), chunk):
            rows = slice(at, at + chunk)
            self._dataset_command(Opcode.LOAD_DATA, protocol.load_data_command(
                self.network, first + at, self._f0.quantise(X[rows]), labels[rows],
                tag=self._next_tag()))
            if progress:
                progress(min(at + chunk, len(X)), len(X))
        return first + len(X)

    def train(self, epochs, count, seed=0, first_epoch=0, start=0):
        """``epochs`` epochs of on-chip learning over the stored samples ``start`` ..
        ``start + count - 1``, in the order :func:`pchw.order.epoch_order` gives for ``seed``
        and the epochs ``first_epoch``, ``first_epoch + 1``, ... (TRAIN)."""
        self._dataset_command(Opcode.TRAIN, protocol.train_command(
            epochs, seed, first_epoch, start, count, tag=self._next_tag()))

    def evaluate(self, count, start=0):
        """``(correct, confusion)`` over the stored samples ``start`` .. ``start + count - 1``
        (EVAL): how many the device classifies right, and ``confusion[label, predicted]``."""
        return protocol.decode_eval(self.network, self._dataset_command(
            Opcode.EVAL, protocol.eval_command(start, count, tag=self._next_tag())))
