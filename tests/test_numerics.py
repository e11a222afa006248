"""The numerics contract against a deliberately naive model written with Python ints and Fraction.

The naive model never shifts: it rounds ``acc * M / 2**s`` half up with exact rationals, so a
mistake in the floor-shift formulation (negative accumulators, shift 0, big shifts) shows up as
a disagreement.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
from flowkit import node_rng

from quantflow.numerics import (
    DEFAULT_MULT_BITS,
    MAX_BITS,
    MIN_BITS,
    QFormat,
    Requant,
    acc_bits,
    check_bits,
    derive_multiplier,
    max_shift,
    product_bound,
    WeightGrid,
    requantize,
    round_term,
    weight_digits,
)


def naive_requant(acc, mult, shift, lo, hi):
    """Round half up of the exact rational ``acc * M / 2**s``, then clamp; Python ints only."""
    q = math.floor(Fraction(int(acc) * int(mult), 1 << int(shift)) + Fraction(1, 2))
    return min(max(q, lo), hi)


def naive_min_width(lo, hi):
    """Smallest signed width holding every integer in lo..hi."""
    w = 1
    while not (-(1 << (w - 1)) <= lo and hi <= (1 << (w - 1)) - 1):
        w += 1
    return w


# -- requantize -------------------------------------------------------------------------------

@pytest.mark.parametrize(("acc", "mult", "shift", "want"), [
    # negative ties round up (towards +inf), not away from zero, not to even
    (-1, 1, 1, 0), (-3, 1, 1, -1), (-5, 1, 1, -2), (-2, 1, 2, 0), (-6, 1, 2, -1),
    (-7, 1, 2, -2), (-9, 1, 2, -2), (-10, 1, 2, -2), (-11, 1, 2, -3),
    # positive ties round up too
    (1, 1, 1, 1), (3, 1, 1, 2), (5, 1, 1, 3), (6, 1, 2, 2), (2, 1, 2, 1), (1, 1, 2, 0),
    # shift 0: no rounding term, the product itself
    (-7, 3, 0, -21), (7, 3, 0, 21), (0, 65535, 0, 0), (-1, 65535, 0, -65535),
    # M = 0 kills everything (a dead channel)
    (-1000, 0, 5, 0), (1000, 0, 0, 0),
])
def test_requantize_hand_cases(acc, mult, shift, want):
    got = int(requantize(np.int64(acc), mult, shift, -(1 << 40), 1 << 40))
    assert got == want, f"acc={acc} M={mult} s={shift}: got {got}, want {want}"
    assert naive_requant(acc, mult, shift, -(1 << 40), 1 << 40) == want


def test_round_term_values():
    s = np.arange(0, 64)
    got = round_term(s)
    assert got.dtype == np.int64
    assert int(got[0]) == 0, "shift 0 must add no rounding term"
    for k in range(1, 64):
        assert int(got[k]) == 1 << (k - 1), f"round_term({k}) = {int(got[k])}"


def test_requantize_randomized_matches_naive(request):
    seed, rng = node_rng(request)
    for trial in range(40):
        acc_width = int(rng.integers(2, 30))
        m = int(rng.integers(1, DEFAULT_MULT_BITS + 1))
        fmt = QFormat(acc_width, True)
        acc = rng.integers(fmt.min, fmt.max + 1, size=200)
        acc[:4] = [fmt.min, fmt.max, 0, -1]
        mult = rng.integers(0, 1 << m, size=200)
        mult[:2] = [(1 << m) - 1, 0]
        shift = rng.integers(0, max_shift(acc_width, m) + 1, size=200)
        shift[4:8] = [0, 1, max_shift(acc_width, m), 63]
        lo, hi = sorted(int(v) for v in rng.integers(-300, 300, size=2))
        got = requantize(acc, mult, shift, lo, hi)
        for i in range(len(acc)):
            want = naive_requant(acc[i], mult[i], shift[i], lo, hi)
            assert int(got[i]) == want, (
                f"seed={seed} trial={trial} acc={int(acc[i])} M={int(mult[i])}"
                f" s={int(shift[i])} lo={lo} hi={hi}: got {int(got[i])}, want {want}")


@pytest.mark.parametrize("acc_width", [2, 9, 26, 31])
@pytest.mark.parametrize("m", [2, 8, 16])
def test_max_shift_is_the_last_useful_shift(acc_width, m):
    """At max_shift every in-format accumulator maps to 0; one less still moves the extremes."""
    fmt, top = QFormat(acc_width, True), (1 << m) - 1
    s = max_shift(acc_width, m)
    assert s <= 63, "int64 shifts beyond 63 are undefined"
    extremes = np.array([fmt.min, fmt.min + 1, -1, 0, 1, fmt.max], dtype=np.int64)
    got = requantize(extremes, top, s, -(1 << 62), 1 << 62)
    assert np.array_equal(got, np.zeros_like(extremes)), got
    for a in extremes:
        assert naive_requant(a, top, s, -(1 << 62), 1 << 62) == 0
    below = int(requantize(np.int64(fmt.min), top, s - 1, -(1 << 62), 1 << 62))
    assert below == naive_requant(fmt.min, top, s - 1, -(1 << 62), 1 << 62) == -1


def test_requantize_shift_63_on_int64():
    acc = np.array([-(1 << 40), -1, 0, 1, 1 << 40], dtype=np.int64)
    got = requantize(acc, (1 << 16) - 1, 63, -10, 10)
    assert np.array_equal(got, [naive_requant(a, (1 << 16) - 1, 63, -10, 10) for a in acc])


@pytest.mark.parametrize(("lo", "hi"), [(0, 15), (0, 3), (1, 255), (-8, 7), (0, 0)])
def test_clamp_ends_hit_exactly(lo, hi):
    # M = 1, s = 0: the accumulator passes unchanged, so the clamp is all that acts.
    acc = np.array([lo - 1000, lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, hi + 1000],
                   dtype=np.int64)
    got = requantize(acc, 1, 0, lo, hi)
    want = np.clip(acc, lo, hi)
    assert np.array_equal(got, want), (got, want)
    assert int(got[2]) == lo and int(got[5]) == hi
    assert int(got.min()) == lo and int(got.max()) == hi
    # with rounding: the value that rounds exactly onto hi stays, the next one saturates
    s = 3
    just_hi = (hi << s) - (1 << (s - 1))  # (hi - 0.5) * 8: rounds half up to hi
    got = requantize(np.array([just_hi - 1, just_hi, (hi + 1) << s], dtype=np.int64), 1, s,
                     lo, hi)
    assert [int(v) for v in got] == [max(hi - 1, lo), hi, hi]


def test_requantize_per_channel_broadcast(request):
    seed, rng = node_rng(request)
    acc = rng.integers(-5000, 5000, size=(3, 4, 5, 5))
    mult = rng.integers(1 << 15, 1 << 16, size=4)
    shift = rng.integers(10, 20, size=4)
    got = requantize(acc, mult.reshape(4, 1, 1), shift.reshape(4, 1, 1), 0, 15)
    for idx in np.ndindex(acc.shape):
        c = idx[1]
        want = naive_requant(acc[idx], mult[c], shift[c], 0, 15)
        assert int(got[idx]) == want, f"seed={seed} index={idx}: got {int(got[idx])}, want {want}"


# -- derive_multiplier ------------------------------------------------------------------------

def _check_multiplier(ratio, m, shift_max, context):
    M, s = derive_multiplier(ratio, m, shift_max)
    assert isinstance(M, int) and isinstance(s, int), context
    r = Fraction(ratio)
    assert 0 <= M < (1 << m), f"{context}: M={M} out of {m} bits"
    assert 0 <= s <= shift_max, f"{context}: s={s}"
    # M is round-half-up of r * 2**s, so the absolute error is at most half an LSB
    assert abs(Fraction(M, 1 << s) - r) <= Fraction(1, 1 << (s + 1)), f"{context}: M={M} s={s}"
    # the shift is as large as allowed: one more would need m + 1 bits
    if s < shift_max:
        assert math.floor(r * (1 << (s + 1)) + Fraction(1, 2)) >= 1 << m, (
            f"{context}: s={s} is not the largest shift")
        assert M >= 1 << (m - 1), f"{context}: M={M} below 2**(m-1)"
        rel = abs(Fraction(M, 1 << s) - r) / r
        assert rel <= Fraction(1, 1 << m), f"{context}: relative error {float(rel)}"
    return M, s


@pytest.mark.parametrize("m", [2, 3, 8, 16, 24, 31])
def test_derive_multiplier_error_bound_randomized(request, m):
    seed, rng = node_rng(request)
    # log-uniform over 2**-50 .. 2**m, plus the edges
    exps = rng.uniform(-50, m, size=400)
    ratios = [float(2.0 ** e) for e in exps]
    ratios += [2.0 ** -50, 2.0 ** -20, 1.0, 0.5, 2.0 ** (m - 1), (1 << m) - 0.75,
               np.nextafter(float((1 << m) - 0.5), 0.0), 1e-9, 0.1, 1 / 3]
    for r in ratios:
        if r >= (1 << m) - 0.5:
            continue  # rounds to 2**m: the error case, tested below
        _check_multiplier(r, m, 63, f"seed={seed} m={m} ratio={r!r}")


@pytest.mark.parametrize("shift_max", [0, 7, 15, 31])
def test_derive_multiplier_shift_clamped(request, shift_max):
    """A tiny ratio with a small shift budget: M falls below 2**(m-1), the error stays half an
    LSB at the clamped shift."""
    seed, rng = node_rng(request)
    for r in [float(2.0 ** e) for e in rng.uniform(-40, 0, size=100)]:
        M, s = _check_multiplier(r, 16, shift_max, f"seed={seed} shift_max={shift_max} r={r!r}")
        if r * 2 ** (shift_max + 1) < 1 << 15:
            assert s == shift_max, f"seed={seed} r={r!r}: s={s}"


def test_derive_multiplier_relative_bound_needs_unclamped_shift():
    """Documents the edge of the bound: at s == shift_max, M >= 2**(m-1) does not by itself
    give a relative error <= 2**-m (here r * 2**63 = 2**15 - 1/2 rounds up to 2**15)."""
    r = (2 ** 16 - 1) / 2 ** 64
    M, s = derive_multiplier(r, 16, 63)
    assert (M, s) == (1 << 15, 63)
    rel = abs(Fraction(M, 1 << s) - Fraction(r)) / Fraction(r)
    assert Fraction(1, 1 << 16) < rel <= Fraction(1, (1 << 16) - 1)


@pytest.mark.parametrize(("ratio", "m", "want"), [
    (1.0, 16, (1 << 15, 15)), (0.5, 16, (1 << 15, 16)), (0.75, 2, (3, 2)),
    (65535.0, 16, (65535, 0)), (65535.4, 16, (65535, 0)), (3.0, 2, (3, 0)),
    (1.5, 2, (3, 1)), (2.0 ** -20, 16, (1 << 15, 35)),
])
def test_derive_multiplier_exact_values(ratio, m, want):
    assert derive_multiplier(ratio, m) == want


@pytest.mark.parametrize("ratio", [0, 0.0, -1.0, -1e-300, float("nan"), float("inf"),
                                   float("-inf")])
def test_derive_multiplier_rejects_non_positive(ratio):
    with pytest.raises(ValueError,
                       match=rf"^Requantization ratio must be a finite positive number, "
                             rf"not {ratio!r}$"):
        derive_multiplier(ratio)


@pytest.mark.parametrize(("ratio", "m"), [(65536.0, 16), (65535.5, 16), (1e9, 16), (4.0, 2),
                                          (3.5, 2), (2.0 ** 31, 31)])
def test_derive_multiplier_rejects_too_large(ratio, m):
    with pytest.raises(ValueError,
                       match=rf"^Requantization ratio must be below 2\*\*{m}, "
                             rf"not {float(ratio)!r}$"):
        derive_multiplier(ratio, m)


# -- widths -----------------------------------------------------------------------------------

KS = [1, 2, 3, 4, 5, 9, 16, 17, 144, 288, 512]


@pytest.mark.parametrize("bw", range(MIN_BITS, MAX_BITS + 1))
@pytest.mark.parametrize("ba", range(MIN_BITS, MAX_BITS + 1))
def test_acc_bits_holds_worst_case_operands(bw, ba):
    from quantflow.qmodel import LayerKind, QLayer
    from quantflow.reference import run_layer

    w_fmt, a_fmt = QFormat(bw, True), QFormat(ba, False)
    for k in KS:
        width = acc_bits(w_fmt, a_fmt, k)
        assert width == bw + ba + (k - 1).bit_length() + 1
        acc = QFormat(width, True)
        bound = product_bound(w_fmt, a_fmt, k)
        assert bound == k * (1 << (bw - 1)) * ((1 << ba) - 1)
        # Worst operands at each end, built as a real layer and run through the reference
        # (which raises AccumulatorOverflow if the derived format is too small).
        weight = np.array([[w_fmt.min] * k, [w_fmt.max] * k, [w_fmt.min] * k], dtype=np.int64)
        bias = np.array([-bound, bound, bound], dtype=np.int64)
        layer = QLayer(name="worst", kind=LayerKind.LINEAR, in_shape=(k,), out_shape=(3,),
                       in_fmt=a_fmt, out_fmt=acc, in_scale=1.0, out_scale=np.ones(3),
                       w_fmt=w_fmt, weight=weight, bias=bias, requant=False,
                       w_scale=np.ones(3))
        layer.validate(0)
        x = np.array([[a_fmt.max] * k, [a_fmt.min] * k], dtype=np.int64)
        out = run_layer(layer, x)
        lowest = k * w_fmt.min * a_fmt.max - bound
        highest = k * w_fmt.max * a_fmt.max + bound
        assert int(out[0, 0]) == lowest == -2 * bound
        assert int(out[0, 1]) == highest
        assert acc.contains(out), f"bw={bw} ba={ba} K={k}: {out} outside {acc}"
        # The closed form is tight for power-of-two K; otherwise at most one bit generous, and
        # with a 1-bit operand too (its magnitude is 1, where the form counts 2**(b-1)).
        need = naive_min_width(lowest, highest)
        if k & (k - 1) == 0 and min(bw, ba) > 1:
            assert need == width, f"bw={bw} ba={ba} K={k}: needs {need}, acc_bits {width}"
        else:
            assert need in (width - 1, width), f"bw={bw} ba={ba} K={k}: needs {need}"


def test_acc_bits_one_bit_less_overflows_in_the_reference():
    from quantflow.qmodel import LayerKind, QLayer
    from quantflow.reference import AccumulatorOverflow, run_layer

    w_fmt, a_fmt, k = QFormat(4, True), QFormat(4, False), 16
    bound = product_bound(w_fmt, a_fmt, k)
    layer = QLayer(name="tight", kind=LayerKind.LINEAR, in_shape=(k,), out_shape=(1,),
                   in_fmt=a_fmt, out_fmt=QFormat(1, True), in_scale=1.0, out_scale=np.ones(1),
                   w_fmt=w_fmt, weight=np.full((1, k), w_fmt.min), bias=np.array([-bound]),
                   requant=False, w_scale=np.ones(1))
    x = np.full((1, k), a_fmt.max)
    assert int(run_layer(layer, x)[0, 0]) == -2 * bound  # fits the derived width
    assert not QFormat(layer.acc_fmt.bits - 1, True).contains([-2 * bound])
    # Claim one weight bit less (acc_bits drops by one) with the same operands: the reference
    # must refuse to produce the out-of-range accumulator.
    layer.w_fmt = QFormat(3, True)
    assert layer.acc_fmt.bits == acc_bits(w_fmt, a_fmt, k) - 1
    with pytest.raises(AccumulatorOverflow,
                       match=rf"^layer 'tight': accumulator range {-2 * bound}\.\.{-2 * bound}"
                             rf" leaves QFormat\(bits=12, signed=True\)$"):
        run_layer(layer, x)


def test_product_bound_rejects_empty_reduction():
    with pytest.raises(ValueError, match=r"^Reduction length must be a positive integer, not 0$"):
        product_bound(QFormat(4, True), QFormat(4, False), 0)


# -- formats and validation messages ---------------------------------------------------------

@pytest.mark.parametrize(("bits", "signed", "lo", "hi"), [
    (2, True, -2, 1), (2, False, 0, 3), (8, True, -128, 127), (8, False, 0, 255),
    (1, True, -1, 1), (1, False, 0, 1), (64, True, -(1 << 63), (1 << 63) - 1),
])
def test_qformat_range(bits, signed, lo, hi):
    f = QFormat(bits, signed)
    assert (f.min, f.max, f.levels) == (lo, hi, 1 << bits)
    assert f.contains([lo, hi]) and f.contains(np.zeros(0))
    assert f.bipolar == (bits == 1 and signed)
    if f.bipolar:  # the binary weights: -1 and +1, no zero
        assert not f.contains([0]) and not f.contains([1, 0, -1])
    if bits < 64:
        assert not f.contains([lo - 1]) and not f.contains([hi + 1])
    assert QFormat.from_json(f.to_json()) == f


@pytest.mark.parametrize(("args", "exc", "message"), [
    ((0, True), ValueError, r"^QFormat bits must be an integer in 1\.\.64, not 0$"),
    ((65, False), ValueError, r"^QFormat bits must be an integer in 1\.\.64, not 65$"),
    ((8.0, True), TypeError, r"^QFormat bits must be an integer, not 8\.0$"),
    ((True, True), TypeError, r"^QFormat bits must be an integer, not True$"),
    ((8, 1), TypeError, r"^QFormat signed must be a bool, not 1$"),
])
def test_qformat_messages(args, exc, message):
    with pytest.raises(exc, match=message):
        QFormat(*args)


@pytest.mark.parametrize(("value", "exc", "message"), [
    (0, ValueError, r"^weight bits must be an integer in 1\.\.8, not 0$"),
    (9, ValueError, r"^weight bits must be an integer in 1\.\.8, not 9$"),
    (-4, ValueError, r"^weight bits must be an integer in 1\.\.8, not -4$"),
    (4.0, TypeError, r"^weight bits must be an integer, not 4\.0$"),
    ("4", TypeError, r"^weight bits must be an integer, not '4'$"),
    (True, TypeError, r"^weight bits must be an integer, not True$"),
    (None, TypeError, r"^weight bits must be an integer, not None$"),
])
def test_check_bits_messages(value, exc, message):
    with pytest.raises(exc, match=message):
        check_bits("weight bits", value)


def test_check_bits_accepts_range_and_numpy_ints():
    for b in range(MIN_BITS, MAX_BITS + 1):
        assert check_bits("x", b) == b
        got = check_bits("x", np.int64(b))
        assert got == b and type(got) is int
    assert check_bits("x", 12, lo=10, hi=12) == 12
    with pytest.raises(ValueError, match=r"^x must be an integer in 10\.\.12, not 13$"):
        check_bits("x", 13, lo=10, hi=12)


def test_qformat_weight_and_activation_constructors():
    assert QFormat.weight(2) == QFormat(2, True)
    assert QFormat.activation(8) == QFormat(8, False)
    assert QFormat.weight(1).bipolar and QFormat.activation(1) == QFormat(1, False)
    with pytest.raises(ValueError, match=r"^weight bits must be an integer in 1\.\.8, not 9$"):
        QFormat.weight(9)
    with pytest.raises(ValueError,
                       match=r"^activation bits must be an integer in 1\.\.8, not 0$"):
        QFormat.activation(0)
    with pytest.raises(ValueError, match=r"^A signed activation must have 2\.\.8 bits, not 1"):
        QFormat.activation(1, signed=True)


def test_binary_weight_codes_and_lanes():
    """1-bit weights are the sign (zero -> +1) on both grids; a bipolar lane stores w > 0 and
    multiplies by +-1; wider weights never fit a bipolar lane; +-1 fits every wider lane."""
    from quantflow.numerics import weight_lane_codes, weight_lane_values

    x = np.array([-2.5, -0.01, 0.0, 0.3, 7.0])
    for grid in WeightGrid:
        assert (grid.lo(1), grid.hi(1), grid.steps(1)) == (-1, 1, 1)
        assert grid.codes(x, 1).tolist() == [-1, -1, 1, 1, 1]
    assert WeightGrid.NARROW.codes(x, 2).tolist() == [-1, 0, 0, 0, 1]
    assert WeightGrid.FULL.codes(x, 2).tolist() == [-2, 0, 0, 0, 1]
    w = np.array([1, -1, 1, 0])
    assert weight_lane_codes(w, 1).tolist() == [1, 0, 1, 0]
    assert weight_lane_values(w, 1).tolist() == [1, -1, 1, -1]  # no zero on a bipolar lane
    assert weight_lane_codes(w, 2).tolist() == weight_lane_values(w, 2).tolist() == w.tolist()
    assert weight_digits(QFormat.weight(1), 1) == weight_digits(QFormat.weight(1), 2) == 1
    with pytest.raises(ValueError, match="1-bit .bipolar, \\+-1. weight lane cannot hold 2-bit"):
        weight_digits(QFormat.weight(2), 1)
    # the accumulator of a binary layer: K products of magnitude <= a_max, plus the bias
    assert product_bound(QFormat.weight(1), QFormat.activation(1), 9) == 9
    assert acc_bits(QFormat.weight(1), QFormat.activation(8), 64) == 16


@pytest.mark.parametrize(("kwargs", "exc", "message"), [
    ({"mult_bits": 1}, ValueError, r"^Multiplier bits must be an integer in 2\.\.31, not 1$"),
    ({"mult_bits": 32}, ValueError, r"^Multiplier bits must be an integer in 2\.\.31, not 32$"),
    ({"mult_bits": 16.0}, TypeError, r"^Multiplier bits must be an integer, not 16\.0$"),
    ({"shift_max": -1}, ValueError, r"^Shift maximum must be an integer in 0\.\.63, not -1$"),
    ({"shift_max": 64}, ValueError, r"^Shift maximum must be an integer in 0\.\.63, not 64$"),
    ({"shift_max": 5.5}, TypeError, r"^Shift maximum must be an integer, not 5\.5$"),
    ({"shift_max": True}, TypeError, r"^Shift maximum must be an integer, not True$"),
])
def test_requant_messages(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        Requant(**kwargs)
    assert Requant().mult_bits == DEFAULT_MULT_BITS


@pytest.mark.parametrize("wide", range(2, 9))
@pytest.mark.parametrize("lane", range(2, 9))
def test_weight_digits_carry_every_weight(wide, lane):
    """Signed digits of a narrow lane represent every weight of a wider format exactly, and
    no fewer digits would (the minimum the compiler's cycle count pays for)."""
    from quantflow.numerics import split_digits, weight_digits
    if lane > wide:
        assert weight_digits(QFormat(wide, True), lane) == 1
        return
    fmt = QFormat(wide, True)
    d = weight_digits(fmt, lane)
    w = np.arange(fmt.min, fmt.max + 1)
    digits = split_digits(w, lane, d)
    assert digits.shape == (d, len(w))
    assert int(digits.min()) >= -(1 << (lane - 1)) and int(digits.max()) < 1 << (lane - 1)
    assert np.array_equal(sum(digits[e] << (lane * e) for e in range(d)), w)
    if d > 1:
        with pytest.raises(ValueError, match=rf"^Weights must fit {d - 1} signed digits of"
                                             rf" {lane} bits$"):
            split_digits(w, lane, d - 1)
