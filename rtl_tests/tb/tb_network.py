"""cocotb: a whole QuantizedModel through the generated overlay, every layer compared.

Runs inside the simulator. Parameters come from the environment (set by
:func:`hwgen.simulate.simulate`): ``HWGEN_DESIGN`` (folder with manifest.json),
``HWGEN_QMODEL`` (QuantizedModel folder), ``HWGEN_INPUTS`` (.npz with the integer inputs ``x``
and labels ``y``, prepared by the host side: loading scikit-learn inside the simulator's
embedded Python takes seconds), ``HWGEN_SEED``, ``HWGEN_IDLE`` / ``HWGEN_BACKPRESSURE`` (stall
probabilities in percent). The same :class:`hwgen.host.Driver`
that runs Amaranth simulation and boards talks to the design through :class:`CocotbLink`.
The report (mismatches, cycles) goes back as JSON through ``HWGEN_RESULT``.
"""

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.utils import get_sim_time

from hwgen.config import AccelConfig
from hwgen.host import Driver, Link
from quantflow import reference
from quantflow.program import compile_program
from quantflow.serialize import load
from rtl_tests.tb.common import TB, StreamSink, StreamSource, env_int, random_stall, write_result

#: Mismatches listed in the report (the count covers all of them).
MAX_LISTED = 20


class CocotbLink(Link):
    """A :class:`hwgen.host.Link` over the Top's ``i``/``o`` streams in cocotb."""

    def __init__(self, dut, clk, idle=None, backpressure=None):
        self.source = StreamSource(dut, "i", clk, idle)
        self.sink = StreamSink(dut, "o", clk, backpressure)

    async def send(self, words):
        await self.source.send(words)

    async def recv(self, count):
        return await self.sink.recv(count, timeout_cycles=1 << 22)


def _stall(percent, seed):
    return random_stall(seed, percent / 100) if percent else None


def _images():
    with np.load(os.environ["HWGEN_INPUTS"], allow_pickle=False) as f:
        return f["x"].astype(np.int64), f["y"].astype(np.int64)


def _compare(model, xs, results):
    ref = reference.run(model, xs)
    mismatches, count = [], 0
    for n, res in enumerate(results):
        for li, got in enumerate(res.outputs):
            want = ref[li][n]
            bad = np.argwhere(got != want) if got.shape == want.shape else [None]
            count += len(bad)
            for idx in bad[:max(0, MAX_LISTED - len(mismatches))]:
                if idx is None:
                    entry = {"index": "shape", "expected": list(want.shape),
                             "got": list(got.shape)}
                else:
                    idx = tuple(int(v) for v in idx)
                    entry = {"index": list(idx), "expected": int(want[idx]),
                             "got": int(got[idx])}
                mismatches.append({"image": n, "layer": li, "name": model.layers[li].name}
                                  | entry)
    return count, mismatches, ref


@cocotb.test()
async def network(dut):
    design = Path(os.environ["HWGEN_DESIGN"])
    manifest = json.loads((design / "manifest.json").read_text())
    cfg = AccelConfig(**manifest["config"])
    model = load(os.environ["HWGEN_QMODEL"])
    program = compile_program(model, cfg)
    seed = env_int("HWGEN_SEED", 0)
    xs, ys = _images()

    tb = TB(dut)
    link = CocotbLink(dut, tb.clk, _stall(env_int("HWGEN_IDLE", 0), seed),
                      _stall(env_int("HWGEN_BACKPRESSURE", 0), seed + 1))
    driver = Driver(cfg, link)
    await tb.reset()
    t0, c0 = time.perf_counter(), get_sim_time("ns")
    await driver.load(program)
    results = [await driver.infer(program, x, every_layer=True) for x in xs]
    wall = time.perf_counter() - t0
    sim_cycles = int((get_sim_time("ns") - c0) // TB.CLOCK_NS)

    # HWGEN_REFERENCE: compare against another model's reference (tests that prove a
    # difference is caught and reported).
    ref_dir = os.environ.get("HWGEN_REFERENCE")
    count, mismatches, ref = _compare(load(ref_dir) if ref_dir else model, xs, results)
    scale = np.asarray(model.output_scale, dtype=np.float64).reshape(1, -1)
    pred = np.argmax(ref[-1] * scale, axis=1)
    cycles = np.array([r.layer_cycles for r in results], dtype=np.int64)  # (images, descs)
    write_result({
        "images": len(xs), "mismatches": count, "first_mismatches": mismatches,
        "bit_exact": count == 0,
        "accuracy": float(np.mean(pred == ys)) if len(ys) and ys.min() >= 0 else None,
        "layer_cycles": [int(c) for c in np.median(cycles, axis=0)] if len(cycles) else [],
        "cycles_per_inference": int(np.median(cycles.sum(axis=1))) if len(cycles) else 0,
        "analytical_cycles": [int(c) for c in program.cycles],
        "macs": [int(m) for m in program.macs], "array_macs": cfg.array_macs,
        "sim_seconds": wall, "sim_cycles": sim_cycles, "seed": seed,
    })
    assert count == 0, (f"seed {seed}: {count} mismatching elements; first: "
                        f"{mismatches[:3]}")
