"""Fixed-point formats and the narrowing rules: the single implementation of pchw's arithmetic.

Every rounding, shift and saturation in the golden model goes through this module, and the
gateware generator implements exactly these functions (see ``docs/fixed-point.md``).

Convention
----------
``Format(width, frac)``, written ``Q<width>.<frac>``: a signed two's-complement integer ``v`` of
``width`` bits (the sign bit included) that stands for the real number ``v * 2**-frac``.
"""

from dataclasses import dataclass

import numpy as np

from .errors import PchwError

__all__ = [
    "Format", "requantise", "saturate", "round_shift", "exact_matmul", "stochastic_noise",
    "INT64_BITS", "sum_bits", "product_sum_bits", "exact_dtype", "value_bits", "LayerShifts",
    "srhash32", "srhash_round_keys", "srhash_words", "srhash_round", "SRHASH_FIELDS",
    "Saturations", "TABLE_RANGE", "TABLE_STEP_BITS", "TABLE_FRAC", "TABLE_FUNCTIONS",
    "activation_table", "table_activation", "table_gate",
]

MIN_WIDTH = 2
MAX_WIDTH = 32


@dataclass(frozen=True)
class Format:
    """A signed fixed-point format ``Q<width>.<frac>`` (``width`` includes the sign bit).

    Raises
    ------
    PchwError
        If ``width`` is outside 2..32 or ``frac`` is outside ``0..width-1``.
    """
    width: int
    frac: int

    def __post_init__(self):
        if isinstance(self.width, bool) or not isinstance(self.width, (int, np.integer)):
            raise PchwError(f"width must be an integer, not {self.width!r}")
        if isinstance(self.frac, bool) or not isinstance(self.frac, (int, np.integer)):
            raise PchwError(f"fraction bits must be an integer, not {self.frac!r}")
        if not MIN_WIDTH <= self.width <= MAX_WIDTH:
            raise PchwError(f"width {self.width} is outside {MIN_WIDTH}..{MAX_WIDTH}")
        if not 0 <= self.frac < self.width:
            raise PchwError(f"fraction bits {self.frac} must be in 0..{self.width - 1} "
                            f"for width {self.width}")

    def __str__(self):
        return f"Q{self.width}.{self.frac}"

    @property
    def min(self):
        """Smallest raw integer, ``-2**(width-1)``."""
        return -(1 << (self.width - 1))

    @property
    def max(self):
        """Largest raw integer, ``2**(width-1) - 1``."""
        return (1 << (self.width - 1)) - 1

    @property
    def one(self):
        """Raw integer of 1.0, saturated to the format (``2**frac``, or ``max`` if that is out of range)."""
        return min(1 << self.frac, self.max)

    @property
    def resolution(self):
        """Value of one least significant bit, ``2**-frac``."""
        return 2.0 ** -self.frac

    def quantise(self, x, count=None):
        """Real numbers -> raw integers: round half up, then saturate (like :func:`requantise`).

        ``count`` is an optional callable given the number of saturated elements.
        """
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise PchwError("cannot quantise NaN or infinity")
        # Scaling by a power of two and taking the fraction part are exact, so this is
        # round-half-up of the exact product (floor(y + 0.5) would round y + 0.5 first).
        with np.errstate(over="ignore", invalid="ignore"):    # y = +-inf saturates below
            y = np.ldexp(x, self.frac)
            raw = np.floor(y)
            raw = raw + (y - raw >= 0.5)
        raw = np.clip(raw, self.min - 1, self.max + 1).astype(np.int64)
        return saturate(raw, self, count)

    def dequantise(self, v):
        """Raw integers -> real numbers (exact for widths up to 53 bits)."""
        return np.ldexp(np.asarray(v, dtype=np.float64), -self.frac)


def saturate(v, fmt, count=None):
    """Clamp raw integers to ``fmt``; report how many were clamped to ``count`` (if given)."""
    v = np.asarray(v)
    low, high = fmt.min, fmt.max
    if count is not None:
        count(int(np.count_nonzero((v < low) | (v > high))))
    out = np.clip(v, low, high)
    return out.astype(np.int64) if out.dtype == object else out


#: Two's-complement bits of the NumPy integers the golden model computes in where it can.
INT64_BITS = 64


def sum_bits(bits, terms):
    """Signed bits that hold a sum of ``terms`` integers of ``bits`` signed bits each."""
    return bits + max(int(terms) - 1, 0).bit_length()


def product_sum_bits(a_bits, b_bits, terms):
    """Signed bits that hold a sum of ``terms`` products of ``a_bits`` x ``b_bits`` signed
    integers (a product needs ``a_bits + b_bits``: ``(-2**(a-1)) * (-2**(b-1))``)."""
    return sum_bits(a_bits + b_bits, terms)


