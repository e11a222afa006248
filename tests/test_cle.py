"""Cross-layer equalization leaves the float function unchanged and equalizes the ranges."""

import numpy as np
import pytest
from flowkit import calib_set, captured

from quantflow import cle, importers
from quantflow.importers import Act

MODELS = ["digits-cnn", "digits-mlp"]


@pytest.mark.parametrize("name", MODELS)
def test_cle_keeps_the_float_function(name):
    layers = captured(name)
    eq = cle.equalize(layers)
    x = calib_set()[:64]
    before = importers.run_float(layers, x)
    after = importers.run_float(eq, x)
    # the logits are unchanged; inner layers are rescaled per channel by design
    np.testing.assert_allclose(after[-1].numpy(), before[-1].numpy(), rtol=1e-9, atol=1e-9)
    for i, _ in cle.pairs(layers):
        b, a = before[i].numpy(), after[i].numpy()
        ax = tuple(d for d in range(b.ndim) if d != 1)
        s = np.abs(b).max(axis=ax) / np.maximum(np.abs(a).max(axis=ax), 1e-300)
        shape = (1, -1) + (1,) * (b.ndim - 2)
        np.testing.assert_allclose(a * s.reshape(shape), b, rtol=1e-9, atol=1e-9,
                                   err_msg=f"{name} layer {i} is not a per-channel rescale")


@pytest.mark.parametrize("name", MODELS)
def test_cle_equalizes_each_pair_and_leaves_the_input_alone(name):
    layers = captured(name)
    weights = [None if lyr.weight is None else lyr.weight.copy() for lyr in layers]
    eq = cle.equalize(layers, iterations=200)
    for lyr, w in zip(layers, weights, strict=True):
        assert w is None or np.array_equal(lyr.weight, w), "equalize changed its input chain"
    todo = cle.pairs(eq)
    assert todo, f"{name}: no pair found"
    for i, j in todo:
        c = eq[i].weight.shape[0]
        r1 = np.abs(eq[i].weight.reshape(c, -1)).max(axis=1)
        r2 = np.abs(eq[j].weight.reshape(eq[j].weight.shape[0], c, -1)).max(axis=(0, 2))
        np.testing.assert_allclose(r1, r2, rtol=1e-4, err_msg=f"{name} pair {(i, j)}")


def test_cle_pairs_cross_maxpool_and_flatten_but_not_relu6():
    layers = captured("digits-cnn")
    kinds = [lyr.kind.value for lyr in layers]
    assert kinds == ["conv2d", "conv2d", "maxpool", "conv2d", "flatten", "linear"]
    assert cle.pairs(layers) == [(0, 1), (1, 3), (3, 5)]
    six = importers.clone(layers)
    six[1].act = Act.RELU6
    assert cle.pairs(six) == [(0, 1), (3, 5)]


def test_cle_iterations_must_be_positive():
    with pytest.raises(ValueError, match=r"^CLE iterations must be a positive integer, not 0$"):
        cle.CrossLayerEqualization(0)
