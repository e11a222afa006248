"""The Python API (hwflow.api): real calls, each result's ``to_dict()`` against the command's
``--json`` for the same arguments, one-line UserErrors, and the README's example run as it
stands (so it cannot go stale)."""

import json
import re
from pathlib import Path

import pytest

import hwflow
from flowkit import needs_verilator
from hwflow import api
from hwflow.cli import main
from quantflow.errors import UserError

README = Path(__file__).resolve().parent.parent / "README.md"

#: The fastest zoo network at W4A4 with plain min-max ranges (no recipe search).
Q_ARGS = ["--model", "digits-mlp", "--wbits", "4", "--abits", "4", "--method", "minmax"]

#: SimulateResult fields that are measured times, different in every run.
TIMES = {"wall_seconds", "build_seconds", "sim_seconds", "play_seconds"}


def _cli_json(capsys, argv, code=0):
    capsys.readouterr()
    assert main(argv) == code
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1, out
    return json.loads(out)


@pytest.fixture(scope="module")
def q4(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "q4"
    return api.quantize("digits-mlp", wbits=4, abits=4, method="minmax", out=out)


def test_hwflow_reexports_the_api():
    for name in ("quantize", "load", "generate", "simulate", "estimate", "synth", "run"):
        assert getattr(hwflow, name) is getattr(api, name)
    assert set(hwflow.__all__) == set(api.__all__)


def test_quantize_equals_the_cli_json(q4, capsys):
    assert isinstance(q4.out, Path) and (q4.out / "model.json").is_file()
    assert (q4.model, q4.wbits, q4.abits, q4.method) == ("digits-mlp", 4, 4, "minmax")
    assert (q4.qmodel.wbits, q4.qmodel.abits) == (4, 4)
    doc = _cli_json(capsys, ["quantize", *Q_ARGS, "--out", str(q4.out), "--json"])
    assert doc == q4.to_dict()
    assert list(doc) == list(q4.to_dict())  # the same order too
    assert "qmodel" not in doc
    with pytest.raises(AttributeError):
        q4.wbits = 8  # frozen
    assert api.load(q4).name == api.load(q4.out).name == "digits-mlp"


def test_generate_equals_the_cli_json(q4, tmp_path, capsys):
    g = api.generate(q4, out=tmp_path / "gen", array="4x4")
    assert isinstance(g.verilog, Path) and g.verilog.is_file() and g.manifest.is_file()
    assert g.out == tmp_path / "gen" and g.array == (4, 4) and g.estimate is None
    assert (g.config.rows, g.config.cols) == (4, 4)
    assert api.generate(q4.out, out=tmp_path / "gen", array=(4, 4)).to_dict() == g.to_dict()
    doc = _cli_json(capsys, ["generate", str(q4.out), "--array", "4x4", "--out",
                             str(tmp_path / "gen"), "--json"])
    assert doc == g.to_dict() and doc["array"] == [4, 4] and "estimate" not in doc


def test_generate_with_drain_lanes(q4, tmp_path, capsys):
    """--drain-lanes builds the generic overlay with that many requantizers: its own
    configuration, and fewer cycles where pixels have fewer steps than rows."""
    one = api.generate(q4, out=tmp_path / "one", array="8x8")
    four = api.generate(q4, out=tmp_path / "four", array="8x8", drain_lanes=4)
    assert four.config.drain_lanes == 4 and one.config.drain_lanes == 1
    assert four.digest != one.digest
    assert four.cycles_per_inference <= one.cycles_per_inference
    doc = _cli_json(capsys, ["generate", str(q4.out), "--out", str(tmp_path / "four"),
                             "--drain-lanes", "4", "--json"])
    assert doc == four.to_dict()


def test_generate_with_a_board_nests_its_estimate(q4, tmp_path, capsys):
    g = api.generate(q4, out=tmp_path / "gen", board="icebreaker")
    assert isinstance(g.estimate, api.EstimateResult) and g.estimate.board == "icebreaker"
    doc = _cli_json(capsys, ["generate", str(q4.out), "--board", "icebreaker", "--out",
                             str(tmp_path / "gen"), "--json"])
    assert doc == g.to_dict() and doc["estimate"] == g.estimate.to_dict()


def test_estimate_equals_the_cli_json(q4, capsys):
    from boards import Board

    e = api.estimate(q4, board="icebreaker")
    assert e == api.estimate(q4.out, board=Board.ICEBREAKER)
    assert isinstance(e.fits, bool) and e.cycles > 0 and e.lut > 0
    doc = _cli_json(capsys, ["estimate", str(q4.out), "--board", "icebreaker", "--json"])
    assert doc == e.to_dict()


@pytest.mark.verilator
def test_simulate_is_bit_exact_and_equals_the_cli_json(q4, tmp_path, capsys):
    needs_verilator()
    seen = []
    s = api.simulate(q4, sim="verilator", images=3, jobs=1, out=tmp_path / "sim.json",
                     progress=lambda text, done=None, total=None: seen.append(text))
    assert s.bit_exact and s.images == 3 and s.mismatches == 0, s.first_mismatches
    assert s.cycles_per_inference > 0 and seen, seen
    assert s.out == tmp_path / "sim.json"
    assert json.loads((tmp_path / "sim.json").read_text()) == s.to_dict()
    out = tmp_path / "cli" / "sim.json"  # a missing folder above the file is created
    doc = _cli_json(capsys, ["simulate", str(q4.out), "--sim", "verilator", "--images", "3",
                             "--jobs", "1", "--json", "--out", str(out)])
    assert json.loads(out.read_text()) == doc

    def untimed(d):
        return {k: v for k, v in d.items() if k not in TIMES}
    assert untimed(doc) == untimed(s.to_dict())
    assert set(doc) == set(s.to_dict())


@pytest.mark.parametrize(("call", "message"), [
    (lambda q: api.quantize("digits-mlp", wbits=9, out="never"),
     r"--wbits must be a bit width in 1\.\.8, not 9"),
    (lambda q: api.quantize("digits-mlp", abits="four", out="never"),
     r"--abits must be a bit width in 1\.\.8, not 'four'"),
    (lambda q: api.quantize("digits-mlp", recipe="best", out="never"),
     r"--recipe must be one of auto, .*, not 'best'"),
    (lambda q: api.quantize("digits-mlp", data_free=True, qat=True, out="never"),
     r"--qat trains on the training data; it cannot follow --data-free"),
    (lambda q: api.generate(q, out="never", array="8y8"),
     r"--array must be ROWSxCOLS or \(rows, cols\) of positive integers, not '8y8'"),
    (lambda q: api.estimate(q, board="nexys"), r"--board must be one of icebreaker, .*"),
    (lambda q: api.simulate(q, sim="vcs"), r"--sim must be one of verilator, icarus, not 'vcs'"),
    (lambda q: api.simulate(q, images=-1),
     r"--images must be a non-negative integer, not -1"),
    (lambda q: api.simulate(q, uart=True), r"--uart simulates a board's top: it needs --board"),
    (lambda q: api.simulate(q, out=q.out), r"--out file is a folder"),
    (lambda q: api.synth(q, board="icebreaker", liberty="cells.lib"),
     r"--liberty applies to --target asic only"),
    (lambda q: api.load("no-such-folder"), r"not a QuantizedModel folder"),
    (lambda q: api.generate(q, out="never", drain_lanes=3),
     r"^Drain lanes must be a power of two, not 3$"),
    (lambda q: api.generate(q, out="never", array="2x8", drain_lanes=4),
     r"^Drain lanes must be an integer in 1\.\.2, not 4$"),
    (lambda q: api.generate(q, out="never", board="icebreaker", drain_lanes=2),
     r"^--drain-lanes applies to the generic overlay"),
    (lambda q: api.simulate(q, board="icebreaker", drain_lanes=2),
     r"^--drain-lanes applies to the generic overlay"),
])
def test_user_errors_are_one_line(q4, call, message):
    with pytest.raises(UserError) as exc:
        call(q4)
    text = str(exc.value)
    assert "\n" not in text and re.search(message, text), text
    assert not Path("never").exists()


def test_cli_simulate_out_that_cannot_be_written_is_one_line(q4, tmp_path, capsys):
    """Before the simulation: a folder at the path, a path under a file."""
    (tmp_path / "file").write_text("x")
    for out, message in [(tmp_path, "--out file is a folder"),
                         (tmp_path / "file" / "sim.json", "is not a folder")]:
        assert main(["simulate", str(q4.out), "--out", str(out)]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert captured.out == "" and len(err) == 1, captured
        assert err[0].startswith("hwgen simulate: error: ") and message in err[0], err


def _readme_example():
    text = README.read_text()
    section = text[text.index("### Python API"):]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the README's Python API section has no python block"
    return blocks[0]


@pytest.mark.verilator
def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    needs_verilator()
    monkeypatch.chdir(tmp_path)
    exec(compile(_readme_example(), "README.md (Python API)", "exec"), {})
    out = capsys.readouterr().out
    assert "bit-exact" in out and "icebreaker" in out, out
    assert (tmp_path / "q4" / "model.json").is_file() and (tmp_path / "sim4.json").is_file()
