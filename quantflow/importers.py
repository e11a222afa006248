"""Front end: a torch.nn model -> a chain of float layers (BatchNorm folded, ReLU fused).

Graph capture uses ``torch.fx.symbolic_trace``. The supported graph is a chain of Conv2d
(stride, padding, groups=1), Linear, BatchNorm (folded into the preceding Conv2d/Linear),
ReLU/ReLU6 (fused into the preceding layer's clamp), MaxPool2d, AvgPool2d, global average
pooling and Flatten; Dropout and Identity are dropped. Anything else raises
:class:`UnsupportedOpError` naming the op, its place in the graph and the supported list.
"""

import enum
import operator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from .errors import UnsupportedOpError
from .qmodel import LayerKind

__all__ = ["Act", "FloatLayer", "capture", "run_float", "SUPPORTED"]

SUPPORTED = ("Conv2d (groups=1)", "Linear", "BatchNorm1d/2d (after Conv2d/Linear)",
             "ReLU", "ReLU6", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d(1)",
             "Flatten", "Dropout", "Identity")


class Act(enum.Enum):
    NONE = "none"
    RELU = "relu"
    RELU6 = "relu6"


@dataclass
class FloatLayer:
    """One layer of the float chain, weights as float64 numpy arrays (BN already folded)."""

    name: str
    kind: LayerKind
    in_shape: tuple = ()
    out_shape: tuple = ()
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    act: Act = Act.NONE
    extra: dict = field(default_factory=dict)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _fail(node, index, what):
    raise UnsupportedOpError(
        f"unsupported op {what} at graph node {index} ({node.name!r}); supported: "
        f"{', '.join(SUPPORTED)}")


def _pool(kind, name, kernel, stride, padding, node, index):
    if kind is LayerKind.MAXPOOL and _pair(padding) != (0, 0):
        _fail(node, index, "MaxPool2d with padding")
    return FloatLayer(name, kind, kernel=_pair(kernel),
                      stride=_pair(stride if stride is not None else kernel),
                      padding=_pair(padding))


def _module_layer(mod, node, index):
    name = node.target
    if isinstance(mod, nn.Conv2d):
        if mod.groups != 1 or _pair(mod.dilation) != (1, 1) or mod.padding_mode != "zeros" \
                or isinstance(mod.padding, str):
            _fail(node, index, "Conv2d with groups, dilation, string or non-zero padding mode")
        w = mod.weight.detach().double().numpy().copy()
        b = (mod.bias.detach().double().numpy().copy() if mod.bias is not None
             else np.zeros(w.shape[0]))
        return FloatLayer(name, LayerKind.CONV2D, weight=w, bias=b, kernel=_pair(mod.kernel_size),
                          stride=_pair(mod.stride), padding=_pair(mod.padding))
    if isinstance(mod, nn.Linear):
        w = mod.weight.detach().double().numpy().copy()
        b = (mod.bias.detach().double().numpy().copy() if mod.bias is not None
             else np.zeros(w.shape[0]))
        return FloatLayer(name, LayerKind.LINEAR, weight=w, bias=b)
    if isinstance(mod, nn.MaxPool2d):
        if _pair(mod.dilation) != (1, 1) or mod.ceil_mode:
            _fail(node, index, "MaxPool2d with dilation or ceil_mode")
        return _pool(LayerKind.MAXPOOL, name, mod.kernel_size, mod.stride, mod.padding, node,
                     index)
    if isinstance(mod, nn.AvgPool2d):
        if mod.ceil_mode or (_pair(mod.padding) != (0, 0) and not mod.count_include_pad) \
                or mod.divisor_override:
            _fail(node, index, "AvgPool2d with ceil_mode, divisor_override or excluded padding")
        return _pool(LayerKind.AVGPOOL, name, mod.kernel_size, mod.stride, mod.padding, node,
                     index)
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        if _pair(mod.output_size) != (1, 1):
            _fail(node, index, f"AdaptiveAvgPool2d({mod.output_size})")
        return FloatLayer(name, LayerKind.AVGPOOL, extra={"global": True})
    if isinstance(mod, nn.Flatten):
        if mod.start_dim != 1 or mod.end_dim != -1:
            _fail(node, index, "Flatten other than Flatten(1, -1)")
        return FloatLayer(name, LayerKind.FLATTEN)
    if isinstance(mod, (nn.ReLU, nn.ReLU6)):
        return Act.RELU6 if isinstance(mod, nn.ReLU6) else Act.RELU
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return mod
    if isinstance(mod, (nn.Dropout, nn.Identity)):
        return None
    _fail(node, index, f"{type(mod).__name__}")
    return None


