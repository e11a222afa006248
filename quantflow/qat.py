"""Quantization-aware training: STE rounding and LSQ learned step sizes on a FakeQuantNet.

Starting from a PTQ result, the fake-quant net is fine-tuned end to end with cross-entropy on
the training data. Rounding uses the straight-through estimator (:func:`round_ste`,
:func:`floor_ste`); the weight scales (per output channel) and activation scales (per tensor)
are parameters learned as in LSQ (Esser et al.; white paper section 4): each scale receives
the gradient of the loss through ``x / s`` before rounding and through the dequantization
after it, including the clamp, which is LSQ's step-size gradient.

Training runs the requantization with the real ratio (``exact=False``) so gradients reach the
scales; afterwards :meth:`FakeQuantNet.refresh` re-derives every ``(M, s)`` and the net's
exact forward, and its export, are the integer contract again (bit-exact with
:mod:`quantflow.reference`).

Activation scales are shared between producer and consumers on the graph: a layer's
``out_scale`` and the ``in_scale`` of every layer reading it (each input scale of an add) are
tied to one parameter, and the producers of a concat share one (:func:`tie_scales`; the
network input scale stays fixed: the input quantizer uses it as a float). Deterministic:
seeded, one thread.
"""

from dataclasses import dataclass

import torch
from torch import nn

from .qmodel import MAC_KINDS, LayerKind

__all__ = ["QATConfig", "finetune", "tie_scales"]


@dataclass(frozen=True)
class QATConfig:
    """Fine-tuning settings: Adam with a cosine schedule over ``epochs``.

    ``scale_lr`` is ten times below ``lr``: Adam's step is about ``lr`` whatever the gradient,
    and the step sizes are small numbers (2-bit weight scales of the zoo MLP are 0.08 to 0.7).
    At 1e-3 the per-channel weight scales moved up to 1% a step and, from AdaRound's baked grid
    weights at 2 bits, the training loss rose for a third of the run (MLP W2A2 0.11 -> 0.20); at
    1e-4 it falls. Chosen on the validation split: fine-tuned on the rest of the training
    data from each default recipe of ``bench/accuracy.py``, every zoo row scored at least as
    well at 1e-4, six of 14 better.
    """

    epochs: int = 30
    batch: int = 64
    lr: float = 1e-3
    scale_lr: float = 1e-4
    seed: int = 0

    def __post_init__(self):
        for attr in ("epochs", "batch"):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"QAT {attr} must be a positive integer, not {v!r}")
        for attr in ("lr", "scale_lr"):
            v = getattr(self, attr)
            if not (isinstance(v, float) and v > 0):
                raise ValueError(f"QAT {attr} must be a positive float, not {v!r}")


def tie_scales(net):
    """Make every input scale the same Parameter as its producer's ``out_scale``, on the graph.

    Each tensor's scale is owned by the requantizing layer that wrote it (a Conv2d/Linear or an
    add; the network input for the input): max pooling, flatten and concat pass integers
    through and an average pool keeps its input's scale, so they share their input's owner.
    The producers of one concat share one Parameter (the concat moves integers only). A layer's
    ``in_scale`` (each of an add's ``in_scales``) is then its input's Parameter. The network
    input scale is frozen (the input quantizer uses it as a float).
    """
    owner = _scale_owners(net)
    params = {-1: _input_scale(net)}
    for i, layer in enumerate(net.layers):
        if owner[i] == i:
            params[i] = layer.out_scale
    for i, layer in enumerate(net.layers):
        if layer.requant and owner[i] != i and layer.kind is not LayerKind.AVGPOOL:
            layer.out_scale = params[owner[i]]  # a concat producer: the first producer's scale
    for i, layer in enumerate(net.layers):
        ins = [params[owner[j]] for j in net.sources(i)]
        if layer.kind is LayerKind.ADD:
            for k, p in enumerate(ins):
                layer.in_scales[k] = p
        else:
            layer.in_scale = ins[0]
        if layer.kind is LayerKind.AVGPOOL and layer.requant:
            layer.out_scale = ins[0]
    return net


def _input_scale(net):
    """The frozen Parameter of the network input scale (the first reader's own)."""
    for i, layer in enumerate(net.layers):
        if -1 in net.sources(i):
            p = layer.in_scales[net.sources(i).index(-1)] if layer.kind is LayerKind.ADD \
                else layer.in_scale
            p.requires_grad_(False)
            return p
    raise AssertionError("no layer reads the network input")  # capture guarantees one


def _scale_owners(net):
    """``{tensor: the tensor whose scale it has}`` (``-1``: the input), concat inputs merged
    into their first input's owner."""
    owner = {-1: -1}
    for i, layer in enumerate(net.layers):
        src = net.sources(i)
        owns = layer.requant and layer.kind is not LayerKind.AVGPOOL
        owner[i] = i if owns else owner[src[0]]
        if layer.kind is LayerKind.CONCAT:
            first = owner[src[0]]
            merged = {owner[j] for j in src} - {first}
            for t, o in owner.items():
                if o in merged:
                    owner[t] = first
    return owner


def _params(net):
    scales, others = [], []
    seen = set()
    for layer in net.layers:
        cand = [layer.out_scale] if layer.requant else []
        if layer.kind in MAC_KINDS:
            cand.append(layer.w_scale)
            others += [layer.weight, layer.bias]
        for p in cand:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                scales.append(p)
    return scales, others


def finetune(net, x_train, y_train, cfg=None, progress=None):
    """Fine-tune ``net`` in place; returns it refreshed for exact integer inference.

    ``progress(epoch, epochs, loss)`` is called after each epoch.
    """
    cfg = cfg or QATConfig()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float reductions differ with the thread count
    try:
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        tie_scales(net)
        scales, others = _params(net)
        opt = torch.optim.Adam([{"params": others, "lr": cfg.lr},
                                {"params": scales, "lr": cfg.scale_lr}])
        x = torch.as_tensor(x_train, dtype=torch.float64)
        y = torch.as_tensor(y_train, dtype=torch.int64)
        steps = cfg.epochs * ((len(x) + cfg.batch - 1) // cfg.batch)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        loss_fn = nn.CrossEntropyLoss()
        for epoch in range(cfg.epochs):
            perm = torch.randperm(len(x), generator=gen)
            total = 0.0
            for i in range(0, len(x), cfg.batch):
                idx = perm[i:i + cfg.batch]
                loss = loss_fn(net(x[idx], exact=False), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                with torch.no_grad():  # a scale must stay positive for the contract
                    for p in scales:
                        p.clamp_(min=1e-8)
                total += float(loss.detach()) * len(idx)
            if progress is not None:
                progress(epoch + 1, cfg.epochs, total / len(x))
    finally:
        torch.set_num_threads(threads)
    net.refresh()
    return net
