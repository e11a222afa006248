"""Brevitas PTQ recipes on a captured float chain, in the layout of our numerics contract.

Used by ``bench/peers.py``. The network is rebuilt from :func:`quantflow.importers.capture`'s
float layers (BatchNorm already folded, the exact float weights our flow quantizes) as a
Brevitas model: an 8-bit unsigned input quantizer, per-output-channel float-scaled weights,
per-tensor unsigned activations after each ReLU, 32-bit biases at accumulator scale, and the
last layer's output left at accumulator scale (dequantized logits, no output quantizer).
Each recipe is a function ``(float_modules, wbits, abits, x_calib) -> nn.Module``.

:func:`qat` trains the same chain quantization-aware with Brevitas' learned-scale quantizers
(:data:`QAT_STARTS`, :func:`qat_model`), on the budget of :mod:`quantflow.qat`.
"""

import copy
import warnings

import numpy as np
import torch
from torch import nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # brevitas warns about optional kernels at import
    import brevitas.nn as qnn
    from brevitas.graph.calibrate import bias_correction_mode, calibration_mode
    from brevitas.graph.equalize import EqualizeGraph
    from brevitas.graph.gpfq import gpfq_mode
    from brevitas.graph.gptq import gptq_mode
    from brevitas.quant import (
        Int8WeightPerChannelFloat,
        Int8WeightPerChannelFloatMSE,
        Int32Bias,
        Uint8ActPerTensorFloat,
        Uint8ActPerTensorFloatMSE,
    )
    from brevitas.core.function_wrapper import TensorClampSte
    from brevitas.core.function_wrapper.learned_round import LearnedRoundSte
    from brevitas.inject.enum import (
        FloatToIntImplType,
        LearnedRoundImplType,
        ScalingImplType,
        ScalingPerOutputType,
        StatsOp,
    )
    from brevitas.quant.base import ParamFromRuntimeMinMaxScaling, SignedBinaryClampedConst
    from brevitas.quant.solver import WeightQuantSolver

from quantflow.importers import Act  # noqa: E402
from quantflow.qmodel import LayerKind  # noqa: E402

__all__ = ["float_modules", "RECIPES", "run", "applies", "accuracy", "QAT_STARTS", "qat_model",
           "qat"]


class _WeightMinMax(Int8WeightPerChannelFloat):
    """Per-channel max |w|, full code range (-2^(b-1) .. 2^(b-1)-1), as Brevitas' min-max."""

    narrow_range = False


class _WeightMSE(Int8WeightPerChannelFloatMSE):
    narrow_range = False


class _WeightFrozen(_WeightMinMax):
    """Min-max scales fixed when the quantizer is built (GPTQ/GPFQ rewrite the weights; a
    scale recomputed from them on every forward would move under the algorithm)."""

    scaling_impl_type = ScalingImplType.PARAMETER_FROM_STATS


class _WeightBinary(SignedBinaryClampedConst, WeightQuantSolver):
    """Binary weights +-s with a learned per-output-channel scale initialised to mean |w| (the
    scale of least squared error for sign(w)): Brevitas' ``SignedBinaryClampedConst`` (its
    ``SignedBinaryWeightPerTensorConst`` has one constant scale) with the scale made a
    parameter per channel through the injector. (``Int8WeightPerChannelFloat`` with
    ``bit_width=1`` is an integer grid -1..0, or 0..0 narrow: not bipolar.)"""

    tensor_clamp_impl = TensorClampSte
    scaling_impl_type = ScalingImplType.PARAMETER_FROM_STATS
    scaling_stats_op = StatsOp.AVE
    scaling_per_output_type = ScalingPerOutputType.CHANNEL
    scaling_min_val = 1e-10


class _ActMinMax(ParamFromRuntimeMinMaxScaling, Uint8ActPerTensorFloat):
    """Unsigned per-tensor activations, range = the calibration maximum."""


class _InputQuant(_ActMinMax):
    """The network input: 8-bit unsigned, min-max (our contract's input format)."""

    bit_width = 8


