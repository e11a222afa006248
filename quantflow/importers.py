"""Front end: a torch.nn model -> a graph of float layers (BatchNorm folded, ReLU fused).

Graph capture uses ``torch.fx.symbolic_trace``. The captured graph is a DAG in topological
order: each :class:`FloatLayer` names the layers it reads (``inputs``, ``-1`` for the network
input), so residual adds, concatenations and tensors read by several layers are kept. Supported:
Conv2d (stride, padding, any ``groups``: depthwise and grouped), Linear, BatchNorm (folded into
the preceding Conv2d/Linear), ReLU/ReLU6 (fused into the clamp of the Conv2d/Linear/add before
it), the residual add (``+``, ``torch.add``, ``operator.add``) of two tensors, ``torch.cat``
along channels, MaxPool2d, AvgPool2d, global average pooling and Flatten; Dropout and Identity
are dropped. A fusion needs the fused tensor to have no other reader (a BatchNorm or ReLU on a
tensor that a shortcut also reads cannot be folded). Anything else raises
:class:`UnsupportedOpError` naming the op, its graph node and the supported list.
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

__all__ = ["Act", "FloatLayer", "capture", "run_float", "float_layer", "sources", "consumers",
           "group_slices", "dense_weight", "SUPPORTED"]

SUPPORTED = ("Conv2d (any groups: depthwise, grouped)", "Linear",
             "BatchNorm1d/2d (after Conv2d/Linear)", "ReLU", "ReLU6",
             "add of two tensors (+, torch.add)", "torch.cat (channels)", "MaxPool2d",
             "AvgPool2d", "AdaptiveAvgPool2d(1)", "Flatten", "Dropout", "Identity")


class Act(enum.Enum):
    NONE = "none"
    RELU = "relu"
    RELU6 = "relu6"


@dataclass
class FloatLayer:
    """One layer of the float graph, weights as float64 numpy arrays (BN already folded).

    ``inputs``: indices of the layers it reads (``-1``: the network input; ``None``: the
    previous layer, as in a chain)."""

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
    inputs: tuple | None = None
    groups: int = 1


def sources(layers, index):
    """Indices of the layers ``layers[index]`` reads (``-1``: the network input)."""
    inputs = layers[index].inputs
    return (index - 1,) if inputs is None else tuple(inputs)


def consumers(layers, index):
    """Indices of the layers that read ``layers[index]`` (``-1``: the network input)."""
    return [j for j in range(len(layers)) if index in sources(layers, j)]


def group_slices(layer):
    """``[(outputs, inputs)]`` per group of a Conv2d/Linear: the slice of output channels and
    the slice of input channels they read (one pair covering everything when ``groups == 1``;
    a Linear has one group)."""
    g = layer.groups if layer.kind is LayerKind.CONV2D else 1
    o, cin = layer.weight.shape[0], layer.weight.shape[1] * g
    return [(slice(k * o // g, (k + 1) * o // g), slice(k * cin // g, (k + 1) * cin // g))
            for k in range(g)]


def dense_weight(layer):
    """The weight as ``(O, C_in, ...)`` over *all* input channels, zero outside each output
    channel's group (the weight itself when ``groups == 1``). Pure numpy."""
    w = layer.weight
    groups = group_slices(layer)
    if len(groups) == 1:
        return w
    dense = np.zeros((w.shape[0], groups[-1][1].stop) + w.shape[2:], dtype=w.dtype)
    for outs, ins in groups:
        dense[outs, ins] = w[outs]
    return dense


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


#: The module types :func:`_module_layer` maps (anything else is reported by its name).
_MODULES = (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten,
            nn.ReLU, nn.ReLU6, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Identity)


def _unsupported_modules(gm, modules):
    """Name an unsupported layer (an LSTM, an attention) first: the glue code around it (a
    reshape, an index into its tuple output) is only unsupported because of it."""
    for index, node in enumerate(gm.graph.nodes):
        if node.op == "call_module" and not isinstance(modules[node.target], _MODULES):
            _fail(node, index, type(modules[node.target]).__name__)


