"""`hwgen quantize`: post-training quantization of a model to a QuantizedModel folder."""

import argparse
import json
import sys

from quantflow.numerics import MAX_BITS, MIN_BITS

NAME = "quantize"
HELP = "quantize a trained model (zoo name or file.py:factory) to a QuantizedModel folder"

__all__ = ["NAME", "HELP", "add_arguments", "run", "bits", "method"]


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


def add_arguments(p):
    from quantflow.flow import Method

    p.add_argument("--model", metavar="MODEL", default="digits-cnn",
                   help="zoo model (digits-cnn, digits-mlp) or path/to/file.py:factory")
    p.add_argument("--data", metavar="FILE.npz", default=None,
                   help="calibration/evaluation arrays x_train, y_train, x_test, y_test "
                        "(default: the embedded digits set)")
    p.add_argument("--wbits", metavar="N", type=bits, default=4, help="weight bits")
    p.add_argument("--abits", metavar="N", type=bits, default=4, help="activation bits")
    p.add_argument("--input-bits", metavar="N", type=bits, default=8, help="network input bits")
    p.add_argument("--method", metavar="METHOD", type=method, default="auto",
                   help="range setting: " + ", ".join(m.value for m in Method) +
                   " (auto: best pair on a validation split of the training data)")
    p.add_argument("--out", metavar="DIR", required=True, help="QuantizedModel folder to write")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args):
    from quantflow import ptq, serialize
    from quantflow.flow import load_data, load_model, quantize_model

    ds = load_data(args.data)
    name, net = load_model(args.model, ds)
    cfg = ptq.PTQConfig(args.wbits, args.abits, args.input_bits)
    result = quantize_model(name, net, ds, cfg, args.method)
    serialize.save(result.qmodel, args.out)
    summary = result.summary(args.method) | {"out": str(args.out)}
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(f"{summary['model']}: W{args.wbits}A{args.abits} ({summary['w_method']}/"
              f"{summary['a_method']})  float {100 * result.float_accuracy:.2f}%  "
              f"quantized {100 * result.quant_accuracy:.2f}%  -> {args.out}")
    return 0
