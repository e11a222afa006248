"""Requantizer against quantflow.numerics.requantize: every shift, extremes of M and acc."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hwgen.config import AccelConfig
from hwgen.requant import Requantizer
from quantflow.numerics import requantize


def _run(cfg, cases, lo, hi):
    dut = Requantizer(cfg)
    got = []

    async def bench(ctx):
        ctx.set(dut.lo, lo)
        ctx.set(dut.hi, hi)
        for n in range(len(cases) + dut.latency):
            if n < len(cases):
                acc, mult, shift = cases[n]
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, {"acc": acc, "mult": mult, "shift": shift})
            else:
                ctx.set(dut.i.valid, 0)
            _, _, value, valid = await ctx.tick().sample(dut.o.payload, dut.o.valid)
            if valid:
                got.append(value)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got, dtype=np.int64)


@pytest.mark.parametrize("wbits,abits,mult_bits", [(2, 2, 8), (4, 4, 16), (8, 8, 16), (3, 5, 12)])
def test_requant_every_shift(wbits, abits, mult_bits):
    seed = wbits * 100 + abits * 10 + mult_bits
    rng = np.random.default_rng(seed)
    cfg = AccelConfig(weight_bits=wbits, act_bits=abits, mult_bits=mult_bits, rows=1, cols=4,
                      max_reduction=64)
    amin, amax = -(1 << (cfg.acc_bits - 1)), (1 << (cfg.acc_bits - 1)) - 1
    mmax = (1 << mult_bits) - 1
    cases = []
    for s in range(cfg.shift_max + 1):
        for acc in (amin, amax, 0, -1, 1):
            for mult in (0, 1, mmax):
                cases.append((acc, mult, s))
        for _ in range(4):
            cases.append((int(rng.integers(amin, amax + 1)), int(rng.integers(0, mmax + 1)), s))
    lo, hi = 1, (1 << abits) - 2
    for lo_, hi_ in ((0, (1 << abits) - 1), (lo, hi)):
        got = _run(cfg, cases, lo_, hi_)
        c = np.array(cases, dtype=np.int64)
        want = requantize(c[:, 0], c[:, 1], c[:, 2], lo_, hi_)
        assert len(got) == len(want), f"seed {seed}: {len(got)} results for {len(want)} inputs"
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, (f"seed {seed} {cfg}: first mismatch (acc, M, s)={cases[bad[0]]}"
                               f" expected {want[bad[0]]} got {got[bad[0]]}")
