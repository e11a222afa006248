"""Pool unit (lane-wise max / window sum) and drain (serialization, bias, write) in isolation."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hwgen.config import AccelConfig
from hwgen.drain import Drain
from hwgen.pool import PoolUnit


@pytest.mark.parametrize("abits,cols", [(2, 4), (4, 3), (8, 1)])
@pytest.mark.parametrize("use_sum", [0, 1])
def test_pool_unit(abits, cols, use_sum):
    seed = abits * 100 + cols * 10 + use_sum
    rng = np.random.default_rng(seed)
    cfg = AccelConfig(act_bits=abits, input_bits=abits, rows=1, cols=cols)
    windows = [rng.integers(0, 1 << abits, size=(int(rng.integers(1, 10)), cols))
               for _ in range(5)]
    windows[0][:] = (1 << abits) - 1  # extremes: all max, all zero
    windows[1][:] = 0
    dut = PoolUnit(cfg)
    got = []

    async def bench(ctx):
        ctx.set(dut.sum, use_sum)
        issue = [(w[s], s == 0, s == len(w) - 1) for w in windows for s in range(len(w))]
        for n in range(len(issue) + dut.latency):
            if n < len(issue):
                a, first, last = issue[n]
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload.act, [int(v) for v in a])
                ctx.set(dut.i.payload.first, first)
                ctx.set(dut.i.payload.last, last)
            else:
                ctx.set(dut.i.valid, 0)
            _, _, valid, vec = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                got.append([int(v) for v in vec])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    want = [(w.sum(axis=0) if use_sum else w.max(axis=0)).tolist() for w in windows]
    assert got == want, f"seed {seed}"


def test_drain_order_bias_and_latency():
    """Elements leave one per cycle; each is written ``drain_latency`` cycles after it left."""
    cfg = AccelConfig(weight_bits=4, act_bits=4, input_bits=4, rows=4, cols=3)
    dut = Drain(cfg)
    vec = [-7, 100, -(1 << (cfg.acc_bits - 2)), 5]
    bias = {0: 1, 1: -2, 2: 3, 3: -4}
    writes = []

    async def bench(ctx):
        ctx.set(dut.bias_en, 1)
        ctx.set(dut.to_acc, 1)
        ctx.set(dut.p_base, 0)
        ctx.set(dut.i.payload.acc, vec)
        ctx.set(dut.i.payload.meta, {"n": 4, "ch": 0, "word": 0, "lane": 0, "acc_addr": 7})
        ctx.set(dut.i.valid, 1)
        for cycle in range(cfg.drain_latency + 6):
            if cycle == 1:
                ctx.set(dut.i.valid, 0)
            p_addr = ctx.get(dut.p_addr)
            _, _, en, addr, data = await ctx.tick().sample(dut.acc_en, dut.acc_addr,
                                                           dut.acc_data)
            ctx.set(dut.bias, bias.get(p_addr, 0))  # parameter memory: data one cycle later
            if en:
                writes.append((cycle, int(addr), int(data)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert [(a, d) for _, a, d in writes] == [(7 + i, v + bias[i]) for i, v in enumerate(vec)]
    assert [c for c, _, _ in writes] == [cfg.drain_latency - 1 + i for i in range(4)]
