"""QONNX constants: node attributes, one-line node errors, and the folding of constant
subgraphs (initializers, ``Constant``, ``Quant`` / ``BipolarQuant`` on weights) into integers.

A weight ``Quant`` is evaluated exactly as QONNX does (divide by the scale, clamp, round in the
node's rounding mode), so the imported integer weights are QONNX's own.

Pure numpy plus the ``onnx`` package (the optional ``qonnx`` extra), imported lazily.
"""

import numpy as np

from .errors import UnsupportedOpError
from .numerics import QFormat

__all__ = ["QConst", "attrs", "where", "unsupported", "rounding_mode", "fold_constants"]


def attrs(node):
    """A node's attributes as a ``{name: python value}`` dict."""
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def where(node):
    """How an error names a node: ``node 'name' (OpType)``."""
    return f"node {node.name!r} ({node.op_type})"


def unsupported(node, why):
    """Raise the one-line :class:`UnsupportedOpError` naming ``node``."""
    raise UnsupportedOpError(f"{where(node)}: {why}")


def rounding_mode(value):
    """A ``rounding_mode`` attribute (bytes or str) as an upper-case str."""
    return (value.decode() if isinstance(value, bytes) else str(value)).upper()


def _round(mode, x, node):
    mode = rounding_mode(mode)
    if mode in ("ROUND", "HALF_EVEN"):
        return np.round(x)
    if mode == "HALF_UP":  # QONNX's HALF_UP: ties away from zero
        return np.sign(x) * np.floor(np.abs(x) + 0.5)
    if mode == "FLOOR":
        return np.floor(x)
    if mode == "CEIL":
        return np.ceil(x)
    if mode in ("DOWN", "ROUND_TO_ZERO"):
        return np.fix(x)
    return unsupported(node, f"rounding mode {mode!r}")


class QConst:
    """A quantized constant: integers, scale (float64, broadcastable), format."""

    def __init__(self, ints, scale, fmt):
        self.ints, self.scale, self.fmt = ints, scale, fmt


def _quant_const(node, consts):
    """Evaluate a Quant/BipolarQuant whose inputs are all constants, as QONNX does."""
    a = attrs(node)
    x = consts[node.input[0]].astype(np.float32)
    scale = consts[node.input[1]].astype(np.float32)
    if node.op_type == "BipolarQuant":
        ints = np.where(x / scale >= 0, 1.0, -1.0)
        return QConst(ints.astype(np.int64), scale.astype(np.float64), QFormat.weight(1))
    zp = consts[node.input[2]]
    bits = int(consts[node.input[3]])
    if np.any(zp != 0):
        unsupported(node, "a non-zero zero point (the contract is symmetric)")
    signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
    lo = -(1 << (bits - 1)) + int(narrow) if signed else 0
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1 - int(narrow)
    y = np.clip(x / scale, lo, hi)  # QONNX clamps, then rounds
    ints = _round(a.get("rounding_mode", "ROUND"), y, node).astype(np.int64)
    return QConst(ints, scale.astype(np.float64), QFormat(bits, signed))


def fold_constants(graph):
    """Initializers, Constant outputs and constant Quant/Identity results by tensor name.

    Returns
    -------
    consts : dict
        Tensor name -> numpy array (a quantized weight as its dequantized value).
    qconsts : dict
        Tensor name -> :class:`QConst` for the outputs of constant Quant/BipolarQuant nodes.
    """
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    qconsts = {}
    for node in graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(attrs(node)["value"])
        elif node.op_type in ("Quant", "BipolarQuant") and all(
                i in consts for i in node.input if i):
            q = _quant_const(node, consts)
            qconsts[node.output[0]] = q
            consts[node.output[0]] = q.ints * q.scale
        elif node.op_type == "Identity" and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]
            if node.input[0] in qconsts:
                qconsts[node.output[0]] = qconsts[node.input[0]]
    return consts, qconsts
