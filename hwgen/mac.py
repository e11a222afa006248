"""The processing element: one SIMD row of ``b_a x b_w`` products summed and accumulated.

A PE owns ``cols`` multipliers (one :class:`Multiplier` each, factored out so synthesis maps
the same small multiplier everywhere), an adder tree over the lanes and one accumulator.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layouts import act_layout, weight_row_layout

__all__ = ["Multiplier", "PE"]


class Multiplier(wiring.Component):
    """One ``act_bits`` x signed ``weight_bits`` product, registered. Latency
    ``cfg.mult_latency``: 1 in LUTs, 2 in a DSP block (see below). A bipolar
    1-bit weight lane (``weight_bits == 1``) holds the bit ``c`` of the weight ``2c - 1``.

    The activation operand is unsigned, or with ``signed_acts`` a signed ``act_bits + 1``
    operand (the lane sign-extended when the layer reads a signed tensor, zero-extended
    otherwise).

    Members
    -------
    a : In(unsigned(act_bits)) or In(signed(act_bits + 1))
    w : In(signed(weight_bits))
    p : Out(signed(act_bits + weight_bits + 1)) — ``a * w``, ``latency`` cycles later.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        a_shape = signed(cfg.a_operand_bits) if cfg.signed_acts else unsigned(cfg.act_bits)
        super().__init__({
            "a": In(a_shape),
            "w": In(unsigned(1) if cfg.bipolar_weights else signed(cfg.weight_bits)),
            "p": Out(signed(cfg.a_operand_bits + cfg.weight_bits + 1)),
        })

    @property
    def latency(self):
        return self._cfg.mult_latency

    def elaborate(self, platform):
        m = Module()
        if self._cfg.bipolar_weights:
            # a 1-bit lane is bipolar: the bit c stands for 2c - 1, so the product is a select
            # between the activation and its negation, and no multiplier at all
            m.d.sync += self.p.eq(Mux(self.w, self.a, -self.a))
        elif self._cfg.lut_multipliers:
            # a * w as the sum of w << i over the set bits of a: Yosys sees adders (LUTs and
            # carry chains) instead of a $mul it would spend a DSP block on.
            terms = [Mux(self.a[i], self.w << i, 0) for i in range(len(self.a))]
            if self._cfg.signed_acts:  # two's complement: the top bit weighs -2**b
                top = len(self.a) - 1
                terms[top] = Mux(self.a[top], -(self.w << top), 0)
            m.d.sync += self.p.eq(sum(terms[1:], terms[0]))
        else:
            # a DSP block's product registered twice: the first register's only neighbours
            # are the block and the second, so the placer puts it near the block (DSP rows
            # are fixed; the product register beside the adder tree was ~3 ns away)
            near = Signal.like(self.p)
            m.d.sync += [near.eq(self.a * self.w), self.p.eq(near)]
        return m


def _tree_levels(values, levels):
    """``levels`` levels of a balanced adder tree (all of it: ``None``), exact: Amaranth
    widens each add."""
    while len(values) > 1 and (levels is None or levels > 0):
        pairs = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        values = pairs + ([values[-1]] if len(values) % 2 else [])
        levels = None if levels is None else levels - 1
    return values


