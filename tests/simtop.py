"""Run QuantizedModels on the Top in Amaranth's simulator through the host Driver."""

import numpy as np
from amaranth.sim import Simulator

from hwgen.host import AmaranthLink, Driver
from hwgen.top import Top
from quantflow import reference
from quantflow.program import compile_program

__all__ = ["run_top", "first_mismatch"]


def run_top(cfg, model, xs, every_layer=True, vcd=None, idle=0.0, backpressure=0.0,
            seed=0):
    """Compile ``model`` for ``cfg``, load it once, infer each input; list of Inference."""
    program = compile_program(model, cfg)
    top = Top(cfg)
    results = []

    async def bench(ctx):
        link = AmaranthLink(ctx, top, idle, backpressure, np.random.default_rng(seed))
        drv = Driver(cfg, link)
        await drv.load(program)
        for x in xs:
            results.append(await drv.infer(program, x, every_layer=every_layer))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return program, results


def first_mismatch(model, xs, results):
    """(input, layer, index, expected, got) of the first difference, or None."""
    ref = reference.run(model, np.asarray(xs))
    for n, res in enumerate(results):
        for i, got in enumerate(res.outputs):
            if got is None:
                continue
            want = ref[i][n]
            if got.shape != want.shape:
                return (n, i, "shape", want.shape, got.shape)
            bad = np.argwhere(got != want)
            if len(bad):
                idx = tuple(int(v) for v in bad[0])
                return (n, i, idx, int(want[idx]), int(got[idx]))
    return None
