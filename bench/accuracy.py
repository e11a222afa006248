#!/usr/bin/env python3
"""Accuracy of post-training quantization across bit widths and range-setting methods.

For each zoo model, each W/A pair and each method (min-max, percentile, MSE, and the default
``auto`` recipe chosen on a validation split of the training data), the digits test-set
accuracy of the integer reference. Prints a table, writes JSON and a plot.

    .venv/bin/python bench/accuracy.py [--out bench/results] [--models digits-cnn,...]
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quantflow import ptq  # noqa: E402
from quantflow.flow import Method, load_data, load_model, quantize_model  # noqa: E402

BITS = [(8, 8), (6, 6), (4, 8), (4, 4), (3, 3), (2, 8), (2, 2)]


def measure(models, bits, methods, progress):
    ds = load_data()
    rows = []
    for spec in models:
        name, net = load_model(spec, ds)
        for wb, ab in bits:
            for method in methods:
                t0 = time.perf_counter()
                r = quantize_model(name, net, ds, ptq.PTQConfig(wb, ab), method)
                rows.append(r.summary(method) | {"seconds": time.perf_counter() - t0})
                progress()
    return rows


def print_table(rows, methods):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="PTQ accuracy on the digits test set (integer reference, top-1 %)")
    table.add_column("model")
    table.add_column("W/A", justify="right")
    table.add_column("float", justify="right")
    for m in methods:
        table.add_column(m.value, justify="right")
    table.add_column("auto recipe (w/a)", no_wrap=True)
    keyed = {(r["model"], r["wbits"], r["abits"], r["method"]): r for r in rows}
    for model, wb, ab in dict.fromkeys((r["model"], r["wbits"], r["abits"]) for r in rows):
        cells = [keyed.get((model, wb, ab, m.value)) for m in methods]
        first = next(c for c in cells if c)
        auto = keyed.get((model, wb, ab, Method.AUTO.value))
        table.add_row(model, f"{wb}/{ab}", f"{100 * first['float_accuracy']:.2f}",
                      *[f"{100 * c['quant_accuracy']:.2f}" if c else "-" for c in cells],
                      f"{auto['w_method']}/{auto['a_method']}" if auto else "-")
    Console(width=160).print(table)


def plot(rows, methods, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        mine = [r for r in rows if r["model"] == model]
        labels = list(dict.fromkeys(f"W{r['wbits']}A{r['abits']}" for r in mine))
        for m in methods:
            ys = [100 * r["quant_accuracy"] for r in mine if r["method"] == m.value]
            ax.plot(labels[:len(ys)], ys, marker="o", label=m.value)
        ax.axhline(100 * mine[0]["float_accuracy"], color="k", ls="--", lw=1, label="float")
        ax.set_title(model)
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(40, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results", help="folder for accuracy.json/.png")
    p.add_argument("--models", default="digits-cnn,digits-mlp")
    p.add_argument("--methods", default="minmax,percentile,mse,mse-out,auto")
    args = p.parse_args(argv)
    methods = [Method(m) for m in args.methods.split(",")]
    models = args.models.split(",")

    from rich.progress import Progress

    with Progress(transient=True) as prog:
        task = prog.add_task("quantizing", total=len(models) * len(BITS) * len(methods))
        rows = measure(models, BITS, methods, lambda: prog.advance(task))
    print_table(rows, methods)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "accuracy", "machine": platform.machine(),
           "python": platform.python_version(), "rows": rows}
    (out / "accuracy.json").write_text(json.dumps(doc, indent=1) + "\n")
    plot(rows, methods, out / "accuracy.png")
    print(f"wrote {out / 'accuracy.json'} and {out / 'accuracy.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
