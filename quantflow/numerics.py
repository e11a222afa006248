"""The numerics contract: the one source of truth for every integer the flow computes.

The integer reference (:mod:`quantflow.reference`), the torch fake-quant model
(:mod:`quantflow.fakequant`) and every hardware width (``hwgen``) are derived from the
functions here. Pure numpy and integer arithmetic; no torch, no Amaranth.

Contract (the README's "Numerics contract" says the same for users):

- weights: signed two's complement, ``b_w`` in 1..8, zero point 0, per output channel, on one of
  two grids (:class:`WeightGrid`): the narrow symmetric ``±(2**(b-1) - 1)`` or the full code
  range ``-2**(b-1) .. 2**(b-1) - 1`` (at 2 bits: ternary, or all four codes); at ``b_w = 1``
  binary: the bipolar codes ``-1`` and ``+1`` (a stored bit ``c`` means ``2c - 1``; there is no
  zero code), times the per-channel scale;
- activations: ``b_a`` in 1..8, zero point 0; unsigned after a ReLU (at 1 bit: 0 or 1, a step
  at half the scale), signed two's complement (2..8 bits)
  (symmetric scale, full code range) where the graph needs negative values: a Conv2d/Linear
  without ReLU that is not the last layer (a linear bottleneck, a projection shortcut), an add
  of signed branches, a network input with negative values;
- bias: signed, at accumulator scale ``s_w * s_a``, added into the accumulator;
- accumulator: signed, ``acc_bits(b_w, b_a, K)`` wide, overflow impossible by construction;
- requantization per output channel: ``clamp((acc * M + round_term(s)) >> s, lo, hi)`` with an
  unsigned ``m``-bit ``M``, ``>>`` arithmetic (floor) and ``round_term(s) = 2**(s-1)`` for
  ``s > 0`` and ``0`` for ``s == 0`` (round half up; exact when no bits are dropped);
- residual add of inputs ``x_i`` (each with its own scale): every input is rescaled to the
  output scale with its own ``(M_i, s_i)`` and the integers are summed, then clamped (a ReLU
  after the add is folded into ``lo``): ``clamp(sum_i rescale(x_i, M_i, s_i), lo, hi)`` with
  ``rescale(x, M, s) = (x * M + round_term(s)) >> s`` (:func:`add_requantize`);
- concatenation along channels moves integers only: its inputs share one format and scale.

Why symmetric signed rather than a zero point: a zero point ``z`` adds ``z * sum(w)`` to every
accumulator, which a bias absorbs only where no padding tap reads the zero; with ``z = 0``
padding is a zero word, the MAC array needs no correction term, and a signed lane costs one
sign bit in each multiplier operand. Weights may use the code ``-2**(b-1)`` (the full grid):
the accumulator bound already counts it, so the hardware needs nothing more.
"""

import enum
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = [
    "MIN_BITS", "MAX_BITS", "QFormat", "check_bits", "acc_bits", "product_bound",
    "round_term", "requantize", "Requant", "derive_multiplier", "max_shift",
    "DEFAULT_MULT_BITS", "rescale", "add_requantize", "weight_digits", "split_digits",
    "digit_reach", "WeightGrid", "weight_lane_codes", "weight_lane_values",
]

#: Supported word lengths for weights and activations (inclusive). One bit is binary: bipolar
#: (+-1) weights, unsigned (0/1) activations.
MIN_BITS = 1
MAX_BITS = 8
#: Default width of the unsigned requantization multiplier ``M``.
DEFAULT_MULT_BITS = 16


