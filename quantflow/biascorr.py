"""Empirical bias correction (Nagel et al., white paper section 3.3): a FakeQuantNet pass.

Quantization makes the expected pre-activation of a layer drift: ``E[W~ x~] != E[W x]``.
Layer by layer, in order, the pass runs the calibration images through the fake-quant net
(exact integer mode, earlier layers already corrected) and through the float chain, and
subtracts the mean per-channel difference of the dequantized accumulator and the float
pre-activation from the layer's float bias. The integer bias is then re-rounded to the
accumulator grid ``s_w * s_in``, so the mean error left per channel is at most half an LSB of
that grid (unless the bias hits the accumulator bound).

Contract: only biases change; after the pass the mean pre-activation error on the calibration
data is within ``0.5 * s_w * s_in`` per channel. The net goes on exporting through its own
tensors, so the export stays bit-exact.
"""

from dataclasses import dataclass, replace

import numpy as np
import torch

from .importers import Act, float_layer
from .qmodel import MAC_KINDS

__all__ = ["BiasCorrection", "correct_bias", "preact_errors"]


def _deq_scale(fq, ndim):
    return (fq.w_scale * fq.in_scale).reshape((1, -1) + (1,) * (ndim - 2))


@torch.no_grad()
def preact_errors(net, layers, x_calib):
    """Per MAC layer: the mean per-channel error ``E[deq(acc)] - E[float pre-activation]``
    (numpy ``(O,)``), each layer fed its own model's inputs (quantized vs float)."""
    errs = {}
    outq = {-1: net.quantize_input(x_calib)}
    outf = {-1: torch.as_tensor(np.asarray(x_calib), dtype=torch.float64)}
    for i, (fq, fl) in enumerate(zip(net.layers, layers, strict=True)):
        aq, af = ([out[j] for j in net.sources(i)] for out in (outq, outf))
        if fq.kind in MAC_KINDS:
            errs[i] = _channel_error(fq, fl, aq[0], af[0])
        outq[i], outf[i] = fq(*aq), float_layer(fl, *af)
    return errs


def _channel_error(fq, fl, xq, xf):
    acc = fq.accumulate(xq)
    deq = acc * _deq_scale(fq, acc.dim())
    ref = float_layer(replace(fl, act=Act.NONE), xf)
    dims = [d for d in range(acc.dim()) if d != 1]
    return (deq - ref).mean(dim=dims).numpy()


@torch.no_grad()
def correct_bias(net, layers, x_calib):
    """Correct every MAC layer's bias of ``net`` in place (see the module docstring).

    ``layers`` is the float chain ``net`` was built from (after any float pass such as CLE).
    Returns the per-layer corrections that were subtracted (``{index: (O,) array}``).
    """
    done = {}
    outq = {-1: net.quantize_input(x_calib)}
    outf = {-1: torch.as_tensor(np.asarray(x_calib), dtype=torch.float64)}
    for i, (fq, fl) in enumerate(zip(net.layers, layers, strict=True)):
        aq, af = ([out[j] for j in net.sources(i)] for out in (outq, outf))
        if fq.kind in MAC_KINDS:
            err = _channel_error(fq, fl, aq[0], af[0])
            # Correct the bias the accumulator really adds (the rounded one): correcting the
            # float bias would leave its old rounding error on top of the new one.
            grid = fq.w_scale * fq.in_scale
            fq.bias.copy_(fq.int_bias() * grid - torch.from_numpy(err))
            done[i] = err
        outq[i], outf[i] = fq(*aq), float_layer(fl, *af)
    return done


@dataclass(frozen=True)
class BiasCorrection:
    """Recipe pass on the fake-quant net: :func:`correct_bias` on the calibration data."""

    def apply(self, net, layers, x_calib, progress=None):
        correct_bias(net, layers, x_calib)
