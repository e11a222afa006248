"""The quantization flow end to end: model + data -> QuantizedModel + accuracy figures.

Used by ``hwgen quantize``, ``hwgen demo`` and ``bench/accuracy.py``. A model is a zoo name
(``digits-cnn``) or ``path/to/file.py:factory``; data is a ``.npz``, or by default the embedded
digits set (the zoo model's own default data set, :func:`quantflow.zoo.default_data`, when
:func:`load_data` is given the model). A zoo model given other data is trained on that data.
"""

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from . import data as data_mod
from . import importers, ptq, zoo
from .calibrate import Method, RangeMethod
from .errors import DataError
from .metrics import metric_name

__all__ = ["Method", "QuantResult", "load_model", "load_data", "quantize_model", "model_label",
           "is_zoo_model", "quantize_recipe", "quantize_data_free", "finetune", "qat_starts",
           "is_binary", "start_label", "import_qonnx", "CALIB_IMAGES"]

#: Calibration images drawn (seeded) from the training data outside the validation split.
CALIB_IMAGES = 512


@dataclass
class QuantResult:
    """A quantization's artifacts and figures. ``float_accuracy``/``quant_accuracy`` are top-1
    fractions, or for a regression data set (``qmodel.meta["metric"] == "mse"``) mean squared
    errors."""

    qmodel: object
    fakequant: object
    float_accuracy: float
    quant_accuracy: float
    choices: list

    def summary(self, method):
        """One report row; ``method`` is a :class:`Method` or a label string."""
        recipe = self.qmodel.meta.get("recipe", {})
        return {
            "model": self.qmodel.name, "wbits": recipe.get("wbits"),
            "abits": recipe.get("abits"), "input_bits": recipe.get("input_bits"),
            "method": getattr(method, "value", method), "recipe": recipe.get("recipe"),
            "w_method": recipe.get("w_method"),
            "a_method": recipe.get("a_method"), "w_grid": recipe.get("w_grid"),
            "float_accuracy": self.float_accuracy,
            "quant_accuracy": self.quant_accuracy,
            "metric": self.qmodel.meta.get("metric", "accuracy"),
        }


def _zoo_model(spec):
    try:
        return zoo.ZooModel(spec)
    except ValueError:
        return None


def is_zoo_model(spec):
    """True when ``spec`` names a zoo network."""
    return _zoo_model(spec) is not None


def model_label(spec):
    """The model as reports name it: a zoo name, ``file.py:factory`` (the file's name and the
    factory, so two factories of one file stay apart) or the ``.onnx`` file's name."""
    spec = str(spec)
    if is_zoo_model(spec):
        return spec
    path, sep, factory = spec.rpartition(":")
    if sep and not spec.endswith(".onnx"):
        return f"{PurePath(path).name}:{factory}"
    return PurePath(spec).name


def load_data(path=None, model=None):
    """The ``.npz`` at ``path``; without one, the default data set of zoo model ``model``
    (digits or its proxy, :func:`quantflow.zoo.default_data`), else the embedded digits."""
    if path is not None:
        return data_mod.load_npz(path)
    which = _zoo_model(model) if model is not None else None
    return data_mod.digits() if which is None else zoo.default_data(which)


def load_model(spec, ds, progress=None):
    """(name, float nn.Module) for a zoo name or a ``file.py:factory`` spec.

    A zoo network is trained on ``ds`` (cached by data, recipe and torch version): its default
    data set (:func:`load_data` with ``model``) or a user's data of the same input shape and
    class count (or target shape); other data is one :class:`DataError`."""
    which = _zoo_model(spec)
    if which is not None:
        torch_net = zoo.build(which)
        zoo.check_data(which, torch_net, ds)
        return which.value, zoo.load_or_train(which, ds, progress)
    if ":" not in str(spec):
        names = ", ".join(m.value for m in zoo.ZooModel)
        raise DataError(f"{spec!r} is not a zoo model ({names}) nor path/to/file.py:factory")
    model = zoo.load_user_model(spec)
    zoo.check_user_data(model, ds, spec)
    return str(spec).rpartition(":")[0].rpartition("/")[2].removesuffix(".py"), model


def calibration_set(ds, n=CALIB_IMAGES, seed=0):
    """Calibration images from :func:`quantflow.data.fit_split`: bias correction, AdaRound and
    the range searches fit these, so none may be a validation image the default recipe's
    candidates are judged on."""
    x_fit, _ = data_mod.fit_split(ds)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x_fit), min(n, len(x_fit)), replace=False)
    return x_fit[np.sort(idx)]


