"""The network top: byte streams in and out, the command protocol, and the PC core.

``i_stream`` -> :class:`~pchw.gateware.framing.FrameReceiver` (frames, payload buffer) ->
:class:`~pchw.gateware.command.CommandDecoder` (a registered :class:`Command` per frame) ->
the sequencer here, which runs each command: :class:`~pchw.gateware.loader.PayloadLoader`
(payload bytes -> values) and :class:`~pchw.gateware.walker.ValueWalker` (where each value
goes) into :class:`~pchw.gateware.core.PCCore`, then the reply through
:class:`~pchw.gateware.serialiser.ValueSerialiser` and
:class:`~pchw.gateware.framing.FrameTransmitter` -> ``o_stream``. The protocol is
``pchw.protocol`` (``docs/protocol.md``); the command latencies are
:func:`pchw.latency.command_latency`.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import protocol
from ..protocol import Opcode
from .command import Action, CommandDecoder, ReplyStatus, command_rules
from .core import CoreOp, PCCore
from .dataset import DatasetUnit
from .framing import FrameReceiver, FrameTransmitter
from .loader import PayloadLoader
from .serialiser import ValueSerialiser
from .upsets import UpsetInjector
from .walker import ValueWalker, WalkMode

__all__ = ["NetworkTop"]


class _Dest(enum.Enum, shape=2):
    X0 = 0        # inputs -> x_0
    XL = 1        # targets -> x_L
    PARAMS = 2    # WRITE_PARAMS -> W_l, b_l
    MASKS = 3     # FAULT -> the dead-unit masks (fault-injection builds)


class _FaultLoad(enum.Enum, shape=2):
    """What a FAULT's payload loads into (fault-injection builds)."""
    NETWORK = 0   # the dead-unit masks and the upset fields
    VALUE = 1     # the stuck value of the layer
    CODES = 2     # a stuck code per weight of W_l


class _Source(enum.Enum, shape=3):
    NONE = 0
    IDENTIFY = 1
    OUTPUT = 2    # the prediction y
    PARAMS = 3    # READ_PARAMS
    ERROR = 4     # the opcode byte of an error reply
    DATASET = 5   # EVAL's counts (the dataset unit's reply values)


