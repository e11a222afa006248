"""Sensitivity: one row per MAC layer (and add), the lowered layer really runs at the low
width."""

import pytest
from flowkit import calib_set, captured, dag_captured, digits, standardize

from quantflow import ptq, recipes, sensitivity


def test_one_row_per_mac_layer_with_its_drop():
    ds = digits()
    x, y = ds.x_test[:150], ds.y_test[:150]
    rows = sensitivity.layer_sensitivity(captured("digits-mlp"), "digits-mlp", ds.input_shape,
                                         calib_set(), x, y, base=(8, 8), low=(2, 2),
                                         recipe=recipes.by_name("mse"))
    assert [r.layer for r in rows] == ["1", "3", "5"]
    assert len({r.base_accuracy for r in rows}) == 1
    for r in rows:
        assert r.drop == pytest.approx(r.base_accuracy - r.accuracy)
    # the row for layer "3" is the model with only that layer at W2A2
    cfg = ptq.PTQConfig(8, 8, layer_bits={"3": (2, 2)})
    _, qm = recipes.run(recipes.by_name("mse"), captured("digits-mlp"), "digits-mlp",
                        ds.input_shape, calib_set(), cfg)
    assert rows[1].accuracy == ptq.accuracy(qm, x, y)
    assert [lyr.w_fmt.bits for lyr in qm.mac_layers] == [8, 2, 8]


def test_a_dag_has_a_row_for_each_mac_layer_and_add():
    ds = digits()
    x, y = standardize(ds.x_test[:150]), ds.y_test[:150]
    layers = dag_captured("mlp-residual", trained=True, signed=True)
    rows = sensitivity.layer_sensitivity(layers, "mlp", ds.input_shape,
                                         standardize(calib_set()), x, y, base=(8, 8),
                                         low=(2, 2), recipe=recipes.by_name("mse"))
    assert [r.layer for r in rows] == ["inp", "h1", "h2", "add", "out"]
    cfg = ptq.PTQConfig(8, 8, layer_bits={"add": (2, 2)})
    _, qm = recipes.run(recipes.by_name("mse"), layers, "mlp", ds.input_shape,
                        standardize(calib_set()), cfg)
    assert rows[3].accuracy == ptq.accuracy(qm, x, y) and qm.layers[4].out_fmt.bits == 2
