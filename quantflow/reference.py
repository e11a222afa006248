"""The integer reference: numpy int64 inference over a QuantizedModel. It IS the spec.

Every layer output is returned, so hardware can be compared layer by layer. Each MAC layer
asserts that its accumulator stays inside the format derived from the bound
(:func:`quantflow.numerics.acc_bits`): overflow is impossible by construction, and this checks
the construction. Layout is NCHW with torch's flatten order (C, H, W).
"""

import numpy as np

from .numerics import add_requantize, requantize
from .qmodel import LayerKind

__all__ = ["run", "run_layer", "predict", "AccumulatorOverflow"]


class AccumulatorOverflow(AssertionError):
    """An accumulator left its derived format: a bug in quantization, never user input."""


def _windows(x, kernel, stride, padding, pad_value=0):
    """(N, C, H, W) -> (N, C, Ho, Wo, kh, kw) view of the sliding windows (im2col)."""
    ph, pw = padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    win = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=(2, 3))
    return win[:, :, ::stride[0], ::stride[1]]


def _check_acc(layer, acc):
    fmt = layer.acc_fmt
    if acc.size and (acc.min() < fmt.min or acc.max() > fmt.max):
        raise AccumulatorOverflow(
            f"layer {layer.name!r}: accumulator range {acc.min()}..{acc.max()} leaves {fmt}")


def _requant(layer, acc, channel_axis):
    if not layer.requant:
        return acc
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    mult = layer.mult.reshape(shape) if layer.mult.size > 1 else layer.mult.reshape(())
    shift = layer.shift.reshape(shape) if layer.shift.size > 1 else layer.shift.reshape(())
    return requantize(acc, mult, shift, layer.lo, layer.hi)


def run_layer(layer, x, *others):
    """One layer on a batch of int64 inputs; returns int64 outputs. ``others`` are the further
    inputs of an ADD or CONCAT."""
    x = np.asarray(x, dtype=np.int64)
    if x.shape[1:] != tuple(layer.in_shape):
        raise ValueError(f"Input shape must be (N, {', '.join(map(str, layer.in_shape))}), "
                         f"not {x.shape!r}")
    kind = layer.kind
    if kind is LayerKind.CONV2D:
        win = _windows(x, layer.kernel, layer.stride, layer.padding)
        g = layer.groups
        if g == 1:
            acc = np.einsum("nchwij,ocij->nohw", win, layer.weight, optimize=True)
        else:  # grouped: output channel o reads input channels of its group only
            n, c, ho, wo = win.shape[:4]
            win = win.reshape(n, g, c // g, ho, wo, *layer.kernel)
            wg = layer.weight.reshape(g, -1, *layer.weight.shape[1:])
            acc = np.einsum("ngchwij,gocij->ngohw", win, wg, optimize=True)
            acc = acc.reshape(n, -1, ho, wo)
        acc = acc + layer.bias[None, :, None, None]
        _check_acc(layer, acc)
        return _requant(layer, acc, 1)
    if kind is LayerKind.LINEAR:
        acc = x.reshape(len(x), -1) @ layer.weight.T + layer.bias[None, :]
        _check_acc(layer, acc)
        return _requant(layer, acc, 1)
    if kind is LayerKind.MAXPOOL:
        win = _windows(x, layer.kernel, layer.stride, layer.padding, pad_value=layer.in_fmt.min)
        return win.max(axis=(4, 5))
    if kind is LayerKind.AVGPOOL:
        win = _windows(x, layer.kernel, layer.stride, layer.padding)
        acc = win.sum(axis=(4, 5))
        _check_acc(layer, acc)
        return _requant(layer, acc, 1)
    if kind is LayerKind.FLATTEN:
        return x.reshape(len(x), -1)
    if kind is LayerKind.ADD:
        xs = [x, *(np.asarray(o, dtype=np.int64) for o in others)]
        return add_requantize(xs, layer.mult, layer.shift, layer.lo, layer.hi)
    if kind is LayerKind.CONCAT:
        return np.concatenate([x, *(np.asarray(o, dtype=np.int64) for o in others)], axis=1)
    raise AssertionError(f"unhandled layer kind {kind}")  # every LayerKind is handled above


def run(model, x_int):
    """Run the whole graph on int inputs (N, *input_shape); return every layer's output."""
    outs = []
    x = np.asarray(x_int, dtype=np.int64)
    if not model.input_fmt.contains(x):
        raise ValueError(f"Inputs must lie in {model.input_fmt}, not {x.min()}..{x.max()}")
    for i, layer in enumerate(model.layers):
        args = [x if j < 0 else outs[j] for j in model.sources(i)]
        outs.append(run_layer(layer, *args))
    return outs


def predict(model, x_int, batch=512):
    """Top-1 class per input, from logits dequantized with the per-class output scale."""
    preds = []
    scale = np.asarray(model.output_scale, dtype=np.float64).reshape(1, -1)
    for i in range(0, len(x_int), batch):
        logits = run(model, x_int[i:i + batch])[-1]
        preds.append(np.argmax(logits * scale, axis=1))
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)
