"""The `hwgen` command in-process (exit codes, one-line errors, --json) and as a real process."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flowkit import digits, quantized, tiny_model, trained

from hwflow.cli import main
from quantflow import ptq, serialize
from quantflow.errors import DataError

BAD_MODEL = Path(__file__).parent / "fixtures" / "bad_model.py"
HWGEN = Path(sys.executable).parent / "hwgen"


def _one_error_line(err, command):
    """stderr holds exactly one error line for ``command`` and no traceback."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(f"hwgen {command}: error: ")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture(scope="module", autouse=True)
def _zoo_trained():
    """The zoo networks in the cache before any command asks for them."""
    trained("digits-mlp")


# -- argument errors (argparse: exit 2, usage + one error line) ---------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (["--wbits", "9"], r"argument --wbits: '9' is not a bit width in 1\.\.8"),
    (["--wbits", "0"], r"argument --wbits: '0' is not a bit width in 1\.\.8"),
    (["--abits", "four"], r"argument --abits: 'four' is not an integer bit width"),
    (["--input-bits", "12"], r"argument --input-bits: '12' is not a bit width in 1\.\.8"),
    (["--method", "best"], r"argument --method: 'best' is not a method \(auto, minmax, "),
])
def test_quantize_bad_arguments(capsys, tmp_path, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["quantize", *argv, "--out", str(tmp_path / "q")])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    line = _one_error_line(err, "quantize")
    assert re.search(message, line), line
    assert not (tmp_path / "q").exists()


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("quantize", "demo", "doctor"):
        assert name in out


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"hwgen {version('hwgen')}"


@pytest.mark.parametrize("command", ["quantize", "generate", "simulate", "estimate", "synth",
                                     "explore", "program", "run", "demo", "doctor"])
def test_help_shows_defaults_as_typed(command, capsys):
    """No Python reprs in the help: no `None` or `False` defaults, enums by value, arrays as
    8x8 (argparse's ArgumentDefaultsHelpFormatter printed `Sim.VERILATOR` and `((8, 8))`)."""
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for repr_ in ("default: None", "default: False", "default: True", "default: {}", "Sim.",
                  "((", "(8, 8)"):
        assert repr_ not in out, (command, repr_)
    if command == "simulate":
        assert "(default: verilator)" in out


# -- user errors (UserError: exit 2, exactly one line) ------------------------------------------

def test_unsupported_op_exit_2_and_no_output(capsys, tmp_path):
    out_dir = tmp_path / "q"
    code = main(["quantize", "--model", f"{BAD_MODEL}:make", "--method", "minmax",
                 "--out", str(out_dir)])
    assert code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err
    line = _one_error_line(err, "quantize")
    assert ("unsupported op Sigmoid at graph node 2 ('_1'); supported: Conv2d (any groups:"
            " depthwise, grouped)") in line
    assert list(tmp_path.iterdir()) == [], "no output folder and no temporary may be left"


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "digits-vgg"], "'digits-vgg' is not a zoo model (digits-cnn, digits-mlp, "
                                "digits-resnet, digits-dsconv, dscnn-kws, mobilenetv1-vww, "
                                "mobilenetv1-vww-32, resnet8-ic, fc-autoencoder) nor "
                                "path/to/file.py:factory"),
    (["--model", "nowhere/net.py:make"], "nowhere/net.py: no such model file"),
    (["--model", f"{BAD_MODEL}:missing"], "has no callable 'missing'"),
    (["--model", "dscnn-kws", "--data", "DATA"],
     "zoo model 'dscnn-kws' takes inputs of shape (1, 49, 10), the data 'good' has (1, 8, 8)"),
    (["--model", f"{BAD_MODEL}:make", "--data", "nowhere.npz"], "nowhere.npz: no such data file"),
    (["--model", f"{BAD_MODEL}:make", "--data", "CORRUPT"], "not a readable .npz file"),
])
def test_quantize_user_errors(capsys, tmp_path, argv, message):
    good = tmp_path / "good.npz"
    with open(good, "wb") as f:
        np.savez(f, x_train=np.zeros((4, 1, 8, 8)), y_train=np.arange(4),
                 x_test=np.zeros((2, 1, 8, 8)), y_test=np.arange(2))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(good.read_bytes()[:100])
    argv = [str(good) if a == "DATA" else str(corrupt) if a == "CORRUPT" else a for a in argv]
    code = main(["quantize", *argv, "--method", "minmax", "--out", str(tmp_path / "q")])
    assert code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert message in _one_error_line(err, "quantize")
    assert not (tmp_path / "q").exists()


