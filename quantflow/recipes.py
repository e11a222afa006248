"""Named PTQ recipes: range setting plus a sequence of passes, as objects (STYLE rule 22).

A :class:`Recipe` is a frozen value: float-chain passes (cross-layer equalization) run before
range setting, then the FakeQuantNet is built with the recipe's weight/activation range
methods, then net passes (AdaRound, bias correction) change its integers in place. Every pass
works on the FakeQuantNet's own tensors, so :meth:`FakeQuantNet.export` stays the one path to
the QuantizedModel and the result is bit-exact with :mod:`quantflow.reference`.

Names are parsed only at the CLI (:func:`by_name`). :func:`choose` picks among candidate
recipes, each on every weight grid left open (:func:`quantflow.ptq.grids`), on validation
data (the user's ``x_val`` or a split of the *training* data); the test set is never used.
"""

import dataclasses
from dataclasses import dataclass, field

from . import ptq
from .actsearch import ActivationRangeSearch
from .adaround import AdaRound
from .biascorr import BiasCorrection
from .calibrate import RECIPE_NAMES, RangeMethod
from .cle import CrossLayerEqualization
from .gptq import ErrorFeedbackRounding

__all__ = ["Recipe", "AutoRecipe", "RECIPES", "by_name", "run", "choose", "candidates", "AUTO",
           "trials", "WIDE_HEAD_BITS"]


@dataclass(frozen=True)
class Recipe:
    """One PTQ recipe.

    Parameters
    ----------
    name : str
        Identifier shown in reports and accepted by ``hwgen quantize --recipe``.
    w_method, a_method : RangeMethod
        Range setting for weights (per output channel) and activations (per tensor).
    float_passes : tuple
        Objects with ``apply(layers) -> layers`` run on the float chain first.
    net_passes : tuple
        Objects with ``apply(net, layers, x_calib, progress)`` run on the FakeQuantNet.
    """

    name: str
    w_method: RangeMethod = RangeMethod.MSE
    a_method: RangeMethod = RangeMethod.MSE
    float_passes: tuple = ()
    net_passes: tuple = field(default=())

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Recipe name must be a non-empty string, not {self.name!r}")
        for attr in ("w_method", "a_method"):
            if not isinstance(getattr(self, attr), RangeMethod):
                raise TypeError(f"Recipe {attr} must be a RangeMethod, "
                                f"not {getattr(self, attr)!r}")
        for attr in ("float_passes", "net_passes"):
            if not isinstance(getattr(self, attr), tuple):
                raise TypeError(f"Recipe {attr} must be a tuple, not {getattr(self, attr)!r}")

    def with_methods(self, w_method, a_method):
        return Recipe(self.name, w_method, a_method, self.float_passes, self.net_passes)

    def describe(self):
        return {"recipe": self.name, "w_method": self.w_method.value,
                "a_method": self.a_method.value,
                "passes": [type(p).__name__ for p in self.float_passes + self.net_passes]}


_CLE, _BC, _AR = CrossLayerEqualization(), BiasCorrection(), AdaRound()
_SEARCH, _GPTQ = ActivationRangeSearch(), ErrorFeedbackRounding()
_OUT = RangeMethod.MSE_OUTPUT

#: The named recipes, simplest first.
RECIPES = (
    Recipe("minmax", RangeMethod.MINMAX, RangeMethod.MINMAX),
    Recipe("mse", RangeMethod.MSE, RangeMethod.MSE),
    Recipe("mse-out", _OUT, RangeMethod.MSE),
    Recipe("cle", _OUT, RangeMethod.MSE, (_CLE,)),
    Recipe("bc", _OUT, RangeMethod.MSE, (), (_BC,)),
    Recipe("cle-bc", _OUT, RangeMethod.MSE, (_CLE,), (_BC,)),
    Recipe("adaround", _OUT, RangeMethod.MSE, (), (_AR,)),
    Recipe("adaround-bc", _OUT, RangeMethod.MSE, (), (_AR, _BC)),
    Recipe("cle-adaround", _OUT, RangeMethod.MSE, (_CLE,), (_AR,)),
    Recipe("cle-adaround-bc", _OUT, RangeMethod.MSE, (_CLE,), (_AR, _BC)),
    Recipe("bc-search", _OUT, RangeMethod.MSE, (), (_BC, _SEARCH)),
    Recipe("adaround-bc-search", _OUT, RangeMethod.MSE, (), (_AR, _BC, _SEARCH)),
    Recipe("gptq-bc", _OUT, RangeMethod.MSE, (), (_GPTQ, _BC)),
    Recipe("gptq-bc-search", _OUT, RangeMethod.MSE, (), (_GPTQ, _BC, _SEARCH)),
)

if ("auto",) + tuple(r.name for r in RECIPES) != RECIPE_NAMES:  # the light copy must agree
    raise AssertionError("calibrate.RECIPE_NAMES must list the recipes built here")


