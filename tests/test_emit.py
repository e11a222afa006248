"""`hwgen generate`: Verilog + manifest, byte-identical for identical inputs; user errors."""

import json
import re

import numpy as np
import pytest

from factories import digits_mlp
from hwflow import cli
from hwgen.emit import TOP_NAME
from quantflow.serialize import save


@pytest.fixture
def qdir(tmp_path):
    return save(digits_mlp(np.random.default_rng(0), 4, 4), tmp_path / "mlp")


def test_generate_byte_identical(qdir, tmp_path, capsys):
    for out in ("a", "b"):
        assert cli.main(["generate", str(qdir), "--array", "2x4", "--out",
                         str(tmp_path / out)]) == 0
    for name in (f"{TOP_NAME}.v", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    doc = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert doc["top"] == TOP_NAME and re.fullmatch(r"[0-9a-f]{16}", doc["digest"])
    assert doc["config"]["rows"] == 2 and doc["config"]["cols"] == 4
    ports = {p["name"]: (p["dir"], p["width"]) for p in doc["ports"]}
    assert ports["i__payload"] == ("in", 32) and ports["o__payload"] == ("out", 32)
    assert ports["i__ready"] == ("out", 1) and ports["o__ready"] == ("in", 1)
    verilog = (tmp_path / "a" / f"{TOP_NAME}.v").read_text()
    header = re.search(rf"module {TOP_NAME}\(([^)]*)\)", verilog).group(1)
    assert {p.strip() for p in header.split(",")} == set(ports)
    assert doc["program"]["cycles"] and doc["derived"]["acc_bits"] > 0
    assert "cycles per inference" in capsys.readouterr().out


def test_generate_byte_identical_across_hash_seeds(qdir, tmp_path):
    """Two processes with different PYTHONHASHSEED emit the same bytes (a set of enums the
    gateware iterated made the Verilog differ between processes, and so every digest of it:
    hwgen build reran simulation for an unchanged design)."""
    import os
    import subprocess
    import sys

    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-m", "hwflow.cli", "generate", str(qdir), "--array",
                        "2x4", "--out", str(tmp_path / seed)], env=env, check=True,
                       capture_output=True)
    a, b = ((tmp_path / s / f"{TOP_NAME}.v").read_bytes() for s in ("1", "2"))
    assert a == b

def test_generate_user_errors(qdir, tmp_path, capsys):
    assert cli.main(["generate", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "not a QuantizedModel folder" in capsys.readouterr().err
    assert cli.main(["generate", str(qdir), "--array", "1x1", "--out",
                     str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert re.search(r"^hwgen generate: error: Array columns must be at least", err), err
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    assert cli.main(["generate", str(qdir), "--array", "2x4", "--out",
                     str(tmp_path / "precious")]) == 2
    assert "refusing to replace it" in capsys.readouterr().err
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"
    with pytest.raises(SystemExit):
        cli.main(["generate", str(qdir), "--array", "4by4", "--out", str(tmp_path / "o")])
    assert "'4by4' is not an array shape ROWSxCOLS" in capsys.readouterr().err


def test_design_cache_keyed_by_generator(qdir, tmp_path, monkeypatch):
    """A design emitted by another version of the generator is never reused: the cache folder
    is named by the configuration and the generator digest, which the manifest records."""
    import json

    from hwgen import designs, emit
    from quantflow import serialize

    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path / "cache"))
    model = serialize.load(qdir)
    cfg, first = designs.design_for(model)
    doc = json.loads((first / "manifest.json").read_text())
    assert doc["generator"] == emit.generator_digest()
    assert first.name == f"{cfg.digest}-{emit.generator_digest()}"
    monkeypatch.setattr(emit, "generator_digest", lambda: "0123456789abcdef")
    _, second = designs.design_for(model)
    assert second != first and (second / "manifest.json").exists()