def _module_layer(mod, node, index):
    name = node.target
    if isinstance(mod, nn.Conv2d):
        if _pair(mod.dilation) != (1, 1) or mod.padding_mode != "zeros" \
                or isinstance(mod.padding, str):
            _fail(node, index, "Conv2d with dilation, string or non-zero padding mode")
        w = mod.weight.detach().double().numpy().copy()
        b = (mod.bias.detach().double().numpy().copy() if mod.bias is not None
             else np.zeros(w.shape[0]))
        return FloatLayer(name, LayerKind.CONV2D, weight=w, bias=b, kernel=_pair(mod.kernel_size),
                          stride=_pair(mod.stride), padding=_pair(mod.padding),
                          groups=int(mod.groups))
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
    if t in (operator.add, torch.add, operator.iadd) or (node.op == "call_method"
                                                          and t in ("add", "add_")):
        extra = {k: v for k, v in kw.items() if k != "other"}
        tensors = [a for a in (*args, kw.get("other")) if a is not None]
        if len(tensors) != 2 or not all(isinstance(a, fx.Node) for a in tensors) or extra:
            _fail(node, index, "add other than of two tensors (a constant or alpha)")
        return FloatLayer(node.name, LayerKind.ADD)
    if t in (torch.cat, torch.concat):
        dim = args[1] if len(args) > 1 else kw.get("dim", 0)
        parts = args[0] if args else kw.get("tensors")
        if dim not in (1, -3) or not isinstance(parts, (list, tuple)) or len(parts) < 2 \
                or not all(isinstance(a, fx.Node) for a in parts):
            _fail(node, index, f"torch.cat(dim={dim}) (only channels of (N, C, H, W): dim=1)")
        return FloatLayer(node.name, LayerKind.CONCAT)
    what = t.__name__ if callable(t) and hasattr(t, "__name__") else str(t)
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
    """Trace ``model`` and return its graph of :class:`FloatLayer` with shapes filled in
    (topological order; the last layer is the network output)."""
    model = model.eval()
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # tracing runs the user's forward with proxies
        raise UnsupportedOpError(f"cannot trace the model with torch.fx ({type(e).__name__}:"
                                 f" {str(e).splitlines()[0] if str(e) else ''})") from None
    modules = dict(gm.named_modules())
    _unsupported_modules(gm, modules)
    layers, value = [], {}  # value: fx node -> index of the layer holding it (-1: the input)
    for index, node in enumerate(gm.graph.nodes):
        if node.op == "placeholder":
            if value:
                _fail(node, index, "a second model input")
            value[node] = -1
            continue
        if node.op == "output":
            out = node.args[0]
            if not layers:
                raise UnsupportedOpError("the model has no layers to quantize")
            if not isinstance(out, fx.Node) or out not in value or value[out] < 0 \
                    or value[out] != len(layers) - 1:
                _fail(node, index, "an output that is not one tensor computed last")
            continue
        if node.op == "get_attr":
            _fail(node, index, f"parameter access {node.target!r}")
        inputs = [a for a in node.all_input_nodes]
        if any(a not in value for a in inputs):
            _fail(node, index, f"{node.target!r} on a value the flow does not track")
        if node.op == "call_module":
            item = _module_layer(modules[node.target], node, index)
        else:
            item = _function_layer(node, index)
        src = _operands(node)
        if not isinstance(item, FloatLayer) and not isinstance(item, list) and len(src) != 1:
            _fail(node, index, f"{node.target!r} of {len(src)} tensors")
        value[node] = _append(layers, item, node, index, [value[a] for a in src], src)
    if not layers:
        raise UnsupportedOpError("the model has no layers to quantize")
    for i, layer in enumerate(layers[:-1]):
        if not consumers(layers, i):
            raise UnsupportedOpError(f"layer {layer.name!r}: its output is never used (the"
                                     " network has one output)")
    return _infer_shapes(layers, tuple(input_shape))


def _operands(node):
    """The tensor operands of ``node`` in order (a cat's list unpacked)."""
    out = []
    for a in (*node.args, *node.kwargs.values()):
        for b in (a if isinstance(a, (list, tuple)) else [a]):
            if isinstance(b, fx.Node):
                out.append(b)
    return out


def _sole_reader(node, producer):
    """``producer`` (an fx node) feeds ``node`` and nothing else."""
    return len(producer.users) == 1