class NetworkTop(wiring.Component):
    """A network device: commands in on ``i_stream``, replies out on ``o_stream`` (bytes).

    Every complete command frame gets exactly one reply frame, with the command's tag; a
    malformed or unknown command gets an error reply and leaves the parameters untouched. A
    pulse on ``frame_abort`` drops a partly received command without a reply (tie it to 0 where
    no link timeout is wanted). A pulse on ``overrun`` while ``i_stream.ready`` is 1 (instead of
    a byte) marks bytes the link lost: the partial command, if any, is dropped and answered
    with ``ERR_OVERRUN`` (tie it to 0 where the link cannot lose bytes).
    ``payload_ram_style`` is the command payload buffer's Yosys ``ram_style``
    (:class:`~pchw.gateware.framing.FrameReceiver`), and the dataset memory's.

    With ``faults``, the build injects faults (``docs/faults.md``): FAULT sets the dead units of
    every layer (registers, zero at reset), which the layer units hold at zero, the upsets
    (:class:`~pchw.gateware.upsets.UpsetInjector`, after each LEARN command) and the stuck
    weights of a layer (a stuck bit per weight in the layer unit). Without, FAULT is an unknown
    opcode and the build has none of this logic.

    With ``dataset`` (a number of samples), the build has a dataset memory and LOAD_DATA, TRAIN
    and EVAL (:class:`~pchw.gateware.dataset.DatasetUnit`, ``docs/protocol.md``), which runs
    them on the payload buffer and the core's ports itself; without, those are unknown opcodes
    and the build has none of their logic. ``payload_ram_style`` is also its input memory's.
    """

    i_stream: In(stream.Signature(8))
    o_stream: Out(stream.Signature(8))
    frame_abort: In(1)      # drop a partly received command (a link's inter-byte timeout)
    overrun: In(1)          # the link lost bytes here (its receive buffer was full)

    def __init__(self, network, *, payload_ram_style=None, faults=False, dataset=0):
        self._net = network
        self._dataset = dataset
        self._max_payload = protocol.max_payload(network, faults)
        self._payload_ram_style = payload_ram_style
        self._faults = faults
        self.core = PCCore(network, faults=faults)
        self.upsets = UpsetInjector(network) if faults else None
        self.dataset_unit = DatasetUnit(network, dataset, core=self.core,
                                        ram_style=payload_ram_style) if dataset else None
        super().__init__()

    @property
    def faults(self):
        """Whether this build injects faults (the FAULT command)."""
        return self._faults

    @property
    def dataset(self):
        """The samples the dataset memory holds (0: none, no LOAD_DATA / TRAIN / EVAL)."""
        return self._dataset

    def elaborate(self, platform):
        m = Module()
        net, L = self._net, self._net.L
        n = net.layers
        m.submodules.rx = rx = FrameReceiver(self._max_payload,
                                             ram_style=self._payload_ram_style)
        m.submodules.decoder = decoder = CommandDecoder(
            command_rules(net, self._faults, dataset=bool(self._dataset)))
        # the loader's values are as wide as the widest value or weight a payload carries (the
        # wire's padding bits above it are not used), and a byte at least (FAULT's fields)
        widest = max([8] + [net.value_format(l).width for l in range(L + 1)]
                     + [net.weight_format(l).width for l in range(1, L + 1)])
        m.submodules.loader = loader = PayloadLoader(1 << len(rx.buf_addr), widest)
        m.submodules.walker = walker = ValueWalker(net)
        m.submodules.serialiser = ser = ValueSerialiser()
        m.submodules.tx = tx = FrameTransmitter()
        m.submodules.core = core = self.core
        wiring.connect(m, wiring.flipped(self.i_stream), rx.i_stream)
        m.d.comb += [rx.abort.eq(self.frame_abort), rx.overrun.eq(self.overrun)]
        wiring.connect(m, rx.o_frame, decoder.i_frame)
        m.d.comb += [rx.buf_addr.eq(loader.buf_addr), loader.buf_data.eq(rx.buf_data)]
        wiring.connect(m, ser.o_stream, tx.i_payload)
        wiring.connect(m, tx.o_stream, wiring.flipped(self.o_stream))

        vbytes0 = protocol.value_bytes(net.value_format(0))
        vbytesL = protocol.value_bytes(net.value_format(L))
        identify = protocol.identify_payload(protocol.network_id(net), capacity=self._dataset)

        # Per-layer constants of the parameter commands (index 0 unused).
        def table(values, width):
            return Array(Const(v, width) for v in values)
        wbytes = table([1] + [protocol.value_bytes(net.weight_format(l))
                              for l in range(1, L + 1)], 3)
        param_bytes = table([0] + [protocol.payload_length(net, Opcode.WRITE_PARAMS, l) - 1
                                   for l in range(1, L + 1)], 16)

        command = decoder.o_command.p
        layer = command.layer
        status = Signal(ReplyStatus)
        reply_len = Signal(16)
        source = Signal(_Source)
        dest = Signal(_Dest)
        value = loader.o_stream.payload
        m.d.comb += [walker.layer.eq(layer),
                     core.x_addr.eq(walker.index), core.y_addr.eq(walker.index),
                     core.p_layer.eq(layer), core.p_lane.eq(walker.lane),
                     core.p_group.eq(walker.group), core.p_col.eq(walker.col),
                     core.x_wdata.eq(value), core.p_wdata.eq(value),
                     core.x_layer.eq(dest == _Dest.XL)]

        def walk(mode, count=0):
            m.d.comb += [walker.start.eq(1), walker.mode.eq(mode), walker.count.eq(count)]

        def load(to, offset, length, width, mode, count=0):
            """Load ``length`` payload bytes from ``offset`` as values of ``width`` bytes."""
            m.d.sync += dest.eq(to)
            m.d.comb += [loader.start.eq(1), loader.offset.eq(offset),
                         loader.length.eq(length), loader.width.eq(width)]
            walk(mode, count)
            m.next = "LOAD"

        def reply(code, length, what, mode=WalkMode.VALUES, count=0):
            """Send the reply header next, then ``what``'s values (walked by ``mode``)."""
            m.d.sync += [status.eq(code), reply_len.eq(length), source.eq(what)]
            walk(mode, count)
            m.next = "HEADER"

        # -- fault injection: the network-wide FAULT payload, byte by byte (each layer's mask
        # from its bytes, then the upset fields); a stuck-weights FAULT's value and codes
        mask_bytes = []
        loaded = walker.last
        if self._faults:
            m.submodules.upsets = upsets = self.upsets
            dead = []
            for l, size in enumerate(protocol.fault_mask_bytes(net)):
                layer_bytes = [Signal(8, name=f"dead{l}_{i}") for i in range(size)]
                mask_bytes += layer_bytes
                dead.append(Cat(*layer_bytes)[:n[l]])
            m.d.comb += core.dead.eq(Cat(*dead))
            upset_bytes = [Signal(8, name=f"upset{i}") for i in range(protocol.UPSET_BYTES)]
            mask_bytes += upset_bytes
            m.d.comb += Cat(upsets.flips, upsets.threshold, upsets.seed).eq(Cat(*upset_bytes))
            fault_load = Signal(_FaultLoad)
            stuck_value = Signal(32)
            weight_count = table([0] + [n[l] * n[l - 1] for l in range(1, L + 1)], 16)
            # the codes walk W_l only (not b_l): their last is the last weight
            last_code = Signal(16)
            codes = (dest == _Dest.MASKS) & (fault_load == _FaultLoad.CODES)
            loaded = Mux(codes, walker.index == last_code, walker.last)

        ds = self.dataset_unit
        if ds is not None:
            m.submodules.dataset = ds
            m.d.comb += [ds.opcode.eq(command.opcode), ds.length.eq(rx.o_frame.p.length),
                         ds.buf_data.eq(rx.buf_data), ds.core_busy.eq(core.busy),
                         ds.y_data.eq(core.y_data)]

        rom = Array(Const(b, 8) for b in identify)
        fetched = Signal(32)                # the next reply value, sign-extended
        param = Signal.like(core.p_rdata)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(decoder.o_command.valid):
                    with m.Switch(command.action):
                        with m.Case(Action.ERROR):
                            reply(command.status, 1, _Source.ERROR, count=1)
                        with m.Case(Action.IDENTIFY):
                            reply(ReplyStatus.OK, len(identify), _Source.IDENTIFY,
                                  count=len(identify))
                        with m.Case(Action.INFER, Action.LEARN):
                            load(_Dest.X0, 0, n[0] * vbytes0, vbytes0, WalkMode.VALUES, n[0])
                        with m.Case(Action.READ_PARAMS):
                            reply(ReplyStatus.OK, param_bytes[layer], _Source.PARAMS,
                                  WalkMode.PARAMS)
                        with m.Case(Action.WRITE_PARAMS):
                            load(_Dest.PARAMS, 1, param_bytes[layer], wbytes[layer],
                                 WalkMode.PARAMS)
                        if self._faults:
                            with m.Case(Action.FAULT):
                                with m.If(layer == protocol.FAULT_NETWORK):
                                    m.d.sync += fault_load.eq(_FaultLoad.NETWORK)
                                    load(_Dest.MASKS, 1, len(mask_bytes), 1, WalkMode.VALUES,
                                         len(mask_bytes))
                                with m.Else():
                                    m.d.sync += fault_load.eq(_FaultLoad.VALUE)
                                    load(_Dest.MASKS, 1, wbytes[layer], wbytes[layer],
                                         WalkMode.VALUES, 1)
                        if ds is not None:
                            with m.Case(Action.DATASET):
                                m.d.comb += ds.start.eq(1)
                                m.next = "DATASET"

            if ds is not None:
                with m.State("DATASET"):
                    # The dataset unit reads the payload and drives the core's ports.
                    m.d.comb += [rx.buf_addr.eq(ds.buf_addr), core.op.eq(ds.core_op),
                                 core.start.eq(ds.core_start), core.x_layer.eq(ds.x_layer),
                                 core.x_we.eq(ds.x_we), core.x_addr.eq(ds.x_addr),
                                 core.x_wdata.eq(ds.x_wdata), core.y_addr.eq(ds.y_addr)]
                    with m.If(~ds.busy):
                        with m.If(ds.status != ReplyStatus.OK):
                            reply(ds.status, 1, _Source.ERROR, count=1)
                        with m.Elif(ds.reply_len == 0):
                            reply(ReplyStatus.OK, 0, _Source.NONE)
                        with m.Else():
                            reply(ReplyStatus.OK, ds.reply_len, _Source.DATASET,
                                  count=protocol.eval_reply_length(net) // protocol.COUNT_SIZE)

            with m.State("LOAD"):
                with m.If(loader.o_stream.valid):
                    with m.Switch(dest):
                        with m.Case(_Dest.X0, _Dest.XL):
                            m.d.comb += core.x_we.eq(1)
                        with m.Case(_Dest.PARAMS):
                            m.d.comb += core.p_we.eq(1)
                        if self._faults:
                            with m.Case(_Dest.MASKS):
                                with m.Switch(fault_load):
                                    with m.Case(_FaultLoad.NETWORK):
                                        m.d.sync += Array(mask_bytes)[walker.index].eq(value[:8])
                                    with m.Case(_FaultLoad.VALUE):
                                        m.d.sync += stuck_value.eq(value)
                                    with m.Case(_FaultLoad.CODES):
                                        stuck = protocol.StuckCode
                                        m.d.comb += [
                                            core.s_we.eq(1),
                                            core.s_wdata.eq(value[stuck.STUCK.bit_length() - 1]),
                                            core.p_we.eq(value[stuck.SET.bit_length() - 1])]
                    m.d.comb += walker.next.eq(1)
                    with m.If(loaded):
                        m.next = "LOADED"
            with m.State("LOADED"):
                with m.Switch(dest):
                    with m.Case(_Dest.PARAMS):
                        reply(ReplyStatus.OK, 0, _Source.NONE)
                    if self._faults:
                        with m.Case(_Dest.MASKS):
                            with m.If(fault_load == _FaultLoad.VALUE):     # then the codes
                                m.d.sync += [fault_load.eq(_FaultLoad.CODES),
                                             last_code.eq(weight_count[layer] - 1)]
                                load(_Dest.MASKS, 1 + wbytes[layer], weight_count[layer], 1,
                                     WalkMode.PARAMS)
                            with m.Else():
                                m.d.comb += upsets.clear.eq(fault_load == _FaultLoad.NETWORK)
                                reply(ReplyStatus.OK, 0, _Source.NONE)
                    with m.Case(_Dest.X0):
                        m.d.comb += [core.op.eq(CoreOp.INFER), core.start.eq(1)]
                        m.next = "INFER"
                    with m.Case(_Dest.XL):
                        m.d.comb += [core.op.eq(CoreOp.LEARN), core.start.eq(1)]
                        m.next = "LEARN"
            with m.State("INFER"):
                with m.If(~core.busy):
                    with m.If(command.action == Action.LEARN):
                        load(_Dest.XL, n[0] * vbytes0, n[L] * vbytesL, vbytesL,
                             WalkMode.VALUES, n[L])
                    with m.Else():
                        m.next = "OUTPUT"
            with m.State("LEARN"):
                with m.If(~core.busy):
                    if self._faults:        # the command's upsets, then the reply
                        m.d.comb += upsets.start.eq(1)
                        m.next = "UPSETS"
                    else:
                        m.next = "OUTPUT"
            if self._faults:
                with m.State("UPSETS"):
                    with m.If(~upsets.busy):
                        m.next = "OUTPUT"
            with m.State("OUTPUT"):
                reply(ReplyStatus.OK, n[L] * vbytesL, _Source.OUTPUT, count=n[L])

            with m.State("HEADER"):
                m.d.comb += [tx.i_header.valid.eq(1), tx.i_header.p.status.eq(status),
                             tx.i_header.p.tag.eq(command.tag),
                             tx.i_header.p.length.eq(reply_len)]
                with m.If(tx.i_header.ready):
                    with m.If(source == _Source.NONE):
                        m.next = "RELEASE"
                    with m.Else():
                        m.next = "FETCH"
            with m.State("FETCH"):
                # The parameter port reads one cycle after the address.
                m.next = "HOLD"
            with m.State("HOLD"):
                # The parameter read registered on its own (the block RAMs' outputs and the
                # lane and layer multiplexers behind them are slow).
                m.d.sync += param.eq(core.p_rdata)
                m.next = "READ"
            with m.State("READ"):
                # The value is registered before the serialiser takes it (the memories'
                # outputs and the read multiplexers are slow).
                with m.Switch(source):
                    with m.Case(_Source.ERROR):
                        m.d.sync += fetched.eq(command.opcode)
                    with m.Case(_Source.IDENTIFY):
                        m.d.sync += fetched.eq(rom[walker.index])
                    with m.Case(_Source.OUTPUT):
                        m.d.sync += fetched.eq(core.y_data)
                    with m.Case(_Source.PARAMS):
                        m.d.sync += fetched.eq(param)
                    if ds is not None:
                        with m.Case(_Source.DATASET):
                            m.d.sync += fetched.eq(ds.r_value)
                m.next = "LATCH"
            with m.State("LATCH"):
                m.d.comb += [ser.i_stream.valid.eq(1), ser.i_stream.p.value.eq(fetched)]
                with m.Switch(source):
                    with m.Case(_Source.ERROR, _Source.IDENTIFY):
                        m.d.comb += ser.i_stream.p.width.eq(1)
                    with m.Case(_Source.OUTPUT):
                        m.d.comb += ser.i_stream.p.width.eq(vbytesL)
                    with m.Case(_Source.PARAMS):
                        m.d.comb += ser.i_stream.p.width.eq(wbytes[layer])
                    if ds is not None:
                        with m.Case(_Source.DATASET):
                            m.d.comb += ser.i_stream.p.width.eq(protocol.COUNT_SIZE)
                m.next = "SEND"
            with m.State("SEND"):
                with m.If(ser.i_stream.ready):          # the value's last byte is sent
                    m.d.comb += walker.next.eq(1)
                    if ds is not None:
                        m.d.comb += ds.r_next.eq(source == _Source.DATASET)
                    with m.If(walker.last):
                        m.next = "RELEASE"
                    with m.Else():
                        m.next = "FETCH"
            with m.State("RELEASE"):
                m.d.comb += decoder.o_command.ready.eq(1)
                m.next = "IDLE"
        if self._faults:
            self._fault_port(m, core, codes, stuck_value)
        return m

    def _fault_port(self, m, core, codes, stuck_value):
        """Fault injection's use of the parameter port: the stuck codes write the stuck value
        (their SET bit), and the upset injector owns the port while it works."""
        upsets = self.upsets
        with m.If(codes):
            m.d.comb += core.p_wdata.eq(stuck_value)
        with m.If(upsets.busy):
            m.d.comb += [core.p_layer.eq(upsets.p_layer), core.p_lane.eq(upsets.p_lane),
                         core.p_group.eq(upsets.p_group), core.p_col.eq(upsets.p_col),
                         core.p_we.eq(upsets.p_we), core.p_wdata.eq(upsets.p_wdata)]
        m.d.comb += [upsets.p_rdata.eq(core.p_rdata), upsets.p_stuck.eq(core.p_stuck)]
