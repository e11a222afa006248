"""Activation range search on the network output: a FakeQuantNet pass.

Range setting per tensor (MSE, percentile) minimises each activation's own error, which at 2
and 3 bits is a poor proxy for what the network computes from it. This pass scales each
activation's clipping range by the factor from :data:`FACTORS` that minimises the KL
divergence of the fake-quant net's output distribution from the float graph's on the
calibration images (no labels), one activation at a time, in order, for ``sweeps`` rounds: every
Conv2d/Linear and add output (signed ones on their symmetric range), a concat's producers
moving together.

Scales are tied between producer and consumer (:func:`quantflow.qat.tie_scales`), so a new
range moves both the producer's requantization and the consumer's bias grid, and
:meth:`FakeQuantNet.refresh` re-derives every ``(M, s)``: the exact forward and the export
stay the integer contract. Contract: only activation scales change, and the calibration KL
never increases (the current factor 1.0 is always a candidate).
"""

from dataclasses import dataclass

import numpy as np
import torch

from .importers import run_float
from .qat import tie_scales

__all__ = ["ActivationRangeSearch", "search_ranges", "searched_scales", "output_kl", "FACTORS"]

#: Candidate multipliers of the current clipping range.
FACTORS = tuple(np.round(np.geomspace(0.5, 2.0, 25), 6))


@torch.no_grad()
def output_kl(net, x_int, ref_logp):
    """Mean KL(float || fake-quant) of the output distributions, exact integer forward."""
    logits = net.forward_int(x_int)[-1] * (net.layers[-1].w_scale
                                           * net.layers[-1].in_scale).reshape(1, -1)
    logq = torch.log_softmax(logits, dim=1)
    return float((ref_logp.exp() * (ref_logp - logq)).sum(dim=1).mean())


def searched_scales(net):
    """Tie ``net``'s scales along the graph (:func:`quantflow.qat.tie_scales`) and return each
    activation scale the search tunes, once: every Conv2d/Linear and add output, signed or
    unsigned (a concat's producers share one; the input scale is fixed)."""
    tie_scales(net)
    params = []
    for layer in net.layers:
        p = layer.out_scale
        if layer.requant and p.requires_grad and all(p is not q for q in params):
            params.append(p)
    return params


@torch.no_grad()
def search_ranges(net, layers, x_calib, sweeps=2, factors=FACTORS):
    """Tune every requantized activation scale of ``net`` in place; returns the final KL."""
    params = searched_scales(net)
    x_int = net.quantize_input(x_calib)
    ref = run_float(layers, x_calib)[-1]
    ref_logp = torch.log_softmax(ref, dim=1)
    best = output_kl(net, x_int, ref_logp)
    for _ in range(sweeps):
        for p in params:
            base = float(p)
            choice = 1.0
            for f in factors:
                p.fill_(base * f)
                net.refresh()
                kl = output_kl(net, x_int, ref_logp)
                if kl < best - 1e-12:
                    best, choice = kl, f
            p.fill_(base * choice)
            net.refresh()
    return best


@dataclass(frozen=True)
class ActivationRangeSearch:
    """Recipe pass on the fake-quant net: :func:`search_ranges`."""

    sweeps: int = 2

    def __post_init__(self):
        if isinstance(self.sweeps, bool) or not isinstance(self.sweeps, int) or self.sweeps < 1:
            raise ValueError(f"Range search sweeps must be a positive integer, not "
                             f"{self.sweeps!r}")

    def apply(self, net, layers, x_calib, progress=None):
        search_ranges(net, layers, x_calib, self.sweeps)