def _append(layers, item, node, index, refs, src):
    """Add ``item`` (a layer, list, Act, BatchNorm or None) reading ``refs``; return the index
    of the layer that holds ``node``'s value."""
    if item is None:
        return refs[0]
    if isinstance(item, Act):
        ref = refs[0]
        target = ref
        # ReLU after a max pool commutes with it (max is monotone, no padding): fuse it into
        # the layer that feeds the pool. Average pooling does not commute with ReLU.
        if ref >= 0 and layers[ref].kind is LayerKind.MAXPOOL and _sole_reader(node, src[0]):
            pool_src = src[0].all_input_nodes
            target = sources(layers, ref)[0]
            if len(pool_src) != 1 or len(pool_src[0].users) != 1:
                target = -1
        if target < 0 or layers[target].kind not in (LayerKind.CONV2D, LayerKind.LINEAR,
                                                      LayerKind.ADD) \
                or layers[target].act is not Act.NONE:
            _fail(node, index, f"{item.value} not after Conv2d/Linear/add")
        if not _sole_reader(node, src[0]):
            _fail(node, index, f"{item.value} on a tensor that other layers also read (it"
                  " cannot be fused into the layer before it)")
        layers[target].act = item
        return ref
    if isinstance(item, (nn.BatchNorm1d, nn.BatchNorm2d)):
        ref = refs[0]
        if ref >= 0 and not _sole_reader(node, src[0]):
            _fail(node, index, f"{type(item).__name__} on a tensor that other layers also read")
        _fold_bn(layers[ref] if ref >= 0 else None, item, node, index)
        return ref
    items = item if isinstance(item, list) else [item]
    for n, it in enumerate(items):
        it.inputs = tuple(refs) if n == 0 else (len(layers) - 1,)
        layers.append(it)
    return len(layers) - 1


def _infer_shapes(layers, shape):
    shapes = {-1: shape}
    for i, layer in enumerate(layers):
        src = sources(layers, i)
        shape = shapes[src[0]]
        layer.in_shape = shape
        if layer.kind is LayerKind.CONV2D:
            cin = layer.weight.shape[1] * layer.groups
            if len(shape) != 3 or shape[0] != cin:
                raise UnsupportedOpError(f"layer {layer.name!r}: Conv2d expects "
                                         f"{cin} input channels, gets {shape}")
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
        elif layer.kind is LayerKind.ADD:
            others = [shapes[j] for j in src]
            if any(o != shape for o in others):
                raise UnsupportedOpError(f"layer {layer.name!r}: add of tensors of different"
                                         f" shapes {others} (broadcasting is not supported)")
        elif layer.kind is LayerKind.CONCAT:
            others = [shapes[j] for j in src]
            if any(len(o) != 3 or o[1:] != shape[1:] for o in others):
                raise UnsupportedOpError(f"layer {layer.name!r}: torch.cat of {others} (only"
                                         " feature maps of one size, along channels)")
            shape = (sum(o[0] for o in others), *shape[1:])
        layer.out_shape = shape
        shapes[i] = shape
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
    """Float64 forward of the captured graph; returns each layer's output (after its act)."""
    outs = []
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    for i, layer in enumerate(layers[:upto]):
        args = [x if j < 0 else outs[j] for j in sources(layers, i)]
        outs.append(float_layer(layer, *args))
    return outs


def float_layer(layer, x, *others):
    """One float layer on its input(s) (``others``: the further inputs of an add/concat)."""
    k = layer.kind
    if k is LayerKind.CONV2D:
        y = F.conv2d(x, torch.from_numpy(layer.weight), torch.from_numpy(layer.bias),
                     stride=layer.stride, padding=layer.padding, groups=layer.groups)
    elif k is LayerKind.LINEAR:
        y = F.linear(x, torch.from_numpy(layer.weight), torch.from_numpy(layer.bias))
    elif k is LayerKind.MAXPOOL:
        y = F.max_pool2d(x, layer.kernel, layer.stride, layer.padding)
    elif k is LayerKind.AVGPOOL:
        y = F.avg_pool2d(x, layer.kernel, layer.stride, layer.padding)
    elif k is LayerKind.ADD:
        y = x + sum(others)
    elif k is LayerKind.CONCAT:
        y = torch.cat([x, *others], dim=1)
    else:
        y = torch.flatten(x, 1)
    if layer.act is Act.RELU:
        y = F.relu(y)
    elif layer.act is Act.RELU6:
        y = F.relu6(y)
    return y


def clone(layers):
    """Deep copy of a float graph (passes may change weights in place)."""
    return [replace(lyr, weight=None if lyr.weight is None else lyr.weight.copy(),
                    bias=None if lyr.bias is None else lyr.bias.copy(), extra=dict(lyr.extra))
            for lyr in layers]
