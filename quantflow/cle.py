"""Cross-layer equalization (Nagel et al., white paper section 3.2): a float-chain pass.

For two MAC layers joined by a ReLU, ``W2 relu(W1 x + b1) = (W2 S) relu(S^-1 (W1 x + b1))``
for any positive diagonal ``S`` (ReLU is positively homogeneous). Choosing
``s_c = sqrt(r1_c / r2_c)``, with ``r1_c`` the range of output channel ``c`` of ``W1`` and
``r2_c`` the range of input channel ``c`` of ``W2``, makes both ranges ``sqrt(r1_c r2_c)``:
the per-tensor activation between the layers and the weight columns of ``W2`` have equal
ranges across channels, so one activation scale and one weight scale per row fit them better.

Max pooling, average pooling and flatten between the two layers commute with a positive
per-channel scale (max and mean are positively homogeneous per channel); after a flatten of a
``(C, H, W)`` map the columns of ``W2`` for channel ``c`` are ``c*H*W .. (c+1)*H*W - 1``
(torch's flatten order). ReLU6 does not commute with scaling, so such pairs are skipped.

Contract: the float function of the chain is unchanged (up to float rounding). Pure numpy.
"""

from dataclasses import dataclass

import numpy as np

from .importers import Act, clone
from .qmodel import MAC_KINDS, LayerKind

__all__ = ["CrossLayerEqualization", "equalize", "pairs"]

_TINY = 1e-12
#: Layers that may sit between the two layers of a pair (they commute with the scaling).
_TRANSPARENT = (LayerKind.MAXPOOL, LayerKind.AVGPOOL, LayerKind.FLATTEN)


def pairs(layers):
    """Index pairs ``(i, j)`` of MAC layers that CLE may rescale together."""
    out = []
    macs = [i for i, lyr in enumerate(layers) if lyr.kind in MAC_KINDS]
    for i, j in zip(macs, macs[1:], strict=False):
        between = layers[i + 1:j]
        if layers[i].act is Act.RELU and all(b.kind in _TRANSPARENT for b in between):
            out.append((i, j))
    return out


def _column_groups(w2, channels):
    """``W2`` as ``(O, C, rest)``: the columns belonging to each input channel of the pair."""
    return w2.reshape(w2.shape[0], channels, -1)


def _equalize_pair(first, second):
    c = first.weight.shape[0]
    r1 = np.abs(first.weight.reshape(c, -1)).max(axis=1)
    cols = _column_groups(second.weight, c)
    r2 = np.abs(cols).max(axis=(0, 2))
    ok = (r1 > _TINY) & (r2 > _TINY)
    s = np.where(ok, np.sqrt(np.where(ok, r1, 1.0) / np.where(ok, r2, 1.0)), 1.0)
    shape1 = (-1,) + (1,) * (first.weight.ndim - 1)
    first.weight = first.weight / s.reshape(shape1)
    first.bias = first.bias / s
    second.weight = (cols * s.reshape(1, -1, 1)).reshape(second.weight.shape)
    return float(np.max(np.abs(np.log(s))))


def equalize(layers, iterations=20, tol=1e-6):
    """A new chain with every eligible pair equalized (the input chain is not changed).

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
    """Recipe pass on the float chain: :func:`equalize`."""

    iterations: int = 20

    def __post_init__(self):
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) \
                or self.iterations < 1:
            raise ValueError(f"CLE iterations must be a positive integer, not {self.iterations!r}")

    def apply(self, layers):
        return equalize(layers, self.iterations)
