"""`hwgen quantize` argument types: recipe names and --layer-bits parse at the CLI only."""

import argparse

import pytest

from hwflow.commands import quantize
from quantflow import recipes


def test_layer_bits_parses_names_and_widths():
    assert quantize.layer_bits("0=8/8, 10=4/6") == {"0": (8, 8), "10": (4, 6)}


@pytest.mark.parametrize(("value", "msg"), [
    ("0=8", r"^'0=8' is not NAME=W/A \(e\.g\. 0=8/8\)$"),
    ("=8/8", r"^'=8/8' is not NAME=W/A \(e\.g\. 0=8/8\)$"),
    ("0=9/8", r"^'0=9/8' is not NAME=W/A with '9' is not a bit width in 1\.\.8$"),
])
def test_layer_bits_errors(value, msg):
    with pytest.raises(argparse.ArgumentTypeError, match=msg):
        quantize.layer_bits(value)


def test_recipe_names_are_checked_without_torch():
    """The command line is checked before torch loads (its import takes seconds, and the
    progress bar must be up within two): a recipe is a checked name until the API builds it."""
    import subprocess
    import sys

    assert quantize.recipe("cle-bc") == "cle-bc"
    assert recipes.by_name(quantize.recipe("auto")) is recipes.AUTO
    with pytest.raises(argparse.ArgumentTypeError, match=r"^'x' is not a recipe \(auto, .*\)$"):
        quantize.recipe("x")
    code = ("import sys, argparse; from hwflow.commands import quantize as q;"
            " p = argparse.ArgumentParser(); q.add_arguments(p);"
            " p.parse_args(['--out', 'o', '--recipe', 'bc', '--method', 'mse']);"
            " from hwflow.api import flowfile;"
            " print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_qat_epochs_must_be_positive():
    assert quantize.positive_int("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match=r"^'0' is not a positive integer$"):
        quantize.positive_int("0")


def test_unknown_layer_name_is_one_line_on_stderr(tmp_path, capsys):
    from hwflow.cli import main

    rc = main(["quantize", "--model", "digits-mlp", "--recipe", "mse", "--layer-bits",
               "fc=8/8", "--out", str(tmp_path / "q")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [
        "hwgen quantize: error: Layer name must be one of 1, 3, 5, not 'fc'"]


@pytest.mark.parametrize(("argv", "msg"), [
    (["--data-free", "--qat"], "--qat trains on the training data; it cannot follow --data-free"),
    (["--model", "m.onnx", "--qat"], "a QONNX model is imported as it is quantized: --qat,"
                                     " --data-free, --layer-bits and --method do not apply"),
])
def test_contradictory_options_are_one_line(tmp_path, capsys, argv, msg):
    from hwflow.cli import main

    rc = main(["quantize", *argv, "--out", str(tmp_path / "q")])
    assert rc == 2 and capsys.readouterr().err.strip() == f"hwgen quantize: error: {msg}"


def test_binary_qat_from_the_command_line(tmp_path, capsys):
    """`hwgen quantize --wbits 1 --abits 1 --qat`: QAT starts from MSE ranges (not a PTQ
    recipe's baked rounding), the learning-rate trials are in model.json, the weights are +-1."""
    import json

    import numpy as np

    from hwflow.cli import main
    from quantflow.numerics import QFormat
    from quantflow.serialize import load

    out = tmp_path / "q"
    rc = main(["quantize", "--model", "digits-mlp", "--wbits", "1", "--abits", "1", "--qat",
               "--qat-epochs", "2", "--out", str(out), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["method"] == "mse+qat" and (doc["wbits"], doc["abits"]) == (1, 1)
    qm = load(out)
    assert [r["lr"] for r in qm.meta["qat_candidates"]] == [1e-3, 3e-3, 1e-2]
    assert sum(r["chosen"] for r in qm.meta["qat_candidates"]) == 1
    assert all(np.all(np.abs(lyr.weight) == 1) for lyr in qm.mac_layers)
    assert all(lyr.out_fmt == QFormat(1, False) for lyr in qm.mac_layers[:-1])


def test_binary_ptq_says_to_train(tmp_path, capsys):
    from hwflow.cli import main

    assert main(["quantize", "--model", "digits-mlp", "--wbits", "1", "--abits", "1",
                 "--method", "mse", "--out", str(tmp_path / "q")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == ("note: post-training quantization collapses at 1 bit (the accuracy"
                       " above); a binary network is trained: add --qat")
