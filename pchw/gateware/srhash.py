"""The stochastic-rounding hash as a circuit: the twin of :func:`pchw.fixedpoint.srhash32`.

Eight rounds of the Speck64 round function (adders, rotations, XORs; no multiplier), keyed by
constants that carry the seed and the layer. Combinational (zero cycles).
"""

from amaranth.hdl import Cat, Const, Signal

from ..fixedpoint import _ROUND_CONSTANTS

__all__ = ["srhash32", "noise_bits"]


def _ror(v, r):
    return Cat(v[r:], v[:r])


def _rol(v, r):
    return Cat(v[32 - r:], v[:32 - r])


def _field(value, width):
    """``value`` (an int or an expression) zero-extended or truncated to ``width`` bits."""
    if isinstance(value, int):
        return Const(value & ((1 << width) - 1), width)
    return Cat(value.as_unsigned(), Const(0, width))[:width]


def srhash32(m, seed, layer, step, row, col, name="srhash"):
    """A 32-bit signal computing the hash, added to ``m.d.comb``; ``seed`` and ``layer`` are
    Python ints, ``step``, ``row`` and ``col`` ints or expressions (taken modulo 2**32, 2**16,
    2**16). Each round's words are named signals, so the logic stays a chain, not a tree."""
    key = ((seed & 0xFFFFFF) << 8) | (layer & 0xFF)
    a, b = _field(step, 32), Cat(_field(col, 16), _field(row, 16))
    for i, constant in enumerate(_ROUND_CONSTANTS):
        next_a, next_b = Signal(32, name=f"{name}_a{i}"), Signal(32, name=f"{name}_b{i}")
        m.d.comb += [next_a.eq((_ror(a, 8) + b)[:32] ^ Const(constant ^ key, 32)),
                     next_b.eq(_rol(b, 3) ^ next_a)]
        a, b = next_a, next_b
    return a


def noise_bits(hash_value, shift):
    """Rounding noise for a shift of ``shift`` bits (see :func:`pchw.fixedpoint.stochastic_noise`)."""
    if shift <= 32:
        return hash_value[:shift]
    return Cat(Const(0, shift - 32), hash_value)
