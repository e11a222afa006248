"""`hwgen quantize`: post-training quantization of a model to a QuantizedModel folder."""

import argparse
import contextlib
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
    """argparse type: a range-setting recipe name (checked without loading torch)."""
    from quantflow.calibrate import Method

    try:
        return Method(value)
    except ValueError:
        names = ", ".join(m.value for m in Method)
        raise argparse.ArgumentTypeError(f"{value!r} is not a method ({names})") from None


def recipe(value):
    """argparse type: a PTQ recipe name, checked without loading torch (the API turns it into
    the :class:`quantflow.recipes.Recipe` under the progress bar)."""
    from quantflow.calibrate import RECIPE_NAMES

    if value not in RECIPE_NAMES:
        raise argparse.ArgumentTypeError(f"{value!r} is not a recipe ({', '.join(RECIPE_NAMES)})")
    return value


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
    from quantflow.calibrate import Method

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
    from hwflow.api import quantize

    with _progress() as show:
        result = quantize(args.model, out=args.out, data=args.data, wbits=args.wbits,
                          abits=args.abits, input_bits=args.input_bits, method=args.method,
                          recipe=args.recipe, weight_grid=args.weight_grid,
                          wide_head=args.wide_head, layer_bits=args.layer_bits,
                          data_free=args.data_free, qat=args.qat, qat_epochs=args.qat_epochs,
                          progress=show)
    if result.approximate is None:
        _note(result.validation, args.model)
        from quantflow.flow import is_binary

        if is_binary(result.qmodel) and not args.qat:
            print("note: post-training quantization collapses at 1 bit (the accuracy above);"
                  " a binary network is trained: add --qat", file=sys.stderr)
    if args.json:
        json.dump(result.to_dict(), sys.stdout)
        sys.stdout.write("\n")
        return 0
    q = result.qmodel
    if result.approximate is not None:
        print(f"{q.name}: QONNX W{q.wbits}A{q.abits} imported  quantized "
              f"{100 * result.quant_accuracy:.2f}%  -> {args.out}")
        for note in result.approximate:
            print(f"  approximate: {note}")
        return 0
    label = result.method
    print(f"{result.model}: W{args.wbits}A{args.abits} {label} ({result.recipe or label}, "
          f"{result.w_method}/{result.a_method}, {result.w_grid} grid)  float "
          f"{100 * result.float_accuracy:.2f}%  quantized "
          f"{100 * result.quant_accuracy:.2f}%  -> {args.out}")
    if args.verbose:
        _print_candidates(result.validation, result.candidates)
    return 0


@contextlib.contextmanager
def _progress():
    """A progress bar on stderr, only on a terminal (a closing bar still writes a newline to
    a pipe), fed by the API's ``progress(text, done, total)``."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    with Progress(transient=True, console=console, disable=not console.is_terminal) as prog:
        task = prog.add_task("quantize", total=None)

        def show(text, done=None, total=None):
            prog.update(task, description=text, completed=done, total=total)

        yield show


def _note(val, model):
    """One line on stderr when the choice was made on a split of the training data."""
    if not val or val["source"] == "x_val":
        return
    from quantflow.flow import is_zoo_model

    seen = (", which the zoo network was trained without" if is_zoo_model(model) else
            ", which a network trained on all of x_train has already seen")
    print(f"note: the choice was made on a validation split of x_train ({val['images']}"
          f" images){seen}; add x_val/y_val to --data to choose on held-out data",
          file=sys.stderr)


def _print_candidates(val, rows):
    if not rows:
        print("  (nothing was chosen: one recipe on one weight grid)")
        return
    print(f"  candidates on {val['source']} ({val['images']} images):")
    for r in rows:
        what = r.get("recipe") or f"{r['w_method']}/{r['a_method']}"
        if "head_bits" in r:
            what += f" +head A{r['head_bits']}"
        mark = "  <- chosen" if r["chosen"] else ""
        print(f"    {what:<20} {r['w_grid']:<6}  val accuracy {100 * r['val_accuracy']:6.2f}%"
              f"  log-likelihood {r['val_log_likelihood']:9.5f}{mark}")
