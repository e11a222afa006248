"""`hwgen quantize`: post-training quantization of a model to a QuantizedModel folder."""

import argparse
import json
import sys

from quantflow.numerics import MAX_BITS, MIN_BITS

NAME = "quantize"
HELP = "quantize a trained model (zoo name or file.py:factory) to a QuantizedModel folder"

__all__ = ["NAME", "HELP", "add_arguments", "run", "bits", "method", "recipe", "layer_bits",
           "positive_int", "weight_grid"]


def bits(value):
    """argparse type: a word length in MIN_BITS..MAX_BITS."""
    try:
        b = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer bit width") from None
    if not MIN_BITS <= b <= MAX_BITS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a bit width in {MIN_BITS}..{MAX_BITS}")
    return b


def method(value):
    """argparse type: a range-setting recipe name."""
    from quantflow.flow import Method

    try:
        return Method(value)
    except ValueError:
        names = ", ".join(m.value for m in Method)
        raise argparse.ArgumentTypeError(f"{value!r} is not a method ({names})") from None


def recipe(value):
    """argparse type: a PTQ recipe name -> the Recipe object (or ``recipes.AUTO``)."""
    from quantflow import recipes

    try:
        return recipes.by_name(value)
    except ValueError:
        names = ", ".join([recipes.AUTO.name] + [r.name for r in recipes.RECIPES])
        raise argparse.ArgumentTypeError(f"{value!r} is not a recipe ({names})") from None


def weight_grid(value):
    """argparse type: ``auto`` (chosen on the validation data) -> None, else a WeightGrid."""
    from quantflow.numerics import WeightGrid

    if value == "auto":
        return None
    try:
        return WeightGrid(value)
    except ValueError:
        names = ", ".join(["auto"] + [g.value for g in WeightGrid])
        raise argparse.ArgumentTypeError(f"{value!r} is not a weight grid ({names})") from None


