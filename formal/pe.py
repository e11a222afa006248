"""Proof 2: a PE's accumulator never overflows over a whole reduction of ``max_reduction``
products, for any weights and activations in their formats (k-induction).

The harness drives a real :class:`hwgen.mac.PE` with free operands every cycle (``AnySeq``:
any lane values, any weights, any ``en``/``first``/``last`` pattern) and keeps a shadow of the
exact sum, computed independently of the gateware: per input channel ``w * x`` with ``x`` the
lane's value in its format (or, for the wide network input, the channel's digits put back
together, ``x = sum_j digit_j << (act_bits * j)``), in a register wide enough never to wrap.
It asserts every cycle:

- the reduction holds at most ``K = max_reduction`` products (the compiler's limit, assumed of
  the inputs), tracked as ``bound = products * P <= K * P`` with ``P`` the largest ``|w * x|``
  of the formats, and each step's sum is within its products times ``P``;
- ``|sum| <= bound`` (the strengthening invariant that makes the induction step go through for
  any ``K``), and the PE adds exactly each step's sum modulo its width (a one-step lemma);
- the PE's ``acc`` equals the exact sum (no bit lost in the adder tree or the accumulator);
- ``acc + bias`` at the drain's register shape (``layouts.acc_shape``, the width ``cfg.acc_bits``)
  equals the exact ``sum + bias`` for any bias within the contract's bound (the bias is clamped
  to the product bound of ``K`` products): the accumulator's last bit is the bias's margin.

Zero-weight lanes (channels a layer does not use, weights between groups) count no product,
so a reduction may span any number of array steps as long as its non-zero products are at most
``K``; a channel of the wide input occupies ``digits`` lanes with one weight and counts one.
"""

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Elaboratable, Module, Mux, ResetSignal, Signal, signed

from hwgen.layouts import acc_shape, act_layout, weight_row_layout
from hwgen.mac import PE
from quantflow.numerics import QFormat, product_bound

__all__ = ["PEProof", "product_max", "lane_formats"]


def lane_formats(cfg):
    """Formats an activation operand of a PE may carry: the lanes' (unsigned, or signed too
    with ``signed_acts``) and, when the network input is wider than a lane, the input's."""
    fmts = [QFormat(cfg.act_bits, False)] + ([QFormat(cfg.act_bits, True)]
                                              if cfg.signed_acts else [])
    if cfg.digits_max > 1:
        fmts += [QFormat(cfg.input_bits, False)] + ([QFormat(cfg.input_bits, True)]
                                                    if cfg.signed_acts else [])
    return fmts


def product_max(cfg):
    """``P``: the largest ``|w * x|`` of one product, from the formats (not from ``acc_bits``)."""
    return max(product_bound(cfg.w_fmt, fmt, 1) for fmt in lane_formats(cfg))