class _WeightLearnedRound(_WeightMinMax):
    """Min-max scales, rounding learned per weight (AdaRound's rectified sigmoid)."""

    float_to_int_impl_type = FloatToIntImplType.LEARNED_ROUND
    learned_round_impl_type = LearnedRoundImplType.HARD_SIGMOID


def float_modules(layers):
    """Our captured float chain as a list of torch modules (float weights copied)."""
    mods = []
    for fl in layers:
        if fl.kind is LayerKind.CONV2D:
            m = nn.Conv2d(fl.in_shape[0], fl.out_shape[0], fl.kernel, fl.stride, fl.padding,
                          groups=fl.groups)
        elif fl.kind is LayerKind.LINEAR:
            m = nn.Linear(fl.in_shape[0], fl.out_shape[0])
        elif fl.kind is LayerKind.MAXPOOL:
            mods.append(nn.MaxPool2d(fl.kernel, fl.stride))
            continue
        elif fl.kind is LayerKind.FLATTEN:
            mods.append(nn.Flatten())
            continue
        else:
            raise ValueError(f"peers: layer kind {fl.kind.value} is not supported")
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(fl.weight))
            m.bias.copy_(torch.from_numpy(fl.bias))
        mods.append(m)
        if fl.act is Act.RELU:
            mods.append(nn.ReLU())
    return mods


def _quant_model(mods, wbits, abits, w_quant, a_quant):
    out = [qnn.QuantIdentity(act_quant=_InputQuant, return_quant_tensor=True)]
    for m in mods:
        kw = {"weight_quant": w_quant, "weight_bit_width": wbits, "bias_quant": Int32Bias,
              "return_quant_tensor": False}
        if isinstance(m, nn.Conv2d):
            q = qnn.QuantConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride,
                                m.padding, groups=m.groups, **kw)
        elif isinstance(m, nn.Linear):
            q = qnn.QuantLinear(m.in_features, m.out_features, **kw)
        elif isinstance(m, nn.ReLU):
            out.append(qnn.QuantReLU(act_quant=a_quant, bit_width=abits,
                                     return_quant_tensor=True))
            continue
        else:
            out.append(copy.deepcopy(m))
            continue
        with torch.no_grad():
            q.weight.copy_(m.weight)
            q.bias.copy_(m.bias)
        out.append(q)
    return nn.Sequential(*out).eval()


def _loader(x, batch=128):
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    return [x[i:i + batch] for i in range(0, len(x), batch)]


@torch.no_grad()
def _calibrate(model, x):
    with calibration_mode(model):
        for xb in _loader(x):
            model(xb)


@torch.no_grad()
def _bias_correct(model, x):
    with bias_correction_mode(model):
        for xb in _loader(x):
            model(xb)


def _equalized(mods):
    graph = torch.fx.symbolic_trace(nn.Sequential(*copy.deepcopy(mods)))
    graph = EqualizeGraph(iterations=20).apply(graph)
    return [graph.get_submodule(str(i)) for i in range(len(mods))]


def _minmax(mods, wbits, abits, x):
    model = _quant_model(mods, wbits, abits, _WeightMinMax, _ActMinMax)
    _calibrate(model, x)
    return model


def _cle_bc(mods, wbits, abits, x):
    model = _quant_model(_equalized(mods), wbits, abits, _WeightMinMax, _ActMinMax)
    _calibrate(model, x)
    _bias_correct(model, x)
    return model


def _mse(mods, wbits, abits, x):
    model = _quant_model(mods, wbits, abits, _WeightMSE, Uint8ActPerTensorFloatMSE)
    _calibrate(model, x)
    return model


@torch.no_grad()
def _gpxq(mode, mods, wbits, abits, x, **kw):
    model = _quant_model(mods, wbits, abits, _WeightFrozen, _ActMinMax)
    for m in model.modules():  # initialise the frozen weight scales from the float weights
        if isinstance(m, (qnn.QuantConv2d, qnn.QuantLinear)):
            m.train()
            m.quant_weight()
            m.eval()
    _calibrate(model, x)
    with mode(model, **kw) as algo:
        for _ in range(algo.num_layers):
            for xb in _loader(x):
                algo.model(xb)
            algo.update()
    return model


