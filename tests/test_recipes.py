"""Recipes are values: named, validated, composable; every recipe's export is bit-exact."""

import numpy as np
import pytest
import torch
from flowkit import (assert_export_bit_exact, calib_set, captured, dag_captured, digits,
                     standardize)

from quantflow import biascorr, cle, ptq, recipes, reference
from quantflow.adaround import AdaRound
from quantflow.calibrate import RangeMethod
from quantflow.numerics import WeightGrid


def test_every_named_recipe_round_trips_through_by_name():
    for r in recipes.RECIPES:
        assert recipes.by_name(r.name) is r
    assert recipes.by_name("auto") is recipes.AUTO
    assert len({r.name for r in recipes.RECIPES}) == len(recipes.RECIPES)


def test_unknown_recipe_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"^Recipe must be one of auto, minmax, .*, not 'nope'$"):
        recipes.by_name("nope")


@pytest.mark.parametrize(("kw", "exc", "msg"), [
    ({"name": ""}, TypeError, r"^Recipe name must be a non-empty string, not ''$"),
    ({"name": "x", "w_method": "mse"}, TypeError,
     r"^Recipe w_method must be a RangeMethod, not 'mse'$"),
    ({"name": "x", "net_passes": [biascorr.BiasCorrection()]}, TypeError,
     r"^Recipe net_passes must be a tuple, not \[BiasCorrection\(\)\]$"),
])
def test_recipe_fields_are_validated(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        recipes.Recipe(**kw)


def test_run_refuses_a_recipe_name():
    with pytest.raises(TypeError, match=r"^Recipe must be a Recipe, not 'bc'$"):
        recipes.run("bc", captured("digits-mlp"), "m", (1, 8, 8), calib_set(),
                    ptq.PTQConfig(2, 2))


def test_a_composed_recipe_runs_every_pass_and_exports_bit_exact():
    r = recipes.Recipe("test", RangeMethod.MSE_OUTPUT, RangeMethod.MSE,
                       (cle.CrossLayerEqualization(),),
                       (AdaRound(iterations=10, batch=128), biascorr.BiasCorrection()))
    net, qm = recipes.run(r, captured("digits-cnn"), "digits-cnn", digits().input_shape,
                          calib_set()[:128], ptq.PTQConfig(3, 3))
    assert qm.meta["recipe"]["passes"] == ["CrossLayerEqualization", "AdaRound",
                                           "BiasCorrection"]
    assert qm.meta["recipe"]["wbits"] == 3 and qm.meta["recipe"]["recipe"] == "test"
    x_int = qm.quantize_input(digits().x_test[:64])
    with torch.no_grad():
        outs = net.forward_int(torch.from_numpy(x_int).double())
    for i, (want, got) in enumerate(zip(reference.run(qm, x_int), outs, strict=True)):
        assert np.array_equal(want, got.numpy().astype(np.int64)), f"layer {i} differs"


def test_candidates_depend_on_the_bit_widths():
    low = [r.name for r in recipes.candidates(ptq.PTQConfig(2, 8))]
    high = [r.name for r in recipes.candidates(ptq.PTQConfig(8, 8))]
    assert any("adaround" in n for n in low) and not any("adaround" in n for n in high)


def test_choose_keeps_the_best_validation_score():
    """Each candidate on both weight grids (the config leaves the grid open); the best trial
    by (accuracy, log-likelihood) is returned, flagged and stored with every trial's scores."""
    ds = digits()
    cands = [recipes.by_name("minmax"), recipes.by_name("bc")]
    x_val, y_val = ds.x_train[:200], ds.y_train[:200]
    net, qm, rows = recipes.choose(captured("digits-mlp"), "digits-mlp", ds.input_shape,
                                   calib_set(), x_val, y_val, ptq.PTQConfig(2, 2), cands)
    assert [(r["recipe"], r["w_grid"]) for r in rows] == [
        ("minmax", "narrow"), ("minmax", "full"), ("bc", "narrow"), ("bc", "full")]
    assert recipes.trials(ptq.PTQConfig(2, 2), cands) == len(rows)
    best = max(rows, key=lambda r: (r["val_accuracy"], r["val_log_likelihood"]))
    assert [r["chosen"] for r in rows].count(True) == 1 and best["chosen"]
    assert (qm.meta["recipe"]["recipe"], qm.meta["recipe"]["w_grid"]) == (best["recipe"],
                                                                          best["w_grid"])
    assert qm.meta["recipe"]["chosen_from"] == ["minmax", "bc"]
    assert qm.meta["candidates"] == rows
    assert ptq.val_score(qm, x_val, y_val) == (best["val_accuracy"], best["val_log_likelihood"])
    # the chosen grid's codes: the full grid uses -2 at 2 bits, the narrow one never does
    lows = min(int(lyr.weight.min()) for lyr in qm.layers if lyr.weight is not None)
    assert lows == (-2 if best["w_grid"] == "full" else -1)


def test_a_fixed_grid_is_not_chosen():
    ds = digits()
    cfg = ptq.PTQConfig(2, 2, w_grid=WeightGrid.NARROW)
    _, qm, rows = recipes.choose(captured("digits-mlp"), "digits-mlp", ds.input_shape,
                                 calib_set(), ds.x_train[:200], ds.y_train[:200], cfg,
                                 [recipes.by_name("minmax")])
    assert [r["w_grid"] for r in rows] == ["narrow"]
    assert min(int(lyr.weight.min()) for lyr in qm.layers if lyr.weight is not None) == -1


@pytest.mark.parametrize("recipe", recipes.RECIPES, ids=lambda r: r.name)
def test_every_named_recipe_exports_bit_exact(recipe):
    """Each named recipe (AdaRound shortened to a few steps) on the MLP at W2A2: every layer
    of the exact fake-quant forward equals the integer reference."""
    fast = tuple(AdaRound(iterations=5, batch=64) if isinstance(p, AdaRound) else p
                 for p in recipe.net_passes)
    r = recipes.Recipe(recipe.name, recipe.w_method, recipe.a_method, recipe.float_passes, fast)
    net, qm = recipes.run(r, captured("digits-mlp"), "digits-mlp", digits().input_shape,
                          calib_set()[:128], ptq.PTQConfig(2, 2))
    x_int = qm.quantize_input(np.concatenate([digits().x_test[:64],
                                              np.full((1, 1, 8, 8), 4.0, np.float32)]))
    with torch.no_grad():
        outs = net.forward_int(torch.from_numpy(x_int).double())
    for i, (want, got) in enumerate(zip(reference.run(qm, x_int), outs, strict=True)):
        assert np.array_equal(want, got.numpy().astype(np.int64)), f"{recipe.name} layer {i}"


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("name", ["resnet", "mobile", "concat", "mlp-residual"])
def test_choose_on_a_dag_runs_float_and_net_passes_and_exports_bit_exact(name, bits):
    """CLE, bias correction and a short AdaRound on the trained DAG nets (the range search has
    its own DAG test; at full length it is the slow part)."""
    signed = name == "mlp-residual"
    prep = standardize if signed else np.asarray
    ds = digits()
    layers = dag_captured(name, trained=True, signed=signed)
    fast = recipes.Recipe("adaround-bc", RangeMethod.MSE_OUTPUT, RangeMethod.MSE, (),
                          (AdaRound(iterations=10, batch=128), biascorr.BiasCorrection()))
    cands = [recipes.by_name("cle-bc"), fast]
    net, qm, rows = recipes.choose(layers, name, ds.input_shape, prep(calib_set()[:64]),
                                   prep(ds.x_train[:200]), ds.y_train[:200],
                                   ptq.PTQConfig(bits, bits), cands)
    assert [r["recipe"] for r in rows] == ["cle-bc", "cle-bc", "adaround-bc", "adaround-bc"]
    best = max(rows, key=lambda r: (r["val_accuracy"], r["val_log_likelihood"]))
    # chance is 0.1; a 10-iteration AdaRound at W2A2 sits near 0.3 (60 of 200 on one machine)
    assert qm.meta["recipe"]["recipe"] == best["recipe"] and best["val_accuracy"] > 0.2
    assert_export_bit_exact(net, x=prep(ds.x_test[:64]))


@pytest.mark.parametrize(("name", "head"), [("digits-mlp", "3"), ("digits-cnn", "7")])
def test_classifier_input_is_the_layer_feeding_the_logits(name, head):
    layers = captured(name)
    j = ptq.classifier_input(layers)
    assert layers[j].name == head, [lyr.name for lyr in layers]
    # the logits layer reads it directly or through flatten
    logits = ptq.check_chain(layers)
    between = [lyr.kind.value for lyr in layers[j + 1:logits]]
    assert set(between) <= {"flatten", "maxpool", "avgpool"}, between


def test_wide_head_trial_widens_only_the_classifier_input():
    """The extra trial repeats the best trial with the classifier's input tensor at 8 bits;
    kept only when it scores better, and its model then has that one tensor wider."""
    ds = digits()
    layers = captured("digits-mlp")
    head = layers[ptq.classifier_input(layers)].name
    net, qm, rows = recipes.choose(layers, "digits-mlp", ds.input_shape, calib_set(),
                                   ds.x_train[:200], ds.y_train[:200],
                                   ptq.PTQConfig(2, 2, w_grid=WeightGrid.FULL),
                                   [recipes.by_name("mse")], wide_head=True)
    assert [(r["recipe"], r.get("head_bits")) for r in rows] == [("mse", None), ("mse", 8)]
    assert rows[1]["head_layer"] == head
    fmts = {lyr.name: lyr.out_fmt.bits for lyr in qm.layers
            if lyr.requant and lyr.weight is not None}
    want_head = 8 if rows[1]["chosen"] else 2
    assert fmts.pop(head) == want_head and set(fmts.values()) == {2}, fmts
    best = max(rows, key=lambda r: (r["val_accuracy"], r["val_log_likelihood"]))
    assert best["chosen"]
    assert_export_bit_exact(net)
