"""MAC array (and PE) against numpy: random operands with the format extremes, wide-input digits."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hwgen.array import MACArray
from hwgen.config import AccelConfig


def _simulate(cfg, pixels, digits):
    """pixels: list of (acts (S, cols), weights (S, rows, cols)); returns (vectors, cycles)."""
    dut = MACArray(cfg)
    got = []

    async def bench(ctx):
        ctx.set(dut.digits, digits)
        cycle, issue = 0, []
        for acts, wts in pixels:
            for s in range(len(acts)):
                issue.append((acts[s], wts[s], s == 0, s == len(acts) - 1))
        for n in range(len(issue) + dut.latency + 1):
            if n < len(issue):
                a, w, first, last = issue[n]
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, {"act": [int(v) for v in a],
                                        "weight": [[int(v) for v in row] for row in w],
                                        "first": first, "last": last})
            else:
                ctx.set(dut.i.valid, 0)
            _, _, valid, vec = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                got.append(([int(v) for v in vec], cycle))
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, dut.latency


@pytest.mark.parametrize("luts", [True, False])
@pytest.mark.parametrize("wbits,abits,inbits,rows,cols", [
    (2, 2, 2, 1, 1), (2, 2, 8, 3, 4), (3, 3, 8, 2, 3), (4, 4, 8, 4, 4), (8, 8, 8, 2, 5),
    (5, 7, 7, 1, 6)])
def test_array_random(wbits, abits, inbits, rows, cols, luts):
    seed = wbits * 10000 + abits * 1000 + rows * 10 + cols
    rng = np.random.default_rng(seed)
    cfg = AccelConfig(weight_bits=wbits, act_bits=abits, input_bits=inbits, rows=rows, cols=cols,
                      max_reduction=64, lut_multipliers=luts)
    wmin, wmax = -(1 << (wbits - 1)), (1 << (wbits - 1)) - 1
    amax = (1 << abits) - 1
    for digits in sorted({1, cfg.digits_max}):
        pixels = []
        for n in range(4):
            steps = int(rng.integers(1, 6))
            acts = rng.integers(0, amax + 1, size=(steps, cols))
            wts = rng.integers(wmin, wmax + 1, size=(steps, rows, cols))
            if n == 0:  # extremes: the most negative and most positive products
                acts[:] = amax
                wts[:] = wmin
            if n == 1:
                acts[:] = amax
                wts[:] = wmax
            pixels.append((acts, wts))
        got, latency = _simulate(cfg, pixels, digits)
        assert latency == cfg.mac_latency
        shift = abits * (np.arange(cols) % digits)
        want = [np.einsum("sc,src->r", a << shift, w) for a, w in pixels]
        assert len(got) == len(want), f"seed {seed}: {len(got)} vectors for {len(want)} pixels"
        issued = 0
        for (vec, cycle), expect, (a, _) in zip(got, want, pixels, strict=True):
            issued += len(a)
            assert cycle == issued - 1 + latency, f"seed {seed}: latency"
            assert vec == expect.tolist(), f"seed {seed} digits {digits}: {vec} != {expect}"
