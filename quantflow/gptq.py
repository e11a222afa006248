"""GPTQ-style error-feedback rounding (Frantar et al. 2022): a FakeQuantNet pass.

For each MAC layer in order, with ``X`` the layer's inputs in the fake-quant net (earlier
layers already quantized, each layer fed by the layer it reads in the graph) as rows and
``H = X^T X / n + damp * I``, the weight columns are
quantized one at a time; the error of column ``k`` is fed back into the columns not yet
quantized through the inverse Hessian, ``W[:, k+1:] -= e_k H^-1[k, k+1:] / H^-1[k, k]``, which
minimises ``||X (W - W~)^T||^2`` greedily (optimal brain quantization). Scales are kept; the
chosen integers are baked into the net's float weights as grid points (as AdaRound does), so
the export stays one path and bit-exact. A grouped (or depthwise) convolution has one Hessian
per group, over the input channels that group reads.

Contract: integer weights stay in the weight format and scales and biases are unchanged;
deterministic (no randomness). Pure numpy on float64 besides the net's tensors.
"""

from dataclasses import dataclass

import numpy as np
import torch

from .adaround import layer_inputs, layer_rows, row_groups
from .qmodel import MAC_KINDS

__all__ = ["ErrorFeedbackRounding", "gptq"]


@dataclass(frozen=True)
class ErrorFeedbackRounding:
    """Recipe pass on the fake-quant net: :func:`gptq`; ``damp`` relative to mean(diag H)."""

    damp: float = 0.01

    def __post_init__(self):
        if not (isinstance(self.damp, float) and self.damp > 0):
            raise ValueError(f"GPTQ damp must be a positive float, not {self.damp!r}")

    def apply(self, net, layers, x_calib, progress=None):
        gptq(net, layers, x_calib, self.damp)


def _quantize_columns(w, s, codes, h):
    """Integers ``(O, K)`` for weights ``w`` with per-row scales ``s`` given Hessian ``h``;
    ``codes`` maps reals to the nearest code of the layer's grid."""
    w, s = w.copy(), s.reshape(-1)
    k = w.shape[1]
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    hinv = np.linalg.cholesky(np.linalg.inv(h)).T  # upper triangular
    q = np.zeros_like(w)
    for j in range(k):
        col = w[:, j]
        qi = codes(col / s)
        q[:, j] = qi
        err = (col - qi * s) / hinv[j, j]
        w[:, j + 1:] -= np.outer(err, hinv[j, j + 1:])
    return q


def _hessian(rows, damp):
    h = rows.T @ rows / len(rows)
    return h + damp * float(np.mean(np.diag(h))) * np.eye(len(h))


def gptq(net, layers, x_calib, damp=0.01):
    """Error-feedback rounding of every MAC layer of ``net`` in place.

    Returns ``{index: fraction of weights rounded differently from round-to-nearest}``.
    """
    changed = {}
    for i, fq in enumerate(net.layers):
        if fq.kind not in MAC_KINDS:
            continue
        xq, _ = layer_inputs(net, layers, x_calib, i)
        rows, _ = layer_rows(layers[i], xq)
        with torch.no_grad():
            o = fq.weight.shape[0]
            w = fq.weight.detach().reshape(o, -1).numpy().astype(np.float64)
            s = fq.w_scale.detach().numpy().reshape(o, 1)
            q = np.zeros_like(w)
            for outs, cols in row_groups(layers[i]):
                q[outs] = _quantize_columns(w[outs], s[outs], fq.codes,
                                            _hessian(rows[:, cols], damp))
            nearest = fq.codes(w / s)
            fq.weight.copy_(torch.from_numpy(q * s).reshape(fq.weight.shape))
            got = fq.int_weight().reshape(o, -1).numpy()
            assert np.array_equal(got, q), "baked rounding drifted"
        changed[i] = float(np.mean(q != nearest))
    return changed