def check_bits(name, value, lo=MIN_BITS, hi=MAX_BITS):
    """Validate a word length given by a user; return it as an int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    return int(value)


class WeightGrid(enum.Enum):
    """The codes a ``b``-bit signed weight may take, and the step a range maps onto them.

    NARROW: ``-(2**(b-1) - 1) .. 2**(b-1) - 1``, symmetric; a clipping threshold ``t`` becomes
    the scale ``t / (2**(b-1) - 1)`` (``t`` lands on the top code). At 2 bits the weights are
    ternary. FULL: the whole two's complement range ``-2**(b-1) .. 2**(b-1) - 1``; ``t``
    becomes ``t / 2**(b-1)`` (``-t`` is the bottom code, ``+t`` clamps one step short), the
    grid Brevitas' min-max uses. At 2 bits it restores the fourth code (-2) and halves the
    step. Both are the same integer format (:meth:`QFormat.weight`); only the quantizer
    differs, so the reference and the hardware take either.

    At 1 bit both grids are the bipolar codes ``-1, +1`` (:meth:`codes` is the sign, zero going
    to ``+1``); a threshold ``t`` is the scale itself.
    """

    NARROW = "narrow"
    FULL = "full"

    def lo(self, bits):
        """The most negative code."""
        if bits == 1:
            return -1
        return -(1 << (bits - 1)) + (1 if self is WeightGrid.NARROW else 0)

    def hi(self, bits):
        """The most positive code."""
        return 1 if bits == 1 else (1 << (bits - 1)) - 1

    def steps(self, bits):
        """Steps between 0 and a threshold ``t``: the scale is ``t / steps``."""
        return -self.lo(bits)

    def codes(self, x, bits):
        """The nearest code to each real ``x`` (weights divided by their scale): round half to
        even and clamp to ``lo..hi``; at 1 bit the sign, ``x >= 0`` giving ``+1``."""
        x = np.asarray(x, dtype=np.float64)
        if bits == 1:
            return np.where(x >= 0, 1.0, -1.0)
        return np.clip(np.rint(x), self.lo(bits), self.hi(bits))


@dataclass(frozen=True)
class QFormat:
    """An integer format: ``bits`` wide, two's complement when ``signed``.

    A signed 1-bit format is *bipolar*: the codes ``-1`` and ``+1`` (no zero), the binary
    weights of the contract; its bit ``c`` stands for ``2c - 1``.

    Parameters
    ----------
    bits : int
        Word length, 1..64.
    signed : bool
        Two's complement when True, unsigned otherwise.
    """

    bits: int
    signed: bool

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise TypeError(f"QFormat bits must be an integer, not {self.bits!r}")
        if not 1 <= self.bits <= 64:
            raise ValueError(f"QFormat bits must be an integer in 1..64, not {self.bits!r}")
        if not isinstance(self.signed, bool):
            raise TypeError(f"QFormat signed must be a bool, not {self.signed!r}")

    @property
    def bipolar(self):
        """The binary weight format: signed, 1 bit, codes -1 and +1."""
        return self.signed and self.bits == 1

    @property
    def min(self):
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self):
        if self.bipolar:
            return 1
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def levels(self):
        return 1 << self.bits

    def contains(self, array):
        """True when every element of ``array`` is representable."""
        a = np.asarray(array)
        if self.bipolar:
            return bool(np.all(np.abs(a) == 1))
        return a.size == 0 or (int(a.min()) >= self.min and int(a.max()) <= self.max)

    @classmethod
    def weight(cls, bits):
        return cls(check_bits("weight bits", bits), True)

    @classmethod
    def activation(cls, bits, signed=False):
        """An activation format: unsigned after a ReLU, signed two's complement otherwise (2+
        bits: a 1-bit activation is unsigned, 0 or 1)."""
        bits = check_bits("activation bits", bits)
        if signed and bits < 2:
            raise ValueError("A signed activation must have 2..8 bits, not 1 (a 1-bit"
                             " activation is unsigned: 0 or 1)")
        return cls(bits, bool(signed))

    def to_json(self):
        return {"bits": self.bits, "signed": self.signed}

    @classmethod
    def from_json(cls, obj):
        return cls(obj["bits"], obj["signed"])


def product_bound(w_fmt, a_fmt, k):
    """Largest ``|sum_k w*a|`` over ``k`` products of the two formats (an integer)."""
    if k < 1:
        raise ValueError(f"Reduction length must be a positive integer, not {k!r}")
    w_mag = max(-w_fmt.min, w_fmt.max)
    a_mag = max(-a_fmt.min, a_fmt.max)
    return k * w_mag * a_mag


def acc_bits(w_fmt, a_fmt, k):
    """Signed accumulator width for ``k`` products plus a bias with ``|bias| <= product_bound``.

    ``b_w + b_a + (k - 1).bit_length() + 1``: the products alone stay below
    ``2**(b_w + b_a - 1 + clog2(k))`` in magnitude; the bias (clamped to the same bound when it
    is quantized) adds one bit. Integer arithmetic only (never ``log2``). With a 1-bit operand
    (bipolar weights, 0/1 activations) it is one bit generous: the closed form counts a
    magnitude of ``2**(b-1)`` where the operand's is 1.
    """
    bound = 2 * product_bound(w_fmt, a_fmt, k)
    width = w_fmt.bits + a_fmt.bits + (k - 1).bit_length() + 1
    # The closed form is a bound; check it really holds the worst case (internal invariant).
    assert bound <= (1 << (width - 1)) - 1 or bound == 1 << (width - 1), (bound, width)
    return width


def max_shift(acc_width, mult_bits):
    """Largest useful shift: beyond it every product ``acc * M`` rounds to 0 or -1."""
    return acc_width + mult_bits


def round_term(shift):
    """The rounding constant added before the floor shift: ``2**(s-1)``, or 0 when ``s == 0``."""
    s = np.asarray(shift, dtype=np.int64)
    return np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)


def rescale(x, mult, shift):
    """``(x * M + round_term(s)) >> s`` on int64, elementwise (requantization before the
    clamp; ``mult`` and ``shift`` broadcast against ``x``)."""
    x = np.asarray(x, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    return np.right_shift(x * mult + round_term(shift), shift)


def add_requantize(inputs, mults, shifts, lo, hi):
    """The residual add: ``clamp(sum_i rescale(x_i, M_i, s_i), lo, hi)``.

    ``inputs`` are int64 arrays of one shape, each at its own scale; ``mults[i]``, ``shifts[i]``
    rescale input ``i`` to the output scale (one pair per input tensor). The sum is exact in
    int64 (each term is below ``2**(bits + mult_bits)``), and the clamp folds a following ReLU.
    """
    if len(inputs) != len(mults) or len(inputs) != len(shifts):
        raise ValueError(f"An add must have one (M, s) per input, not {len(mults)} for"
                         f" {len(inputs)} inputs")
    total = sum(rescale(x, int(m), int(s)) for x, m, s in zip(inputs, mults, shifts,
                                                               strict=True))
    return np.clip(total, lo, hi)


def requantize(acc, mult, shift, lo, hi):
    """``clamp((acc * M + round_term(s)) >> s, lo, hi)`` on int64, elementwise.

    ``mult`` and ``shift`` broadcast against ``acc`` (per output channel: shape ``(C, 1, 1)``
    against ``(N, C, H, W)``, or ``(C,)`` against ``(N, C)``). ``>>`` is numpy's arithmetic
    right shift on int64, which is floor division by ``2**s`` for negative values too.
    """
    return np.clip(rescale(acc, mult, shift), lo, hi)


@dataclass(frozen=True)
class Requant:
    """The requantization rule a configuration allows: ``mult_bits`` and ``shift`` range."""

    mult_bits: int = DEFAULT_MULT_BITS
    shift_max: int = 63

    def __post_init__(self):
        if isinstance(self.mult_bits, bool) or not isinstance(self.mult_bits, int):
            raise TypeError(f"Multiplier bits must be an integer, not {self.mult_bits!r}")
        if not 2 <= self.mult_bits <= 31:
            raise ValueError(f"Multiplier bits must be an integer in 2..31, not {self.mult_bits!r}")
        if isinstance(self.shift_max, bool) or not isinstance(self.shift_max, int):
            raise TypeError(f"Shift maximum must be an integer, not {self.shift_max!r}")
        if not 0 <= self.shift_max <= 63:
            raise ValueError(f"Shift maximum must be an integer in 0..63, not {self.shift_max!r}")


def derive_multiplier(ratio, mult_bits=DEFAULT_MULT_BITS, shift_max=63):
    """Fixed-point ``(M, s)`` with ``M / 2**s`` closest to ``ratio`` for an unsigned ``m``-bit M.

    The shift is chosen as large as allowed while ``M = round(ratio * 2**s)`` stays below
    ``2**m``: then ``M >= 2**(m-1)`` unless the shift hit ``shift_max``, and the relative error
    ``|M / 2**s - ratio| / ratio`` is at most ``2**-m``. Computed with exact rational arithmetic
    (``fractions.Fraction``) so the result does not depend on float rounding.

    Raises
    ------
    ValueError
        When ``ratio`` is not a finite positive number, or ``ratio >= 2**m`` (no shift >= 0
        can represent it).
    """
    if not np.isfinite(ratio) or ratio <= 0:
        raise ValueError(f"Requantization ratio must be a finite positive number, not {ratio!r}")
    r = Fraction(float(ratio))
    top = 1 << mult_bits
    if round(r) >= top:
        raise ValueError(
            f"Requantization ratio must be below 2**{mult_bits}, not {float(ratio)!r}")
    # Largest s with round(r * 2**s) < 2**m; floor(log2) computed on the exact fraction.
    e = r.numerator.bit_length() - r.denominator.bit_length()  # 2**e within a factor 2 of r
    s = max(0, min(shift_max, mult_bits - e + 1))
    while s > 0 and _round_half_up(r * (1 << s)) >= top:
        s -= 1
    m = _round_half_up(r * (1 << s))
    return int(m), int(s)


def _round_half_up(frac):
    return (frac.numerator * 2 + frac.denominator) // (2 * frac.denominator)


def weight_digits(w_fmt, lane_bits):
    """Signed digits of ``lane_bits`` that carry every weight of ``w_fmt`` (1 when it fits a
    lane): the smallest ``D`` with ``w_fmt``'s range inside what ``D`` signed digits reach,
    ``(2**(bD) - 1) / (2**b - 1)`` times the digit's range. A wider layer runs on narrow
    weight lanes as ``D`` passes over the same activations, pass ``e`` weighted
    ``2**(b * e)`` (:func:`split_digits`). A 1-bit lane is bipolar and holds only 1-bit
    weights; bipolar weights fit any two's complement lane of 2+ bits."""
    if w_fmt.bits <= lane_bits:
        return 1
    if lane_bits == 1:
        raise ValueError(f"A 1-bit (bipolar, +-1) weight lane cannot hold {w_fmt.bits}-bit"
                         " weights: they need weight lanes of 2+ bits")
    d = 1
    while digit_reach(lane_bits, d) < -w_fmt.min or digit_reach(lane_bits, d, True) < w_fmt.max:
        d += 1
    return d


