#!/usr/bin/env python3
"""Word-length analysis (Latotzke et al.): test accuracy over a W x A grid of bit widths.

For each model, every weight width W and activation width A in 2..8 is quantized with one PTQ
recipe (``bc`` by default: output-MSE weights, MSE activations, bias correction; a named
recipe keeps the grid cheap and comparable) and measured on the digits test set with the
integer reference. Prints a table per model, writes JSON and a heat-map PNG.

    .venv/bin/python bench/wordlength.py [--models digits-cnn,digits-mlp] [--recipe bc]
        [--bits 2..8] [--out bench/results]
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quantflow import ptq, recipes  # noqa: E402
from quantflow.flow import load_data, load_model, quantize_recipe  # noqa: E402
from quantflow.numerics import MAX_BITS, MIN_BITS  # noqa: E402


def _bits(text):
    lo, _, hi = text.partition("..")
    return list(range(int(lo), int(hi or lo) + 1))


def measure(models, bits, recipe, progress):
    ds = load_data()
    rows = []
    for spec in models:
        name, net = load_model(spec, ds)
        for wb in bits:
            for ab in bits:
                t0 = time.perf_counter()
                r = quantize_recipe(name, net, ds, ptq.PTQConfig(wb, ab), recipe)
                rows.append({"model": name, "wbits": wb, "abits": ab, "recipe": recipe.name,
                             "float_accuracy": r.float_accuracy,
                             "quant_accuracy": r.quant_accuracy,
                             "seconds": time.perf_counter() - t0})
                progress()
    return rows


def print_tables(rows, bits):
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    for model in dict.fromkeys(r["model"] for r in rows):
        keyed = {(r["wbits"], r["abits"]): r for r in rows if r["model"] == model}
        first = next(iter(keyed.values()))
        table = Table(title=f"{model}: test accuracy %",
                      caption=f"weight bits (rows) x activation bits (columns); float "
                              f"{100 * first['float_accuracy']:.2f}%, recipe {first['recipe']}")
        table.add_column("W \\ A")
        for ab in bits:
            table.add_column(str(ab), justify="right")
        for wb in bits:
            table.add_row(str(wb), *[f"{100 * keyed[(wb, ab)]['quant_accuracy']:.2f}"
                                     for ab in bits])
        console.print(table)


def heatmap(rows, bits, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        keyed = {(r["wbits"], r["abits"]): r["quant_accuracy"] for r in rows
                 if r["model"] == model}
        grid = np.array([[100 * keyed[(wb, ab)] for ab in bits] for wb in bits])
        im = ax.imshow(grid, origin="lower", cmap="viridis", vmin=max(0.0, grid.min() - 1),
                       vmax=100)
        for i in range(len(bits)):
            for j in range(len(bits)):
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7,
                        color="w" if grid[i, j] < grid.max() - 0.5 * np.ptp(grid) else "k")
        ax.set_xticks(range(len(bits)), bits)
        ax.set_yticks(range(len(bits)), bits)
        ax.set_xlabel("activation bits")
        ax.set_ylabel("weight bits")
        ax.set_title(model)
        fig.colorbar(im, ax=ax, label="test accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="digits-cnn,digits-mlp")
    p.add_argument("--recipe", type=recipes.by_name, default="bc",
                   help="PTQ recipe for every cell (auto is allowed but slow)")
    p.add_argument("--bits", type=_bits, default=f"{MIN_BITS}..{MAX_BITS}",
                   help="range of widths for both axes, e.g. 2..8")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    models = args.models.split(",")

    from rich.progress import Progress

    with Progress(transient=True) as prog:
        task = prog.add_task("grid", total=len(models) * len(args.bits) ** 2)
        rows = measure(models, args.bits, args.recipe, lambda: prog.advance(task))
    print_tables(rows, args.bits)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "wordlength", "machine": platform.machine(),
           "python": platform.python_version(), "bits": args.bits, "rows": rows}
    (out / "wordlength.json").write_text(json.dumps(doc, indent=1) + "\n")
    heatmap(rows, args.bits, out / "wordlength.png")
    print(f"wrote {out / 'wordlength.json'} and {out / 'wordlength.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