def _validation(ds):
    """The validation data every choice is made on, and its record for ``model.json``."""
    x_val, y_val = data_mod.validation_split(ds)
    return x_val, y_val, {"source": data_mod.validation_source(ds), "images": int(len(x_val))}


def quantize_model(name, net, ds, cfg, method, progress=None):
    """Capture, quantize with ``method`` (a :class:`Method`), evaluate on the test split.

    The weight grid, when ``cfg`` leaves it open, and with ``auto`` the method pair are chosen
    on the validation data (:func:`quantflow.data.validation_split`)."""
    layers = importers.capture(net, ds.input_shape)
    x_cal = calibration_set(ds)
    if method is Method.AUTO:
        pairs = list(itertools.product(RangeMethod, [m for m in RangeMethod
                                                     if m is not RangeMethod.MSE_OUTPUT]))
    else:
        w_m = RangeMethod(method.value)
        pairs = [(w_m, RangeMethod.MSE if w_m is RangeMethod.MSE_OUTPUT else w_m)]
    if len(pairs) == 1 and cfg.w_grid is not None:  # nothing to choose
        w_m, a_m = pairs[0]
        fq = ptq.quantize(layers, name, ds.input_shape, x_cal,
                          dataclasses.replace(cfg, w_method=w_m, a_method=a_m))
        qm = fq.export({"recipe": dataclasses.replace(cfg, w_method=w_m,
                                                      a_method=a_m).describe()})
        return _finish(qm, fq, net, ds, [], method.value)
    x_val, y_val, val = _validation(ds)
    fq, qm, choices = ptq.choose_config(layers, name, ds.input_shape, x_cal, x_val, y_val, cfg,
                                        pairs, progress)
    qm.meta["validation"] = val
    return _finish(qm, fq, net, ds, choices, method.value)


def _finish(qm, fq, net, ds, choices, label):
    qm.meta.update({"method": label, "dataset": ds.name, "metric": metric_name(ds.y_test)})
    float_acc = zoo.accuracy(net, ds.x_test, ds.y_test)
    quant_acc = ptq.accuracy(qm, ds.x_test, ds.y_test)
    qm.meta.update({"float_accuracy": float_acc, "quant_accuracy": quant_acc})
    return QuantResult(qm, fq, float_acc, quant_acc, choices)


def quantize_recipe(name, net, ds, cfg, recipe, progress=None, wide_head=False):
    """Capture and quantize with a :class:`quantflow.recipes.Recipe`, or with
    :data:`quantflow.recipes.AUTO` (the best candidate on the validation data); evaluate on
    the test split. An open weight grid (``cfg.w_grid is None``) is chosen on the validation
    data too, for a named recipe as well.

    ``wide_head`` adds the trial of :func:`quantflow.recipes.choose` with the classifier's
    input tensor at 8 bits. ``progress`` is called as ``progress()`` after each trial of the
    choice, and passed to
    the passes of a single recipe on a fixed grid (AdaRound calls
    ``progress(layers_done, layers)``)."""
    from . import recipes

    layers = importers.capture(net, ds.input_shape)
    ptq.check_layer_bits(layers, cfg.layer_bits)
    x_cal = calibration_set(ds)
    if recipe is not recipes.AUTO and cfg.w_grid is not None and not wide_head:
        fq, qm = recipes.run(recipe, layers, name, ds.input_shape, x_cal, cfg, progress)
        return _finish(qm, fq, net, ds, [], "recipe")
    x_val, y_val, val = _validation(ds)
    cands = None if recipe is recipes.AUTO else [recipe]
    fq, qm, choices = recipes.choose(layers, name, ds.input_shape, x_cal, x_val, y_val, cfg,
                                     cands, progress=progress, wide_head=wide_head)
    qm.meta["validation"] = val
    return _finish(qm, fq, net, ds, choices, "recipe")


def quantize_data_free(name, net, ds, cfg, input_max=1.0):
    """Quantize without calibration data (:mod:`quantflow.datafree`); ``ds`` is used only to
    report the float and quantized test accuracy afterwards."""
    from . import datafree

    layers = importers.capture(net, ds.input_shape)
    ptq.check_layer_bits(layers, cfg.layer_bits)
    cfg = dataclasses.replace(cfg, w_method=RangeMethod.MSE, a_method=RangeMethod.MSE)
    fq = datafree.quantize_data_free(net, layers, name, ds.input_shape, cfg, input_max)
    qm = fq.export({"recipe": cfg.describe() | {"recipe": "data-free",
                                                "k": datafree.DEFAULT_K}})
    return _finish(qm, fq, net, ds, [], "data-free")