def _gptq(mods, wbits, abits, x):
    return _gpxq(gptq_mode, mods, wbits, abits, x, act_order=True)


def _gpfq(mods, wbits, abits, x):
    return _gpxq(gpfq_mode, mods, wbits, abits, x, act_order=True)


#: AdaRound (Nagel et al. 2020) settings: iterations per layer, batch, rounding regulariser,
#: its beta annealed 20 -> 2 after a 20% warm-up (as quantflow.adaround and the paper).
_AR_ITERS, _AR_BATCH, _AR_REG, _AR_LR = 500, 64, 0.01, 1e-2
#: Brevitas recompute the quantized weight on every step (about 0.1 s per step on the MLP on a
#: shared core), so AdaRound runs only where rounding matters: at 2-3 weight bits, as in our
#: default recipe's candidates.
_AR_MAX_BITS = 3
_ZETA, _GAMMA = 1.1, -0.1


def _capture(model, layer, x):
    """(inputs, outputs) of ``layer`` over the calibration images, one pair per batch."""
    got = []
    hook = layer.register_forward_hook(lambda m, i, o: got.append((i[0], o)))
    with torch.no_grad():
        for xb in _loader(x, _AR_BATCH):
            model(xb)
    hook.remove()
    return got


def _adaround(mods, wbits, abits, x):
    """Brevitas' learned-round weight quantizer (``FloatToIntImplType.LEARNED_ROUND``), trained
    layer by layer: the quantized layer on the quantized network's inputs against the float
    layer on float inputs, after the ReLU, with AdaRound's regulariser. (Brevitas' own trainer
    in ``brevitas_examples`` needs ``accelerate``, which is not a dependency here.)"""
    model = _quant_model(mods, wbits, abits, _WeightLearnedRound, _ActMinMax)
    _calibrate(model, x)
    ref = nn.Sequential(*copy.deepcopy(mods)).eval()
    qlayers = [m for m in model if isinstance(m, (qnn.QuantConv2d, qnn.QuantLinear))]
    flayers = [m for m in ref if isinstance(m, (nn.Conv2d, nn.Linear))]
    relu = [isinstance(model[i + 1], qnn.QuantReLU) if i + 1 < len(model) else False
            for i, m in enumerate(model) if m in qlayers]
    gen = torch.Generator().manual_seed(0)
    for q, f, act in zip(qlayers, flayers, relu, strict=True):
        v = next(m for m in q.modules() if isinstance(m, LearnedRoundSte)).value
        s = q.quant_weight().scale.detach()
        frac = (q.weight.detach() / s - torch.floor(q.weight.detach() / s)).clamp(0.01, 0.99)
        with torch.no_grad():  # h(v) = the fractional part of w / s
            v.copy_(-torch.log((_ZETA - _GAMMA) / (frac - _GAMMA) - 1.0))
        ins = [i for i, _ in _capture(model, q, x)]
        targets = [o for _, o in _capture(ref, f, x)]
        opt = torch.optim.Adam([v], lr=_AR_LR)
        q.train()
        warm = _AR_ITERS // 5
        for it in range(_AR_ITERS):
            k = int(torch.randint(len(ins), (1,), generator=gen))
            out, want = q(ins[k]), targets[k]
            if act:
                out, want = torch.relu(out), torch.relu(want)
            loss = ((out - want) ** 2).flatten(1).sum(1).mean()
            if it >= warm:
                t = (it - warm) / max(1, _AR_ITERS - warm)
                beta = 2.0 + 18.0 * 0.5 * (1.0 + np.cos(np.pi * t))
                h = ((torch.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA).clamp(0, 1))
                loss = loss + _AR_REG * (1.0 - (2.0 * h - 1.0).abs().pow(beta)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        q.eval()
    model.eval()
    return model


#: name -> recipe function, in table order.
RECIPES = {"minmax": _minmax, "cle-bc": _cle_bc, "mse": _mse, "gptq": _gptq, "gpfq": _gpfq,
           "adaround": _adaround}


def applies(name, wbits):
    """Whether recipe ``name`` is measured at ``wbits`` (AdaRound only at 2-3 bits)."""
    return name != "adaround" or wbits <= _AR_MAX_BITS


def run(name, layers, wbits, abits, x_calib):
    """Brevitas recipe ``name`` on our float chain -> the calibrated quantized torch model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return RECIPES[name](float_modules(layers), wbits, abits, x_calib)


@torch.no_grad()
def accuracy(model, x, y):
    """Top-1 of a Brevitas model on float inputs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = torch.cat([model(xb).argmax(1) for xb in _loader(x)]).numpy()
    return float(np.mean(pred == np.asarray(y)))


#: Brevitas QAT starts: name -> (weight quantizer, activation quantizer), both with learned
#: scales (``PARAMETER_FROM_STATS``) initialised on the calibration images: ``minmax`` max |w|
#: per channel (``Int8WeightPerChannelFloat``, full range) and the calibration maximum
#: (``Uint8ActPerTensorFloat``); ``mse`` Brevitas' MSE initialisations
#: (``Int8WeightPerChannelFloatMSE``, full range, ``Uint8ActPerTensorFloatMSE``). At 1 weight
#: bit both use :class:`_WeightBinary`. Which start is trained is chosen on validation data.
QAT_STARTS = {"minmax": (_WeightFrozen, _ActMinMax), "mse": (_WeightMSE, Uint8ActPerTensorFloatMSE)}


def qat_model(start, layers, wbits, abits, x_calib):
    """Our float chain with the learned-scale quantizers of ``QAT_STARTS[start]``, calibrated:
    the start of :func:`qat` (and its PTQ model, in eval mode)."""
    w_quant, a_quant = QAT_STARTS[start]
    if wbits == 1:
        w_quant = _WeightBinary
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = _quant_model(float_modules(layers), wbits, abits, w_quant, a_quant)
        with torch.no_grad():
            for m in model.modules():  # initialise the weight scale parameters from the weights
                if isinstance(m, (qnn.QuantConv2d, qnn.QuantLinear)):
                    m.train()
                    m.quant_weight()
                    m.eval()
        _calibrate(model, x_calib)
    return model


def qat(model, x_train, y_train, lr, scale_lr, epochs=30, batch=64, seed=0, progress=None):
    """Train ``model`` (from :func:`qat_model`) in place as :func:`quantflow.qat.finetune`
    trains ours: Adam, ``lr`` on weights and biases and ``scale_lr`` on the learned scales, a
    cosine schedule over every step of ``epochs``, batches of ``batch`` in a permutation seeded
    by ``seed``, cross-entropy on the logits, one thread. The input quantizer stays fixed (our
    contract's 8-bit input format; our QAT freezes its input scale too). ``progress(epoch,
    epochs, loss)`` after each epoch. Returns ``model`` in eval mode."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            for p in model[0].parameters():
                p.requires_grad_(False)
            named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            scales = [p for n, p in named if "scaling_impl" in n]
            others = [p for n, p in named if "scaling_impl" not in n]
            opt = torch.optim.Adam([{"params": others, "lr": lr},
                                    {"params": scales, "lr": scale_lr}])
            x = torch.as_tensor(np.asarray(x_train), dtype=torch.float32)
            y = torch.as_tensor(np.asarray(y_train), dtype=torch.int64)
            steps = epochs * ((len(x) + batch - 1) // batch)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
            loss_fn = nn.CrossEntropyLoss()
            model.train()
            for epoch in range(epochs):
                perm = torch.randperm(len(x), generator=gen)
                total = 0.0
                for i in range(0, len(x), batch):
                    idx = perm[i:i + batch]
                    loss = loss_fn(model(x[idx]), y[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += float(loss.detach()) * len(idx)
                if progress is not None:
                    progress(epoch + 1, epochs, total / len(x))
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@torch.no_grad()
def val_score(model, x, y):
    """(top-1, mean log-likelihood of the labels) on ``x``, ``y``: the key our flow's choices
    on validation data compare (:func:`quantflow.ptq.val_score`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logits = torch.cat([model(xb) for xb in _loader(x)])
    y = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    ll = torch.log_softmax(logits.double(), 1).gather(1, y[:, None]).mean()
    return float((logits.argmax(1) == y).double().mean()), float(ll)
