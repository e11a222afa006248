"""QAT's choices on held-out data (quantflow/qatsearch.py): the folds hold every image out
once and keep the classes' proportions, the choice is the best (accuracy, log-likelihood) of
every (start, learning rate) pair, a user's x_val replaces the folds, and `hwgen quantize
--qat` with the default recipe chooses between the recipe's result and MSE ranges."""

import dataclasses

import numpy as np
import pytest
from flowkit import digits

from quantflow import flow, ptq, qat, qatsearch


def test_folds_hold_every_sample_out_once_stratified():
    y = np.repeat(np.arange(5), [8, 12, 16, 20, 24])
    splits = qatsearch.folds(y)
    assert len(splits) == qatsearch.FOLDS
    held = np.concatenate([h for _, h in splits])
    assert sorted(held.tolist()) == list(range(len(y)))
    for fit, h in splits:
        assert not set(fit) & set(h) and len(fit) + len(h) == len(y)
        assert np.array_equal(np.bincount(y[h], minlength=5), np.bincount(y, minlength=5) // 4)
    assert all(np.array_equal(a[1], b[1])  # seeded
               for a, b in zip(splits, qatsearch.folds(y), strict=True))
    with pytest.raises(ValueError, match=r"needs at least 8 training samples, not 3$"):
        qatsearch.folds(np.arange(3))


def _mlp(ds, bits=3):
    name, net = flow.load_model("digits-mlp", ds)
    return name, net, ptq.PTQConfig(bits, bits)


def test_qat_chooses_its_start_and_learning_rate_and_trains_the_winner_on_all_data():
    """Two starts x three learning rates, each scored on four folds; the chosen row is the
    best score; the result is the winner trained on all the training data (the same net as
    training it directly)."""
    ds = digits()
    name, net, cfg = _mlp(ds)
    minmax = flow.quantize_model(name, net, ds, cfg, flow.Method.MINMAX)
    starts = flow.qat_starts(name, net, ds, cfg, minmax)
    assert list(starts) == ["minmax", "mse"]
    seen = []
    qcfg = qat.QATConfig(epochs=2)
    out = flow.finetune(minmax, net, ds, qcfg, starts=starts,
                        trial_progress=lambda i, n, text: seen.append((i, n, text)))
    n = 2 * len(qatsearch.QAT_LRS) * qatsearch.FOLDS
    assert [s[:2] for s in seen] == [(i, n) for i in range(n + 1)]
    assert seen[0][2] == "minmax lr 0.001, fold 1" and seen[-1][2].endswith("all the data")
    rows = out.qmodel.meta["qat_candidates"]
    assert [(r["start"], r["lr"]) for r in rows] == [
        (s, lr) for s in ("minmax", "mse") for lr in qatsearch.QAT_LRS]
    best = max(rows, key=lambda r: (r["val_accuracy"], r["val_log_likelihood"]))
    assert [r for r in rows if r["chosen"]] == [best]
    recipe = out.qmodel.meta["recipe"]
    assert (recipe["qat_start"], recipe["qat_lr"]) == (best["start"], best["lr"])
    direct = flow.finetune(flow.qat_starts(name, net, ds, cfg, minmax)[best["start"]], net, ds,
                           dataclasses.replace(qcfg), lrs=(best["lr"],))
    assert direct.qmodel.meta.get("qat_candidates") is None
    for a, b in zip(out.qmodel.mac_layers, direct.qmodel.mac_layers, strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)


def test_a_users_validation_data_replaces_the_folds():
    """With x_val in the data set each candidate trains on all of x_train and is scored on
    x_val; the winner is kept (no retraining), and its score is its accuracy on x_val."""
    ds = digits()
    n_val = 300
    user = dataclasses.replace(ds, x_train=ds.x_train[n_val:], y_train=ds.y_train[n_val:],
                               x_val=ds.x_train[:n_val], y_val=ds.y_train[:n_val])
    name, net, cfg = _mlp(user)
    start = flow.quantize_model(name, net, user, cfg, flow.Method.MSE)
    seen = []
    out = flow.finetune(start, net, user, qat.QATConfig(epochs=2),
                        trial_progress=lambda i, n, text: seen.append(text))
    assert seen == [f"mse lr {lr:g}, validation data" for lr in qatsearch.QAT_LRS]
    rows = out.qmodel.meta["qat_candidates"]
    assert all(r["folds"] == 0 for r in rows)
    chosen, = [r for r in rows if r["chosen"]]
    assert chosen["val_accuracy"] == pytest.approx(ptq.accuracy(out.qmodel, user.x_val,
                                                                user.y_val))


def test_hwgen_quantize_qat_chooses_between_the_recipe_and_mse_ranges(tmp_path):
    from hwflow import api

    r = api.quantize("digits-mlp", wbits=4, abits=4, qat=True, qat_epochs=1, out=tmp_path / "q")
    rows = api.load(tmp_path / "q").meta["qat_candidates"]
    starts = {row["start"] for row in rows}
    assert "mse" in starts and len(starts) == 2 and len(rows) == 2 * len(qatsearch.QAT_LRS)
    assert r.method == "auto+qat" and sum(row["chosen"] for row in rows) == 1
