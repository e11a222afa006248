"""`hwgen build` and flow files (hwflow.api.build, hwflow.api.flowfile): real builds into a
temporary folder, the stage cache (a second run does no work; a changed key reruns only the
stages that read it), the report, and one-line errors for bad flow files."""

import json
import re
from pathlib import Path

import pytest

from flowkit import needs_verilator
from hwflow import api
from hwflow.api import flowfile
from hwflow.api.build import STAGES
from hwflow.api.results import Status
from hwflow.cli import main

FLOWS = Path(__file__).resolve().parent.parent / "flows"

#: flows/digits-cnn.toml with range setting only (seconds, not the recipe search) and few images.
FLOW = """\
model = "digits-cnn"

[quantize]
wbits = 4
abits = 4
method = "minmax"

[hardware]
board = "icebreaker"

[simulate]
sim = "verilator"
images = {images}
"""


def _statuses(result):
    return {s.name: s.status for s in result.stages}


def _mtimes(folder):
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One real --no-synth build of the digits-cnn flow (3 images)."""
    needs_verilator()
    root = tmp_path_factory.mktemp("build")
    flow = root / "cnn.toml"
    flow.write_text(FLOW.format(images=3))
    lines = []
    result = api.build(flow, out=root / "out", synth=False,
                       stage=lambda name, r=None: lines.append((name, r)))
    return flow, root / "out", result, lines


def test_a_build_writes_every_stage_and_the_report(built):
    flow, out, r, lines = built
    assert [s.name for s in r.stages] == list(STAGES)
    assert _statuses(r)["synth"] is Status.SKIPPED and r.stages[4].reason == "--no-synth"
    assert r.rebuilt == ["quantize", "generate", "simulate", "estimate", "report"]
    for name in ("quantized/model.json", "quantized/tensors.npz", "verilog/hwgen_top.v",
                 "verilog/manifest.json", "simulate.json", "estimate.json", "report.md",
                 "report.html", "report-cycles.png", "build.json"):
        assert (out / name).is_file(), name
    assert r.bit_exact and json.loads((out / "simulate.json").read_text())["images"] == 3
    assert json.loads((out / "estimate.json").read_text())["board"] == "icebreaker"
    # each stage announced before it ran, then its result
    assert lines[:2] == [("quantize", None), ("quantize", r.stages[0])]
    record = json.loads((out / "build.json").read_text())
    assert set(record["stages"]) == set(STAGES) - {"synth"}
    assert record["stages"]["simulate"]["outputs"] == r.stages[2].outputs
    doc = r.to_dict()
    assert doc["stages"][0]["status"] == "built" and doc["report"] == str(out / "report.md")
    json.dumps(doc)


def test_the_report_has_the_verdict_and_the_layer_table(built):
    _, out, _, _ = built
    md = (out / "report.md").read_text()
    assert "**bit-exact**: every layer's output on 3 images equals the integer reference" in md
    assert "the simulated Verilog is the generated one" in md
    assert re.search(r"^\| # \| layer \| kind \| bits \| output \| MACs \|", md, re.M)
    # digits-cnn: three convolutions, a max pool, the flatten view and the classifier
    assert len(re.findall(r"^\| \d+ \| \S+ \| (conv2d|maxpool|flatten|linear) \|", md,
                          re.M)) == 6
    for text in ("float network", "quantized, integer reference", "cycles per inference",
                 "MAC utilisation", "latency at the 12 MHz board clock", "Fmax (estimated)",
                 "energy per inference", "| LUT |", "](report-cycles.png)"):
        assert text in md, text
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<strong>bit-exact</strong>" in page
    assert "data:image/png;base64," in page and "<th>layer</th>" in page
    assert (out / "report-cycles.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_second_build_does_no_work(built, capsys):
    flow, out, _, _ = built
    before = _mtimes(out)
    capsys.readouterr()
    assert main(["build", str(flow), "--out", str(out), "--no-synth"]) == 0
    cap = capsys.readouterr()
    for name in ("quantize", "generate", "simulate", "estimate", "report"):
        assert f"{name}: up to date\n" in cap.err
    assert "synth: skipped (--no-synth)" in cap.err and "running" not in cap.err
    assert cap.out.startswith("nothing was rebuilt:")
    assert _mtimes(out) == before
    r = api.build(flow, out=out, synth=False)
    assert r.rebuilt == [] and all(s.status is not Status.BUILT for s in r.stages)


def test_changing_images_reruns_only_simulate_and_the_report(built, tmp_path):
    flow, out, _, _ = built
    before = _mtimes(out)
    flow.write_text(FLOW.format(images=4))
    try:
        r = api.build(flow, out=out, synth=False)
    finally:
        flow.write_text(FLOW.format(images=3))
    assert r.rebuilt == ["simulate", "report"]
    after = _mtimes(out)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {"simulate.json", "report.md", "report.html", "report-cycles.png",
                       "build.json"}
    assert "on 4 images" in (out / "report.md").read_text()


def test_a_folder_that_is_not_a_build_is_refused(tmp_path, capsys):
    flow = tmp_path / "f.toml"
    flow.write_text(FLOW.format(images=1))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    assert main(["build", str(flow), "--out", str(tmp_path / "mine")]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"hwgen build: error: .*mine: refusing to build into it, it is not an"
                        r" hwgen build folder .*\n", err)


def test_a_build_killed_in_its_first_stage_resumes(tmp_path):
    """Killed before the first stage ended, a build folder holds only its lock and a stage's
    scratch (no record yet): the next build takes it and sweeps the scratch."""
    from quantflow.errors import UserError
    from hwflow.api.build import _check_out

    out = tmp_path / "b"
    (out / ".stage-quantize-1825-wnmht71z").mkdir(parents=True)
    (out / ".stage-quantize-1825-wnmht71z" / "model.json").write_text("{")
    (out / "build.lock").write_text("")
    _check_out(out)  # no error: it is this tool's own folder
    (out / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not an hwgen build folder"):
        _check_out(out)


@pytest.mark.parametrize("text, message", [
    ('model = "digits-cnn"\nspeed = 3\n',
     r"unknown key 'speed' \(known in the top level: model, data; sections: .*\)"),
    ('model = "digits-cnn"\n[quantize]\nwbit = 4\n',
     r"unknown key 'quantize\.wbit' \(known in \[quantize\]: wbits, abits, .*\)"),
    ('model = "digits-cnn"\n[synthesis]\nx = 1\n', r"unknown section \[synthesis\] .*"),
    ('model = "digits-cnn"\n[quantize]\nwbits = "4"\n',
     r"quantize\.wbits must be an integer, not '4'"),
    ('model = "digits-cnn"\n[simulate]\nimages = true\n',
     r"simulate\.images must be an integer, not True"),
    ('model = "digits-cnn"\n[quantize]\nwbits = 9\n',
     r"quantize\.wbits must be a bit width in 1\.\.8, not 9"),
    ('model = "digits-cnn"\n[hardware]\nboard = "de10"\n',
     r"hardware\.board must be one of icebreaker, .*, not 'de10'"),
    ('model = "digits-cnn"\n[hardware]\narray = "8by8"\n',
     r"hardware\.array must be ROWSxCOLS .*, not '8by8'"),
    ('model = "digits-cnn"\n[quantize]\nlayer_bits = "0=8"\n',
     r"quantize\.layer_bits must be NAME=W/A,\.\.\. \(e\.g\. 0=8/8\), not '0=8'"),
    ('model = "digits-cnn"\n[quantize]\nmethod = "minmax"\nrecipe = "auto"\n',
     r"quantize\.method and quantize\.recipe exclude each other .*"),
    ('[quantize]\nwbits = 4\n', r"model is required \(e\.g\. model = \"digits-cnn\"\)"),
    ('model = "no-such-net"\n', r"model must be a zoo name \(digits-cnn, .*\), .*"),
    ('model = "net.py:make"\n', r"model: no such file '.*net\.py'"),
    ('model = "digits-cnn\n', r"not valid TOML \(.*\)"),
    ('model = "digits-cnn"\nquantize = 4\n', r"quantize must be a table \[quantize\], not 4"),
])
def test_a_bad_flow_file_is_one_line_naming_the_file_and_key(tmp_path, capsys, text, message):
    flow = tmp_path / "bad.toml"
    flow.write_text(text)
    out = tmp_path / "out"
    assert main(["build", str(flow), "--out", str(out)]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert re.fullmatch(rf"hwgen build: error: {re.escape(str(flow))}: {message}\n", cap.err)
    assert not out.exists()  # checked before any work


def test_a_missing_flow_file_is_one_line(tmp_path, capsys):
    assert main(["build", str(tmp_path / "none.toml")]) == 2
    assert re.fullmatch(r"hwgen build: error: .*none\.toml: no such flow file\n",
                        capsys.readouterr().err)


def test_a_flow_file_takes_layer_bits_as_a_table_and_paths_from_its_folder(tmp_path):
    (tmp_path / "data.npz").write_bytes(b"")
    flow = tmp_path / "f.toml"
    flow.write_text('model = "digits-cnn"\ndata = "data.npz"\n[quantize]\n'
                    'layer_bits = {"0" = [8, 8]}\n[hardware]\narray = [4, 2]\n')
    f = flowfile.read(flow)
    assert f.quantize["layer_bits"] == {"0": (8, 8)} and f.array == (4, 2)
    assert f.data == (tmp_path / "data.npz").resolve() and f.board is None


@pytest.mark.parametrize("path", sorted(FLOWS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_flow_file_validates(path):
    f = flowfile.read(path)
    assert f.model == path.stem  # one flow per zoo network, named after it
    assert f.board is not None and path.read_text().startswith("# Builds ")


def test_a_flow_ships_for_every_zoo_network():
    from quantflow.zoo import ZooModel

    assert {p.stem for p in FLOWS.glob("*.toml")} == {m.value for m in ZooModel}


@pytest.mark.slow
def test_a_build_with_synth_for_the_icebreaker(tmp_path):
    """The whole flow, Yosys and nextpnr included (1-2 minutes on a cold build cache)."""
    needs_verilator()
    flow = tmp_path / "cnn.toml"
    flow.write_text(FLOW.format(images=2))
    r = api.build(flow, out=tmp_path / "out")
    assert _statuses(r)["synth"] is Status.BUILT and r.bit_exact
    syn = json.loads((tmp_path / "out" / "synth" / "report.json").read_text())
    assert syn["board"] == "icebreaker" and Path(syn["bitstream"]).is_file()
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Fmax (synthesized)" in md and "placed and routed" in md
    assert api.build(flow, out=tmp_path / "out").rebuilt == []