def exact_dtype(bits, shift=0):
    """``np.int64`` if integers of ``bits`` signed bits and everything :func:`round_shift` by
    ``shift`` makes of them (the rounding addend or noise below ``2**shift``, a left shift by
    ``-shift``) provably fit int64; else ``object`` (Python integers: exact, slower)."""
    need = max(bits, shift + 1) + 1 if shift > 0 else bits - shift
    return np.int64 if need <= INT64_BITS else object


def value_bits(v):
    """Signed bits that hold every integer of the array ``v`` (from its values)."""
    v = np.asarray(v)
    if v.size == 0:
        return 1
    return max(int(v.max()).bit_length(), int(-1 - v.min()).bit_length()) + 1


def round_shift(acc, shift, noise=None, bits=None):
    """Divide exact integers by ``2**shift`` with pchw's rounding; no saturation.

    For ``shift > 0``: round half up, ``floor((acc + 2**(shift-1)) / 2**shift)``, or, with
    ``noise`` (integers uniform in ``0..2**shift-1``), stochastic rounding
    ``floor((acc + noise) / 2**shift)``. For ``shift <= 0``: an exact left shift.

    Exact for any integers and shift: ``acc`` stays int64 only where :func:`exact_dtype` of
    ``bits`` (a bound on ``acc``'s signed bits; taken from its values if not given) and
    ``shift`` proves it, else the arithmetic is on Python integers.
    """
    acc = np.asarray(acc)
    if acc.dtype != object:
        if exact_dtype(value_bits(acc) if bits is None else bits, shift) is object:
            acc = acc.astype(object)
    if shift > 0:
        add = (1 << (shift - 1)) if noise is None else noise
        return (acc + add) >> shift
    return acc << (-shift)


def requantise(acc, shift, fmt, count=None, noise=None, bits=None):
    """Narrow an exact integer by ``shift`` bits (round, see :func:`round_shift`), then saturate."""
    return saturate(round_shift(acc, shift, noise, bits), fmt, count)


@dataclass(frozen=True)
class LayerShifts:
    """The right shifts of weight layer ``l``'s narrowings (``docs/fixed-point.md``), stated once
    for the golden model and the circuits. With ``v_l``, ``w_l`` the fraction bits of the value
    and weight formats and ``eta = 2**-k``:

    ``mu``       ``w_l + v_{l-1} - v_l``: ``W_l phi_{l-1} + b_l`` into ``V_l``.
    ``message``  ``v_l + w_l - v_{l-1}``: ``W_l^T eps_l``, sent down, into ``V_{l-1}``.
    ``weight``   ``v_l + v_{l-1} - w_l + k``: ``eps_l phi_{l-1}`` into ``F_l``.
    ``bias``     ``v_l - w_l + k``: ``eps_l`` into ``F_l``.

    A shift may be negative (a left shift). The value update's shift is ``pc.gamma_shift``.
    """
    mu: int
    message: int
    weight: int
    bias: int

    @classmethod
    def of(cls, network, l):
        """The shifts of weight layer ``l`` (1..L) of a :class:`~pchw.network.Network` (or of
        a weighted node ``l`` of a :class:`~pchw.graph.Graph`, whose input is
        ``network.sources[l]``)."""
        return cls.between(network.value_format(network.sources[l]).frac,
                           network.value_format(l).frac, network.weight_format(l).frac,
                           network.pc.eta_shift)

    @classmethod
    def between(cls, vin, vout, w, k):
        """The shifts for input values of ``vin`` fraction bits, output values of ``vout``,
        weights of ``w`` and ``eta = 2**-k``."""
        return cls(mu=w + vin - vout, message=vout + w - vin, weight=vout + vin - w + k,
                   bias=vout - w + k)


def exact_matmul(a, b, a_bits, b_bits, shift=0, dtype=None):
    """Exact integer ``a @ b`` for operands of at most ``a_bits``/``b_bits`` signed bits.

    In ``dtype`` if given, else in int64 when the sum of products and a :func:`round_shift` of
    it by ``shift`` provably fit (:func:`exact_dtype`), else in Python integers (slow, exact).
    """
    if dtype is None:
        dtype = exact_dtype(product_sum_bits(a_bits, b_bits, a.shape[-1]), shift)
    return np.matmul(np.asarray(a).astype(dtype, copy=False),
                     np.asarray(b).astype(dtype, copy=False))


