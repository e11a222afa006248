"""The points of a design-space sweep (``hwgen explore``): pure functions of their inputs.

A sweep is model x (W, A) (x a per-layer recipe) x array x target, where a target is a board
or ``asic``. Each point runs in three tasks, each a pure function of its (JSON-able) spec, so
the scheduler may run one twice or retry one on another worker without changing anything:

- :func:`float_task` (one per model): trains or loads the zoo network (cached on disk by the
  zoo) and measures its float validation and test accuracy;
- :func:`quant_task` (one per model x W x A x recipe): ``quantflow.flow.quantize_recipe`` (the
  ``hwgen quantize`` path), the validation and test accuracy of the integer reference; returns
  the :class:`~quantflow.qmodel.QuantizedModel` with its figures;
- :func:`hw_task` (one per quantization x array x target): the compiler's cycles and
  :func:`boards.estimate.estimate` (LUT, FF, BRAM, SPRAM, DSP, fit, Fmax, latency, energy), or
  for ``asic`` the 45 nm energy of the overlay; and :func:`synth_task` the real build
  (``boards.build.build`` or :func:`boards.asic.asic_report`) for a Pareto point.

A worker started by a Dask nanny (``LocalCluster``, ``dask worker``) has ``OMP_NUM_THREADS=1``
(``distributed.nanny.pre-spawn-environ``), so torch computes on one thread per worker process
and two workers share two cores without oversubscription; no torch import is needed here.

Every spec has a digest (:func:`digest`) that names its result in the sweep's folder, so a
resumed sweep skips what is stored. A failure the user can cause (a model that does not fit
the overlay, a configuration the board cannot build) is a result too (``"error"``), stored
like any other; only an unexpected exception leaves a point to be run again.
"""

import hashlib
import json
import time

__all__ = ["EXPLORE_VERSION", "ASIC", "digest", "float_spec", "quant_spec", "hw_spec",
           "float_task", "quant_task", "hw_task", "synth_task"]

#: Part of every digest: a change to what a point computes bumps it, so no stale result is
#: reused.
EXPLORE_VERSION = 1

#: The target name of the ASIC column (not a board).
ASIC = "asic"