def digit_reach(lane_bits, digits, positive=False):
    """Largest magnitude ``digits`` signed ``lane_bits``-bit digits reach (the negative end, or
    with ``positive`` the positive one): the digit's range times ``sum_e 2**(b*e)``."""
    span = ((1 << (lane_bits * digits)) - 1) // ((1 << lane_bits) - 1)
    top = (1 << (lane_bits - 1)) - (1 if positive else 0)
    return top * span


def split_digits(w, lane_bits, digits):
    """``w`` (int array) -> ``digits`` signed ``lane_bits``-bit digits, low first, with
    ``sum_e d_e << (lane_bits * e) == w`` exactly (each digit the signed residue of what is
    left; the top digit takes the rest and must fit, which :func:`weight_digits` ensures)."""
    rest = np.asarray(w, dtype=np.int64)
    half, full = 1 << (lane_bits - 1), 1 << lane_bits
    out = []
    for _ in range(digits - 1):
        d = ((rest + half) % full) - half
        out.append(d)
        rest = (rest - d) >> lane_bits
    out.append(rest)
    if np.any(rest < -half) or np.any(rest >= half):
        raise ValueError(f"Weights must fit {digits} signed digits of {lane_bits} bits")
    return np.stack(out)


def weight_lane_codes(w, lane_bits):
    """Integer weights as a weight lane of ``lane_bits`` stores them: the two's complement
    value itself, or on a bipolar 1-bit lane the bit ``w > 0`` (``+1`` -> 1, ``-1`` -> 0)."""
    w = np.asarray(w, dtype=np.int64)
    return (w > 0).astype(np.int64) if lane_bits == 1 else w


def weight_lane_values(w, lane_bits):
    """What a ``lane_bits`` weight lane multiplies by when it holds ``w``: ``w``, or on a
    bipolar lane ``+1`` for a positive weight and ``-1`` otherwise. A bipolar lane has no
    zero: the compiler's zero weights (array rows past a layer's outputs, lanes past its input
    channels) read as ``-1``, harmless only where the activation they meet is zero; the
    software model multiplies by these values, so any other case is a mismatch it reports."""
    w = np.asarray(w, dtype=np.int64)
    return np.where(w > 0, 1, -1) if lane_bits == 1 else w
