"""`hwgen synth --target asic`: Yosys's generic synthesis per module (boards.asic)."""

import json
from pathlib import Path

import numpy as np
import pytest

from factories import digits_mlp

FIXTURES = Path(__file__).parent / "fixtures"


def _qdir(tmp_path):
    from quantflow import serialize

    return serialize.save(digits_mlp(np.random.default_rng(0), 2, 2), tmp_path / "q")


@pytest.mark.board
def test_asic_gates_and_transistors_per_module(tmp_path, monkeypatch, capsys):
    from hwflow.cli import main

    monkeypatch.setenv("HWGEN_BUILD_CACHE", str(tmp_path / "cache"))
    qdir = _qdir(tmp_path)
    out = tmp_path / "out"
    assert main(["synth", str(qdir), "--target", "asic", "--array", "1x4", "--out", str(out),
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["measure"] == "transistors" and doc["array"] == [1, 4]
    groups = doc["groups"]
    for name in ("host", "core", "sequencer", "pe", "multipliers", "drain", "requantizer"):
        assert groups[name]["gates"] > 0 and groups[name]["transistors"] > 0, name
    # Yosys's per-module transistors include the submodules; the report keeps each module's
    # own, so they add up to the top's total.
    top = doc["modules"]["hwgen_top"]
    assert sum(m["transistors"] for m in doc["modules"].values()) == top["transistors_total"]
    assert doc["total"]["transistors"] == top["transistors_total"]
    # Buffers stay SRAM macros: one per writable memory, with its words and width.
    mems = {m["module"].rsplit(".", 1)[-1]: m for m in doc["memories"]}
    assert set(mems) == {"mem_weight", "mem_act0", "mem_act1", "mem_bias", "mem_rq",
                         "mem_acc", "mem_prog", "mem_cycles"}
    assert all(groups[name]["gates"] == 0 and groups[name]["macros"] == 1 for name in mems)
    assert doc["total"]["memory_bits"] == sum(m["bits"] for m in mems.values())
    assert doc["energy"]["asic_45nm_pj"] > 0 and doc["cycles"] > 0
    assert json.loads((out / "report.json").read_text())["total"] == doc["total"]
    # The same request again is a cache hit, and the screen form names every group.
    assert main(["synth", str(qdir), "--target", "asic", "--array", "1x4"]) == 0
    text = capsys.readouterr().out
    assert "cached" in text and "sequencer" in text and "transistors" in text


@pytest.mark.slow
@pytest.mark.board
def test_asic_liberty_area(tmp_path, monkeypatch, capsys):
    from hwflow.cli import main

    monkeypatch.setenv("HWGEN_BUILD_CACHE", str(tmp_path / "cache"))
    qdir = _qdir(tmp_path)
    lib = FIXTURES / "tiny_cells.lib"
    assert main(["synth", str(qdir), "--target", "asic", "--array", "1x4", "--liberty",
                 str(lib), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["measure"] == "area"
    cells = {k for m in json.loads((Path(doc["folder"]) / "stat.json").read_text())[
        "modules"].values() for k in m["num_cells_by_type"] if not k.startswith("$")
        and "." not in k}
    assert cells <= {"BUF", "INV", "NAND2", "NOR2", "DFF"}
    assert doc["total"]["ffs"] > 0 and doc["total"]["area"] > 0
    assert doc["groups"]["sequencer"]["area"] > 0


def test_liberty_flops():
    from boards.asic import liberty_flops

    assert liberty_flops((FIXTURES / "tiny_cells.lib").read_text()) == {"DFF"}


@pytest.mark.parametrize("argv, message", [
    (["--target", "asic", "--board", "icebreaker"], r"--target asic takes no --board$"),
    (["--liberty", "x.lib", "--board", "icebreaker"], r"--liberty applies to --target asic"
                                                      r" only$"),
    ([], r"--target fpga needs --board NAME$"),
    (["--target", "asic", "--liberty", "missing.lib"], r"missing\.lib: no such Liberty file$"),
])
def test_asic_usage_errors(tmp_path, capsys, argv, message):
    import re

    from hwflow.cli import main

    assert main(["synth", str(tmp_path / "q")] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(message, err) and len(err.splitlines()) == 1


def test_target_is_validated(capsys):
    from hwflow.cli import main

    with pytest.raises(SystemExit) as e:
        main(["synth", "q", "--target", "gpu"])
    assert e.value.code == 2
    assert "'gpu' is not a target (fpga, asic)" in capsys.readouterr().err
