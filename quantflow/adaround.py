"""AdaRound (Nagel et al. 2020; white paper section 3.4): learned rounding, layer by layer.

For each MAC layer in order, the integer weight is ``clamp(floor(w/s) + h, -q, q)`` with
``h = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)`` learned per weight, minimising the
reconstruction error of the layer's output (after its ReLU) on calibration inputs::

    || act(X~ W~^T + b) - act(X W^T + b) ||^2  +  lambda * sum(1 - |2h - 1|^beta)

``X~`` are the layer's inputs in the fake-quant net (earlier layers already rounded, so errors
are compensated downstream), ``X`` the float chain's. ``beta`` anneals from 20 to 2 after a
warm-up without the regulariser, which drives every ``h`` to 0 or 1.

The learned rounding is then baked into the net's float weight as the grid point
``s * clamp(floor(w/s) + round(h))``: the fake-quant layer's ``round(w / s)`` gives exactly
that integer, so forward and export stay one code path and bit-exact with the reference.

Contract: every integer weight is ``floor(w/s)`` or ``floor(w/s) + 1`` of the weight it
started from (then clamped to the format); scales and biases are unchanged. Deterministic
(seeded, one thread).
"""

from dataclasses import dataclass

import numpy as np
import torch

from .errors import UserError
from .importers import Act, group_slices, run_float, sources
from .qmodel import MAC_KINDS, LayerKind
from .reference import _windows

__all__ = ["AdaRound", "adaround", "layer_rows", "row_groups", "grouped_matmul",
           "layer_inputs"]

_ZETA, _GAMMA = 1.1, -0.1


def layer_rows(fl, x):
    """A MAC layer's inputs as rows ``(N * positions, C_in * kh * kw)`` over all its input
    channels (in the weight's flattened order when ``groups == 1``; see :func:`row_groups`),
    and the number of positions per image."""
    x = np.asarray(x, dtype=np.float64)
    if fl.kind is LayerKind.LINEAR:
        return x.reshape(len(x), -1), 1
    win = _windows(x, fl.kernel, fl.stride, fl.padding)  # (N, C, Ho, Wo, kh, kw)
    positions = win.shape[2] * win.shape[3]
    k = win.shape[1] * win.shape[4] * win.shape[5]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(-1, k), positions


def row_groups(fl):
    """``[(outputs, columns)]`` per group: the output channels (rows of the weight) and the
    columns of :func:`layer_rows` they read. A group's weight ``W[outputs]`` flattened to
    ``(O/g, I/g * kh * kw)`` multiplies ``rows[:, columns]`` (channel-major columns, so each
    group's are contiguous)."""
    per = int(np.prod(fl.weight.shape[2:])) if fl.kind is LayerKind.CONV2D else 1
    return [(outs, slice(ins.start * per, ins.stop * per)) for outs, ins in group_slices(fl)]


def grouped_matmul(rows, w, groups):
    """``rows @ W^T`` of a grouped layer: ``w`` is ``(O, K_group)`` (torch or numpy), each
    group of outputs reading its own columns of ``rows``."""
    if len(groups) == 1:
        return rows @ w.T
    parts = [rows[:, cols] @ w[outs].T for outs, cols in groups]
    return torch.cat(parts, dim=1) if isinstance(rows, torch.Tensor) else np.concatenate(
        parts, axis=1)


def _h(v):
    return torch.clamp(torch.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA, 0.0, 1.0)


def layer_inputs(net, layers, x_calib, index):
    """Dequantized fake-quant input and float input of MAC layer ``index`` (numpy): the
    outputs of the layer it reads in each graph (``-1``: the network input)."""
    src = sources(layers, index)[0]
    with torch.no_grad():
        xq = net.layer_inputs(net.quantize_input(x_calib), index)[0]
        xq = xq * net.layers[index].in_scale
    xf = (np.asarray(x_calib, dtype=np.float64) if src < 0
          else run_float(layers, x_calib, upto=index)[src].numpy())
    return xq.numpy(), xf