@dataclass(frozen=True)
class AutoRecipe:
    """The default: the best of :func:`candidates` on a validation split (see :func:`choose`)."""

    name: str = "auto"


#: The default recipe (a value, compared with ``is``).
AUTO = AutoRecipe()


def by_name(name):
    """The recipe called ``name`` (CLI boundary)."""
    for r in (AUTO,) + RECIPES:
        if r.name == name:
            return r
    names = ", ".join([AUTO.name] + [r.name for r in RECIPES])
    raise ValueError(f"Recipe must be one of {names}, not {name!r}")


def run(recipe, layers, name, input_shape, x_calib, cfg, progress=None):
    """Apply ``recipe`` to a captured float chain; returns ``(FakeQuantNet, QuantizedModel)``.

    ``cfg`` gives the bit widths (its range methods are replaced by the recipe's).
    """
    if not isinstance(recipe, Recipe):
        raise TypeError(f"Recipe must be a Recipe, not {recipe!r}")
    for p in recipe.float_passes:
        layers = p.apply(layers)
    trial = dataclasses.replace(cfg, w_method=recipe.w_method, a_method=recipe.a_method)
    net = ptq.quantize(layers, name, input_shape, x_calib, trial)
    for p in recipe.net_passes:
        p.apply(net, layers, x_calib, progress)
    qm = net.export({"recipe": trial.describe() | recipe.describe()})
    return net, qm


def candidates(cfg):
    """The recipes the default choice compares for the bit widths of ``cfg``."""
    if min(cfg.wbits, cfg.abits) >= 5:  # range setting is enough at 5+ bits
        return [by_name("mse-out"), by_name("bc"), by_name("cle-bc")]
    if cfg.wbits >= 4:  # weight rounding costs little at 4+ bits: no AdaRound (slow)
        return [by_name("bc"), by_name("bc-search"), by_name("cle-bc")]
    if 1 in cfg.weight_widths:
        # 1-bit weights have no neighbouring codes for AdaRound; GPTQ's error feedback works
        return [by_name(n) for n in ("bc", "bc-search", "gptq-bc", "gptq-bc-search")]
    # every rounding (nearest, AdaRound, GPTQ) with bias correction, with and without the
    # output-KL activation range search
    return [by_name(n) for n in ("bc", "bc-search", "adaround-bc", "adaround-bc-search",
                                 "gptq-bc", "gptq-bc-search")]


#: The width of the classifier's input tensor in ``choose``'s wide-head trial.
WIDE_HEAD_BITS = 8


def trials(cfg, cands=None, wide_head=False):
    """The number of quantizations :func:`choose` runs at most (for a progress bar)."""
    return len(cands or candidates(cfg)) * len(ptq.grids(cfg)) + int(wide_head)


def choose(layers, name, input_shape, x_calib, x_val, y_val, cfg, cands=None, progress=None,
           wide_head=False):
    """Run each candidate recipe on each open weight grid and keep the best on the validation
    data, by (accuracy, mean log-likelihood). Returns ``(FakeQuantNet, QuantizedModel, rows)``;
    ``rows`` (one per trial: recipe, w_grid, val_accuracy, val_log_likelihood, chosen) are
    also stored in ``qm.meta["candidates"]``.

    ``wide_head``: one more trial, the best one again with the tensor that feeds the classifier
    (:func:`quantflow.ptq.classifier_input`'s output) at :data:`WIDE_HEAD_BITS`, kept when it
    scores better (its row has ``head_bits``)."""
    best, rows = None, []

    def trial(recipe, trial_cfg, extra=None):
        nonlocal best
        net, qm = run(recipe, layers, name, input_shape, x_calib, trial_cfg)
        score = ptq.val_score(qm, x_val, y_val)
        rows.append({"recipe": recipe.name, "w_grid": trial_cfg.grid.value,
                     "val_accuracy": score[0], "val_log_likelihood": score[1],
                     "chosen": False} | (extra or {}))
        if best is None or score > best[0]:
            best = (score, net, qm, len(rows) - 1, recipe, trial_cfg)
        if progress is not None:
            progress()

    for recipe in cands or candidates(cfg):
        for grid in ptq.grids(cfg):
            trial(recipe, dataclasses.replace(cfg, w_grid=grid))
    head = ptq.classifier_input(layers) if wide_head else None
    if head is not None:
        head_name = layers[head].name
        w_head, a_head = best[5].bits_for(head_name)
        if a_head < WIDE_HEAD_BITS:
            wide = best[5].layer_bits | {head_name: (w_head, WIDE_HEAD_BITS)}
            trial(best[4], dataclasses.replace(best[5], layer_bits=wide),
                  {"head_bits": WIDE_HEAD_BITS, "head_layer": head_name})
    _, net, qm, pick, _, _ = best
    rows[pick]["chosen"] = True
    qm.meta["recipe"]["chosen_from"] = list(dict.fromkeys(r["recipe"] for r in rows))
    qm.meta["candidates"] = rows
    return net, qm, rows
