"""``quantize`` and ``load``: a trained model to a QuantizedModel folder, and back."""

from . import values
from .results import QuantizeResult

__all__ = ["quantize", "load"]


def load(qdir):
    """The :class:`quantflow.qmodel.QuantizedModel` in the folder ``qdir`` (a path or a
    :class:`QuantizeResult`).

    Raises
    ------
    quantflow.errors.ArtifactError
        The folder is not a whole QuantizedModel (one line naming what is wrong).
    """
    from quantflow.serialize import load as load_folder

    return load_folder(values.qdir(qdir))


def quantize(model="digits-cnn", *, out, data=None, wbits=4, abits=4, input_bits=8,
             method=None, recipe="auto", weight_grid="auto", wide_head=False,
             layer_bits=None, data_free=False, qat=False, qat_epochs=30, progress=None):
    """Quantize ``model`` and save it as a QuantizedModel folder ``out`` (``hwgen quantize``).

    Parameters
    ----------
    model : str or os.PathLike
        A zoo name (``"digits-cnn"``), ``"path/to/file.py:factory"`` or a QONNX ``.onnx``.
    out : str or os.PathLike
        The folder to write (replaced atomically; a folder that is not a QuantizedModel is
        refused).
    data : str or os.PathLike, optional
        An ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (and optionally
        ``x_val``, ``y_val``); default: the model's own data set.
    wbits, abits, input_bits : int
        Weight, activation and network-input bits (1..8; 1 bit: binary, see ``qat``).
    method : str or quantflow.flow.Method, optional
        Range setting only (``"minmax"``, ..., ``"auto"``); overrides ``recipe``.
    recipe : str or quantflow.recipes.Recipe
        The PTQ recipe; ``"auto"`` chooses among the candidates on validation data.
    weight_grid : str or quantflow.numerics.WeightGrid
        ``"narrow"``, ``"full"`` or ``"auto"`` (chosen on validation data).
    wide_head : bool
        Also try the classifier's input at 8 bits (kept when it scores better).
    layer_bits : dict, optional
        ``{layer name: (w_bits, a_bits)}``.
    data_free, qat, qat_epochs
        As ``--data-free``, ``--qat``, ``--qat-epochs``.
    progress : callable, optional
        ``progress(text, done=None, total=None)``: the step being run, and how far it is.

    Returns
    -------
    QuantizeResult

    Raises
    ------
    quantflow.errors.UserError
        A bad value or combination, an unusable model, data or ``out`` (checked before the
        work where it can be).
    """
    from quantflow import ptq, serialize
    from quantflow.errors import UserError
    from quantflow.flow import (Method, load_data, load_model, qat_starts, quantize_data_free,
                                quantize_model)

    progress = progress or _quiet
    wbits, abits = values.bits("--wbits", wbits), values.bits("--abits", abits)
    input_bits = values.bits("--input-bits", input_bits)
    method, recipe = values.method(method), values.recipe(recipe)
    grid, layer_bits = values.weight_grid(weight_grid), values.layer_bits(layer_bits)
    qat_epochs = values.positive("--qat-epochs", qat_epochs)
    out = values.path("--out", out)
    serialize.check_replaceable(out)  # before minutes of work, not after
    if data_free and qat:
        raise UserError("--qat trains on the training data; it cannot follow --data-free")
    if wide_head and (method is not None or data_free):
        raise UserError("--wide-head is a trial of the recipe choice on validation data; it"
                        " does not apply with --method or --data-free")
    onnx_model = str(model).endswith(".onnx")
    if onnx_model and (qat or data_free or layer_bits or method):
        raise UserError("a QONNX model is imported as it is quantized: --qat, --data-free,"
                        " --layer-bits and --method do not apply")
    progress("loading the data and the model")
    ds = load_data(data, model)
    if onnx_model:
        return _import(model, ds, out)
    name, net = load_model(model, ds)
    cfg = ptq.PTQConfig(wbits, abits, input_bits, layer_bits=layer_bits, w_grid=grid)
    chosen_start = method is None and recipe.name == "auto"  # QAT may choose its start
    if data_free:
        result, label = quantize_data_free(name, net, ds, cfg), "data-free"
    elif method is not None or (qat and min(wbits, abits) == 1 and recipe.name == "auto"):
        # QAT of a binary network starts from the float weights (range setting only):
        # flow.qat_starts says why
        method = method or Method.MSE
        progress(f"range setting {method.value}")
        result, label = quantize_model(name, net, ds, cfg, method), method.value
    else:
        result, label = _recipe(name, net, ds, cfg, recipe, wide_head, progress), recipe.name
    if qat:
        starts = None
        if chosen_start:
            progress("QAT starts: MSE ranges")
            starts = qat_starts(name, net, ds, cfg, result)
        result, label = _qat(result, net, ds, qat_epochs, progress, starts), label + "+qat"
    serialize.save(result.qmodel, out)
    return _result(result, label, model, out)


def _quiet(text, done=None, total=None):
    pass



def _result(result, label, model, out, **extra):
    from quantflow.flow import model_label

    meta = result.qmodel.meta
    doc = result.summary(label) | {
        "model": model_label(model), "out": out,
        "w_grid": meta.get("recipe", {}).get("w_grid"), "validation": meta.get("validation"),
        "candidates": meta.get("candidates", [])} | extra
    return QuantizeResult.from_dict(doc, qmodel=result.qmodel)


def _recipe(name, net, ds, cfg, recipe, wide_head, progress):
    """The recipe run (or the choice among candidates), each candidate and AdaRound's layers
    reported to ``progress``."""
    from quantflow import recipes
    from quantflow.flow import quantize_recipe

    total = recipes.trials(cfg, None if recipe is recipes.AUTO else [recipe], wide_head)
    done = [0]
    progress(f"PTQ recipe {recipe.name}", 0, total)

    def tick(*done_total):
        if done_total:  # a pass reporting its layers (AdaRound)
            progress(f"PTQ recipe {recipe.name}: layers", *done_total)
        else:  # one candidate of auto done
            done[0] += 1
            progress(f"PTQ recipe {recipe.name}", done[0], total)

    return quantize_recipe(name, net, ds, cfg, recipe, tick, wide_head)


def _qat(result, net, ds, epochs, progress, starts):
    from quantflow.flow import finetune
    from quantflow.qat import QATConfig

    label = ["QAT"]
    progress("QAT", 0, epochs)

    def trial(i, n, text):  # the (start, learning rate) trials, then the final run
        label[0] = f"QAT trial {i + 1}/{n}: {text}" if i < n else f"QAT {text}"
        progress(label[0], 0, epochs)

    def epoch_done(epoch, total, loss):
        progress(f"{label[0]} loss {loss:.4f}", epoch, total)

    return finetune(result, net, ds, QATConfig(epochs=epochs), epoch_done, trial,
                    starts=starts)


def _import(model, ds, out):
    from quantflow import serialize
    from quantflow.flow import import_qonnx

    result = import_qonnx(model, ds)
    serialize.save(result.qmodel, out)
    return _result(result, "qonnx", model, out, float_accuracy=None,
                   approximate=result.qmodel.meta["approximate"])