@dataclass(frozen=True)
class AdaRound:
    """Recipe pass on the fake-quant net: :func:`adaround` with these settings."""

    iterations: int = 1000
    batch: int = 2048
    lr: float = 1e-2
    reg: float = 0.01
    warmup: float = 0.2
    seed: int = 0

    def __post_init__(self):
        for attr in ("iterations", "batch"):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"AdaRound {attr} must be a positive integer, not {v!r}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"AdaRound warmup must be a fraction in [0, 1), not {self.warmup!r}")

    def apply(self, net, layers, x_calib, progress=None):
        binary = [fq.name for fq in net.layers if fq.kind in MAC_KINDS and fq.w_fmt.bipolar]
        if binary:
            raise UserError(f"AdaRound chooses between two neighbouring codes, and 1-bit weights"
                            f" (layer {binary[0]!r}) have no neighbours to round between: use"
                            " gptq-bc or QAT at 1 bit")
        adaround(net, layers, x_calib, self, progress)


def adaround(net, layers, x_calib, opts=None, progress=None):
    """Learn the rounding of every MAC layer of ``net`` in place (see the module docstring).

    ``progress(done, total)`` is called once per layer. Returns ``{index: fraction of weights
    rounded differently from round-to-nearest}``.
    """
    opts = opts or AdaRound()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float reductions differ with the thread count
    try:
        macs = [i for i, fq in enumerate(net.layers) if fq.kind in MAC_KINDS]
        changed = {}
        for n, i in enumerate(macs):
            changed[i] = _round_layer(net, layers, x_calib, i, opts)
            if progress is not None:
                progress(n + 1, len(macs))
    finally:
        torch.set_num_threads(threads)
    return changed


def _round_layer(net, layers, x_calib, index, opts):
    fq, fl = net.layers[index], layers[index]
    xq, xf = layer_inputs(net, layers, x_calib, index)
    rows_q, positions = layer_rows(fl, xq)
    rows_f, _ = layer_rows(fl, xf)
    xq_t, xf_t = torch.from_numpy(rows_q), torch.from_numpy(rows_f)
    groups = row_groups(fl)
    with torch.no_grad():
        o = fq.weight.shape[0]
        w = fq.weight.detach().reshape(o, -1)
        s = fq.w_scale.detach().reshape(o, 1)
        b = fq.bias.detach()
        lo, hi = fq.w_lo, fq.w_hi
        base = torch.floor(w / s)
        frac = (w / s - base).clamp(0.01, 0.99)
        nearest = torch.clamp(torch.round(w / s), lo, hi)
    relu = fl.act is not Act.NONE
    v = torch.nn.Parameter(-torch.log((_ZETA - _GAMMA) / (frac - _GAMMA) - 1.0))
    opt = torch.optim.Adam([v], lr=opts.lr)
    gen = torch.Generator().manual_seed(opts.seed + index)
    warm = int(opts.warmup * opts.iterations)
    for it in range(opts.iterations):
        idx = torch.randint(len(xq_t), (min(opts.batch, len(xq_t)),), generator=gen)
        with torch.no_grad():
            target = grouped_matmul(xf_t[idx], w, groups) + b
            if relu:
                target = torch.relu(target)
        wq = torch.clamp(base + _h(v), lo, hi) * s
        pred = grouped_matmul(xq_t[idx], wq, groups) + b
        if relu:
            pred = torch.relu(pred)
        loss = ((pred - target) ** 2).sum(dim=1).mean() * positions
        if it >= warm:
            t = (it - warm) / max(1, opts.iterations - warm)
            beta = 2.0 + 18.0 * 0.5 * (1.0 + np.cos(np.pi * t))  # 20 -> 2, cosine
            hv = _h(v)
            loss = loss + opts.reg * (1.0 - (2.0 * hv - 1.0).abs().pow(beta)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        learned = torch.clamp(base + (_h(v) >= 0.5).double(), lo, hi)
        fq.weight.copy_((learned * s).reshape(fq.weight.shape))
        assert torch.equal(fq.int_weight().reshape(o, -1), learned), "baked rounding drifted"
        return float((learned != nearest).double().mean())