# Stochastic rounding noise: a counter-based hash, so that the noise of every weight is a pure
# function of (seed, learning step, layer, row, column) and any hardware lane order gets the
# same bits. The mixer is 8 rounds of the Speck64 round function (add, rotate, xor: no
# multiplier), with fixed round keys that carry the seed and the layer.
#
# The key layout below (argument order, field widths, where each field goes, the round keys and
# the round) is stated once: this NumPy hash and the circuit (pchw.gateware.srhash) both build
# their words with srhash_words, their keys with srhash_round_keys and mix with srhash_round.
_MASK32 = 0xFFFFFFFF
_ROUND_CONSTANTS = tuple((0x9E3779B9 * (i + 1)) & _MASK32 for i in range(8))

#: The hash's arguments in their one order, with their widths in bits (higher bits are dropped).
SRHASH_FIELDS = (("seed", 24), ("step", 32), ("layer", 8), ("row", 16), ("col", 16))
_WIDTH = dict(SRHASH_FIELDS)
#: Rotations of the round: ``a`` right by the first, ``b`` left by the second.
SRHASH_ROTATIONS = (8, 3)


def _concat_int(fields):
    out, offset = 0, 0
    for value, width in fields:
        out |= (int(value) & ((1 << width) - 1)) << offset
        offset += width
    return out


def srhash_round_keys(seed, layer, concat=_concat_int, const=lambda v: v):
    """The 8 round keys: the round constants xor ``seed << 8 | layer``. Python ints by default;
    a circuit with a run-time seed passes its ``concat`` (as :func:`srhash_words`) and ``const``
    (a 32-bit constant of an int)."""
    key = concat([(layer, _WIDTH["layer"]), (seed, _WIDTH["seed"])])
    return tuple(const(constant) ^ key for constant in _ROUND_CONSTANTS)


def srhash_words(step, row, col, concat):
    """The two 32-bit words the rounds mix: ``a = step``, ``b = row << 16 | col``.

    ``concat`` joins ``(value, width)`` pairs, least significant first, each value truncated to
    its width (NumPy shifts and ors, Amaranth ``Cat``)."""
    return (concat([(step, _WIDTH["step"])]),
            concat([(col, _WIDTH["col"]), (row, _WIDTH["row"])]))


def srhash_round(a, b, round_key, ror, rol, add, keep=lambda v: v):
    """One Speck round on the 32-bit words ``a``, ``b``: ``a = (ror(a, 8) + b) ^ k``, then
    ``b = rol(b, 3) ^ a``; ``ror``, ``rol`` and ``add`` (modulo 2**32) are the caller's, and
    ``keep`` may hold the new ``a`` (a circuit names it, so ``b`` uses the same wires)."""
    a = keep(add(ror(a, SRHASH_ROTATIONS[0]), b) ^ round_key)
    return a, rol(b, SRHASH_ROTATIONS[1]) ^ a


def _ror32(v, r):
    return ((v >> r) | (v << (32 - r))) & _MASK32


def _rol32(v, r):
    return ((v << r) | (v >> (32 - r))) & _MASK32


def _concat_np(fields):
    out, offset = np.uint64(0), 0
    for value, width in fields:
        out = out | ((np.asarray(value, dtype=np.uint64) & np.uint64((1 << width) - 1))
                     << np.uint64(offset))
        offset += width
    return out


def srhash32(seed, step, layer, row, col):
    """32-bit hash of ``(seed, step, layer, row, col)``; arguments broadcast like NumPy arrays.

    ``seed`` < 2**24, ``layer`` < 2**8, ``row`` and ``col`` < 2**16 (the bias of a row uses the
    column index ``n_in``), ``step`` is taken modulo 2**32 (:data:`SRHASH_FIELDS`).
    """
    a, b = np.broadcast_arrays(*srhash_words(step, row, col, _concat_np))
    for k in srhash_round_keys(seed, layer):
        a, b = srhash_round(a, b, np.uint64(k), _ror32, _rol32,
                            lambda x, y: (x + y) & np.uint64(_MASK32))
    return a.astype(np.int64)


def stochastic_noise(shift, seed, step, layer, rows, cols):
    """Rounding noise, uniform in ``0..2**shift-1`` (``shift`` >= 1), for the weights at the
    row and column indices ``rows`` and ``cols`` (integer arrays, broadcast together).

    The low ``shift`` bits of :func:`srhash32` for ``shift`` <= 32; above that the 32 hash bits
    are the top bits of the noise (the lower bits are zero).
    """
    h = srhash32(seed, step, layer, rows, cols)
    if shift <= 32:
        return h & ((1 << shift) - 1)
    return h.astype(object) << (shift - 32)


