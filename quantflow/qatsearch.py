"""QAT's own choices, made on held-out data: where it starts and how fast it learns.

Candidates are every (start, learning rate) pair: a start is a PTQ result's fake-quant twin
(the default recipe's choice, or MSE ranges on the float weights: a recipe's rounding bakes
the weights onto the grid, which suits some networks and not others), the learning rates
:data:`QAT_LRS` (``scale_lr`` a tenth of each, :class:`quantflow.qat.QATConfig`). Each is
scored by :func:`quantflow.ptq.val_score` (accuracy, then log-likelihood):

- on the user's validation data when the data set has it (trained on all of ``x_train``);
- else by :data:`FOLDS`-fold cross-validation over the choice data (stratified for class
  labels): each candidate trained on three quarters and scored on the fourth, four times, so
  every image is scored once. On digits one validation split is 337 images, and the QAT
  candidates differ by one to four of them; four folds score four times as many, which is
  why the choice is not made on the split PTQ's recipes are chosen on.

The winner is then trained on all the choice data (or kept, when it was trained on it).
"""

import copy
import dataclasses

import numpy as np

from . import metrics, ptq

__all__ = ["QAT_LRS", "FOLDS", "Candidate", "folds", "choose"]

#: The learning rates every QAT run chooses among. At 1 bit the default 1e-3 is too slow for
#: some nets and 1e-2 too fast for others (digits-mlp W1A1 on the validation split: 0.83 /
#: 0.90 / 0.95; digits-cnn: 0.96 / 0.96 / 0.95); at 2-3 bits the best differs per network
#: and start too (``bench/peers.py --qat``).
QAT_LRS = (1e-3, 3e-3, 1e-2)
#: Cross-validation folds when the data set has no validation data of its own.
FOLDS = 4


@dataclasses.dataclass(frozen=True)
class Candidate:
    start: str
    lr: float
    cfg: object  # QATConfig


def folds(y, k=FOLDS, seed=0):
    """``k`` ``(train indices, held-out indices)`` pairs over ``len(y)`` samples, stratified
    by class for integer labels (seeded; each sample held out once)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(y)
    if n < 2 * k:
        raise ValueError(f"QAT's {k}-fold choice needs at least {2 * k} training samples,"
                         f" not {n}")
    idx = np.arange(n)
    if not metrics.is_regression(y):
        counts = np.bincount(np.asarray(y))
        if counts[counts > 0].min() >= k:
            return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(idx, y))
    return list(KFold(k, shuffle=True, random_state=seed).split(idx))


def candidates(starts, qat_cfg, lrs=QAT_LRS):
    """Every (start, lr) pair, ``starts`` in their order."""
    return [Candidate(s, lr, dataclasses.replace(qat_cfg, lr=lr,
                                                 scale_lr=float(f"{lr / 10:.3g}")))
            for s in starts for lr in lrs]


def choose(starts, qat_cfg, x, y, x_val=None, y_val=None, lrs=QAT_LRS, progress=None,
           trial_progress=None):
    """Train every candidate, score it on held-out data, train the winner on ``(x, y)``.

    ``starts``: ``{label: fake-quant net}`` (not modified). With ``x_val``/``y_val`` each
    candidate trains on ``(x, y)`` and is scored there; otherwise by :func:`folds` over
    ``(x, y)``. ``progress(epoch, epochs, loss)`` as :func:`quantflow.qat.finetune`;
    ``trial_progress(i, n, text)`` before each training run, ``i == n`` before the final one.

    Returns ``(trained fake-quant net, its Candidate, rows)``: one row per candidate (start,
    lr, scale_lr, val_accuracy, val_log_likelihood, folds, chosen) for ``model.json``.
    """
    from . import qat

    cands = candidates(starts, qat_cfg, lrs)
    splits = None if x_val is not None else folds(y)
    runs = len(cands) * (1 if splits is None else len(splits))
    rows, best, kept, i = [], None, None, 0
    for c in cands:
        scores, trained = [], None
        for fit_idx, held in ([(None, None)] if splits is None else splits):
            if trial_progress is not None:
                where = "validation data" if splits is None else f"fold {len(scores) + 1}"
                trial_progress(i, runs, f"{c.start} lr {c.lr:g}, {where}")
            i += 1
            net = copy.deepcopy(starts[c.start])
            if splits is None:
                trained = qat.finetune(net, x, y, c.cfg, progress)
                scores.append(ptq.val_score(trained.export(), x_val, y_val))
            else:
                qat.finetune(net, x[fit_idx], y[fit_idx], c.cfg, progress)
                scores.append(ptq.val_score(net.export(), x[held], y[held]))
        score = tuple(float(np.mean([s[k] for s in scores])) for k in range(2))
        rows.append({"start": c.start, "lr": c.lr, "scale_lr": c.cfg.scale_lr,
                     "val_accuracy": score[0], "val_log_likelihood": score[1],
                     "folds": 0 if splits is None else len(splits), "chosen": False})
        if best is None or score > best[0]:
            best, kept = (score, len(rows) - 1, c), trained
    rows[best[1]]["chosen"] = True
    chosen = best[2]
    if kept is None:  # cross-validated: the winner on all the choice data
        if trial_progress is not None:
            trial_progress(runs, runs, f"{chosen.start} lr {chosen.lr:g}, all the data")
        kept = qat.finetune(copy.deepcopy(starts[chosen.start]), x, y, chosen.cfg, progress)
    return kept, chosen, rows
