"""The dataset on the chip: LOAD_DATA, TRAIN and EVAL (``docs/protocol.md``).

:class:`DatasetUnit` holds the dataset memory and runs the three commands for the network top:
it reads the command's payload from the frame receiver's buffer, checks it as
:meth:`pchw.protocol.DeviceModel._dataset` does, and drives the core's input and target ports
and its ``start`` itself, sample after sample, with no host link in between. TRAIN visits the
samples in the order of :mod:`pchw.order`, one Feistel round per cycle on one hash unit; EVAL
finds each prediction's class (the first largest output) and counts confusions in a small
memory, which its reply streams out. Cycle counts: :func:`pchw.latency.command_latency`.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .. import protocol
from ..latency import class_stride, input_stride
from ..order import ROUNDS, order_hash_fields, order_round
from ..protocol import Opcode
from .command import ReplyStatus as Status
from .core import CoreOp
from .srhash import srhash32

__all__ = ["DatasetUnit"]


class DatasetUnit(wiring.Component):
    """The dataset memory of ``capacity`` samples and the LOAD_DATA / TRAIN / EVAL sequencer.

    Parameters
    ----------
    network : Network
    capacity : int
        Samples the memory holds (1 .. :data:`pchw.protocol.MAX_DATASET`).
    core : PCCore
        The core it drives (its port shapes).
    ram_style : str, optional
        Yosys ``ram_style`` of the input memory (``"huge"``: the iCE40UP5K's SPRAM).

    Members
    -------
    start : In(1)
        One-cycle pulse (while not ``busy``): run the command ``opcode`` whose payload of
        ``length`` bytes is in the frame receiver's buffer.
    busy : Out(1)
        High from the cycle after ``start`` until ``status`` and ``reply_len`` are valid.
    status, reply_len : Out
        The reply: OK or the error status; the OK reply's payload length.
    buf_addr : Out, buf_data : In
        The frame receiver's buffer (``buf_data`` one cycle after ``buf_addr``).
    core_op, core_start : Out; core_busy : In
    x_layer, x_we, x_addr, x_wdata : Out
        The core's input / target port (``x_layer`` 0: x_0, 1: x_L).
    y_addr : Out, y_data : In
        The core's prediction (combinational).
    r_value : Out(16), r_next : In(1)
        EVAL's reply: the count to send (the right answers, then the confusion counts row by
        row); a pulse on ``r_next`` moves to the next, whose value is valid two cycles later.
    """

    #: The input memory's name (a build script finds it by it: SPRAM takes no initial values).
    INPUTS_NAME = "dataset_inputs"

    def __init__(self, network, capacity, *, core, ram_style=None):
        if not 1 <= capacity <= protocol.MAX_DATASET:
            raise ValueError(f"capacity {capacity} is outside 1..{protocol.MAX_DATASET}")
        self._net, self._capacity, self._ram_style = network, capacity, ram_style
        self._x_width = core.x_wdata.shape().width
        super().__init__({
            "start": In(1), "opcode": In(8), "length": In(16), "busy": Out(1),
            "status": Out(Status), "reply_len": Out(16),
            "buf_addr": Out(16), "buf_data": In(8),
            "core_op": Out(CoreOp), "core_start": Out(1), "core_busy": In(1),
            "x_layer": Out(1), "x_we": Out(1), "x_addr": Out(core.x_addr.shape()),
            "x_wdata": Out(core.x_wdata.shape()),
            "y_addr": Out(core.y_addr.shape()), "y_data": In(core.y_data.shape()),
            "r_value": Out(16), "r_next": In(1),
        })

    @property
    def capacity(self):
        return self._capacity

    def elaborate(self, platform):
        m = Module()
        net, cap = self._net, self._capacity
        n0, nL = net.layers[0], net.layers[-1]
        f0, fL = net.value_format(0), net.value_format(net.L)
        vbytes0 = protocol.value_bytes(f0)
        sbytes = protocol.sample_bytes(net)
        stride0, strideL = input_stride(net), class_stride(net)
        one = int(fL.quantise(1.0))            # the target of the label's class

        # -- memories ------------------------------------------------------------------------
        # The inputs: one port's address for reads and writes (the iCE40UP5K's SPRAM is
        # single-ported: ``ram_style="huge"``).
        attrs = {"ram_style": self._ram_style} if self._ram_style else None
        inputs = memory.Memory(shape=f0.width, depth=cap * stride0, init=[], attrs=attrs)
        m.submodules[self.INPUTS_NAME] = inputs
        m.submodules.labels = labels = memory.Memory(shape=range(max(nL, 2)), depth=cap,
                                                     init=[])
        m.submodules.confusion = confusion = memory.Memory(shape=16, depth=nL * strideL,
                                                           init=[])
        in_w, in_r = inputs.write_port(), inputs.read_port()
        lab_w, lab_r = labels.write_port(), labels.read_port()
        conf_w, conf_r = confusion.write_port(), confusion.read_port()

        stored = Signal(range(cap + 1))

        # -- fields: the payload's first bytes, little-endian 16-bit words -------------------
        train_len = protocol.payload_length(net, Opcode.TRAIN)
        eval_len = protocol.payload_length(net, Opcode.EVAL)
        FIELD_BYTES = train_len                # the most field bytes read
        hdr = Signal(8 * FIELD_BYTES)
        nfields = Signal(range(FIELD_BYTES + 1))

        def field(i, count):
            """16-bit field ``i`` of ``count`` bytes read (the bytes sit at the top)."""
            base = 8 * (FIELD_BYTES - count) + 16 * i
            return hdr[base:base + 16]

        is_load = self.opcode == Opcode.LOAD_DATA
        is_train = self.opcode == Opcode.TRAIN
        load_first, load_count = field(0, protocol.LOAD_HEADER), hdr[-8:]
        t_seed, t_first_epoch, t_epochs, t_start, t_count = \
            (field(i, train_len) for i in range(5))
        e_start, e_count = field(0, eval_len), field(1, eval_len)
        start = Signal(16)
        count = Signal(17)                     # samples of the range (LOAD_DATA: of the chunk)

        # -- the buffer walk -----------------------------------------------------------------
        ptr = Signal(24)                       # wide: a bogus LOAD_DATA count runs past 2**16
        m.d.comb += self.buf_addr.eq(ptr)
        fetched = Signal()                     # buf_data is the byte at last cycle's ptr
        i = Signal(16)                         # sample of the chunk / value of the sample
        k = Signal(range(max(vbytes0, 2)))     # byte of the value
        word = Signal(8 * vbytes0)
        bad_label = Signal()
        value = Signal(8 * vbytes0)
        m.d.comb += value.eq(word | (self.buf_data << (8 * k))[:8 * vbytes0])

        # -- the order: one Feistel round per cycle ------------------------------------------
        h, hi_bits = Signal(range(9)), Signal(range(10))
        lo_mask, hi_mask = Signal(16), Signal(16)
        j = Signal(17)                         # the candidate
        x = Signal(16)                         # F(j), round by round
        rnd = Signal(range(ROUNDS))
        epoch = Signal(16)                     # the epoch number (first epoch + e)
        epochs_left = Signal(16)
        lo = Signal(16)
        m.d.comb += lo.eq(x & lo_mask)
        hashed = srhash32(m, *order_hash_fields(t_seed, epoch, rnd, lo), name="order_hash")
        next_x = Signal(16)
        m.d.comb += next_x.eq(order_round(x, lo_mask, hi_mask, h, hi_bits,
                                          lambda _lo: hashed))
        last_j = Signal(17)                    # 2**k - 1
        # bit length of count - 1, at least 1
        minus1 = Signal(16)
        m.d.comb += minus1.eq(count - 1)
        bitlen = Signal(range(17))
        for b in range(16):
            with m.If(minus1[b]):
                m.d.comb += bitlen.eq(b + 1)

        # -- one sample into the core --------------------------------------------------------
        sample = Signal(16)                    # its index in the memory
        label = Signal(range(max(nL, 2)))
        v = Signal(range(max(n0, nL) + 1))     # value being loaded
        reading = Signal()                     # an input read was issued last cycle
        m.d.comb += [in_r.addr.eq(Cat(v[:(stride0 - 1).bit_length()], sample)),
                     in_w.addr.eq(in_r.addr), in_r.en.eq(~in_w.en), lab_r.addr.eq(sample)]
        m.d.comb += [self.x_addr.eq(v), self.y_addr.eq(v)]

        # -- EVAL: argmax and the counts -----------------------------------------------------
        best = Signal.like(self.y_data)
        best_at = Signal(range(max(nL, 2)))
        correct = Signal(16)
        conf_at = Signal(range(nL * strideL))  # the address cleared (EVAL_CLEAR)
        conf_addr = Signal.like(conf_at)       # the confusion memory's address
        col_bits = (strideL - 1).bit_length()
        m.d.comb += [conf_r.addr.eq(conf_addr), conf_w.addr.eq(conf_addr),
                     conf_addr.eq(conf_at)]
        # EVAL's reply: the right answers first, then confusion[row][col]
        out_first = Signal()
        out_row, out_col = Signal(range(max(nL, 2))), Signal(range(max(nL, 2)))
        m.d.comb += self.r_value.eq(Mux(out_first, correct, conf_r.data))


        def fail(status):
            m.d.sync += [self.status.eq(status), self.reply_len.eq(1)]
            m.next = "IDLE"

        with m.FSM():
            with m.State("IDLE"):
                # EVAL's reply (if any) is read out while idle.
                m.d.comb += conf_addr.eq(Cat(out_col[:col_bits], out_row))
                with m.If(self.r_next):
                    m.d.sync += out_first.eq(0)
                    with m.If(~out_first):
                        m.d.sync += out_col.eq(Mux(out_col == nL - 1, 0, out_col + 1))
                        with m.If(out_col == nL - 1):
                            m.d.sync += out_row.eq(out_row + 1)
                with m.If(self.start):
                    m.d.sync += [ptr.eq(0), nfields.eq(0), fetched.eq(0)]
                    m.next = "FIELDS"
            with m.State("FIELDS"):
                m.d.comb += self.busy.eq(1)
                # Read the first bytes (LOAD_DATA 3, TRAIN 10, EVAL 4) one a cycle.
                want = Mux(is_load, protocol.LOAD_HEADER, Mux(is_train, train_len, eval_len))
                m.d.sync += [ptr.eq(ptr + 1), fetched.eq(1)]
                with m.If(fetched):
                    m.d.sync += [hdr.eq(Cat(hdr[8:], self.buf_data)), nfields.eq(nfields + 1)]
                with m.If(fetched & (nfields == want - 1)):
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += self.status.eq(Status.OK)
                with m.If(is_load):
                    with m.If(self.length < protocol.LOAD_HEADER):
                        fail(Status.ERR_LENGTH)
                    with m.Else():
                        # Pass 1: every label; the chunk's length is checked at its end.
                        m.d.sync += [count.eq(load_count), start.eq(load_first), i.eq(0),
                                     bad_label.eq(0), ptr.eq(protocol.LOAD_HEADER + sbytes - 1),
                                     fetched.eq(0)]
                        m.next = "LOAD_LABELS"
                with m.Elif(self.length != Mux(is_train, train_len, eval_len)):
                    fail(Status.ERR_LENGTH)
                with m.Elif(stored == 0):
                    fail(Status.ERR_NO_DATA)
                with m.Else():
                    first = Mux(is_train, t_start, e_start)
                    n = Mux(is_train, t_count, e_count)
                    with m.If((n == 0) | (first + n > stored) | (is_train & (t_epochs == 0))):
                        fail(Status.ERR_ARGUMENT)
                    with m.Elif(is_train):
                        m.d.sync += [start.eq(first), count.eq(n), epoch.eq(t_first_epoch),
                                     epochs_left.eq(t_epochs)]
                        m.next = "ORDER_SETUP"
                    with m.Else():
                        m.d.sync += [start.eq(first), count.eq(n), conf_at.eq(0),
                                     correct.eq(0)]
                        m.next = "EVAL_CLEAR"

            # -- LOAD_DATA ---------------------------------------------------------------------
            with m.State("LOAD_LABELS"):
                m.d.comb += self.busy.eq(1)
                with m.If(i != count):
                    m.d.sync += [ptr.eq(ptr + sbytes), i.eq(i + 1)]
                m.d.sync += fetched.eq(i != count)
                with m.If(fetched & (self.buf_data >= nL)):
                    m.d.sync += bad_label.eq(1)
                with m.If(i == count):
                    m.next = "LOAD_CHECK"
            with m.State("LOAD_CHECK"):
                m.d.comb += self.busy.eq(1)
                # ptr is sbytes - 1 past where the payload must end
                with m.If(ptr - (sbytes - 1) != self.length):
                    fail(Status.ERR_LENGTH)
                with m.Elif((start > stored) | (start + count > cap) | bad_label):
                    fail(Status.ERR_ARGUMENT)
                with m.Else():
                    m.d.sync += [ptr.eq(protocol.LOAD_HEADER), fetched.eq(0), i.eq(0),
                                 sample.eq(start), v.eq(0), k.eq(0), word.eq(0)]
                    with m.If(count == 0):
                        m.d.sync += [stored.eq(start), self.reply_len.eq(0)]
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "LOAD_STORE"
            with m.State("LOAD_STORE"):
                m.d.comb += self.busy.eq(1)
                # Pass 2: the bytes of each sample, one a cycle: n_0 values, then the label.
                last_byte = (v == n0) & fetched
                m.d.sync += [ptr.eq(ptr + 1), fetched.eq(1)]
                with m.If(fetched):
                    with m.If(v == n0):                               # the label byte
                        m.d.comb += [lab_w.addr.eq(sample), lab_w.data.eq(self.buf_data),
                                     lab_w.en.eq(1)]
                        m.d.sync += [v.eq(0), sample.eq(sample + 1), i.eq(i + 1)]
                    with m.Elif(k == vbytes0 - 1):
                        m.d.comb += [in_w.data.eq(value), in_w.en.eq(1)]
                        m.d.sync += [v.eq(v + 1), k.eq(0), word.eq(0)]
                    with m.Else():
                        m.d.sync += [k.eq(k + 1), word.eq(value)]
                with m.If(last_byte & (i == count - 1)):
                    m.d.sync += [stored.eq(start + count), self.reply_len.eq(0)]
                    m.next = "IDLE"

            # -- TRAIN -------------------------------------------------------------------------
            with m.State("ORDER_SETUP"):
                m.d.comb += self.busy.eq(1)
                kk, hh, kh = Signal(range(17)), Signal(range(9)), Signal(range(17))
                m.d.comb += [kk.eq(Mux(bitlen == 0, 1, bitlen)), hh.eq(kk >> 1),
                             kh.eq(kk - hh)]
                m.d.sync += [h.eq(hh), hi_bits.eq(kh),
                             lo_mask.eq((Const(1, 17) << hh) - 1),
                             hi_mask.eq((Const(1, 17) << kh) - 1),
                             last_j.eq((Const(1, 17) << kk) - 1), j.eq(0), x.eq(0), rnd.eq(0)]
                m.next = "ROUND"
            with m.State("ROUND"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [x.eq(next_x), rnd.eq(rnd + 1)]
                with m.If(rnd == ROUNDS - 1):
                    m.d.sync += rnd.eq(0)
                    m.next = "CANDIDATE"
            with m.State("CANDIDATE"):
                m.d.comb += self.busy.eq(1)
                # x = F(j): a sample if below count; then the next candidate (or epoch).
                m.d.sync += [j.eq(j + 1), x.eq(j + 1)]
                with m.If(x < count):
                    m.d.sync += [sample.eq(start + x), v.eq(0), reading.eq(0)]
                    m.next = "X0"
                with m.Elif(j == last_j):
                    m.next = "EPOCH_END"
                with m.Else():
                    m.next = "ROUND"
            with m.State("EPOCH_END"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [epoch.eq(epoch + 1), epochs_left.eq(epochs_left - 1), j.eq(0),
                             x.eq(0)]
                with m.If(epochs_left == 1):
                    m.d.sync += self.reply_len.eq(0)
                    m.next = "IDLE"
                with m.Else():
                    m.next = "ROUND"

            # -- a sample's inputs into x_0 (TRAIN and EVAL) -----------------------------------
            with m.State("X0"):
                m.d.comb += self.busy.eq(1)
                # Read input v (one cycle), write it into x_0 the next; v counts the reads.
                m.d.sync += reading.eq(v != n0)
                with m.If(v != n0):
                    m.d.sync += v.eq(v + 1)
                with m.If(reading):
                    m.d.comb += [self.x_layer.eq(0), self.x_we.eq(1),
                                 self.x_addr.eq(v - 1),
                                 self.x_wdata.eq(in_r.data.as_signed())]
                with m.If(reading & (v == n0)):
                    m.d.sync += label.eq(lab_r.data)
                    m.next = "INFER_START"
            with m.State("INFER_START"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += [self.core_op.eq(CoreOp.INFER), self.core_start.eq(1)]
                m.next = "INFER_WAIT"
            with m.State("INFER_WAIT"):
                m.d.comb += self.busy.eq(1)
                with m.If(~self.core_busy):
                    m.d.sync += v.eq(0)
                    with m.If(is_train):
                        m.next = "TARGET"
                    with m.Else():
                        m.next = "ARGMAX"
            with m.State("TARGET"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += [self.x_layer.eq(1), self.x_we.eq(1),
                             self.x_wdata.eq(Mux(v == label, one, 0))]
                m.d.sync += v.eq(v + 1)
                with m.If(v == nL - 1):
                    m.next = "LEARN_START"
            with m.State("LEARN_START"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += [self.core_op.eq(CoreOp.LEARN), self.core_start.eq(1)]
                m.next = "LEARN_WAIT"
            with m.State("LEARN_WAIT"):
                m.d.comb += self.busy.eq(1)
                with m.If(~self.core_busy):
                    with m.If(j == last_j + 1):       # that was the last candidate
                        m.next = "EPOCH_END"
                    with m.Else():
                        m.next = "ROUND"

            # -- EVAL --------------------------------------------------------------------------
            with m.State("EVAL_CLEAR"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += [conf_w.data.eq(0), conf_w.en.eq(1)]
                m.d.sync += conf_at.eq(conf_at + 1)
                with m.If(conf_at == nL * strideL - 1):
                    m.d.sync += [sample.eq(start), v.eq(0), reading.eq(0), i.eq(0)]
                    m.next = "X0"
            with m.State("ARGMAX"):
                m.d.comb += self.busy.eq(1)
                with m.If((v == 0) | (self.y_data > best)):
                    m.d.sync += [best.eq(self.y_data), best_at.eq(v)]
                m.d.sync += v.eq(v + 1)
                with m.If(v == nL - 1):
                    m.next = "COUNT"
            with m.State("COUNT"):
                m.d.comb += self.busy.eq(1)
                # The count at (label, predicted) is read this cycle, written the next.
                m.d.comb += conf_addr.eq(Cat(best_at[:col_bits], label))
                m.next = "COUNT_WRITE"
            with m.State("COUNT_WRITE"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += [conf_addr.eq(Cat(best_at[:col_bits], label)),
                             conf_w.data.eq(conf_r.data + 1), conf_w.en.eq(1)]
                m.d.sync += [correct.eq(correct + (best_at == label)), i.eq(i + 1),
                             sample.eq(sample + 1), v.eq(0), reading.eq(0)]
                with m.If(i == count - 1):
                    m.d.sync += [self.reply_len.eq(protocol.eval_reply_length(net)),
                                 out_first.eq(1), out_row.eq(0), out_col.eq(0)]
                    m.next = "IDLE"
                with m.Else():
                    m.next = "X0"
        return m
