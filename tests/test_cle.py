"""Cross-layer equalization leaves the float function unchanged and equalizes the ranges, on
chains and on DAG graphs (where tensors an add, a concat or two layers read are not touched)."""

import dagnets
import numpy as np
import pytest
from flowkit import assert_export_bit_exact, calib_set, captured

from quantflow import cle, importers, ptq
from quantflow.calibrate import RangeMethod
from quantflow.importers import Act
from quantflow.qmodel import LayerKind

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


# -- DAG graphs ---------------------------------------------------------------------------------

DAG_PAIRS = {"resnet": [(1, 2), (4, 5)], "mobile": [(1, 2), (7, 8), (8, 10)],
             "concat": [(5, 7)], "mlp-residual": [(2, 3)]}


def _dag(name):
    return importers.capture(dagnets.build(name), (1, 8, 8))


def _shared_tensors(layers):
    """Tensors an add or a concat reads, or that several layers read."""
    return {j for i, lyr in enumerate(layers) for j in importers.sources(layers, i)
            if j >= 0 and (lyr.kind in (LayerKind.ADD, LayerKind.CONCAT)
                           or len(importers.consumers(layers, j)) > 1)}


def _input_ranges(layer, c):
    """Range of the weights reading each input channel (grouped weights expanded)."""
    w = importers.dense_weight(layer)
    return np.abs(w.reshape(w.shape[0], c, -1)).max(axis=(0, 2))


@pytest.mark.parametrize("name", list(DAG_PAIRS))
def test_cle_on_a_dag_equalizes_its_pairs_and_leaves_shared_tensors_alone(name):
    layers = _dag(name)
    assert cle.pairs(layers) == DAG_PAIRS[name]
    eq = cle.equalize(layers, iterations=200)
    x = calib_set()[:64]
    before, after = importers.run_float(layers, x), importers.run_float(eq, x)
    np.testing.assert_allclose(after[-1].numpy(), before[-1].numpy(), rtol=1e-6, atol=1e-6)
    shared = _shared_tensors(layers)
    assert shared and (name != "concat" or {1, 2} <= shared)
    for j in shared:  # the other reader of these tensors would see any rescale
        np.testing.assert_allclose(after[j].numpy(), before[j].numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=f"{name}: shared tensor {j} was rescaled")
        assert "cle" not in eq[j].extra
    for i, j in cle.pairs(eq):
        c = eq[i].weight.shape[0]
        r1 = np.abs(eq[i].weight.reshape(c, -1)).max(axis=1)
        np.testing.assert_allclose(r1, _input_ranges(eq[j], c), rtol=1e-4,
                                   err_msg=f"{name} pair {(i, j)}")
        assert eq[i].extra["cle"] and not np.allclose(eq[i].weight, layers[i].weight), (
            f"{name} pair {(i, j)} was not rescaled")


def test_cle_scales_a_depthwise_second_layer_per_channel():
    layers = _dag("mobile")
    layers[0].act = Act.RELU  # stem -> depthwise dw: a pair once the stem has a plain ReLU
    assert (0, 1) in cle.pairs(layers) and layers[1].groups == layers[1].weight.shape[0]
    eq = cle.equalize(layers, iterations=200)
    x = calib_set()[:64]
    before, after = importers.run_float(layers, x), importers.run_float(eq, x)
    np.testing.assert_allclose(after[-1].numpy(), before[-1].numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(after[2].numpy(), before[2].numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.abs(eq[0].weight.reshape(4, -1)).max(axis=1),
                               _input_ranges(eq[1], 4), rtol=1e-4)


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("name", list(DAG_PAIRS))
def test_cle_on_a_dag_quantizes_bit_exact(name, bits):
    eq = cle.CrossLayerEqualization().apply(_dag(name))
    cfg = ptq.PTQConfig(bits, bits, w_method=RangeMethod.MSE, a_method=RangeMethod.MSE)
    net = ptq.quantize(eq, name, (1, 8, 8), calib_set(), cfg)
    assert_export_bit_exact(net)
