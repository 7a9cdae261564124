"""The sample order of on-chip training (TRAIN): a keyed permutation, computed alike by the chip
and the golden model.

Epoch ``e`` of a TRAIN with seed ``s`` over ``n`` samples visits them in the order of a keyed
bijection ``F`` of the ``k``-bit numbers, ``k = max(1, ceil(log2 n))`` (so ``2**k < 2n``): the
candidates ``j = 0, 1, ..., 2**k - 1`` map to ``F(j)``, and those below ``n`` are the epoch's
samples, in that order (the others are skipped). Every sample comes exactly once, and the
number of candidates, hence the time an epoch spends on the order, does not depend on the seed.

``F`` is :data:`ROUNDS` rounds of an unbalanced Feistel step on ``x``: with ``h = k // 2`` low
bits ``lo`` and ``k - h`` high bits ``hi``,

    hi' = hi xor (srhash32(0, e, ORDER_TAG, s, lo + (r << 8)) mod 2**(k - h)),
    x'  = lo * 2**(k - h) + hi'

(round ``r``; a rotation of the halves after the xor, so each round is a bijection). The hash is
the stochastic-rounding hash :func:`pchw.fixedpoint.srhash32` (adders, rotations and xors: no
multiplier); its key is stated once, in :func:`order_hash_fields`. The circuit
(:mod:`pchw.gateware.dataset`) runs :func:`order_round` itself on its signals, one round a
cycle.
"""

import numpy as np

from .fixedpoint import srhash32

__all__ = ["ROUNDS", "ORDER_TAG", "order_bits", "order_hash_fields", "order_round",
           "epoch_order"]

#: Feistel rounds of the permutation.
ROUNDS = 4
#: The hash's ``layer`` field for the order (weight rounding uses the layers 1..L).
ORDER_TAG = 0xFF
#: The hash's ``seed`` field for the order (the TRAIN seed goes into its ``row`` field).
ORDER_SEED = 0


def order_bits(n):
    """``k``: the bits of the permutation's domain for ``n`` samples (``2**k >= n``, at least 1)."""
    return max(1, (int(n) - 1).bit_length())


def order_hash_fields(seed, epoch, rnd, lo):
    """The arguments of :func:`pchw.fixedpoint.srhash32` for round ``rnd`` of epoch ``epoch``
    with TRAIN seed ``seed`` and low half ``lo`` (< 2**8): ``(seed field, step, layer, row,
    col)``. Ints, NumPy arrays or Amaranth values (the circuit passes its signals)."""
    return ORDER_SEED, epoch, ORDER_TAG, seed, lo + (rnd << 8)


def order_round(x, lo_mask, hi_mask, h, hi_bits, hashed):
    """One round of ``F`` on ``x``: ``lo = x & lo_mask`` (the ``h`` low bits), ``hi = x >> h``;
    returns ``(lo << hi_bits) | (hi ^ (hashed(lo) & hi_mask))``, ``hashed`` giving the round's
    hash of ``lo``. The same expression builds the circuit (Amaranth values) and the golden
    order (NumPy arrays)."""
    lo = x & lo_mask
    return (lo << hi_bits) | ((x >> h) ^ (hashed(lo) & hi_mask))


def epoch_order(n, seed, epoch):
    """The sample indices of epoch ``epoch`` of a TRAIN with ``seed`` over ``n`` samples, in
    order (a permutation of ``0..n-1``)."""
    k = order_bits(n)
    h = k // 2
    x = np.arange(1 << k, dtype=np.int64)
    for rnd in range(ROUNDS):
        x = order_round(x, (1 << h) - 1, (1 << (k - h)) - 1, h, k - h,
                        lambda lo: srhash32(*order_hash_fields(seed, epoch, rnd, lo)))
    return x[x < n]
