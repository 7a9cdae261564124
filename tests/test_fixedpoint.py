"""Fixed-point primitives against exact rational arithmetic."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pchw import Format, PchwError
from pchw.fixedpoint import (exact_dtype, exact_matmul, requantise, round_shift, saturate, srhash32,
                             stochastic_noise)


@st.composite
def formats(draw):
    width = draw(st.integers(2, 32))
    return Format(width, draw(st.integers(0, width - 1)))


def exact_requantise(acc, shift, fmt):
    if shift > 0:
        v = math.floor(Fraction(acc, 2 ** shift) + Fraction(1, 2))
    else:
        v = acc * 2 ** -shift
    return min(max(v, fmt.min), fmt.max)


@given(st.integers(-2 ** 60, 2 ** 60), st.integers(-8, 40), formats())
def test_requantise_is_round_half_up_then_saturate(acc, shift, fmt):
    if shift < 0 and abs(acc) >= 2 ** 50:
        acc >>= 20          # keep left shifts inside int64
    got = int(requantise(np.array([acc], dtype=np.int64), shift, fmt)[0])
    assert got == exact_requantise(acc, shift, fmt)


@given(st.lists(st.integers(-2 ** 40, 2 ** 40), min_size=1, max_size=20), st.integers(1, 20))
def test_requantise_object_and_int64_agree(values, shift):
    fmt = Format(24, 8)
    a = requantise(np.array(values, dtype=np.int64), shift, fmt)
    b = requantise(np.array(values, dtype=object), shift, fmt)
    assert a.dtype == np.int64 and b.dtype == np.int64
    assert list(a) == list(b) == [exact_requantise(v, shift, fmt) for v in values]


@given(st.lists(st.integers(-2 ** 31, 2 ** 31 - 1), min_size=1, max_size=4),
       st.integers(-64, 100))
def test_round_shift_is_exact_for_any_shift(values, shift):
    """int64 inputs, shifts that leave int64 (left by up to 64, right by up to 100)."""
    got = round_shift(np.array(values, dtype=np.int64), shift)
    expected = [math.floor(Fraction(v, 2 ** shift) + Fraction(1, 2)) if shift > 0
                else v * 2 ** -shift for v in values]
    assert [int(v) for v in got] == expected


def test_exact_dtype_counts_the_shift():
    assert exact_dtype(33, -31) is np.int64 and exact_dtype(34, -31) is object
    assert exact_dtype(40, 62) is np.int64 and exact_dtype(40, 63) is object
    assert exact_dtype(63, 1) is np.int64 and exact_dtype(64, 1) is object
    a = np.ones((2, 3), dtype=np.int64)
    assert exact_matmul(a, a.T, 24, 24).dtype == np.int64
    assert exact_matmul(a, a.T, 24, 24, shift=-20).dtype == object


def test_quantise_rounds_the_exact_value():
    """0.5 - 2^-54 is below one half: floor(x + 0.5) would round x + 0.5 up to 1 first."""
    x = 0.5 - 2.0 ** -54
    assert Format(8, 0).quantise([x, -x, 2.5, -2.5]).tolist() == [0, 0, 3, -2]
    assert Format(8, 3).quantise([x / 8]).tolist() == [0]
    assert Format(32, 31).quantise([1.7e308, -1.7e308]).tolist() == [2 ** 31 - 1, -2 ** 31]


def test_round_half_up_ties():
    # +2.5 -> 3, -2.5 -> -2, -3.5 -> -3: ties go towards +infinity
    assert list(round_shift(np.array([5, -5, -7, 3, -3]), 1)) == [3, -2, -3, 2, -1]


@given(st.floats(-1e6, 1e6, allow_nan=False), formats())
def test_quantise_matches_exact(x, fmt):
    expected = math.floor(Fraction(x) * 2 ** fmt.frac + Fraction(1, 2))
    expected = min(max(expected, fmt.min), fmt.max)
    assert int(fmt.quantise([x])[0]) == expected


def test_quantise_counts_saturations_and_rejects_nan():
    fmt = Format(8, 4)      # -8 .. 7.9375
    counted = []
    assert list(fmt.quantise([100.0, -100.0, 1.0], counted.append)) == [127, -128, 16]
    assert counted == [2]
    with pytest.raises(PchwError, match="NaN"):
        fmt.quantise([float("nan")])


def test_format_properties_and_validation():
    fmt = Format(16, 10)
    assert str(fmt) == "Q16.10" and fmt.min == -32768 and fmt.max == 32767 and fmt.one == 1024
    assert Format(8, 7).one == 127            # 1.0 itself is not representable
    assert fmt.dequantise(fmt.quantise([0.5]))[0] == 0.5
    for width, frac in ((1, 0), (33, 0), (8, 8), (8, -1)):
        with pytest.raises(PchwError):
            Format(width, frac)


@given(st.integers(1, 8), st.integers(0, 3), st.lists(st.integers(-2 ** 31, 2 ** 31 - 1),
                                                         min_size=1, max_size=5))
def test_exact_matmul_is_exact(rows, _, row):
    a = np.array([row] * rows, dtype=np.int64)
    b = np.array([[v] for v in row], dtype=np.int64)
    got = exact_matmul(a, b, 32, 32)
    assert [int(v) for v in got[:, 0]] == [sum(v * v for v in row)] * rows


def test_exact_matmul_picks_int64_when_safe():
    a = np.ones((2, 3), dtype=np.int64)
    assert exact_matmul(a, a.T, 16, 16).dtype == np.int64
    assert exact_matmul(a, a.T, 32, 32).dtype == object


def test_saturate_reports_count():
    counted = []
    out = saturate(np.array([-200, 0, 200]), Format(8, 0), counted.append)
    assert list(out) == [-128, 0, 127] and counted == [2]


@settings(max_examples=30)
@given(st.integers(-2 ** 20, 2 ** 20), st.integers(1, 8))
def test_stochastic_rounding_is_unbiased_over_all_noise(acc, shift):
    """Averaged over every noise value, stochastic rounding returns exactly acc / 2**shift."""
    noise = np.arange(2 ** shift)
    rounded = round_shift(np.full(2 ** shift, acc), shift, noise)
    assert Fraction(int(rounded.sum()), 2 ** shift) == Fraction(acc, 2 ** shift)
    assert set(rounded) <= {acc >> shift, (acc >> shift) + 1}


def test_stochastic_noise_is_deterministic_and_uniform():
    rows, cols = np.arange(64)[:, None], np.arange(65)[None, :]
    a = stochastic_noise(4, 7, 3, 1, rows, cols)
    assert np.array_equal(a, stochastic_noise(4, 7, 3, 1, rows, cols))
    assert not np.array_equal(a, stochastic_noise(4, 7, 4, 1, rows, cols))    # step
    assert not np.array_equal(a, stochastic_noise(4, 7, 3, 2, rows, cols))    # layer
    assert not np.array_equal(a, stochastic_noise(4, 8, 3, 1, rows, cols))    # seed
    samples = np.concatenate([stochastic_noise(6, 0, t, 1, rows, cols).ravel() for t in range(16)])
    counts = np.bincount(samples, minlength=64)
    expected = len(samples) / 64
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 120        # 63 degrees of freedom: p < 1e-5 beyond ~120
    # Neighbouring weights are uncorrelated: their noise agrees as often as chance.
    same = np.mean(stochastic_noise(1, 0, 0, 1, rows, cols)[:, :-1] ==
                   stochastic_noise(1, 0, 0, 1, rows, cols)[:, 1:])
    assert 0.45 < same < 0.55


def _speck_hash(seed, step, layer, row, col):
    """The hash as docs/fixed-point.md specifies it, on plain Python integers."""
    m = 2 ** 32 - 1
    key = (seed << 8) | layer
    a, b = step & m, (row << 16) | col
    for i in range(1, 9):
        a = ((((a >> 8) | (a << 24)) & m) + b) & m
        a ^= ((0x9E3779B9 * i) & m) ^ key
        b = (((b << 3) | (b >> 29)) & m) ^ a
    return a


@given(st.integers(0, 2 ** 24 - 1), st.integers(0, 2 ** 32 - 1), st.integers(0, 255),
       st.integers(0, 65535), st.integers(0, 65535))
def test_srhash_matches_its_specification(seed, step, layer, row, col):
    assert int(srhash32(seed, step, layer, row, col)) == _speck_hash(seed, step, layer, row, col)


def test_activation_tables_match_their_text():
    """docs/fixed-point.md, "tanh and sigmoid": the entries, f, and f' of the table."""
    import math
    from pchw.fixedpoint import activation_table, table_activation, table_gate
    tanh, sigmoid = activation_table("tanh"), activation_table("sigmoid")
    assert len(tanh) == 258 and tanh[128] == 0 and sigmoid[128] == 32768
    assert tanh[0] == -65536 and tanh[256] == tanh[257] == 65536
    assert [int(t) for t in tanh[120:124]] == [math.floor(math.tanh(-8 + k / 16) * 65536 + 0.5)
                                               for k in range(120, 124)]
    fmt = Format(16, 10)
    x = np.arange(fmt.min, fmt.max + 1, 37)
    real = fmt.dequantise(x)
    assert np.max(np.abs(fmt.dequantise(table_activation("tanh", x, fmt)) - np.tanh(real))) \
        < 8.2e-4
    # Between two entries f is the straight line through them; its slope times m is f' m.
    k = 100                                  # x_k = -8 + 100/16 = -1.75
    xk = (-8 * 16 + k) * 64                  # raw Q.10
    assert table_activation("tanh", np.array([xk]), fmt)[0] == round(tanh[k] / 64)
    mid = table_activation("tanh", np.array([xk + 32]), fmt)[0]
    assert mid == math.floor((tanh[k] + tanh[k + 1]) / 2 / 64 + 0.5)
    m = np.array([1000])
    assert table_gate("tanh", np.array([xk + 5]), m, fmt)[0] == \
        math.floor((tanh[k + 1] - tanh[k]) * 1000 / 4096 + 0.5)
    assert table_gate("sigmoid", np.array([8 << 10, -(8 << 10) - 1]), np.array([9, 9]),
                      fmt).tolist() == [0, 0]