class Saturations:
    """Counts of saturation and underflow events, by (quantity, layer).

    Quantities: ``input``, ``target``, ``mu``, ``eps``, ``message``, ``dx``, ``x``, ``dW``,
    ``W``, ``db``, ``b`` (saturations), and ``dW_zero`` / ``db_zero`` (a nonzero update that
    rounded to zero: the learning rate or format is too small to learn).
    """

    def __init__(self):
        self.counts = {}
        #: Display names of the layers (a graph's node names), for :meth:`as_dict`.
        self.names = {}

    def counter(self, quantity, layer):
        """A callable that adds its argument to the count of ``(quantity, layer)``."""
        def add(n):
            if n:
                key = (quantity, layer)
                self.counts[key] = self.counts.get(key, 0) + n
        return add

    def saturated(self):
        """Total saturation events (underflows not included)."""
        return sum(n for (q, _), n in self.counts.items() if not q.endswith("_zero"))

    def underflows(self):
        """Total nonzero parameter updates that rounded to zero."""
        return sum(n for (q, _), n in self.counts.items() if q.endswith("_zero"))

    def as_dict(self):
        """``{"quantity[layer]": count}``, sorted, for reports and JSON."""
        return {f"{q}[{self.names.get(l, l)}]": n for (q, l), n in sorted(self.counts.items())}

    def __str__(self):
        if not self.counts:
            return "no saturation"
        return ", ".join(f"{k}: {v}" for k, v in self.as_dict().items())


# Tables of tanh and sigmoid (docs/fixed-point.md, "tanh and sigmoid"): the one statement of
# them, for the golden model and (later) the circuits.

#: The table covers inputs ``[-TABLE_RANGE, TABLE_RANGE]``; outside, ``f`` is its end value and
#: ``f'`` is 0.
TABLE_RANGE = 8
#: Entries are ``2**-TABLE_STEP_BITS`` apart (``2 * TABLE_RANGE * 2**TABLE_STEP_BITS`` segments).
TABLE_STEP_BITS = 4
#: Entries are raw integers with this many fraction bits (round half up).
TABLE_FRAC = 16
#: The functions with a table, in float64 (what the entries sample, and the float model uses).
TABLE_FUNCTIONS = {
    "tanh": np.tanh,
    "sigmoid": lambda x: 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64))),
}
_TABLES = {}


def activation_table(name):
    """The entries ``T[k] = round(f(-R + k 2^-s) 2^16)``, ``k = 0 .. 2R 2^s`` (257 of them), and
    a copy of the last (so that ``T[k+1]`` exists for every ``k``): int64."""
    if name not in _TABLES:
        segments = 2 * TABLE_RANGE << TABLE_STEP_BITS
        xs = np.ldexp(np.arange(segments + 1, dtype=np.float64), -TABLE_STEP_BITS) - TABLE_RANGE
        table = Format(TABLE_FRAC + 2, TABLE_FRAC).quantise(TABLE_FUNCTIONS[name](xs))
        _TABLES[name] = np.append(table, table[-1]).astype(np.int64)
    return _TABLES[name]


def _table_position(x, fmt):
    """``(k, r, e, inside)`` of raw values ``x`` of ``fmt``: the segment ``k`` holding
    ``clamp(x)``, the offset ``r`` in it (``e = frac - TABLE_STEP_BITS`` bits; 0 when
    ``e < 0``), and whether ``-R <= x < R``."""
    v = fmt.frac
    low = -(TABLE_RANGE << v)
    p = np.asarray(x).astype(np.int64) - low
    inside = (p >= 0) & (p < (2 * TABLE_RANGE) << v)
    p = np.clip(p, 0, (2 * TABLE_RANGE) << v)
    e = v - TABLE_STEP_BITS
    if e >= 0:
        k = p >> e
        return k, p - (k << e), e, inside
    return p << -e, np.zeros_like(p), e, inside


def table_activation(name, x, fmt):
    """``f(x)`` for raw values ``x`` of ``fmt``: the linear interpolation of the table between
    its entries, rounded half up into ``fmt`` (saturated)."""
    table = activation_table(name)
    k, r, e, _ = _table_position(x, fmt)
    e = max(e, 0)
    acc = (table[k] << e) + (table[k + 1] - table[k]) * r
    return requantise(acc, TABLE_FRAC + e - fmt.frac, fmt)


def table_gate(name, x, message, fmt):
    """``f'(x) * message``: the slope of ``x``'s segment, ``(T[k+1] - T[k]) 2^(s - 16)``, times
    the message, rounded half up into ``fmt`` (saturated); 0 outside ``[-R, R)``."""
    table = activation_table(name)
    k, _, _, inside = _table_position(x, fmt)
    k = np.minimum(k, len(table) - 2)
    slope = table[k + 1] - table[k]
    product = requantise(slope * np.asarray(message).astype(np.int64),
                         TABLE_FRAC - TABLE_STEP_BITS, fmt)
    return np.where(inside, product, 0)