#: Parameter names of the functional pools, to read arguments given by position or keyword.
_MAXPOOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
                 "return_indices")
_AVGPOOL_ARGS = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                 "divisor_override")


def _call_args(node, names):
    return dict(zip(names, node.args, strict=False)) | dict(node.kwargs)


def _function_layer(node, index):
    t, args, kw = node.target, node.args, node.kwargs
    if t in (F.relu, torch.relu) or (node.op == "call_method" and t == "relu"):
        return Act.RELU
    if t is F.relu6:
        return Act.RELU6
    if t is torch.flatten or (node.op == "call_method" and t == "flatten"):
        start = args[1] if len(args) > 1 else kw.get("start_dim", 0)
        end = args[2] if len(args) > 2 else kw.get("end_dim", -1)
        if start != 1 or end != -1:
            _fail(node, index, f"flatten(start_dim={start}, end_dim={end})")
        return FloatLayer(node.name, LayerKind.FLATTEN)
    if t is F.max_pool2d:
        a = _call_args(node, _MAXPOOL_ARGS)
        if _pair(a.get("dilation", 1)) != (1, 1) or a.get("ceil_mode") \
                or a.get("return_indices"):
            _fail(node, index, "max_pool2d with dilation, ceil_mode or return_indices")
        return _pool(LayerKind.MAXPOOL, node.name, a["kernel_size"], a.get("stride") or None,
                     a.get("padding", 0), node, index)
    if t is F.avg_pool2d:
        a = _call_args(node, _AVGPOOL_ARGS)
        if a.get("ceil_mode") or a.get("divisor_override") or (
                _pair(a.get("padding", 0)) != (0, 0) and not a.get("count_include_pad", True)):
            _fail(node, index, "avg_pool2d with ceil_mode, divisor_override or excluded padding")
        return _pool(LayerKind.AVGPOOL, node.name, a["kernel_size"], a.get("stride") or None,
                     a.get("padding", 0), node, index)
    if t is F.adaptive_avg_pool2d and _pair(args[1] if len(args) > 1 else kw["output_size"]) \
            == (1, 1):
        return FloatLayer(node.name, LayerKind.AVGPOOL, extra={"global": True})
    if node.op == "call_method" and t == "mean":
        dims = args[1] if len(args) > 1 else kw.get("dim")
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        if tuple(sorted(d % 4 for d in dims)) == (2, 3) and not kw.get("keepdim", False):
            return [FloatLayer(node.name, LayerKind.AVGPOOL, extra={"global": True}),
                    FloatLayer(node.name + "_flatten", LayerKind.FLATTEN)]
    if t in (F.dropout,):
        return None
    what = t.__name__ if callable(t) and hasattr(t, "__name__") else str(t)
    if t in (operator.add, torch.add, operator.iadd):
        what = "add (residual connections are not supported)"
    _fail(node, index, f"{what!r} ({node.op})")
    return None


def _fold_bn(layer, bn, node, index):
    if layer is None or layer.kind not in (LayerKind.CONV2D, LayerKind.LINEAR) \
            or layer.act is not Act.NONE:
        _fail(node, index, f"{type(bn).__name__} not directly after Conv2d/Linear")
    if bn.running_var is None or bn.running_mean is None:
        _fail(node, index, f"{type(bn).__name__} without running statistics")
    var = bn.running_var.detach().double().numpy()
    mean = bn.running_mean.detach().double().numpy()
    gamma = bn.weight.detach().double().numpy() if bn.affine else np.ones_like(var)
    beta = bn.bias.detach().double().numpy() if bn.affine else np.zeros_like(var)
    g = gamma / np.sqrt(var + bn.eps)
    shape = (-1,) + (1,) * (layer.weight.ndim - 1)
    layer.weight = layer.weight * g.reshape(shape)
    layer.bias = (layer.bias - mean) * g + beta
    layer.extra["bn_folded"] = node.target


def capture(model, input_shape):
    """Trace ``model`` and return its chain of :class:`FloatLayer` with shapes filled in."""
    model = model.eval()
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # tracing runs the user's forward with proxies
        raise UnsupportedOpError(f"cannot trace the model with torch.fx ({type(e).__name__}:"
                                 f" {str(e).splitlines()[0] if str(e) else ''})") from None
    modules = dict(gm.named_modules())
    layers, current = [], None
    for index, node in enumerate(gm.graph.nodes):
        if node.op == "placeholder":
            if current is not None:
                _fail(node, index, "a second model input")
            current = node
            continue
        if node.op == "output":
            if node.args[0] is not current:
                _fail(node, index, "an output that is not the end of the chain")
            continue
        if node.op == "get_attr":
            _fail(node, index, f"parameter access {node.target!r}")
        inputs = [a for a in node.all_input_nodes]
        if inputs != [current]:
            _fail(node, index, f"{node.target!r} on a branch (only chains are supported)")
        if node.op == "call_module":
            item = _module_layer(modules[node.target], node, index)
        else:
            item = _function_layer(node, index)
        current = node
        for it in item if isinstance(item, list) else [item]:
            _append(layers, it, node, index)
    if not layers:
        raise UnsupportedOpError("the model has no layers to quantize")
    return _infer_shapes(layers, tuple(input_shape))


