"""Single blocks on Verilator and Icarus against the numerics contract, every output compared.

- Requantizer: every shift the configuration allows (0..shift_max), with the extremes of the
  multiplier (0, 1, 2**m - 1) and of the accumulator (format min and max, 0, -1, 1), clamp
  bounds hit at both ends, plus random vectors.
- MAC array: random operands with the format extremes (weights -2**(b-1) and 2**(b-1) - 1,
  activations 0 and 2**b - 1), groups of 1..9 steps (K = 1 included), wide-input digits.
"""

import numpy as np
import pytest
from amaranth.back import verilog

from hwgen.config import AccelConfig
from quantflow.numerics import requantize
from rtl_tests import runner
from rtl_tests.harness import ArrayHarness, RequantHarness

CONFIGS = [(4, 4), (2, 8), (8, 2)]


def _build(harness, name, sim, tmp_path):
    src = tmp_path / f"{name}.v"
    src.write_text(verilog.convert(harness, name=name, emit_src=False))
    return runner.build(src, name, sim)


def _drive(harness, name, sim, tmp_path, vectors, outputs, seed):
    r, build_dir = _build(harness, name, sim, tmp_path)
    path = tmp_path / "vectors.npz"
    np.savez(path, **{k: np.array([str(int(v)) for v in vals]) for k, vals in vectors.items()})
    passed, failed, result = runner.run(
        r, build_dir, name, "rtl_tests.tb.tb_blocks", seed=seed,
        env={"HWGEN_VECTORS": path, "HWGEN_OUTPUTS": outputs,
             "HWGEN_DRAIN": harness.latency + 4})
    assert failed == 0 and passed == 1, f"seed {seed}: testbench failed"
    return {k: [int(v) for v in vals] for k, vals in result["recorded"].items()}


def _signed(v, bits):
    return v - (1 << bits) if v >> (bits - 1) else v


def _requant_vectors(cfg, rng):
    amin, amax = -(1 << (cfg.acc_bits - 1)), (1 << (cfg.acc_bits - 1)) - 1
    mmax = (1 << cfg.mult_bits) - 1
    # lo/hi are layer constants (not pipelined): one pair per run, inside the format so that
    # both clamp ends are hit (results below lo and above hi both occur).
    lo, hi = 1, (1 << cfg.act_bits) - 2
    rows = []
    for s in range(cfg.shift_max + 1):
        for acc in (amin, amax, 0, -1, 1, int(rng.integers(amin, amax + 1))):
            for m in (0, 1, mmax, int(rng.integers(0, mmax + 1))):
                rows.append((acc, m, s, lo, hi))
    return np.array(rows, dtype=object)


@pytest.mark.parametrize("wbits,abits", CONFIGS)
def test_requantizer(sim, wbits, abits, seed, tmp_path):
    cfg = AccelConfig(weight_bits=wbits, act_bits=abits)
    rng = np.random.default_rng(seed)
    rows = _requant_vectors(cfg, rng)
    acc, mult, shift, lo, hi = (rows[:, i] for i in range(5))
    vectors = {"acc": [a & ((1 << cfg.acc_bits) - 1) for a in acc], "mult": mult,
               "shift": shift, "lo": lo, "hi": hi, "valid": [1] * len(rows)}
    got = _drive(RequantHarness(cfg), "rq_harness", sim, tmp_path, vectors, "y:y_valid",
                 seed)["y"]
    want = [int(requantize(np.int64(a), m, s, lo_, hi_))
            for a, m, s, lo_, hi_ in rows.tolist()]
    assert len(got) == len(want), f"seed {seed}: {len(got)} outputs for {len(want)} inputs"
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert not bad, (f"seed {seed}, W{wbits}A{abits}: {len(bad)} mismatches; first: input "
                     f"{rows[bad[0]].tolist()} expected {want[bad[0]]} got {got[bad[0]]}")
    assert {int(s) for s in shift} == set(range(cfg.shift_max + 1))  # every allowed shift
    assert {1, (1 << abits) - 2} <= set(got)  # both clamp ends were hit


def _pack(values, bits):
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    return word


@pytest.mark.parametrize("wbits,abits", CONFIGS)
def test_mac_array(sim, wbits, abits, seed, tmp_path):
    cfg = AccelConfig(weight_bits=wbits, act_bits=abits, rows=4, cols=4)
    rng = np.random.default_rng(seed)
    wlo, whi = -(1 << (wbits - 1)), (1 << (wbits - 1)) - 1
    ahi = (1 << abits) - 1
    vec = {k: [] for k in ("act", "weight", "first", "last", "valid", "digits")}
    want = []
    # ``digits`` is a layer constant (not pipelined): one segment of groups per value, with
    # the pipeline drained (valid low) before it changes.
    segments = [(1, 16), (cfg.digits_max, 8)]
    for seg, (digits, groups) in enumerate(segments):
        for group in range(groups):
            steps = 1 if group == 0 else int(rng.integers(1, 10))
            acc = np.zeros(cfg.rows, dtype=object)
            for step in range(steps):
                a = rng.integers(0, ahi + 1, size=cfg.cols)
                w = rng.integers(wlo, whi + 1, size=(cfg.rows, cfg.cols))
                if group == 1:  # the extremes: largest magnitude products of both signs
                    a[:] = ahi
                    w[:] = wlo if step % 2 else whi
                shift = np.array([abits * (lane % digits) for lane in range(cfg.cols)])
                acc += (w.astype(object) * (a.astype(object) << shift)).sum(axis=1)
                for k, v in (("act", _pack(a, abits)), ("weight", _pack(w.reshape(-1), wbits)),
                             ("first", int(step == 0)), ("last", int(step == steps - 1)),
                             ("valid", 1), ("digits", digits)):
                    vec[k].append(v)
            want.append([int(v) for v in acc])
        if seg + 1 < len(segments):
            for _ in range(cfg.mac_latency + 1):
                for k in vec:
                    vec[k].append(digits if k == "digits" else 0)
    got = _drive(ArrayHarness(cfg), "array_harness", sim, tmp_path, vec, "acc:acc_valid",
                 seed)["acc"]
    got = [[_signed((g >> (r * cfg.acc_bits)) & ((1 << cfg.acc_bits) - 1), cfg.acc_bits)
            for r in range(cfg.rows)] for g in got]
    assert len(got) == len(want), f"seed {seed}: {len(got)} results for {len(want)} groups"
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert not bad, (f"seed {seed}, W{wbits}A{abits}: group {bad[0]} expected {want[bad[0]]}"
                     f" got {got[bad[0]]}")