def test_default_recipe_on_too_little_data(capsys, tmp_path):
    """The default (auto) recipe holds out a validation split: a tiny user data set is a
    one-line error, not scikit-learn's traceback."""
    model = tmp_path / "net.py"
    model.write_text("from torch import nn\n\n\ndef make():\n    return nn.Sequential("
                     "nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 4))\n")
    small = tmp_path / "small.npz"
    with open(small, "wb") as f:
        np.savez(f, x_train=np.zeros((8, 1, 8, 8)), y_train=np.arange(8) % 4,
                 x_test=np.zeros((4, 1, 8, 8)), y_test=np.arange(4))
    code = main(["quantize", "--model", f"{model}:make", "--data", str(small),
                 "--out", str(tmp_path / "q")])
    assert code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert "cannot give a stratified validation split" in _one_error_line(err, "quantize")
    assert not (tmp_path / "q").exists()


def test_out_never_deletes_a_foreign_folder(capsys, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    code = main(["quantize", "--model", "digits-mlp", "--method", "minmax", "--out",
                 str(precious)])
    assert code == 2
    out, err = capsys.readouterr()
    assert out == "" and "not a QuantizedModel folder (refusing to replace it)" in \
        _one_error_line(err, "quantize")
    assert [p.name for p in precious.iterdir()] == ["notes.txt"]


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(DataError, match=r"is not a zoo model"):
        main(["--debug", "quantize", "--model", "digits-vgg", "--out", str(tmp_path / "q")])


@pytest.mark.parametrize(("damage", "message"), [
    ("rmdir", "not a QuantizedModel folder (no such directory)"),
    ("no-json", "not a QuantizedModel folder (no model.json)"),
    ("bad-json", "model.json: not valid JSON ("),
    ("truncated", "tensors.npz: unreadable or truncated ("),
    ("no-tensors", "tensors.npz is missing"),
])
def test_corrupt_artifact_exit_2(capsys, tmp_path, damage, message):
    q = serialize.save(tiny_model(), tmp_path / "q")
    if damage == "rmdir":
        q = tmp_path / "missing"
    elif damage == "no-json":
        (q / "model.json").unlink()
    elif damage == "bad-json":
        (q / "model.json").write_text("{")
    elif damage == "truncated":
        (q / "tensors.npz").write_bytes((q / "tensors.npz").read_bytes()[:64])
    else:
        (q / "tensors.npz").unlink()
    code = main(["generate", str(q), "--out", str(tmp_path / "rtl")])
    assert code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert message in _one_error_line(err, "generate")
    assert not (tmp_path / "rtl").exists()


# -- success paths --------------------------------------------------------------------------------

def test_quantize_json(capsys, tmp_path):
    out_dir = tmp_path / "q4"
    code = main(["quantize", "--model", "digits-mlp", "--wbits", "4", "--abits", "4",
                 "--out", str(out_dir), "--json"])
    assert code == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1, out
    doc = json.loads(lines[0])
    assert isinstance(doc, dict)
    assert {"model", "wbits", "abits", "method", "float_accuracy", "quant_accuracy"} <= set(doc)
    assert (doc["model"], doc["wbits"], doc["abits"]) == ("digits-mlp", 4, 4)
    assert isinstance(doc["method"], str) and doc["method"]
    for key in ("float_accuracy", "quant_accuracy"):
        assert isinstance(doc[key], float) and 0.0 <= doc[key] <= 1.0, doc
    assert doc["float_accuracy"] > 0.9 and doc["quant_accuracy"] > 0.9, doc
    qm = serialize.load(out_dir)
    assert (qm.wbits, qm.abits) == (4, 4)
    ds = digits()
    assert ptq.accuracy(qm, ds.x_test, ds.y_test) == doc["quant_accuracy"]


def test_quantize_text_output(capsys, tmp_path):
    code = main(["quantize", "--model", "digits-mlp", "--wbits", "8", "--abits", "8",
                 "--method", "minmax", "--out", str(tmp_path / "q")])
    assert code == 0
    out, _ = capsys.readouterr()
    assert len(out.splitlines()) == 1
    assert out.startswith("digits-mlp: W8A8 ") and "float " in out and "quantized " in out
    assert serialize.load(tmp_path / "q").name == "digits-mlp"


def test_doctor_json(capsys):
    code = main(["doctor", "--json"])
    out, _ = capsys.readouterr()
    doc = json.loads(out)
    missing = [c["name"] for c in doc["checks"] if c["required"] and not c["ok"]]
    assert code == 0 and doc["ok"] is True and missing == [], missing
    names = {c["name"] for c in doc["checks"]}
    assert {"torch", "amaranth", "cocotb", "verilator", "iverilog", "yosys", "nextpnr-ice40",
            "nextpnr-ecp5", "python"} <= names
    for c in doc["checks"]:
        assert c["ok"] == (c["version"] is not None) and (c["fix"] is None) == c["ok"], c


def test_doctor_reports_a_missing_tool(capsys, monkeypatch):
    from hwgen import tools

    real = tools.doctor_checks

    def without_iverilog():
        checks = real()
        for c in checks:
            if c.name == "iverilog":
                c.version = None
        return checks

    monkeypatch.setattr(tools, "doctor_checks", without_iverilog)
    assert main(["doctor", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    bad = [c for c in doc["checks"] if not c["ok"]]
    assert doc["ok"] is False and [c["name"] for c in bad] == ["iverilog"]
    assert "apt-get install -y iverilog" in bad[0]["fix"]


# -- the real console script ----------------------------------------------------------------------

def test_console_script_exit_codes(tmp_path):
    assert HWGEN.exists(), f"console script missing: {HWGEN}"
    bad = subprocess.run([str(HWGEN), "quantize", "--wbits", "9", "--out", str(tmp_path / "q")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2, bad
    assert bad.stdout == "" and "Traceback" not in bad.stderr
    assert bad.stderr.splitlines()[-1] == ("hwgen quantize: error: argument --wbits: '9' is not a "
                                           "bit width in 1..8")
    assert not (tmp_path / "q").exists()


def test_demo_one_width(capsys, monkeypatch, tmp_path):
    """The demo flow end to end at one width on the MLP (the full five widths are bench work)."""
    from hwflow.commands import demo

    monkeypatch.setattr(demo, "DEMO_BITS", [(8, 8)])
    code = main(["demo", "--model", "digits-mlp", "--out", str(tmp_path / "demo"),
                 "--no-hardware"])
    assert code == 0
    out, _ = capsys.readouterr()
    assert "8/8" in out and "summary.json" in out
    doc = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert "hardware" not in doc
    rows = doc["quantization"]
    assert len(rows) == 1
    row = rows[0]
    assert (row["model"], row["wbits"], row["abits"]) == ("digits-mlp", 8, 8)
    for key in ("float_accuracy", "quant_accuracy", "minmax_accuracy"):
        assert 0.9 <= row[key] <= 1.0, row
    qm = serialize.load(row["qmodel"])
    assert Path(row["qmodel"]) == tmp_path / "demo" / "digits-mlp-w8a8" and qm.wbits == 8
    # the board it fits, by the estimate, and what to run next
    from boards.estimate import smallest_board

    board, est = smallest_board(qm)
    assert doc["board"]["board"] == board.value.name and doc["board"]["source"] == "estimate"
    assert doc["board"]["fit"]["lut"]["need"] == est["fit"]["lut"]["need"]
    flat = " ".join(out.split())
    assert f"fits the {board.value.name}" in flat
    assert f"hwgen synth {row['qmodel']} --board {board.value.name}" in flat
    assert f"hwgen program --board {board.value.name}" in flat


def test_phases_show_on_a_terminal_only(monkeypatch, capsys):
    """Long commands show their phase within two seconds on a terminal; on a redirected
    stderr nothing (an error is still exactly one line there)."""
    import os
    import pty
    import time

    from hwflow.commands.progress import phases

    with phases("first phase") as phase:
        phase("second phase")
    assert capsys.readouterr().err == ""  # pytest's stderr is no terminal

    master, slave = pty.openpty()
    with os.fdopen(slave, "w", buffering=1) as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        with phases("building the model") as phase:
            time.sleep(1.2)
            phase("simulating 9 inputs")
            time.sleep(0.3)
        tty.flush()
        seen = os.read(master, 65536).decode(errors="replace")
        monkeypatch.undo()
    os.close(master)
    assert "building the model" in seen and "simulating 9 inputs" in seen


def test_demo_figures_equal_hwgen_quantize(tmp_path, monkeypatch, capsys):
    """The demo quantizes with `hwgen quantize`'s default (recipe auto): same accuracy, same
    recipe, at the same settings."""
    from hwflow.commands import demo

    monkeypatch.setattr(demo, "DEMO_BITS", [(4, 4)])
    assert main(["demo", "--model", "digits-mlp", "--no-hardware",
                 "--out", str(tmp_path / "d")]) == 0
    capsys.readouterr()
    row = json.loads((tmp_path / "d" / "summary.json").read_text())["quantization"][0]
    assert main(["quantize", "--model", "digits-mlp", "--wbits", "4", "--abits", "4",
                 "--out", str(tmp_path / "q"), "--json"]) == 0
    q = json.loads(capsys.readouterr().out)
    assert row["quant_accuracy"] == q["quant_accuracy"] and row["recipe"] == q["recipe"]


# -- the choice on validation data (issue 13 item 3) ----------------------------------------------

def test_quantize_verbose_lists_every_candidate_and_notes_the_training_split(capsys, tmp_path):
    """Without x_val the choice is made on a split of x_train: one note line on stderr; the
    two weight grids of the min-max recipe are listed with their validation scores, which
    model.json stores too."""
    out_dir = tmp_path / "q"
    assert main(["quantize", "--model", "digits-mlp", "--wbits", "2", "--abits", "8",
                 "--recipe", "minmax", "--out", str(out_dir), "--verbose"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "note: the choice was made on a validation split of x_train (337 images), which the"
        " zoo network was trained without; add x_val/y_val to --data to choose on held-out"
        " data"]
    meta = serialize.load(out_dir).meta
    rows = meta["candidates"]
    assert meta["validation"] == {"source": "split of x_train", "images": 337}
    assert [(r["recipe"], r["w_grid"]) for r in rows] == [("minmax", "narrow"),
                                                          ("minmax", "full")]
    lines = out.splitlines()
    assert lines[1] == "  candidates on split of x_train (337 images):"
    for r, line in zip(rows, lines[2:], strict=True):
        assert f"{100 * r['val_accuracy']:6.2f}%" in line and r["w_grid"] in line
        assert line.endswith("<- chosen") == r["chosen"]
    # the full grid's fourth code wins at 2 bits (narrow min-max rounds most weights to 0)
    assert [r["w_grid"] for r in rows if r["chosen"]] == ["full"]
    assert "full grid" in lines[0]


def test_quantize_chooses_on_x_val_when_the_data_has_it(capsys, tmp_path):
    ds = digits()
    x_val, y_val = ds.x_train[:300], ds.y_train[:300]
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=ds.x_train[300:], y_train=ds.y_train[300:], x_val=x_val,
             y_val=y_val, x_test=ds.x_test, y_test=ds.y_test)
    model = tmp_path / "net.py"
    model.write_text("from torch import nn\n\n\ndef make():\n    import torch\n"
                     "    torch.manual_seed(0)\n"
                     "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n")
    out_dir = tmp_path / "q"
    assert main(["quantize", "--model", f"{model}:make", "--data", str(path), "--wbits", "4",
                 "--abits", "4", "--method", "minmax", "--out", str(out_dir), "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # no note: the choice was made on the user's validation data
    doc = json.loads(out)
    assert doc["model"] == "net.py:make"  # the file and the factory, not the file's stem
    assert doc["validation"] == {"source": "x_val", "images": 300}
    qm = serialize.load(out_dir)
    chosen = [r for r in qm.meta["candidates"] if r["chosen"]]
    assert doc["candidates"] == qm.meta["candidates"] and len(chosen) == 1
    assert ptq.val_score(qm, x_val, y_val) == (chosen[0]["val_accuracy"],
                                               chosen[0]["val_log_likelihood"])


def test_quantize_weight_grid_fixed_skips_the_choice(capsys, tmp_path):
    out_dir = tmp_path / "q"
    assert main(["quantize", "--model", "digits-mlp", "--wbits", "2", "--abits", "8",
                 "--method", "minmax", "--weight-grid", "narrow", "--out", str(out_dir),
                 "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert err == "" and doc["candidates"] == [] and doc["w_grid"] == "narrow"
    qm = serialize.load(out_dir)
    assert min(int(lyr.weight.min()) for lyr in qm.layers if lyr.weight is not None) == -1


def test_quantize_wide_head_refuses_method_and_data_free(capsys, tmp_path):
    for extra in (["--method", "minmax"], ["--data-free"]):
        assert main(["quantize", "--model", "digits-mlp", "--wide-head", *extra,
                     "--out", str(tmp_path / "q")]) == 2
        out, err = capsys.readouterr()
        assert out == "" and _one_error_line(err, "quantize") == (
            "hwgen quantize: error: --wide-head is a trial of the recipe choice on validation"
            " data; it does not apply with --method or --data-free")
    assert not (tmp_path / "q").exists()


# -- commands over the simulators (moved here from rtl_tests: the CLI sits above that tier) -----

def _needs(sim_name):
    from rtl_tests.runner import Sim, available

    reason = available(Sim(sim_name))
    if reason:
        pytest.skip(reason)


def test_simulate_uart_needs_a_board(capsys, tmp_path):
    _, qm = quantized("digits-mlp", 4, 4)
    qdir = serialize.save(qm, tmp_path / "q")
    code = main(["simulate", str(qdir), "--uart"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--board" in err[0]


@pytest.mark.verilator
def test_demo_hardware_steps(tmp_path, monkeypatch, capsys):
    """`hwgen demo` quantizes, generates Verilog, simulates on Verilator and reports."""
    from hwflow.commands import demo

    _needs("verilator")
    monkeypatch.setattr(demo, "DEMO_BITS", [(4, 4)])
    code = main(["demo", "--model", "digits-mlp", "--out", str(tmp_path / "d"), "--images", "3"])
    out, _ = capsys.readouterr()
    assert code == 0, out
    hw = json.loads((tmp_path / "d" / "summary.json").read_text())["hardware"]
    assert hw["bit_exact"] and hw["images"] == 3 and hw["mismatches"] == 0, hw
    assert hw["cycles_per_inference"] > 0 and 0 < hw["mac_utilization"] <= 1, hw
    assert "bit-exact" in out


@pytest.mark.parametrize("port", ["/dev/null", "file"])
def test_run_of_a_two_bit_model_on_the_icebreaker_is_one_line(tmp_path, capsys, port):
    """`hwgen run` of a 2-bit model on the iCEBreaker (the board's array widens to 2x4 for the
    input's digits, as synth's does) with a port that is /dev/null or a regular file: one line
    naming the port, no traceback, nothing built."""
    import numpy as np

    from factories import digits_mlp
    from quantflow import serialize

    folder = serialize.save(digits_mlp(np.random.default_rng(2), 2, 2), tmp_path / "q2")
    if port == "file":
        port = str(tmp_path / "ttyFILE")
        Path(port).write_text("not a serial port")
    rc = main(["run", str(folder), "--board", "icebreaker", "--port", port])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("hwgen run: error: ") and port in err[0] and "serial" in err[0]
