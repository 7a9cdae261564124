"""Single-event upsets as a circuit (fault-injection builds, ``docs/faults.md``): after each
LEARN command, the bits of the weight memory the golden model flips
(:func:`pchw.faults.upset_positions`), through the parameter port's read-modify-write.

:class:`UpsetInjector` counts LEARN commands (``k``, restarted by ``clear``). Started after a
command's core run, it decides the flips (``flips``, plus one when ``h(k, 0) < threshold``;
:func:`pchw.protocol.upset_fields`), then for each flip ``j`` hashes ``h(k, 2j + 1)`` and
``h(k, 2j + 2)`` (:func:`pchw.gateware.srhash.srhash32` with the run-time ``seed`` and the layer
field :data:`pchw.faults.UPSET_TAG`), reduces the 64-bit ``hi * 2**32 + lo`` modulo ``B`` (the
bits of all parameters) one bit per cycle, splits the position into layer, word and bit, row
and column, row group and lane by three serial divisions by the layer's constants, and flips
the bit: it reads the word and writes it back with the bit inverted, unless the word is a stuck
weight (``p_stuck``). Its cycles are :func:`pchw.latency.upset_cycles`.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..faults import UPSET_TAG, parameter_bits
from ..latency import UPSET_POSITION_BITS, division_bits, row_groups
from .srhash import srhash32

__all__ = ["UpsetInjector"]


class UpsetInjector(wiring.Component):
    """The upsets of ``network``'s weight memory (see the module docstring).

    Members
    -------
    start : In(1)        a one-cycle pulse after a LEARN command's core run (while idle).
    clear : In(1)        restart the LEARN count ``k`` (a network-wide FAULT).
    busy : Out(1)        high from the cycle after ``start`` until done.
    flips, threshold, seed : In   the upset fields of the network-wide FAULT.
    p_layer, p_lane, p_group, p_col, p_we, p_wdata : Out   the parameter port, while busy.
    p_rdata, p_stuck : In                                  its read data (one cycle later).
    """

    def __init__(self, network):
        self._net = network
        L = network.L
        wmax = max(network.weight_format(l).width for l in range(1, L + 1))
        super().__init__({
            "start": In(1), "clear": In(1), "busy": Out(1),
            "flips": In(16), "threshold": In(32), "seed": In(24),
            "p_layer": Out(range(L + 1)),
            "p_lane": Out(range(max(max(network.lanes), 2))),
            "p_group": Out(range(max(max(row_groups(network, l) for l in range(1, L + 1)), 2))),
            "p_col": Out(range(max(network.layers[:-1]) + 1)),
            "p_we": Out(1), "p_wdata": Out(signed(wmax)),
            "p_rdata": In(signed(wmax)), "p_stuck": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        net, L, n = self._net, self._net.L, self._net.layers
        B = parameter_bits(net)
        nb = division_bits(net)
        widths = [0] + [net.weight_format(l).width for l in range(1, L + 1)]
        bases, at = [0, 0], 0
        for l in range(1, L):
            at += n[l] * (n[l - 1] + 1) * widths[l]
            bases.append(at)

        def table(values, width):
            return Array(Const(v, width) for v in values)

        rw = B.bit_length() + 1
        base = table(bases, rw)
        width = table(widths, 8)
        n_in = table([1] + [n[l - 1] for l in range(1, L + 1)], rw)
        weights = table([0] + [n[l] * n[l - 1] for l in range(1, L + 1)], rw)
        lanes = table([1] + list(net.lanes), rw)

        k = Signal(32)                  # LEARN commands since the network-wide FAULT
        left = Signal(17)               # flips left
        index = Signal(17)              # the hash's row argument: 2j + 1, 2j + 2
        hi = Signal(32)
        h = srhash32(m, self.seed, k, UPSET_TAG, index, 0, name="upset_hash")

        # A serial divider: dividend bits from `dividend`'s top, one per cycle, into `rem`.
        dividend = Signal(UPSET_POSITION_BITS)
        divisor = Signal(rw)
        rem = Signal(rw)
        quo = Signal(nb)
        trial = Signal(rw + 1)
        m.d.comb += trial.eq(Cat(dividend[-1], rem))
        greater = trial >= divisor

        def divide(value, by):
            """Start a division of ``value`` (< 2**nb) by ``by``: nb steps."""
            return [dividend.eq(value << (UPSET_POSITION_BITS - nb)), divisor.eq(by),
                    rem.eq(0), quo.eq(0), steps.eq(nb - 1)]

        steps = Signal(range(UPSET_POSITION_BITS))

        def divide_then(state):
            """One step of the division (restoring, a quotient bit a cycle); after the last, go to
            ``state``."""
            m.d.sync += [rem.eq(Mux(greater, trial - divisor, trial)),
                         quo.eq(Cat(greater, quo)), dividend.eq(dividend << 1),
                         steps.eq(steps - 1)]
            with m.If(steps == 0):
                m.next = state
        layer = Signal(range(L + 1))
        word = Signal(rw)
        bit = Signal(range(max(widths) + 1))
        col = Signal(rw)
        m.d.comb += [self.p_layer.eq(layer), self.p_lane.eq(rem), self.p_group.eq(quo),
                     self.p_col.eq(col)]

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.clear):
                    m.d.sync += k.eq(0)
                with m.If(self.start):
                    m.d.sync += index.eq(0)
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                total = self.flips + (h < self.threshold)
                m.d.sync += [left.eq(total), index.eq(1)]
                with m.If(total == 0):
                    m.next = "COUNT"
                with m.Else():
                    m.next = "HIGH"
            with m.State("HIGH"):
                m.d.sync += [hi.eq(h), index.eq(index + 1)]
                m.next = "LOW"
            with m.State("LOW"):
                m.d.sync += [dividend.eq(Cat(h, hi)), divisor.eq(B), rem.eq(0), quo.eq(0),
                             steps.eq(UPSET_POSITION_BITS - 1), index.eq(index + 1)]
                m.next = "POSITION"
            with m.State("POSITION"):           # rem = (hi * 2**32 + lo) mod B
                divide_then("LAYER")
            with m.State("LAYER"):              # the layer; the word and bit in it
                chosen = Signal.like(layer)
                m.d.comb += chosen.eq(1 + sum((rem >= bases[l]) for l in range(2, L + 1)))
                m.d.sync += [layer.eq(chosen), *divide(rem - base[chosen], width[chosen])]
                m.next = "WORD"
            with m.State("WORD"):
                divide_then("SPLIT")
            with m.State("SPLIT"):              # word -> row, column (W row-major, then b)
                m.d.sync += [word.eq(quo), bit.eq(rem), *divide(quo, n_in[layer])]
                m.next = "ROW"
            with m.State("ROW"):
                divide_then("COLUMN")
            with m.State("COLUMN"):             # row -> row group, lane
                bias = word >= weights[layer]
                m.d.sync += [col.eq(Mux(bias, n_in[layer], rem)),
                             *divide(Mux(bias, word - weights[layer], quo), lanes[layer])]
                m.next = "LANE"
            with m.State("LANE"):
                divide_then("READ")
            with m.State("READ"):               # the address; the word arrives next cycle
                m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += [self.p_we.eq(~self.p_stuck),
                             self.p_wdata.eq(self.p_rdata ^ (Const(1, 32) << bit))]
                m.d.sync += left.eq(left - 1)
                with m.If(left == 1):
                    m.next = "COUNT"
                with m.Else():
                    m.next = "HIGH"
            with m.State("COUNT"):
                m.d.sync += k.eq(k + 1)
                m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
