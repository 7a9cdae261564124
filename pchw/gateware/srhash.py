"""The stochastic-rounding hash as a circuit: the twin of :func:`pchw.fixedpoint.srhash32`.

Eight rounds of the Speck64 round function (adders, rotations, XORs; no multiplier), keyed by
constants that carry the seed and the layer. Combinational (zero cycles). The argument order,
the words, the round keys and the round are :mod:`pchw.fixedpoint`'s (``srhash_words``,
``srhash_round_keys``, ``srhash_round``); only the bit operations are this module's.
"""

from amaranth.hdl import Cat, Const, Signal

from ..fixedpoint import srhash_round, srhash_round_keys, srhash_words

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


def _concat(fields):
    return Cat(*(_field(value, width) for value, width in fields))


def srhash32(m, seed, step, layer, row, col, name="srhash"):
    """A 32-bit signal computing :func:`pchw.fixedpoint.srhash32` (same arguments, same order),
    added to ``m.d.comb``; ``layer`` is a Python int, ``seed`` an int or an expression (a
    run-time seed: the round keys are then logic too), ``step``, ``row`` and ``col`` ints or
    expressions (taken modulo 2**32, 2**16, 2**16). Each round's words are named signals, so
    the logic stays a chain, not a tree."""
    a, b = srhash_words(step, row, col, _concat)

    def named(value, label):
        signal = Signal(32, name=label)
        m.d.comb += signal.eq(value)
        return signal

    if isinstance(seed, int):
        keys = [Const(key, 32) for key in srhash_round_keys(seed, layer)]
    else:
        keys = srhash_round_keys(seed, layer, _concat, lambda v: Const(v, 32))
    for i, key in enumerate(keys):
        a, b = srhash_round(a, b, key, _ror, _rol, lambda x, y: (x + y)[:32],
                            keep=lambda v, i=i: named(v, f"{name}_a{i}"))
        b = named(b, f"{name}_b{i}")
    return a


def noise_bits(hash_value, shift):
    """Rounding noise for a shift of ``shift`` bits (see :func:`pchw.fixedpoint.stochastic_noise`)."""
    if shift <= 32:
        return hash_value[:shift]
    return Cat(Const(0, shift - 32), hash_value)
