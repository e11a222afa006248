"""Per-layer sensitivity: the accuracy drop when only one layer is lowered.

Every Conv2d/Linear and residual add runs at ``base`` bits except one, which runs at ``low``
bits (its weights and its output activation; the last layer's output is the accumulator, so
only its weights drop; an add has no weights, so only its output drops). The drop against the
all-``base`` model ranks the layers: the first candidates to keep wide with ``--layer-bits``.
Evaluate on a validation split of the training data when the ranking is used to choose bit
widths; the test set is for reporting only.
"""

from dataclasses import dataclass

from . import ptq, recipes
from .qmodel import MAC_KINDS, LayerKind

__all__ = ["LayerSensitivity", "layer_sensitivity"]


@dataclass(frozen=True)
class LayerSensitivity:
    """One row: ``layer`` lowered to ``low`` bits, the others at ``base``."""

    layer: str
    index: int
    accuracy: float
    base_accuracy: float

    @property
    def drop(self):
        return self.base_accuracy - self.accuracy


def layer_sensitivity(layers, name, input_shape, x_calib, x_eval, y_eval, base=(8, 8),
                      low=(2, 2), recipe=None, progress=None):
    """``[LayerSensitivity]`` for every Conv2d/Linear and add layer, in graph order.

    ``recipe`` (a :class:`quantflow.recipes.Recipe`, default ``bc``) quantizes every variant.
    """
    recipe = recipe or recipes.by_name("bc")
    base_cfg = ptq.PTQConfig(*base)
    _, qm = recipes.run(recipe, layers, name, input_shape, x_calib, base_cfg)
    base_acc = ptq.accuracy(qm, x_eval, y_eval)
    rows = []
    macs = [(i, lyr) for i, lyr in enumerate(layers)
            if lyr.kind in MAC_KINDS + (LayerKind.ADD,)]
    for n, (i, lyr) in enumerate(macs):
        cfg = ptq.PTQConfig(*base, layer_bits={lyr.name: tuple(low)})
        _, qm = recipes.run(recipe, layers, name, input_shape, x_calib, cfg)
        rows.append(LayerSensitivity(lyr.name, i, ptq.accuracy(qm, x_eval, y_eval), base_acc))
        if progress is not None:
            progress(n + 1, len(macs))
    return rows
