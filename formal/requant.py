"""Proof 1: the requantizer's output equals the contract, ``quantflow.numerics.requantize``, for
every accumulator, multiplier, shift and clamp bounds the configuration allows (k-induction).

The harness feeds a real :class:`hwgen.requant.Requantizer` a free element every cycle
(``AnySeq``: any ``acc`` of ``acc_bits``, any unsigned ``mult_bits`` multiplier, any shift in
``0..shift_max``, any valid pattern) and layer constants ``lo <= hi`` anywhere in the output
format (unsigned, or signed too with ``signed_acts``; ``AnyConst``). :func:`contract` is the
contract's formula written as an Amaranth expression, independently of the gateware (the
rounding term as a comparison with zero, the product and the floor shift in a register wide
enough for any operands); the tests evaluate it against ``numerics.requantize`` on random and
extreme values, so the property cannot drift from the contract. The expected value goes
through a delay line of the requantizer's ``latency`` and is asserted equal to the output, and
the output's valid equals the delayed input valid.
"""

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import (Assert, Assume, Const, Elaboratable, Module, Mux, ResetSignal, Signal,
                          signed, unsigned)

from hwgen.requant import Requantizer

__all__ = ["RequantProof", "contract", "contract_width"]


def contract_width(cfg):
    """Signed width that holds ``acc * M + round_term(s)`` for any operands of ``cfg``."""
    return cfg.acc_bits + cfg.mult_bits + 2


def contract(m, cfg, acc, mult, shift, lo, hi):
    """``clamp((acc * M + round_term(s)) >> s, lo, hi)`` with ``round_term(s) = 2**(s-1)`` for
    ``s > 0`` and 0 for ``s == 0``, ``>>`` floor (numerics.requantize), as a signal of ``m``."""
    width = contract_width(cfg)
    term = Signal(signed(width))
    m.d.comb += term.eq(Mux(shift == 0, 0, Const(1, width) << (shift - 1)[:len(shift)]))
    product = Signal(signed(width))
    m.d.comb += product.eq(acc * mult + term)
    floor = Signal(signed(width))
    m.d.comb += floor.eq(product >> shift)  # arithmetic shift of a signed value: floor
    out = Signal(signed(cfg.clamp_bits))
    m.d.comb += out.eq(Mux(floor < lo, lo, Mux(floor > hi, hi, floor)))
    return out


class RequantProof(Elaboratable):
    """A :class:`~hwgen.requant.Requantizer` against :func:`contract` (module docstring).

    Parameters
    ----------
    cfg : AccelConfig
    """

    def __init__(self, cfg):
        self.cfg = cfg

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        dut = m.submodules.dut = Requantizer(cfg)
        b = cfg.wide_act_bits
        acc, mult = Signal(signed(cfg.acc_bits)), Signal(unsigned(cfg.mult_bits))
        shift, valid = Signal(unsigned(cfg.shift_bits)), Signal()
        lo, hi = Signal(signed(cfg.clamp_bits)), Signal(signed(cfg.clamp_bits))
        out_signed = Signal()  # the layer's output format (a layer constant)
        m.d.comb += [
            acc.eq(AnySeq(cfg.acc_bits)), mult.eq(AnySeq(cfg.mult_bits)),
            shift.eq(AnySeq(cfg.shift_bits)), valid.eq(AnySeq(1)),
            lo.eq(AnyConst(cfg.clamp_bits)), hi.eq(AnyConst(cfg.clamp_bits)),
            out_signed.eq(AnyConst(1) if cfg.signed_acts else 0),
        ]
        fmt_min = Mux(out_signed, -(1 << (b - 1)), 0)
        fmt_max = Mux(out_signed, (1 << (b - 1)) - 1, (1 << b) - 1)
        m.d.comb += [
            Assume(shift <= cfg.shift_max),  # the compiler encodes larger shifts as M = 0
            Assume((fmt_min <= lo) & (lo <= hi) & (hi <= fmt_max)),
            Assume(~ResetSignal()),
        ]
        p = dut.i.payload
        m.d.comb += [dut.i.valid.eq(valid), p.acc.eq(acc), p.mult.eq(mult), p.shift.eq(shift),
                     p.second.eq(0), dut.pair.eq(0), dut.lo.eq(lo), dut.hi.eq(hi)]

        expected, exp_valid = contract(m, cfg, acc, mult, shift, lo, hi), valid
        for n in range(dut.latency):
            nxt, nxt_valid = Signal.like(expected, name=f"expected{n + 1}"), Signal()
            m.d.sync += [nxt.eq(expected), nxt_valid.eq(exp_valid)]
            expected, exp_valid = nxt, nxt_valid
        got = dut.o.payload
        m.d.comb += Assert(dut.o.valid == exp_valid)
        with m.If(exp_valid):
            m.d.comb += Assert(Mux(out_signed, got.as_signed() == expected, got == expected))
        return m
