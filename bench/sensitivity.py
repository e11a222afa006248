#!/usr/bin/env python3
"""Per-layer sensitivity: accuracy drop when only one layer is lowered (table, JSON, plot).

Every Conv2d/Linear layer runs at the base width except one, lowered to the low width; the
drop against the all-base model is measured on the validation split of the training data (so
the ranking may be used to choose ``--layer-bits``), and on the test set for reference.

    .venv/bin/python bench/sensitivity.py [--models digits-cnn,digits-mlp] [--base 8/8]
        [--low 2/2] [--recipe bc] [--out bench/results]
"""

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quantflow import data, importers, recipes  # noqa: E402
from quantflow.flow import calibration_set, load_data, load_model  # noqa: E402
from quantflow.sensitivity import layer_sensitivity  # noqa: E402


def _pair(text):
    w, _, a = text.partition("/")
    return int(w), int(a)


def measure(models, base, low, recipe):
    ds = load_data()
    x_cal = calibration_set(ds)
    x_val, y_val = data.validation_split(ds)
    rows = []
    for spec in models:
        name, net = load_model(spec, ds)
        layers = importers.capture(net, ds.input_shape)
        for split, (x, y) in (("validation", (x_val, y_val)), ("test", (ds.x_test, ds.y_test))):
            for r in layer_sensitivity(layers, name, ds.input_shape, x_cal, x, y, base, low,
                                       recipe):
                rows.append({"model": name, "split": split, "layer": r.layer, "index": r.index,
                             "base": f"W{base[0]}A{base[1]}", "low": f"W{low[0]}A{low[1]}",
                             "accuracy": r.accuracy, "base_accuracy": r.base_accuracy,
                             "drop": r.drop, "images": int(len(y))})
    return rows


def print_table(rows):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Accuracy drop (points) when only one layer is lowered")
    for col in ("model", "layer", "lowered", "base acc", "val drop", "test drop"):
        table.add_column(col, justify="right" if col not in ("model", "layer") else "left")
    keyed = {(r["model"], r["layer"], r["split"]): r for r in rows}
    for model, layer in dict.fromkeys((r["model"], r["layer"]) for r in rows):
        v, t = keyed[(model, layer, "validation")], keyed[(model, layer, "test")]
        table.add_row(model, layer, f"{v['base']} -> {v['low']}",
                      f"{100 * t['base_accuracy']:.2f}", f"{100 * v['drop']:.2f}",
                      f"{100 * t['drop']:.2f}")
    Console(width=120).print(table)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.5), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        layers = list(dict.fromkeys(r["layer"] for r in rows if r["model"] == model))
        pos = np.arange(len(layers))
        for k, split in enumerate(("validation", "test")):
            drops = [100 * next(r["drop"] for r in rows if r["model"] == model
                                and r["layer"] == lyr and r["split"] == split) for lyr in layers]
            ax.bar(pos + (k - 0.5) * 0.38, drops, width=0.38, label=split)
        first = next(r for r in rows if r["model"] == model)
        # one image of each split, in points: a drop of one or two images ranks nothing
        for split, color in (("validation", "C0"), ("test", "C1")):
            n = next((r.get("images") for r in rows if r["model"] == model
                      and r["split"] == split and r.get("images")), None)
            if n:
                ax.axhspan(-100 / n, 100 / n, color=color, alpha=0.12,
                           label=f"+-1 {split} image ({100 / n:.2f} points)")
        ax.set_xticks(pos, [f"layer {lyr}" for lyr in layers])
        ax.set_title(f"{model}: {first['base']} with one layer at {first['low']}")
        ax.set_ylabel("accuracy drop (points)")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="digits-cnn,digits-mlp")
    p.add_argument("--base", type=_pair, default=(8, 8), help="W/A of the other layers")
    p.add_argument("--low", type=_pair, default=(2, 2), help="W/A of the lowered layer")
    p.add_argument("--recipe", type=recipes.by_name, default="bc",
                   help="PTQ recipe for every variant (a named recipe, not auto)")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    if args.recipe is recipes.AUTO:
        p.error("--recipe must be a named recipe, not auto")
    rows = measure(args.models.split(","), args.base, args.low, args.recipe)
    print_table(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "sensitivity", "machine": platform.machine(),
           "python": platform.python_version(), "recipe": args.recipe.name, "rows": rows}
    (out / "sensitivity.json").write_text(json.dumps(doc, indent=1) + "\n")
    plot(rows, out / "sensitivity.png")
    print(f"wrote {out / 'sensitivity.json'} and {out / 'sensitivity.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