def digest(spec):
    """Short SHA-256 of a spec's canonical JSON (with :data:`EXPLORE_VERSION`)."""
    text = json.dumps({"v": EXPLORE_VERSION, **spec}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def float_spec(model, data=None):
    """The float network: ``model`` a zoo name or ``file.py:factory``, ``data`` a ``.npz``."""
    return {"kind": "float", "model": model, "data": data}


#: QAT epochs of a binary point (PTQ collapses at 1 bit: see :func:`quant_task`).
BINARY_QAT_EPOCHS = 30
#: How a binary point's QAT makes its choices (in its spec: a change renames the point;
#: ``quantflow.qatsearch.FOLDS`` folds, not imported here: it would load torch).
QAT_CHOICE = "4-fold"


def quant_spec(model, wbits, abits, recipe="auto", layer_bits=None, data=None,
               input_bits=8):
    """One quantization (``hwgen quantize --recipe``'s inputs; a binary point's adds
    ``qat``, the epochs of :func:`quant_task`'s QAT)."""
    spec = {"kind": "quant", "model": model, "data": data, "wbits": wbits, "abits": abits,
            "input_bits": input_bits, "recipe": recipe,
            "layer_bits": {k: list(v) for k, v in sorted((layer_bits or {}).items())}}
    if _binary(spec):
        spec["qat"] = BINARY_QAT_EPOCHS
        spec["qat_choice"] = QAT_CHOICE
    return spec


def _binary(spec):
    widths = [spec["wbits"], spec["abits"]] + [b for v in spec["layer_bits"].values() for b in v]
    return min(widths) == 1


def hw_spec(qspec, target, array=None):
    """One hardware point: a quantization on ``target`` (a board name or :data:`ASIC`) with
    ``array`` ``(rows, cols)`` or the target's default (``None``)."""
    return {"kind": "hw", "quant": digest(qspec), "target": target,
            "array": list(array) if array is not None else None}


def float_task(spec):
    """``{"float_accuracy", "float_val_accuracy", "metric", "seconds"}`` of the float net."""
    from quantflow import data as data_mod
    from quantflow import zoo
    from quantflow.flow import load_data, load_model
    from quantflow.metrics import metric_name

    start = time.monotonic()
    ds = load_data(spec["data"], spec["model"])
    _, net = load_model(spec["model"], ds)
    x_val, y_val = data_mod.validation_split(ds)
    return {"digest": digest(spec), "model": spec["model"],
            "float_accuracy": zoo.accuracy(net, ds.x_test, ds.y_test),
            "float_val_accuracy": zoo.accuracy(net, x_val, y_val),
            "metric": metric_name(ds.y_test), "seconds": round(time.monotonic() - start, 1)}


def quant_task(spec, float_result=None):
    """``(figures, QuantizedModel or None)`` of one quantization; ``float_result`` (the
    model's :func:`float_task`) is only a dependency, so the network is trained once."""
    from quantflow import data as data_mod
    from quantflow import ptq, recipes
    from quantflow.errors import UserError
    from quantflow.flow import load_data, load_model, quantize_recipe

    start = time.monotonic()
    figures = {"digest": digest(spec), **{k: spec[k] for k in (
        "model", "wbits", "abits", "recipe", "layer_bits")}}
    try:
        ds = load_data(spec["data"], spec["model"])
        name, net = load_model(spec["model"], ds)
        cfg = ptq.PTQConfig(spec["wbits"], spec["abits"], spec["input_bits"],
                            layer_bits={k: tuple(v) for k, v in spec["layer_bits"].items()})
        if spec.get("qat"):
            # a binary point is trained as `hwgen quantize --qat` does (MSE ranges, then QAT
            # with its learning rate chosen by cross-validation), on the fit split only: the
            # validation accuracy the Pareto front compares stays unseen data
            from quantflow.flow import Method, finetune, quantize_model
            from quantflow.qat import QATConfig

            result = finetune(quantize_model(name, net, ds, cfg, Method.MSE), net, ds,
                              QATConfig(epochs=spec["qat"]), hold_out=True)
        else:
            result = quantize_recipe(name, net, ds, cfg, recipes.by_name(spec["recipe"]))
    except (UserError, ValueError) as e:
        return {**figures, "error": str(e), "seconds": round(time.monotonic() - start, 1)}, None
    x_val, y_val = data_mod.validation_split(ds)
    qm = result.qmodel
    figures.update({
        "chosen": "mse+qat" if spec.get("qat") else qm.meta.get("recipe", {}).get("recipe"),
        "float_accuracy": result.float_accuracy, "quant_accuracy": result.quant_accuracy,
        "val_accuracy": ptq.accuracy(qm, x_val, y_val),
        "seconds": round(time.monotonic() - start, 1)})
    return figures, qm


def _target(name):
    from boards import board_by_name

    return board_by_name(name).value


def hw_task(quant, spec):
    """The estimate of one hardware point (a flat dict). ``quant`` is :func:`quant_task`'s
    result."""
    from quantflow.errors import UserError

    start = time.monotonic()
    figures, qm = quant
    row = {"digest": digest(spec), "target": spec["target"], "quant": spec["quant"]}
    if qm is None:
        return {**row, "error": figures.get("error", "quantization failed")}
    try:
        row.update(_asic_estimate(qm, spec["array"]) if spec["target"] == ASIC
                   else _board_estimate(qm, spec["target"], spec["array"]))
    except (UserError, TypeError, ValueError) as e:
        row.update({"error": str(e), "fits": False})
    row["seconds"] = round(time.monotonic() - start, 2)
    return row


def _board_estimate(qm, board, array):
    from boards.estimate import estimate

    est = estimate(_target(board), qm, array)
    fpga = est["energy"]["fpga"]
    t = est["timing"]
    return {"array": est["array"], "weight_bits": est["weight_bits"],
            "act_bits": est["act_bits"], "multipliers": est["multipliers"],
            "config_digest": est["config_digest"], "lut": est["lut"], "ff": est["ff"],
            "bram": est["bram"], "spram": est["spram"], "dsp": est["dsp"],
            "fits": est["fits"], "fmax_mhz": est["fmax_mhz"], "clock_mhz": est["target_mhz"],
            "cycles": est["cycles"], "macs": est["macs"],
            "latency_us": t["board_clock"]["latency_us"],
            "latency_fmax_us": t["fmax"]["latency_us"],
            "energy_45nm_uj": est["energy"]["asic_45nm_pj"] / 1e6,
            "energy_fpga_uj": fpga["energy_uj"] if fpga else None}


def _asic_estimate(qm, array):
    from boards.asic import asic_config
    from boards.energy import energy_45nm
    from quantflow.program import compile_program

    cfg = asic_config(qm, array)
    program = compile_program(qm, cfg)
    en = energy_45nm(program, cfg)
    return {"array": [cfg.rows, cfg.cols], "weight_bits": cfg.weight_bits,
            "act_bits": cfg.act_bits, "multipliers": "gates", "config_digest": cfg.digest,
            "lut": None, "fits": True, "cycles": sum(program.cycles),
            "macs": sum(program.macs), "energy_45nm_uj": en["total_pj"] / 1e6,
            "energy_fpga_uj": None}


def synth_task(quant, spec):
    """The real build of a hardware point: ``boards.build.build`` for a board (LUT, FF, BRAM,
    SPRAM, DSP, Fmax from the tools' JSON), :func:`boards.asic.asic_report` for ``asic``
    (gates, flip-flops, transistors); the figures prefixed ``synth_``."""
    from quantflow.errors import UserError

    start = time.monotonic()
    _, qm = quant
    row = {"digest": digest(spec)}
    try:
        if spec["target"] == ASIC:
            from boards.asic import asic_report

            doc = asic_report(qm, spec["array"])
            row.update({f"synth_{k}": doc["total"][k]
                        for k in ("gates", "ffs", "transistors", "memory_bits")})
        else:
            from boards.build import board_config, build

            target = _target(spec["target"])
            cfg, _ = board_config(target, qm, spec["array"])
            rep = build(target, cfg).report.to_json()
            row.update({f"synth_{k}": rep[k] for k in ("lut", "ff", "bram", "spram", "dsp",
                                                        "fmax_mhz", "fits")})
    except (UserError, TypeError, ValueError) as e:
        row["synth_error"] = str(e)
    row["synth_seconds"] = round(time.monotonic() - start, 1)
    return row
