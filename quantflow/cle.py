"""Cross-layer equalization (Nagel et al., white paper section 3.2): a float-graph pass.

For two MAC layers joined by a ReLU, ``W2 relu(W1 x + b1) = (W2 S) relu(S^-1 (W1 x + b1))``
for any positive diagonal ``S`` (ReLU is positively homogeneous; without an activation the
identity holds trivially). Choosing ``s_c = sqrt(r1_c / r2_c)``, with ``r1_c`` the range of
output channel ``c`` of ``W1`` and ``r2_c`` the range of the weights reading input channel
``c`` in ``W2``, makes both ranges ``sqrt(r1_c r2_c)``: the per-tensor activation between the
layers and the weight columns of ``W2`` have equal ranges across channels, so one activation
scale and one weight scale per row fit them better.

On a graph, a pair ``(i, j)`` needs ``j`` to be the only reader of ``i``'s output, through max
pooling, average pooling and flatten (each read by nothing else): a tensor that an add, a
concat or a second layer also reads is never rescaled (the other reader would see the scaled
values). Max and mean are positively homogeneous per channel; after a flatten of a
``(C, H, W)`` map the columns of ``W2`` for channel ``c`` are ``c*H*W .. (c+1)*H*W - 1``
(torch's flatten order). A grouped or depthwise ``W2`` reads input channel ``c`` only in the
outputs of ``c``'s group, so its scale multiplies that group's column for ``c`` (per channel
for a depthwise conv); a grouped or depthwise ``W1`` scales per output channel as any conv.
ReLU6 does not commute with scaling, so such pairs are skipped.

Contract: the float function of the graph is unchanged (up to float rounding), and so is every
tensor read by an add, a concat or by several layers. Pure numpy.
"""

from dataclasses import dataclass

import numpy as np

from .importers import Act, clone, consumers, dense_weight, group_slices, sources
from .qmodel import MAC_KINDS, LayerKind

__all__ = ["CrossLayerEqualization", "equalize", "pairs"]

_TINY = 1e-12
#: Layers that may sit between the two layers of a pair (they commute with the scaling).
_TRANSPARENT = (LayerKind.MAXPOOL, LayerKind.AVGPOOL, LayerKind.FLATTEN)


def pairs(layers):
    """Index pairs ``(i, j)`` of MAC layers that CLE may rescale together (module docstring)."""
    out = []
    for i, lyr in enumerate(layers):
        if lyr.kind not in MAC_KINDS or lyr.act not in (Act.RELU, Act.NONE):
            continue
        j = _sole_reader(layers, i)
        while j is not None and layers[j].kind in _TRANSPARENT:
            j = _sole_reader(layers, j)
        if j is not None and layers[j].kind in MAC_KINDS:
            out.append((i, j))
    return out


def _sole_reader(layers, i):
    """The one layer reading tensor ``i`` when it reads nothing else, else ``None``."""
    readers = consumers(layers, i)
    if len(readers) == 1 and sources(layers, readers[0]) == (i,):
        return readers[0]
    return None


def _equalize_pair(first, second):
    c = first.weight.shape[0]
    r1 = np.abs(first.weight.reshape(c, -1)).max(axis=1)
    dense = dense_weight(second)  # (O, C, ...): zero where a group does not read a channel
    cols = dense.reshape(dense.shape[0], c, -1)
    r2 = np.abs(cols).max(axis=(0, 2))
    ok = (r1 > _TINY) & (r2 > _TINY)
    s = np.where(ok, np.sqrt(np.where(ok, r1, 1.0) / np.where(ok, r2, 1.0)), 1.0)
    shape1 = (-1,) + (1,) * (first.weight.ndim - 1)
    first.weight = first.weight / s.reshape(shape1)
    first.bias = first.bias / s
    scaled = (cols * s.reshape(1, -1, 1)).reshape(dense.shape)
    groups = group_slices(second)  # back to (O, C/g, ...): each group's own channels
    second.weight = scaled if len(groups) == 1 else np.concatenate(
        [scaled[outs, ins] for outs, ins in groups])
    return float(np.max(np.abs(np.log(s))))


def equalize(layers, iterations=20, tol=1e-6):
    """A new graph with every eligible pair equalized (the input graph is not changed).

    Pairs are swept in order ``iterations`` times or until no scale moves by more than
    ``tol`` (relative): equalizing pair (2, 3) changes the ranges pair (1, 2) saw.
    """
    out = clone(layers)
    todo = pairs(out)
    for _ in range(iterations):
        moved = max((_equalize_pair(out[i], out[j]) for i, j in todo), default=0.0)
        if moved < tol:
            break
    for i, _ in todo:
        out[i].extra["cle"] = True
    return out


@dataclass(frozen=True)
class CrossLayerEqualization:
    """Recipe pass on the float graph: :func:`equalize`."""

    iterations: int = 20

    def __post_init__(self):
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) \
                or self.iterations < 1:
            raise ValueError(f"CLE iterations must be a positive integer, not {self.iterations!r}")

    def apply(self, layers):
        return equalize(layers, self.iterations)