class PE(wiring.Component):
    """One output lane: ``sum_l (a_l * w_l) << digit_shift(l)`` accumulated. Latency 4.

    Stage 1 registers the products, stage 2 the shifted products' partial sums (half the
    tree's levels), stage 3 the lane sum, stage 4 the accumulator.
    When ``digits > 1`` lane ``l`` carries digit ``l % digits`` of a wide network input and
    its product is shifted left by ``act_bits * (l % digits)`` (README: wide inputs).

    Members
    -------
    a : In(act_layout) — activation word (broadcast to every PE).
    w : In(weight_row_layout) — this PE's weights.
    en, first, last : In(1) — operands valid; first/last step of the output pixel.
    signed : In(1) — the lanes hold a signed tensor (with ``signed_acts``; layer constant).
    e : In(wdigit_bits) — weight digit of this step (a layer wider than the weight lanes).
    digits : In(digit_bits) — digits per input channel (layer constant, 1..digits_max).
    acc : Out(signed(acc_bits)) — the accumulator; final when ``valid``.
    valid : Out(1) — one cycle after the last step's sum was added.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "a": In(act_layout(cfg)),
            "w": In(weight_row_layout(cfg)),
            "en": In(1), "first": In(1), "last": In(1), "signed": In(1),
            "e": In(cfg.wdigit_bits),
            "digits": In(cfg.digit_bits),
            "acc": Out(signed(cfg.acc_bits)),
            "valid": Out(1),
        })

    @property
    def latency(self):
        return self._cfg.pe_latency

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        products = []
        for lane in range(cfg.cols):
            mul = m.submodules[f"mul{lane}"] = Multiplier(cfg)
            a = self.a[lane]
            if cfg.signed_acts:
                # Sign-extend the lane when the layer reads a signed tensor: for a wide input
                # only its top digit is signed (lane % digits == digits - 1).
                top = Signal(name=f"top{lane}")
                with m.Switch(self.digits):
                    for d in range(2, cfg.digits_max + 1):
                        with m.Case(d):
                            m.d.comb += top.eq(lane % d == d - 1)
                    with m.Default():
                        m.d.comb += top.eq(1)
                a = Cat(a, self.signed & top & a[-1]).as_signed()
            m.d.comb += [mul.a.eq(a), mul.w.eq(self.w[lane])]
            products.append(mul.p)
        # the step control alongside the products and the partial sums
        ctrl1, e1 = Cat(self.en, self.first, self.last), self.e
        for n in range(cfg.mult_latency + 1):
            c, e = Signal(3, name=f"ctrl_m{n}"), Signal.like(self.e, name=f"e_m{n}")
            m.d.sync += [c.eq(ctrl1), e.eq(e1)]
            ctrl1, e1 = c, e
        shifted = []
        for lane, p in enumerate(products):
            s = Signal(signed(cfg.product_bits), name=f"shifted{lane}")
            if cfg.digits_max == 1:
                m.d.comb += s.eq(p)
            else:
                with m.Switch(self.digits):
                    for d in range(2, cfg.digits_max + 1):
                        with m.Case(d):
                            m.d.comb += s.eq(p << (cfg.act_bits * (lane % d)))
                    # digits == 1 (and 0, never emitted: the compiler writes 1..digits_max)
                    with m.Default():
                        m.d.comb += s.eq(p)
            shifted.append(s)
        # Stage 2: the digit shifts and the first half of the tree's levels, registered (the
        # shift mux and the whole tree in one cycle were the ECP5's longest path at W4A4,
        # 19 levels); stage 3 the rest of the tree and the weight digit's shift.
        half = (len(shifted) - 1).bit_length() // 2 + (len(shifted) - 1).bit_length() % 2
        partial = []
        for k, v in enumerate(_tree_levels(shifted, half)):
            r = Signal(signed(cfg.acc_bits), name=f"partial{k}")
            m.d.sync += r.eq(v)
            partial.append(r)
        total = Signal(signed(cfg.acc_bits))
        ctrl2 = Signal(3)
        (tree,) = _tree_levels(partial, None)
        if cfg.weight_digits_max == 1:
            m.d.sync += total.eq(tree)
        else:  # weight digit e of a wide layer weighs 2**(weight_bits * e)
            with m.Switch(e1):
                for n in range(cfg.weight_digits_max):
                    with m.Case(n):
                        m.d.sync += total.eq(tree << (cfg.weight_bits * n))
                with m.Default():  # never issued: the compiler writes e < weight_digits_max
                    m.d.sync += total.eq(tree)
        m.d.sync += ctrl2.eq(ctrl1)
        en2, first2, last2 = ctrl2[0], ctrl2[1], ctrl2[2]
        with m.If(en2):
            m.d.sync += self.acc.eq(Mux(first2, 0, self.acc) + total)
        m.d.sync += self.valid.eq(en2 & last2)
        return m