def positive_int(value):
    """argparse type: an integer >= 1."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive integer")
    return n


def layer_bits(value):
    """argparse type: ``NAME=W/A,...`` -> ``{name: (w_bits, a_bits)}`` (names are checked
    against the model later, when it is captured)."""
    out = {}
    for item in value.split(","):
        name, sep, wa = item.strip().partition("=")
        w, slash, a = wa.partition("/")
        if not (sep and slash and name):
            raise argparse.ArgumentTypeError(f"{item!r} is not NAME=W/A (e.g. 0=8/8)")
        try:
            out[name] = (bits(w), bits(a))
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"{item!r} is not NAME=W/A with {e}") from None
    return out


def add_arguments(p):
    from quantflow.flow import Method

    p.add_argument("--model", metavar="MODEL", default="digits-cnn",
                   help="zoo model (digits-cnn, digits-mlp), path/to/file.py:factory, or a"
                   " QONNX file.onnx (imported as it is quantized; needs the qonnx extra)")
    p.add_argument("--data", metavar="FILE.npz", default=None,
                   help="calibration/evaluation arrays x_train, y_train, x_test, y_test, and"
                        " optionally x_val, y_val (every choice is made on them; without them"
                        " on a split of x_train) (default: the embedded digits set)")
    p.add_argument("--wbits", metavar="N", type=bits, default=4, help="weight bits")
    p.add_argument("--abits", metavar="N", type=bits, default=4, help="activation bits")
    p.add_argument("--input-bits", metavar="N", type=bits, default=8, help="network input bits")
    p.add_argument("--method", metavar="METHOD", type=method, default=None,
                   help="range setting only, no other pass: " + ", ".join(m.value for m in Method)
                   + " (auto: best pair on a validation split); overrides --recipe")
    p.add_argument("--recipe", metavar="RECIPE", type=recipe, default="auto",
                   help="PTQ recipe (range setting + CLE / bias correction / AdaRound passes);"
                   " auto: the best candidate for the bit widths on a validation split of the"
                   " training data")
    p.add_argument("--weight-grid", metavar="GRID", type=weight_grid, default="auto",
                   help="weight codes: narrow (symmetric, +-(2^(b-1)-1)), full (-2^(b-1) too;"
                   " at 2 bits the fourth code) or auto (the better on the validation data)")
    p.add_argument("--wide-head", action="store_true",
                   help="also try the tensor that feeds the classifier (the last hidden layer's"
                   " output, or what a global average pool reads) at 8 bits; kept when it"
                   " scores better on the validation data")
    p.add_argument("--layer-bits", metavar="NAME=W/A,...", type=layer_bits, default={},
                   help="per-layer weight/activation bits, e.g. 0=8/8,10=8/8")
    p.add_argument("--data-free", action="store_true",
                   help="no calibration images: weight ranges from the weights, activation"
                   " ranges from BatchNorm statistics propagated through the network")
    p.add_argument("--qat", action="store_true",
                   help="fine-tune the PTQ result with STE and LSQ learned step sizes")
    p.add_argument("--qat-epochs", metavar="N", type=positive_int, default=30,
                   help="QAT epochs over the training data")
    p.add_argument("--out", metavar="DIR", required=True, help="QuantizedModel folder to write")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--verbose", action="store_true",
                   help="list every candidate of the choice with its validation accuracy and"
                   " log-likelihood")


def run(args):
    from quantflow import ptq, serialize
    from quantflow.flow import (
        load_data,
        load_model,
        model_label,
        quantize_data_free,
        quantize_model,
    )

    from quantflow.errors import UserError

    serialize.check_replaceable(args.out)  # before minutes of work, not after
    if args.data_free and args.qat:
        raise UserError("--qat trains on the training data; it cannot follow --data-free")
    if args.wide_head and (args.method is not None or args.data_free):
        raise UserError("--wide-head is a trial of the recipe choice on validation data; it"
                        " does not apply with --method or --data-free")
    onnx_model = str(args.model).endswith(".onnx")
    if onnx_model and (args.qat or args.data_free or args.layer_bits or args.method):
        raise UserError("a QONNX model is imported as it is quantized: --qat, --data-free,"
                        " --layer-bits and --method do not apply")
    ds = load_data(args.data, args.model)
    if onnx_model:
        return _import(args, ds)
    name, net = load_model(args.model, ds)
    cfg = ptq.PTQConfig(args.wbits, args.abits, args.input_bits, layer_bits=args.layer_bits,
                        w_grid=args.weight_grid)
    if args.data_free:
        result, label = quantize_data_free(name, net, ds, cfg), "data-free"
    elif args.method is not None:
        result, label = quantize_model(name, net, ds, cfg, args.method), args.method.value
    else:
        result, label = _recipe(name, net, ds, cfg, args.recipe, args.wide_head), \
            args.recipe.name
    if args.qat:
        result, label = _qat(result, net, ds, args.qat_epochs), label + "+qat"
    serialize.save(result.qmodel, args.out)
    meta = result.qmodel.meta
    summary = result.summary(label) | {
        "model": model_label(args.model), "out": str(args.out),
        "w_grid": meta.get("recipe", {}).get("w_grid"), "validation": meta.get("validation"),
        "candidates": meta.get("candidates", [])}
    _note(meta, args.model)
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
        return 0
    chosen = summary.get("recipe") or label
    print(f"{summary['model']}: W{args.wbits}A{args.abits} {label} ({chosen}, "
          f"{summary['w_method']}/{summary['a_method']}, {summary['w_grid']} grid)  float "
          f"{100 * result.float_accuracy:.2f}%  quantized "
          f"{100 * result.quant_accuracy:.2f}%  -> {args.out}")
    if args.verbose:
        _print_candidates(meta)
    return 0


def _note(meta, model):
    """One line on stderr when the choice was made on a split of the training data."""
    val = meta.get("validation")
    if not val or val["source"] == "x_val":
        return
    from quantflow.flow import is_zoo_model

    seen = (", which the zoo network was trained without" if is_zoo_model(model) else
            ", which a network trained on all of x_train has already seen")
    print(f"note: the choice was made on a validation split of x_train ({val['images']}"
          f" images){seen}; add x_val/y_val to --data to choose on held-out data",
          file=sys.stderr)


def _print_candidates(meta):
    rows = meta.get("candidates", [])
    if not rows:
        print("  (nothing was chosen: one recipe on one weight grid)")
        return
    val = meta["validation"]
    print(f"  candidates on {val['source']} ({val['images']} images):")
    for r in rows:
        what = r.get("recipe") or f"{r['w_method']}/{r['a_method']}"
        if "head_bits" in r:
            what += f" +head A{r['head_bits']}"
        mark = "  <- chosen" if r["chosen"] else ""
        print(f"    {what:<20} {r['w_grid']:<6}  val accuracy {100 * r['val_accuracy']:6.2f}%"
              f"  log-likelihood {r['val_log_likelihood']:9.5f}{mark}")


def _recipe(name, net, ds, cfg, recipe, wide_head=False):
    """The recipe run (or the choice among candidates) with a progress bar on stderr."""
    from rich.console import Console
    from rich.progress import Progress

    from quantflow import recipes
    from quantflow.flow import quantize_recipe

    total = recipes.trials(cfg, None if recipe is recipes.AUTO else [recipe], wide_head)
    console = Console(stderr=True)
    # only on a terminal: a closing progress bar still writes a newline to a pipe
    with Progress(transient=True, console=console, disable=not console.is_terminal) as prog:
        task = prog.add_task(f"PTQ recipe {recipe.name}", total=total)

        def tick(*done_total):
            if done_total:  # a pass reporting its layers (AdaRound)
                prog.update(task, completed=done_total[0], total=done_total[1],
                            description=f"PTQ recipe {recipe.name}: layers")
            else:  # one candidate of auto done
                prog.advance(task)

        result = quantize_recipe(name, net, ds, cfg, recipe, tick, wide_head)
    return result


def _qat(result, net, ds, epochs):
    from rich.console import Console
    from rich.progress import Progress

    from quantflow.flow import finetune
    from quantflow.qat import QATConfig

    console = Console(stderr=True)
    with Progress(transient=True, console=console, disable=not console.is_terminal) as prog:
        task = prog.add_task("QAT", total=epochs)

        def tick(epoch, total, loss):
            prog.update(task, completed=epoch, description=f"QAT loss {loss:.4f}")

        return finetune(result, net, ds, QATConfig(epochs=epochs), tick)


def _import(args, ds):
    from quantflow import serialize
    from quantflow.flow import import_qonnx, model_label

    result = import_qonnx(args.model, ds)
    serialize.save(result.qmodel, args.out)
    summary = result.summary("qonnx") | {"model": model_label(args.model),
                                         "out": str(args.out), "float_accuracy": None,
                                         "approximate": result.qmodel.meta["approximate"]}
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        q = result.qmodel
        print(f"{q.name}: QONNX W{q.wbits}A{q.abits} imported  quantized "
              f"{100 * result.quant_accuracy:.2f}%  -> {args.out}")
        for note in q.meta["approximate"]:
            print(f"  approximate: {note}")
    return 0