def _append(layers, item, node, index):
    if item is None:
        return
    if isinstance(item, Act):
        # ReLU after a max pool commutes with it (max is monotone, no padding): fuse it into
        # the MAC layer that feeds the pool. Average pooling does not commute with ReLU.
        target = next((lyr for lyr in reversed(layers) if lyr.kind is not LayerKind.MAXPOOL),
                      None)
        if target is None or target.kind not in (LayerKind.CONV2D, LayerKind.LINEAR) \
                or target.act is not Act.NONE:
            _fail(node, index, f"{item.value} not after Conv2d/Linear")
        target.act = item
        return
    if isinstance(item, (nn.BatchNorm1d, nn.BatchNorm2d)):
        _fold_bn(layers[-1] if layers else None, item, node, index)
        return
    layers.append(item)


def _infer_shapes(layers, shape):
    for layer in layers:
        layer.in_shape = shape
        if layer.kind is LayerKind.CONV2D:
            if len(shape) != 3 or shape[0] != layer.weight.shape[1]:
                raise UnsupportedOpError(f"layer {layer.name!r}: Conv2d expects "
                                         f"{layer.weight.shape[1]} input channels, gets {shape}")
            shape = (layer.weight.shape[0],) + _spatial(shape, layer)
        elif layer.kind is LayerKind.LINEAR:
            if len(shape) != 1 or shape[0] != layer.weight.shape[1]:
                raise UnsupportedOpError(f"layer {layer.name!r}: Linear expects "
                                         f"{layer.weight.shape[1]} features, gets {shape}")
            shape = (layer.weight.shape[0],)
        elif layer.kind in (LayerKind.MAXPOOL, LayerKind.AVGPOOL):
            if len(shape) != 3:
                raise UnsupportedOpError(f"layer {layer.name!r}: pooling needs a feature map,"
                                         f" gets {shape}")
            if layer.extra.get("global"):
                layer.kernel = layer.stride = shape[1:]
            shape = (shape[0],) + _spatial(shape, layer)
        elif layer.kind is LayerKind.FLATTEN:
            shape = (int(np.prod(shape)),)
        layer.out_shape = shape
    return layers


def _spatial(shape, layer):
    out = []
    for size, k, s, p in zip(shape[1:], layer.kernel, layer.stride, layer.padding, strict=True):
        n = (size + 2 * p - k) // s + 1
        if n < 1:
            raise UnsupportedOpError(f"layer {layer.name!r}: kernel {layer.kernel} does not fit"
                                     f" input {shape}")
        out.append(n)
    return tuple(out)


def run_float(layers, x, upto=None):
    """Float64 forward of the captured chain; returns each layer's output (after its act)."""
    outs = []
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    for layer in layers[:upto]:
        x = _float_layer(layer, x)
        outs.append(x)
    return outs


def _float_layer(layer, x):
    k = layer.kind
    if k is LayerKind.CONV2D:
        y = F.conv2d(x, torch.from_numpy(layer.weight), torch.from_numpy(layer.bias),
                     stride=layer.stride, padding=layer.padding)
    elif k is LayerKind.LINEAR:
        y = F.linear(x, torch.from_numpy(layer.weight), torch.from_numpy(layer.bias))
    elif k is LayerKind.MAXPOOL:
        y = F.max_pool2d(x, layer.kernel, layer.stride, layer.padding)
    elif k is LayerKind.AVGPOOL:
        y = F.avg_pool2d(x, layer.kernel, layer.stride, layer.padding)
    else:
        y = torch.flatten(x, 1)
    if layer.act is Act.RELU:
        y = F.relu(y)
    elif layer.act is Act.RELU6:
        y = F.relu6(y)
    return y


def clone(layers):
    """Deep copy of a float chain (passes may change weights in place)."""
    return [replace(lyr, weight=None if lyr.weight is None else lyr.weight.copy(),
                    bias=None if lyr.bias is None else lyr.bias.copy(), extra=dict(lyr.extra))
            for lyr in layers]
