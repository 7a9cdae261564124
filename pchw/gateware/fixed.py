"""Fixed-point helpers that build Amaranth expressions for pchw's narrowing rules.

These are the circuit twins of :mod:`pchw.fixedpoint` (the single specification, see
``docs/fixed-point.md``): ``round_shift``, ``saturate`` and ``requantise`` produce exactly the
same integers, which ``tests/gateware/test_fixed.py`` checks against the golden functions.
All helpers are combinational (zero cycles); :class:`ActivationUnit` and
:class:`DerivativeUnit` wrap the activation ones as components.
"""

from amaranth.hdl import Cat, Const, Module, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["value_shape", "round_shift", "round_offset", "floor_shift", "saturate", "requantise",
           "activation", "gate_condition", "gate_apply", "gate", "ActivationUnit",
           "DerivativeUnit"]


def value_shape(fmt):
    """The signed Amaranth shape of a :class:`~pchw.fixedpoint.Format`."""
    return signed(fmt.width)


def round_shift(value, shift, noise=None):
    """``value / 2**shift`` rounded half up (or ``floor((value + noise) / 2**shift)``), or
    ``value << -shift`` for ``shift <= 0``. ``value`` must be signed."""
    if shift > 0:
        add = Const(round_offset(shift)) if noise is None else noise
        return (value + add) >> shift
    return floor_shift(value, shift)


def saturate(value, fmt):
    """Clamp a signed expression to ``fmt``; the result has ``fmt``'s shape.

    ``value`` fits when its bits above the format's sign bit all equal that sign bit (a LUT
    tree, not a magnitude comparator); otherwise its sign picks ``fmt.min`` or ``fmt.max``."""
    width = fmt.width
    if not value.shape().signed:
        value = Cat(value, Const(0, 1)).as_signed()
    if len(value) <= width:
        return value
    top = value[width - 1:]
    fits = top.all() | ~top.any()
    return _narrow(Mux(fits, value[:width], Mux(value[-1], fmt.min, fmt.max)), fmt)


def round_offset(shift):
    """The constant that :func:`round_shift` adds before shifting right by ``shift`` (round half
    up); an accumulator that starts from it needs only the shift."""
    return 1 << (shift - 1) if shift > 0 else 0


def floor_shift(value, shift):
    """``value >> shift`` (floor), or ``value << -shift`` for ``shift <= 0``."""
    return value >> shift if shift > 0 else value << (-shift)


def _narrow(value, fmt):
    return value[:fmt.width].as_signed()


def requantise(value, shift, fmt, noise=None):
    """:func:`round_shift` then :func:`saturate` into ``fmt``."""
    return saturate(round_shift(value, shift, noise), fmt)


def activation(act, x, fmt):
    """``f(x)`` for an :class:`~pchw.network.Activation`, in ``fmt`` (a mux or shift)."""
    if act.name == "relu":
        return Mux(x > 0, x, 0)
    if act.name == "leaky_relu":
        return Mux(x >= 0, x, _narrow(round_shift(x, act.shift), fmt))
    if act.name == "hardtanh":
        one, low = fmt.one, -(1 << fmt.frac)
        return _narrow(Mux(x > one, one, Mux(x < low, low, x)), fmt)
    return x


def gate_condition(act, x, fmt):
    """Whether ``f'(x)`` passes a message unchanged (a 1-bit expression; see :func:`gate`)."""
    if act.name in ("relu", "leaky_relu"):
        return x > 0
    if act.name == "hardtanh":
        one = 1 << fmt.frac
        return (x > -one) & (x < one)
    return Const(1, 1)


def gate_apply(act, open_, message, fmt):
    """``f'(x) * message`` from :func:`gate_condition`'s ``open_``: the message, or else 0 (a
    shifted message for leaky_relu)."""
    if act.name == "leaky_relu":
        return Mux(open_, message, _narrow(round_shift(message, act.shift), fmt))
    if act.name in ("relu", "hardtanh"):
        return Mux(open_, message, 0)
    return message


def gate(act, x, message, fmt):
    """``f'(x) * message``: a select, or a shift for leaky_relu; never a multiply."""
    return gate_apply(act, gate_condition(act, x, fmt), message, fmt)


class ActivationUnit(wiring.Component):
    """``phi = f(x)`` in ``fmt``; combinational (0 cycles)."""

    def __init__(self, act, fmt):
        self._act, self._fmt = act, fmt
        super().__init__({"x": In(value_shape(fmt)), "phi": Out(value_shape(fmt))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.phi.eq(activation(self._act, self.x, self._fmt))
        return m


class DerivativeUnit(wiring.Component):
    """``gated = f'(x) * message`` in ``fmt`` (a select, or a shift for leaky_relu);
    combinational (0 cycles)."""

    def __init__(self, act, fmt):
        self._act, self._fmt = act, fmt
        super().__init__({"x": In(value_shape(fmt)), "message": In(value_shape(fmt)),
                          "gated": Out(value_shape(fmt))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.gated.eq(gate(self._act, self.x, self.message, self._fmt))
        return m
