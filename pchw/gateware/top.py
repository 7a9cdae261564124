"""The network top: byte streams in and out, the command protocol, and the PC core.

``i_stream`` -> :class:`~pchw.gateware.framing.FrameReceiver` -> command decoder ->
:class:`~pchw.gateware.core.PCCore` -> :class:`~pchw.gateware.framing.FrameTransmitter` ->
``o_stream``. The protocol is ``pchw.protocol`` (``docs/protocol.md``); the command latencies
are :func:`pchw.latency.command_latency`.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import protocol
from ..protocol import Opcode, Status
from .core import CoreOp, PCCore
from .framing import FrameCheck, FrameReceiver, FrameTransmitter

__all__ = ["NetworkTop"]


class _Dest(enum.Enum, shape=2):
    X0 = 0        # inputs -> x_0
    XL = 1        # targets -> x_L
    PARAMS = 2    # WRITE_PARAMS -> W_l, b_l
    MASKS = 3     # FAULT -> the dead-unit masks (fault-injection builds)


class _Source(enum.Enum, shape=2):
    NONE = 0
    IDENTIFY = 1
    OUTPUT = 2    # the prediction y
    PARAMS = 3    # READ_PARAMS


class NetworkTop(wiring.Component):
    """A network device: commands in on ``i_stream``, replies out on ``o_stream`` (bytes).

    Every complete command frame gets exactly one reply frame, with the command's tag; a
    malformed or unknown command gets an error reply and leaves the parameters untouched. A
    pulse on ``frame_abort`` drops a partly received command without a reply (tie it to 0 where
    no link timeout is wanted). A pulse on ``overrun`` while ``i_stream.ready`` is 1 (instead of
    a byte) marks bytes the link lost: the partial command, if any, is dropped and answered
    with ``ERR_OVERRUN`` (tie it to 0 where the link cannot lose bytes).
    ``payload_ram_style`` is the command payload buffer's Yosys ``ram_style``
    (:class:`~pchw.gateware.framing.FrameReceiver`).

    With ``faults``, the build injects faults (``docs/faults.md``): FAULT sets the dead units of
    every layer (registers, zero at reset), which the layer units hold at zero. Without, FAULT is
    an unknown opcode and the build has none of this logic.
    """

    i_stream: In(stream.Signature(8))
    o_stream: Out(stream.Signature(8))
    frame_abort: In(1)      # drop a partly received command (a link's inter-byte timeout)
    overrun: In(1)          # the link lost bytes here (its receive buffer was full)

    def __init__(self, network, *, payload_ram_style=None, faults=False):
        self._net = network
        self._max_payload = protocol.max_payload(network)
        self._payload_ram_style = payload_ram_style
        self._faults = faults
        self.core = PCCore(network, faults=faults)
        super().__init__()

    @property
    def faults(self):
        """Whether this build injects faults (the FAULT command)."""
        return self._faults

    def elaborate(self, platform):
        m = Module()
        net, L = self._net, self._net.L
        n = net.layers
        m.submodules.rx = rx = FrameReceiver(self._max_payload,
                                             ram_style=self._payload_ram_style)
        m.submodules.tx = tx = FrameTransmitter()
        m.submodules.core = core = self.core
        wiring.connect(m, wiring.flipped(self.i_stream), rx.i_stream)
        m.d.comb += [rx.abort.eq(self.frame_abort), rx.overrun.eq(self.overrun)]
        wiring.connect(m, tx.o_stream, wiring.flipped(self.o_stream))

        vbytes0 = protocol.value_bytes(net.value_format(0))
        vbytesL = protocol.value_bytes(net.value_format(L))
        identify = protocol.identify_payload(protocol.network_id(net))

        # Per-layer constants for the parameter commands (index 0 unused).
        def table(values, width=16):
            return Array(Const(v, width) for v in values)
        n_in = table([1] + [n[l - 1] for l in range(1, L + 1)])
        n_out = table([1] + [n[l] for l in range(1, L + 1)])
        lanes = table([1] + list(net.lanes))
        wbytes = table([1] + [protocol.value_bytes(net.weight_format(l))
                              for l in range(1, L + 1)], 4)
        param_count = table([0] + [n[l] * (n[l - 1] + 1) for l in range(1, L + 1)], 17)
        param_len = table([0] + [protocol.payload_length(net, Opcode.WRITE_PARAMS, l)
                                 for l in range(1, L + 1)], 17)

        info = rx.o_frame.p
        layer = Signal(8)
        status = Signal(8)
        reply_len = Signal(16)

        # -- value walker: the value index and, for parameters, (lane, group, column) ------------
        count = Signal(16)              # values left
        index = Signal(16)              # value index (x_0 / x_L / y)
        p_lane, p_group, p_col = Signal(8), Signal(16), Signal(17)
        p_row = Signal(16)              # p_group * lanes + p_lane, counted (no multiplier)
        in_bias = Signal()
        m.d.comb += [core.x_addr.eq(index), core.y_addr.eq(index), core.p_layer.eq(layer),
                     core.p_lane.eq(p_lane), core.p_group.eq(p_group), core.p_col.eq(p_col)]

        def walk_start(values):
            return [count.eq(values), index.eq(0), p_lane.eq(0), p_group.eq(0), in_bias.eq(0),
                    p_col.eq(0), p_row.eq(0)]

        def walk_next():
            """Advance to the next value: x/y by index; parameters W row-major, then b."""
            last_col = p_col == n_in[layer] - 1
            last_lane = p_lane == lanes[layer] - 1
            last_row = p_row == n_out[layer] - 1
            stmts = [count.eq(count - 1), index.eq(index + 1)]
            next_row = [p_lane.eq(Mux(last_lane, 0, p_lane + 1)),
                        p_group.eq(Mux(last_lane, p_group + 1, p_group)), p_row.eq(p_row + 1)]
            return stmts, last_col, last_row, next_row

        def advance(m):
            stmts, last_col, last_row, next_row = walk_next()
            m.d.sync += stmts
            with m.If(in_bias):
                m.d.sync += next_row
            with m.Elif(last_col):
                m.d.sync += p_col.eq(0)
                m.d.sync += next_row
                with m.If(last_row):
                    m.d.sync += [in_bias.eq(1), p_col.eq(n_in[layer]), p_lane.eq(0),
                                 p_group.eq(0), p_row.eq(0)]
            with m.Else():
                m.d.sync += p_col.eq(p_col + 1)

        # -- loader: payload bytes -> values -> x_0 / x_L / parameters -----------------------------
        dest = Signal(_Dest)
        ptr = Signal(16)                # next buffer address to read
        nbytes = Signal(4)              # bytes per value
        k = Signal(4)                   # byte of the value arriving now
        word = Signal(32)
        fetching = Signal()             # a byte read was issued last cycle
        value = Signal(32)
        idle = Signal()
        m.d.comb += rx.buf_addr.eq(Mux(idle, 0, ptr))
        m.d.comb += value.eq(word | (rx.buf_data << (k * 8)))
        m.d.comb += [core.x_wdata.eq(value), core.p_wdata.eq(value),
                     core.x_layer.eq(dest == _Dest.XL)]

        # -- fault injection: the FAULT payload, byte by byte; each layer's mask from its bytes ------
        mask_bytes = []
        if self._faults:
            dead = []
            for l, size in enumerate(protocol.fault_mask_bytes(net)):
                layer_bytes = [Signal(8, name=f"dead{l}_{i}") for i in range(size)]
                mask_bytes += layer_bytes
                dead.append(Cat(*layer_bytes)[:n[l]])
            m.d.comb += core.dead.eq(Cat(*dead))

        # -- serializer: values -> bytes on tx.i_payload ------------------------------------------
        source = Signal(_Source)
        out_word = Signal(32)
        out_k = Signal(4)
        rom = Array(Const(b, 8) for b in identify)
        sign_extended = Signal(32)
        fetched = Signal(signed(max(core.y_data.shape().width, core.p_rdata.shape().width)))

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += idle.eq(1)
                with m.If(rx.o_frame.valid):
                    m.next = "LAYER"
            with m.State("LAYER"):
                # rx.buf_data is the first payload byte (the layer of parameter commands);
                # registered before the decode uses it (the buffer's output is slow).
                m.d.sync += layer.eq(rx.buf_data)
                m.next = "DECODE"
            with m.State("DECODE"):
                layer_ok = (layer >= 1) & (layer <= L)

                def fail(code):
                    m.d.sync += [status.eq(code), reply_len.eq(1), source.eq(_Source.NONE)]
                    m.next = "ERROR_HEADER"

                with m.If(info.check == FrameCheck.OVERRUN):
                    fail(Status.ERR_OVERRUN)
                with m.Elif(info.check == FrameCheck.TOO_LONG):
                    fail(Status.ERR_LENGTH)
                with m.Elif(info.check == FrameCheck.BAD_CRC):
                    fail(Status.ERR_CHECKSUM)
                with m.Elif(info.opcode == Opcode.IDENTIFY):
                    with m.If(info.length != 0):
                        fail(Status.ERR_LENGTH)
                    with m.Else():
                        m.d.sync += [status.eq(Status.OK), reply_len.eq(len(identify)),
                                     source.eq(_Source.IDENTIFY), count.eq(len(identify)),
                                     index.eq(0)]
                        m.next = "HEADER"
                with m.Elif((info.opcode == Opcode.INFER) | (info.opcode == Opcode.LEARN)):
                    need = Mux(info.opcode == Opcode.INFER, n[0] * vbytes0,
                               n[0] * vbytes0 + n[L] * vbytesL)
                    with m.If(info.length != need):
                        fail(Status.ERR_LENGTH)
                    with m.Else():
                        m.d.sync += [dest.eq(_Dest.X0), nbytes.eq(vbytes0), k.eq(0),
                                     word.eq(0), fetching.eq(0), ptr.eq(0), *walk_start(n[0])]
                        m.next = "LOAD"
                with m.Elif(info.opcode == Opcode.READ_PARAMS):
                    with m.If(info.length != 1):
                        fail(Status.ERR_LENGTH)
                    with m.Elif(~layer_ok):
                        fail(Status.ERR_ARGUMENT)
                    with m.Else():
                        l_ = layer
                        m.d.sync += [status.eq(Status.OK),
                                     reply_len.eq(param_len[l_] - 1), source.eq(_Source.PARAMS),
                                     *walk_start(param_count[l_])]
                        m.next = "HEADER"
                with m.Elif(info.opcode == Opcode.WRITE_PARAMS):
                    with m.If(info.length == 0):
                        fail(Status.ERR_LENGTH)
                    with m.Elif(~layer_ok):
                        fail(Status.ERR_ARGUMENT)
                    with m.Elif(info.length != param_len[layer]):
                        fail(Status.ERR_LENGTH)
                    with m.Else():
                        l_ = layer
                        m.d.sync += [dest.eq(_Dest.PARAMS), nbytes.eq(wbytes[l_]), k.eq(0),
                                     word.eq(0), fetching.eq(0), ptr.eq(1),
                                     *walk_start(param_count[l_])]
                        m.next = "LOAD"
                if self._faults:
                    with m.Elif(info.opcode == Opcode.FAULT):
                        with m.If(info.length != len(mask_bytes)):
                            fail(Status.ERR_LENGTH)
                        with m.Else():
                            m.d.sync += [dest.eq(_Dest.MASKS), nbytes.eq(1), k.eq(0),
                                         word.eq(0), fetching.eq(0), ptr.eq(0),
                                         *walk_start(len(mask_bytes))]
                            m.next = "LOAD"
                with m.Else():
                    fail(Status.ERR_OPCODE)

            with m.State("LOAD"):
                # Issue one buffer read per cycle; assemble little-endian values one cycle later.
                issue_more = Signal()
                m.d.comb += issue_more.eq(~((count == 1) & fetching & (k == nbytes - 1)) &
                                          (count != 0))
                m.d.sync += fetching.eq(0)
                with m.If(issue_more):
                    m.d.sync += [ptr.eq(ptr + 1), fetching.eq(1)]
                with m.If(fetching):
                    with m.If(k == nbytes - 1):
                        m.d.sync += [k.eq(0), word.eq(0)]
                        with m.Switch(dest):
                            with m.Case(_Dest.X0, _Dest.XL):
                                m.d.comb += core.x_we.eq(1)
                            with m.Case(_Dest.PARAMS):
                                m.d.comb += core.p_we.eq(1)
                            if self._faults:
                                with m.Case(_Dest.MASKS):
                                    m.d.sync += Array(mask_bytes)[index].eq(value[:8])
                        advance(m)
                        with m.If(count == 1):
                            m.next = "LOADED"
                    with m.Else():
                        m.d.sync += [k.eq(k + 1), word.eq(value)]
            with m.State("LOADED"):
                with m.Switch(dest):
                    with m.Case(_Dest.PARAMS, *([_Dest.MASKS] if self._faults else [])):
                        m.d.sync += [status.eq(Status.OK), reply_len.eq(0),
                                     source.eq(_Source.NONE)]
                        m.next = "HEADER"
                    with m.Case(_Dest.X0):
                        m.d.comb += [core.op.eq(CoreOp.INFER), core.start.eq(1)]
                        m.next = "INFER"
                    with m.Case(_Dest.XL):
                        m.d.comb += [core.op.eq(CoreOp.LEARN), core.start.eq(1)]
                        m.next = "LEARN"
            with m.State("INFER"):
                with m.If(~core.busy):
                    with m.If(info.opcode == Opcode.LEARN):
                        m.d.sync += [dest.eq(_Dest.XL), nbytes.eq(vbytesL), k.eq(0),
                                     word.eq(0), fetching.eq(0), ptr.eq(n[0] * vbytes0),
                                     *walk_start(n[L])]
                        m.next = "LOAD"
                    with m.Else():
                        m.next = "OUTPUT"
            with m.State("LEARN"):
                with m.If(~core.busy):
                    m.next = "OUTPUT"
            with m.State("OUTPUT"):
                m.d.sync += [status.eq(Status.OK), reply_len.eq(n[L] * vbytesL),
                             source.eq(_Source.OUTPUT), *walk_start(n[L])]
                m.next = "HEADER"

            with m.State("ERROR_HEADER"):
                m.d.comb += [tx.i_header.valid.eq(1), tx.i_header.p.status.eq(status),
                             tx.i_header.p.tag.eq(info.tag), tx.i_header.p.length.eq(1)]
                with m.If(tx.i_header.ready):
                    m.next = "ERROR_PAYLOAD"
            with m.State("ERROR_PAYLOAD"):
                m.d.comb += [tx.i_payload.valid.eq(1), tx.i_payload.payload.eq(info.opcode)]
                with m.If(tx.i_payload.ready):
                    m.next = "RELEASE"
            with m.State("HEADER"):
                m.d.comb += [tx.i_header.valid.eq(1), tx.i_header.p.status.eq(status),
                             tx.i_header.p.tag.eq(info.tag), tx.i_header.p.length.eq(reply_len)]
                with m.If(tx.i_header.ready):
                    with m.If(source == _Source.NONE):
                        m.next = "RELEASE"
                    with m.Elif(source == _Source.IDENTIFY):
                        m.next = "SEND_ROM"
                    with m.Else():
                        m.next = "FETCH"
            with m.State("SEND_ROM"):
                m.d.comb += [tx.i_payload.valid.eq(1), tx.i_payload.payload.eq(rom[index])]
                with m.If(tx.i_payload.ready):
                    m.d.sync += [index.eq(index + 1), count.eq(count - 1)]
                    with m.If(count == 1):
                        m.next = "RELEASE"
            with m.State("FETCH"):
                # The parameter port reads one cycle after the address; y is combinational.
                m.next = "LATCH"
            with m.State("LATCH"):
                # Registered before it is serialised (the memories' outputs are slow).
                m.d.sync += fetched.eq(Mux(source == _Source.OUTPUT, core.y_data, core.p_rdata))
                m.next = "SEND_VALUE"
            with m.State("SEND_VALUE"):
                width_bytes = Mux(source == _Source.OUTPUT, vbytesL, wbytes[layer])
                m.d.comb += sign_extended.eq(fetched)
                with m.If(out_k == 0):
                    m.d.sync += out_word.eq(sign_extended >> 8)
                m.d.comb += [tx.i_payload.valid.eq(1),
                             tx.i_payload.payload.eq(Mux(out_k == 0, sign_extended[:8],
                                                         out_word[:8]))]
                with m.If(tx.i_payload.ready):
                    with m.If(out_k != 0):
                        m.d.sync += out_word.eq(out_word >> 8)
                    with m.If(out_k == width_bytes - 1):
                        m.d.sync += out_k.eq(0)
                        advance(m)
                        m.next = "FETCH"
                        with m.If(count == 1):
                            m.next = "RELEASE"
                    with m.Else():
                        m.d.sync += out_k.eq(out_k + 1)
            with m.State("RELEASE"):
                m.d.comb += rx.o_frame.ready.eq(1)
                m.next = "IDLE"
        return m