def is_binary(qmodel):
    """True when any weight or activation tensor of ``qmodel`` is 1 bit wide."""
    return any(layer.w_fmt is not None and layer.w_fmt.bits == 1 for layer in qmodel.layers) \
        or any(layer.out_fmt.bits == 1 for layer in qmodel.layers)


def start_label(result):
    """A PTQ result's name as a QAT start: its recipe, else its range method."""
    return result.qmodel.meta.get("recipe", {}).get("recipe") or result.qmodel.meta["method"]


def qat_starts(name, net, ds, cfg, result):
    """``{label: PTQ result}`` QAT chooses its start among: ``result`` and MSE ranges on the
    float weights. A recipe's rounding (GPTQ, AdaRound) bakes the weights onto the grid, which
    leaves the straight-through gradient less to move: on the validation split (each trained
    on the fit split) digits-mlp scored 97.63 from MSE ranges and 97.03 from the recipe at
    W2A2, digits-cnn 96.44 and 97.63, so neither start suits every network. A binary network
    starts from MSE ranges only (digits-cnn W1A1: 93.3% after gptq-bc-search, 96.9% after
    MSE ranges)."""
    if is_binary(result.qmodel) and start_label(result) != Method.MSE.value:
        result = quantize_model(name, net, ds, cfg, Method.MSE)
    starts = {start_label(result): result}
    if Method.MSE.value not in starts:
        starts[Method.MSE.value] = quantize_model(name, net, ds, cfg, Method.MSE)
    return starts


def finetune(result, net, ds, qat_cfg, progress=None, trial_progress=None, hold_out=False,
             starts=None, lrs=None):
    """QAT (:mod:`quantflow.qat`) on the training data from a PTQ result; a new result.

    The start (``starts``, ``{label: PTQ result}``, default ``result`` alone) and the
    learning rate (``lrs``, default :data:`quantflow.qatsearch.QAT_LRS`) are chosen by
    :func:`quantflow.qatsearch.choose` on held-out data: the user's ``x_val`` when the data
    set has it, else four folds of the training data; the winner is trained on all of it.
    One start and one learning rate train directly. ``trial_progress(i, n, text)`` before
    each training run (``i == n``: the final one). The trials are stored in
    ``meta["qat_candidates"]``.

    ``hold_out``: train and choose on the fit split only, so the validation split stays unseen
    and a sweep may score on it (``hwgen explore``)."""
    from . import qat, qatsearch

    starts = starts or {start_label(result): result}
    lrs = tuple(lrs or qatsearch.QAT_LRS)
    x, y = data_mod.fit_split(ds) if hold_out else (ds.x_train, ds.y_train)
    rows = []
    if len(starts) == 1 and len(lrs) == 1:
        (label, result), = starts.items()
        qat_cfg = qatsearch.candidates([label], qat_cfg, lrs)[0].cfg
        fq = qat.finetune(result.fakequant, x, y, qat_cfg, progress)
    else:
        x_val, y_val = (None, None) if hold_out or ds.x_val is None else (ds.x_val, ds.y_val)
        fq, chosen, rows = qatsearch.choose({k: r.fakequant for k, r in starts.items()},
                                            qat_cfg, x, y, x_val, y_val, lrs, progress,
                                            trial_progress)
        label, result, qat_cfg = chosen.start, starts[chosen.start], chosen.cfg
    meta = dict(result.qmodel.meta)
    qm = fq.export({"recipe": dict(meta.get("recipe", {})) | {
        "qat_start": label, "qat_epochs": qat_cfg.epochs, "qat_lr": qat_cfg.lr,
        "qat_data": "fit split" if hold_out else "training data"}})
    if rows:
        qm.meta["qat_candidates"] = rows
    return _finish(qm, fq, net, ds, result.choices, "qat")


def import_qonnx(path, ds):
    """A QONNX file as a QuantizedModel (no quantization choices are made), with its test
    accuracy on ``ds``; the float accuracy is unknown (``nan``)."""
    from .qonnx import load_qonnx

    qm = load_qonnx(path)
    if tuple(qm.input_shape) != tuple(ds.input_shape):
        raise DataError(f"{path}: the model's input shape {tuple(qm.input_shape)} does not match"
                        f" the data's {tuple(ds.input_shape)}")
    acc = ptq.accuracy(qm, ds.x_test, ds.y_test)
    qm.meta.update({"method": "qonnx", "dataset": ds.name, "quant_accuracy": acc,
                    "recipe": {"recipe": "qonnx", "wbits": qm.wbits, "abits": qm.abits,
                               "input_bits": qm.input_fmt.bits}})
    return QuantResult(qm, None, float("nan"), acc, [])
