"""boards/estimate.py and `hwgen estimate`: counted memories and DSPs, the report's keys and
consistency, one-line errors, and synth refusing before Yosys what cannot fit."""

import json

import numpy as np
import pytest

from boards import Board
from boards.estimate import dsp_blocks, memory_blocks
from hwflow.cli import main as _main


def main(argv):
    """The command's exit status, usage errors (argparse exits) included."""
    try:
        return _main(argv)
    except SystemExit as e:
        return e.code


@pytest.fixture(scope="module")
def qdir(tmp_path_factory):
    from factories import digits_mlp
    from quantflow import serialize

    return serialize.save(digits_mlp(np.random.default_rng(0), 4, 4),
                          tmp_path_factory.mktemp("q") / "mlp4")


def test_memory_blocks_are_counted():
    """Each buffer takes the fewest blocks of the family's shapes; the iCE40UP5K's weight
    buffer is SPRAM (16 bits per block)."""
    from hwgen.config import AccelConfig
    from hwgen.layouts import Mem, mem_depth, mem_width

    cfg = AccelConfig(rows=2, cols=4, weight_bits=4, act_bits=4, act_depth=512)
    ice = Board.ICEBREAKER.value
    bram, spram, per = memory_blocks(ice, cfg)
    assert per["mem_weight"] == {"spram": -(-mem_width(cfg, Mem.WEIGHT) // 16)}
    assert per["mem_act0"] == {"bram": 2}  # 512 x 16 bits: two 512x8 (or 256x16) blocks
    assert bram == sum(v.get("bram", 0) for v in per.values()) and spram == 2
    ecp5 = Board.ULX3S_85F.value
    _, spram, per = memory_blocks(ecp5, cfg)
    assert spram == 0 and per["mem_act0"] == {"bram": 1}  # 512x36 holds 512x16
    w, d = mem_width(cfg, Mem.ACT0), mem_depth(cfg, Mem.ACT0)
    assert memory_blocks(ecp5, cfg, logic_bits=w * d)[2]["mem_act0"] == {"bram": 0}


def test_dsp_blocks_are_counted():
    from hwgen.config import AccelConfig

    cfg = AccelConfig(rows=2, cols=4, weight_bits=8, act_bits=8)
    assert dsp_blocks(Board.ICEBREAKER.value, cfg, "dsp", 2) == 10
    assert dsp_blocks(Board.ICEBREAKER.value, cfg, "lut", 2) == 2
    assert dsp_blocks(Board.TANGNANO9K.value, cfg, "dsp", 2) == 4 + 2  # 9x9 = half an 18x18
    narrow = AccelConfig(rows=2, cols=4, weight_bits=8, act_bits=2)  # 10-bit products
    assert dsp_blocks(Board.ICEBREAKER.value, narrow, "dsp", 2) == 2  # stay in LUTs on iCE40
    assert dsp_blocks(Board.ULX3S_85F.value, narrow, "dsp", 2) == 8 + 2


def test_estimate_json(qdir, capsys):
    from boards.build import board_config
    from quantflow.program import compile_program
    from quantflow.serialize import load

    assert main(["estimate", str(qdir), "--board", "icebreaker", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    target = Board.ICEBREAKER.value
    cfg, style = board_config(target, load(qdir))
    assert est["array"] == [cfg.rows, cfg.cols] and est["multipliers"] == style
    cycles = sum(compile_program(load(qdir), cfg).cycles)
    assert est["cycles"] == cycles
    clock = est["timing"]["board_clock"]
    assert clock["mhz"] == target.clock_mhz
    assert clock["latency_us"] == pytest.approx(cycles / target.clock_mhz, abs=0.01)
    assert est["timing"]["fmax"]["mhz"] == est["fmax_mhz"]
    for key in ("lut", "ff", "bram", "spram", "dsp"):
        assert est["fit"][key]["need"] == est[key]
        assert est["fit"][key]["ok"] == (est[key] <= est["fit"][key]["have"])
    assert est["fits"] == (all(f["ok"] for f in est["fit"].values())
                           and est["fmax_mhz"] >= target.clock_mhz)
    assert est["energy"]["asic_45nm_pj"] > 0 and est["energy"]["fpga"]["energy_uj"] > 0


def test_estimate_screen(qdir, capsys):
    assert main(["estimate", str(qdir), "--board", "icebreaker", "--array", "2x4"]) == 0
    out = capsys.readouterr().out
    assert "array 2x4" in out and "LUT " in out and "cycles per inference" in out


@pytest.mark.parametrize("argv,message", [
    (["--board", "nope"], r"argument --board: Board must be one of"),
    (["--board", "icebreaker", "--array", "3"], r"argument --array: '3' is not an array"),
    (["--board", "icebreaker", "--array", "2x1"], r"Array columns must be at least"),
])
def test_bad_input_is_one_line(qdir, capsys, argv, message):
    import re

    assert main(["estimate", str(qdir), *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err), err


def test_not_a_model_folder_is_one_line(tmp_path, capsys):
    assert main(["estimate", str(tmp_path), "--board", "icebreaker"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwgen estimate: error:") and len(err.strip().splitlines()) == 1


def test_synth_refuses_before_yosys(qdir, capsys, monkeypatch):
    """An array the estimate says is too big fails with one line naming the resource, need and
    have, and Yosys never runs; --force builds anyway."""
    import re

    import boards.build

    calls = []

    def fake_build(target, cfg, **kw):
        calls.append(cfg)
        raise boards.build.ToolError("stopped before Yosys (test)")

    monkeypatch.setattr(boards.build, "build", fake_build)
    args = ["synth", str(qdir), "--board", "icebreaker", "--array", "8x8"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"hwgen synth: error: icebreaker \(iCE40UP5K\): the estimate says the"
                        r" design needs \d+ [A-Z]+ but the device has \d+ \(--force builds"
                        r" anyway\)", err), err
    assert calls == []
    assert main([*args, "--force"]) == 2
    assert "stopped before Yosys (test)" in capsys.readouterr().err and len(calls) == 1


def test_generate_with_a_board_emits_what_synth_builds(qdir, tmp_path, capsys):
    """``generate --board`` emits the board's overlay and prints the same estimate."""
    from boards.build import board_config
    from quantflow.serialize import load

    assert main(["generate", str(qdir), "--board", "icebreaker", "--out", str(tmp_path / "g"),
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    cfg, _ = board_config(Board.ICEBREAKER.value, load(qdir))
    assert doc["digest"] == cfg.digest == doc["estimate"]["config_digest"]
    assert doc["estimate"]["cycles"] == doc["cycles_per_inference"]
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert manifest["config"]["rows"] == cfg.rows and manifest["config"]["cols"] == cfg.cols
