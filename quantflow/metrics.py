"""Task metrics beside top-1 accuracy: regression (the zoo's ``fc-autoencoder``).

The task follows from the labels (:meth:`quantflow.data.Task.of`: float targets are
regression). For regression the figure is the mean squared error of the output against the
target, lower is better; for the integer reference it is computed on the dequantized last
layer, ``reference.run(...)[-1] * qmodel.output_scale``. Validation scores are "higher is
better" tuples, as :func:`quantflow.ptq.val_score`'s, so a regression score is
``(-mse, -mse)``. Pure numpy.
"""

import numpy as np

from . import reference
from .data import Task

__all__ = ["is_regression", "metric_name", "squared_error", "quant_outputs", "quant_mse",
           "quant_val_score"]


def is_regression(y):
    """True when ``y`` holds float regression targets rather than class labels."""
    return Task.of(y) is Task.REGRESSION


def metric_name(y):
    """``"mse"`` for regression targets, ``"accuracy"`` for class labels."""
    return "mse" if is_regression(y) else "accuracy"


def squared_error(pred, y):
    """Sum of squared differences (float64) between outputs and targets of one shape."""
    pred = np.asarray(pred, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.sum((pred.reshape(y.shape) - y) ** 2))


def quant_outputs(qmodel, x, batch=512):
    """The integer reference's dequantized outputs (N, outputs) on float inputs ``x``."""
    scale = np.asarray(qmodel.output_scale, dtype=np.float64).reshape(1, -1)
    outs = []
    for i in range(0, len(x), batch):
        acc = reference.run(qmodel, qmodel.quantize_input(x[i:i + batch]))[-1]
        outs.append(acc.reshape(len(acc), -1) * scale)
    return np.concatenate(outs)


def quant_mse(qmodel, x, y):
    """Mean squared error of the integer reference's dequantized output against ``y``."""
    return squared_error(quant_outputs(qmodel, x), y) / np.asarray(y).size


def quant_val_score(qmodel, x, y):
    """``(-mse, -mse)``: :func:`quantflow.ptq.val_score`'s "higher is better" pair for
    regression (there is no separate tie-breaker)."""
    mse = quant_mse(qmodel, x, y)
    return -mse, -mse
