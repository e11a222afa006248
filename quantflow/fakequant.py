"""Torch fake-quant model: the trainable twin of the integer reference.

:class:`FakeQuantNet` holds float weights, per-channel weight scales and activation scales as
torch parameters, and computes on integer-valued float64 tensors. In exact mode (the default)
it applies the contract's requantization with the derived ``(M, s)`` and reproduces every
integer of :func:`quantflow.reference.run`; with ``exact=False`` requantization uses the real
ratio ``s_w * s_in / s_out`` so gradients reach the scales (QAT, LSQ). Rounding uses the
straight-through estimator throughout. :meth:`FakeQuantNet.export` builds the QuantizedModel
from the same tensors the forward pass uses, so the two cannot drift apart.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .importers import Act
from .numerics import QFormat, WeightGrid, acc_bits, derive_multiplier, product_bound
from .qmodel import MAC_KINDS, LayerKind, QLayer, QuantizedModel

__all__ = ["FakeQuantNet", "round_ste", "floor_ste"]


#: Integers up to 2**53 are exact in float64 (the fake-quant forward's arithmetic).
_FLOAT64_EXACT_BITS = 53


def round_ste(x):
    """Round half to even forward (as numpy's rint), identity gradient."""
    return x + (torch.round(x) - x).detach()


def floor_ste(x):
    return x + (torch.floor(x) - x).detach()


class _FQLayer(nn.Module):
    """One fake-quant layer. ``in_scale`` is a float; an ADD has one scale per input instead,
    ``in_scales`` (a list of scalar Parameters, so each can be its producer's ``out_scale``
    under :func:`quantflow.qat.tie_scales`); :meth:`input_scales` gives either as a vector.
    ``w_grid`` (a :class:`~quantflow.numerics.WeightGrid`) bounds the weight integers."""

    def __init__(self, fl, in_fmt, in_scale, w_bits, w_scale, out_fmt, out_scale, mult_bits,
                 inputs=None, w_grid=WeightGrid.NARROW):
        super().__init__()
        self.name, self.kind, self.act = fl.name, fl.kind, fl.act
        self.inputs, self.groups = inputs, int(getattr(fl, "groups", 1))
        self.in_shape, self.out_shape = tuple(fl.in_shape), tuple(fl.out_shape)
        self.kernel, self.stride, self.padding = fl.kernel, fl.stride, fl.padding
        self.in_fmt, self.out_fmt, self.mult_bits = in_fmt, out_fmt, mult_bits
        self.extra = dict(fl.extra)
        dt = torch.float64
        if fl.kind is LayerKind.ADD:
            self.in_scales = nn.ParameterList(
                [nn.Parameter(torch.tensor(float(v), dtype=dt)) for v in in_scale])
        else:
            self.in_scale = nn.Parameter(torch.tensor(float(in_scale), dtype=dt))
        # MAC layers, average pooling and adds requantize; the last MAC layer returns its
        # accumulator (out_fmt None). Max pooling, flatten and concat pass integers through.
        self.requant = out_fmt is not None and fl.kind in MAC_KINDS + (LayerKind.AVGPOOL,
                                                                       LayerKind.ADD)
        self.out_scale = nn.Parameter(torch.tensor(float(out_scale or 1.0), dtype=dt),
                                      requires_grad=self.requant)
        if fl.kind in MAC_KINDS:
            if not isinstance(w_grid, WeightGrid):
                raise TypeError(f"Weight grid must be a WeightGrid, not {w_grid!r}")
            self.w_fmt, self.w_grid = QFormat.weight(w_bits), w_grid
            self.w_lo, self.w_hi = w_grid.lo(w_bits), w_grid.hi(w_bits)
            self.weight = nn.Parameter(torch.tensor(fl.weight, dtype=dt))
            self.bias = nn.Parameter(torch.tensor(fl.bias, dtype=dt))
            self.w_scale = nn.Parameter(torch.tensor(np.asarray(w_scale), dtype=dt))
            # The exact forward computes acc * M + round_term in float64: every integer on the
            # way must stay below 2**53 for it to equal the int64 reference.
            width = acc_bits(self.w_fmt, self.in_fmt, self._reduction()) - 1 + mult_bits
            if width > _FLOAT64_EXACT_BITS:
                raise ValueError(f"Accumulator and multiplier bits must keep acc * M within"
                                 f" {_FLOAT64_EXACT_BITS} bits for exact fake quantization,"
                                 f" not {width} (layer {fl.name!r})")
        else:
            self.w_fmt = self.w_grid = None
        self.refresh()

    # -- integers shared by forward and export -------------------------------------------------
    def int_weight(self):
        """The integer weights: nearest code on the grid, straight-through gradient (zero
        outside the clamp, as LSQ). At 1 bit the sign, with BinaryNet's clipped identity
        gradient (``|w / s| <= 1``)."""
        shape = (-1,) + (1,) * (self.weight.dim() - 1)
        u = self.weight / self.w_scale.reshape(shape)
        if self.w_fmt.bipolar:
            inside = torch.clamp(u, -1.0, 1.0)
            return inside + (torch.where(u >= 0, 1.0, -1.0).to(u.dtype) - inside).detach()
        return torch.clamp(round_ste(u), self.w_lo, self.w_hi)

    def codes(self, x):
        """numpy: the nearest weight code of this layer's grid to each real ``x``."""
        return self.w_grid.codes(x, self.w_fmt.bits)

    def int_bias(self):
        bound = product_bound(self.w_fmt, self.in_fmt, self._reduction())
        return torch.clamp(round_ste(self.bias / (self.w_scale * self.in_scale)), -bound, bound)

    def _reduction(self):
        return int(np.prod(self.weight.shape[1:]))

    def input_scales(self):
        """The scale of each input as a vector (one entry but for an ADD)."""
        if self.kind is LayerKind.ADD:
            return torch.stack(list(self.in_scales))
        return self.in_scale.reshape(1)

    def ratio(self):
        """Real requantization ratio per output channel (tensor); one per input of an ADD."""
        if self.kind in MAC_KINDS:
            return self.w_scale * self.in_scale / self.out_scale
        if self.kind is LayerKind.ADD:
            return self.input_scales() / self.out_scale
        return (self.in_scale / self.out_scale / (self.kernel[0] * self.kernel[1])).reshape(1)

    def clamp_bounds(self):
        """The output format's range; a fused ReLU raises ``lo`` to 0, ReLU6 lowers ``hi``."""
        lo, hi = self.out_fmt.min, self.out_fmt.max
        if self.act is Act.RELU6:
            hi = min(hi, int(np.floor(6.0 / float(self.out_scale.detach()))))
        if self.act in (Act.RELU, Act.RELU6):
            lo = max(lo, 0)
        return lo, hi

    @torch.no_grad()
    def refresh(self):
        """Re-derive the fixed-point (M, s) from the current scales."""
        if not self.requant:
            return
        pairs = [derive_multiplier(float(r), self.mult_bits) for r in self.ratio().reshape(-1)]
        self.register_buffer("mult", torch.tensor([p[0] for p in pairs], dtype=torch.float64),
                             persistent=False)
        self.register_buffer("shift", torch.tensor([p[1] for p in pairs], dtype=torch.float64),
                             persistent=False)

    # -- forward on integer-valued tensors ----------------------------------------------------
    def accumulate(self, x):
        """The integer accumulator (bias included) of a MAC or average-pool layer."""
        k = self.kind
        if k is LayerKind.AVGPOOL:
            return F.avg_pool2d(x, self.kernel, self.stride, self.padding, divisor_override=1)
        if k is LayerKind.CONV2D:
            return F.conv2d(x, self.int_weight(), self.int_bias(), self.stride, self.padding,
                            groups=self.groups)
        return F.linear(x, self.int_weight(), self.int_bias())

    def _add(self, xs, exact):
        """numerics.add_requantize: each input rescaled with its own (M, s), summed, clamped."""
        if exact:
            total = 0
            for x, m, s in zip(xs, self.mult, self.shift, strict=True):
                rnd = torch.exp2(s - 1) if s > 0 else torch.zeros_like(s)
                total = total + floor_ste((x * m + rnd) / torch.exp2(s))
        else:
            total = floor_ste(sum(x * r for x, r in zip(xs, self.ratio(), strict=True)) + 0.5)
        lo, hi = self.clamp_bounds()
        return torch.clamp(total, lo, hi)

    def forward(self, x, *others, exact=True):
        k = self.kind
        if k is LayerKind.FLATTEN:
            return torch.flatten(x, 1)
        if k is LayerKind.MAXPOOL:
            return F.max_pool2d(x, self.kernel, self.stride, self.padding)
        if k is LayerKind.CONCAT:
            return torch.cat([x, *others], dim=1)
        if k is LayerKind.ADD:
            return self._add([x, *others], exact)
        acc = self.accumulate(x)
        if not self.requant:
            return acc
        shape = (1, -1) + (1,) * (acc.dim() - 2)
        if exact:
            m, s = self.mult.reshape(shape), self.shift.reshape(shape)
            rnd = torch.where(s > 0, torch.exp2(s - 1), torch.zeros_like(s))
            y = floor_ste((acc * m + rnd) / torch.exp2(s))
        else:
            y = floor_ste(acc * self.ratio().reshape(shape) + 0.5)
        lo, hi = self.clamp_bounds()
        return torch.clamp(y, lo, hi)

    @torch.no_grad()
    def export(self):
        if self.kind in MAC_KINDS:
            w_scale = self.w_scale.numpy().copy()
            out_scale = (self.out_scale.numpy().reshape(1) if self.requant
                         else w_scale * float(self.in_scale))
        else:
            w_scale, out_scale = None, self.out_scale.numpy().reshape(1)
        lo, hi = self.clamp_bounds() if self.requant else (0, 0)
        in_scales = self.input_scales().numpy()
        layer = QLayer(
            name=self.name, kind=self.kind, in_shape=self.in_shape, out_shape=self.out_shape,
            in_fmt=self.in_fmt, out_fmt=self.out_fmt, in_scale=float(in_scales[0]),
            out_scale=np.asarray(out_scale, dtype=np.float64),
            kernel=tuple(self.kernel), stride=tuple(self.stride), padding=tuple(self.padding),
            w_fmt=self.w_fmt, requant=self.requant or self.kind not in MAC_KINDS, lo=lo, hi=hi,
            w_scale=w_scale,
            extra={k: v for k, v in self.extra.items() if isinstance(v, (str, int, bool))},
            inputs=None if self.inputs is None else tuple(self.inputs), groups=self.groups)
        if self.kind is LayerKind.ADD:
            layer.extra["in_scales"] = [float(v) for v in in_scales]
        if self.kind in MAC_KINDS:
            layer.weight = self.int_weight().numpy().astype(np.int64)
            layer.bias = self.int_bias().numpy().astype(np.int64)
        if self.requant:
            layer.mult = self.mult.numpy().astype(np.int64)
            layer.shift = self.shift.numpy().astype(np.int64)
        if self.kind in MAC_KINDS and not self.requant:
            layer.out_fmt = layer.acc_fmt
        return layer


class FakeQuantNet(nn.Module):
    """Fake-quantized graph built by :func:`quantflow.ptq.quantize`; see the module docstring.

    Each layer's ``inputs`` names the layers it reads (``-1``: the network input)."""

    def __init__(self, name, input_shape, input_fmt, input_scale, layers):
        super().__init__()
        self.name, self.input_shape, self.input_fmt = name, tuple(input_shape), input_fmt
        self.input_scale = float(input_scale)
        self.layers = nn.ModuleList(layers)

    def quantize_input(self, x):
        q = torch.round(torch.as_tensor(x, dtype=torch.float64) / self.input_scale)
        return torch.clamp(q, self.input_fmt.min, self.input_fmt.max)

    def forward_int(self, x_int, exact=True):
        """Every layer's integer-valued output for integer inputs (list of float64 tensors)."""
        outs, x = [], torch.as_tensor(x_int, dtype=torch.float64)
        for i, layer in enumerate(self.layers):
            args = [x if j < 0 else outs[j] for j in self.sources(i)]
            outs.append(layer(*args, exact=exact))
        return outs

    def sources(self, index):
        inputs = self.layers[index].inputs
        return (index - 1,) if inputs is None else tuple(inputs)

    def layer_inputs(self, x_int, index, exact=True):
        """The integer inputs of layer ``index`` (a list: one tensor, or one per add/concat
        input)."""
        outs, x = [], torch.as_tensor(x_int, dtype=torch.float64)
        for i in range(index):
            args = [x if j < 0 else outs[j] for j in self.sources(i)]
            outs.append(self.layers[i](*args, exact=exact))
        return [x if j < 0 else outs[j] for j in self.sources(index)]

    def forward(self, x, exact=True):
        """Float input -> dequantized logits (accumulator times per-class scale)."""
        acc = self.forward_int(self.quantize_input(x), exact=exact)[-1]
        last = self.layers[-1]
        return acc * (last.w_scale * last.in_scale).reshape(1, -1)

    def refresh(self):
        for layer in self.layers:
            layer.refresh()

    def export(self, meta=None):
        self.refresh()
        layers = [layer.export() for layer in self.layers]
        model = QuantizedModel(self.name, self.input_shape, self.input_fmt, self.input_scale,
                               layers, dict(meta or {}))
        for i, layer in enumerate(layers):  # pass-through formats follow their producer
            layer.in_fmt = model.tensor_fmt(model.sources(i)[0])
            if layer.kind in (LayerKind.MAXPOOL, LayerKind.FLATTEN, LayerKind.CONCAT):
                layer.out_fmt = layer.in_fmt
        return model.validate()