class PEProof(Elaboratable):
    """One :class:`~hwgen.mac.PE` against an exact shadow sum (see the module docstring).

    Parameters
    ----------
    cfg : AccelConfig
        The configuration the property is written for (formats, ``max_reduction``).
    dut_cfg : AccelConfig or None
        The configuration the PE is built with (a broken variant's); ``cfg`` when None.
    """

    def __init__(self, cfg, dut_cfg=None):
        if cfg.weight_digits_max != 1:
            raise ValueError(f"PE proof configuration must have one weight digit (layer weight"
                             f" bits at most the lanes'), not {cfg.weight_digits_max!r}")
        self.cfg = cfg
        self.dut_cfg = dut_cfg or cfg

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        dut = m.submodules.dut = PE(self.dut_cfg)
        k_max, p_max = cfg.max_reduction, product_max(cfg)
        width = (2 * k_max * p_max).bit_length() + 2  # the shadow can never wrap
        a = Signal(act_layout(cfg))
        w = Signal(weight_row_layout(cfg))
        en, first, last = Signal(), Signal(), Signal()
        digits = Signal(cfg.digit_bits)
        sgn = Signal()
        m.d.comb += [
            a.eq(AnySeq(cfg.cols * cfg.act_bits)), w.eq(AnySeq(cfg.cols * cfg.weight_bits)),
            en.eq(AnySeq(1)), first.eq(AnySeq(1)), last.eq(AnySeq(1)),
            digits.eq(AnyConst(cfg.digit_bits)),  # layer constants
            sgn.eq(AnyConst(1) if cfg.signed_acts else 0),
            Assume((digits == 1) | (digits == cfg.digits_max)),
            Assume(~ResetSignal()),
        ]
        m.d.comb += [dut.a.eq(a), dut.w.eq(w), dut.en.eq(en), dut.first.eq(first),
                     dut.last.eq(last), dut.digits.eq(digits), dut.signed.eq(sgn), dut.e.eq(0)]

        # The step's exact sum and product count, for each digit count a layer may use.
        step, count = Signal(signed(width)), Signal(range(cfg.cols + 1))
        with m.Switch(digits):
            for d in sorted({1, cfg.digits_max}):
                with m.Case(d):
                    s, c = self._step(m, a, w, sgn, d)
                    m.d.comb += [step.eq(s), count.eq(c)]

        # The bound of this step, ``count * P``: it is what the reduction's bound grows by,
        # and asserting it here (a lemma about one step) lets the induction use it.
        reach = Signal(range(cfg.cols * p_max + 1))
        m.d.comb += [reach.eq(count * p_max), Assert(abs(step) <= reach)]

        # Aligned with the PE: products registered, lane sum registered, then accumulated.
        pipe = [(step, reach, en, first)]
        for n in range(dut.latency - 1):
            regs = tuple(Signal.like(v, name=f"{name}{n + 1}")
                         for v, name in zip(pipe[-1], ("step", "reach", "en", "first"),
                                            strict=True))
            m.d.sync += [r.eq(v) for r, v in zip(regs, pipe[-1], strict=True)]
            pipe.append(regs)
        step2, reach2, en2, first2 = pipe[-1]
        # ``total`` is the exact sum so far and ``bound = products so far * P``; "at most K
        # products" is ``bound <= K * P`` (P > 0), which keeps the property free of a
        # symbolic multiplication (hard for a bit-level solver).
        total, bound = Signal(signed(width)), Signal(range((k_max + cfg.cols) * p_max + 1))
        bound_next = Mux(first2, 0, bound) + reach2
        with m.If(en2):
            m.d.comb += Assume(bound_next <= k_max * p_max)  # the compiler's limit, K
            m.d.sync += [total.eq(Mux(first2, 0, total) + step2), bound.eq(bound_next)]

        # Lemma: in each cycle the PE adds exactly this step's sum (modulo its width), or holds.
        # It splits "acc equals the sum of all steps" into one step at a time: without it the
        # solver must prove several adder trees equal to the products at once.
        acc_prev, step3, en3, first3 = (Signal.like(v, name=f"{v.name}_p")
                                        for v in (dut.acc, step2, en2, first2))
        m.d.sync += [acc_prev.eq(dut.acc), step3.eq(step2), en3.eq(en2), first3.eq(first2)]
        added = Signal.like(dut.acc)
        m.d.comb += added.eq(Mux(first3, 0, acc_prev) + step3)
        past = Signal(reset_less=True)  # acc_prev holds a real cycle (not the first one)
        m.d.sync += past.eq(1)
        with m.If(past):
            m.d.comb += Assert(dut.acc == Mux(en3, added, acc_prev))

        bias = Signal(signed(width))
        m.d.comb += [bias.eq(AnyConst(width)),
                     Assume(abs(bias) <= k_max * p_max)]  # clamped to the product bound
        # The drain's bias add, at the shape the hardware gives it (acc_shape(cfg)).
        hw_bias, hw_sum = Signal(acc_shape(self.dut_cfg)), Signal(acc_shape(self.dut_cfg))
        m.d.comb += [hw_bias.eq(bias), hw_sum.eq(dut.acc + hw_bias)]
        m.d.comb += [
            Assert(abs(step2) <= reach2),
            Assert(bound <= k_max * p_max),
            Assert(abs(total) <= bound),
            Assert(dut.acc == total),
            Assert(hw_sum == total + bias),
        ]
        return m

    def _step(self, m, a, w, sgn, d):
        """Exact sum and count of one step with ``d`` digits per channel: channel ``g`` is
        lanes ``g*d .. g*d + d - 1`` (its digits, low first; the top one signed when the tensor
        is), all with the channel's weight; lanes past the last whole channel hold no weight."""
        cfg = self.cfg
        terms, counts = [], []
        groups = cfg.cols // d
        for g in range(groups):
            lanes = range(g * d, g * d + d)
            x = 0
            for j, lane in enumerate(lanes):
                raw = a[lane]
                value = Mux(sgn, raw.as_signed(), raw) if j == d - 1 else raw
                x = x + (value << (cfg.act_bits * j))
            xs = Signal(signed(cfg.act_bits * d + 1), name=f"x{d}_{g}")
            m.d.comb += xs.eq(x)
            wg = w[g * d]
            for lane in lanes[1:]:
                m.d.comb += Assume(w[lane] == wg)  # one weight per channel
            if d > 1:  # the wide input's value lies in its format
                fmt_lo = Mux(sgn, -(1 << (cfg.input_bits - 1)), 0)
                fmt_hi = Mux(sgn, (1 << (cfg.input_bits - 1)) - 1, (1 << cfg.input_bits) - 1)
                m.d.comb += Assume((xs >= fmt_lo) & (xs <= fmt_hi))
            terms.append(wg * xs)
            counts.append((wg != 0).as_unsigned())
        for lane in range(groups * d, cfg.cols):
            m.d.comb += Assume(w[lane] == 0)
        return sum(terms[1:], terms[0]), sum(counts[1:], counts[0])

