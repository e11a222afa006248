#!/usr/bin/env python3
"""Accuracy of quantization across bit widths: range setting, PTQ recipes, QAT, data-free.

For each zoo model and W/A pair, the digits test-set accuracy of the integer reference for:

- each range-setting method alone (min-max, percentile, MSE, output-MSE, and ``auto``, the best
  pair on a validation split of the training data);
- ``recipe``: the default PTQ recipe (:data:`quantflow.recipes.AUTO`: the best of the
  candidate recipes for the bit widths on that validation split; which one is reported);
- ``qat``: that result fine-tuned with STE and LSQ (:mod:`quantflow.qat`);
- ``data-free``: no calibration images (:mod:`quantflow.datafree`).

Prints a table and the issue's targets, writes JSON and a plot. The test set is only measured,
never used for a choice.

    .venv/bin/python bench/accuracy.py [--out bench/results] [--models digits-cnn,...]
        [--rows recipe,qat,data-free] [--bits 2/2,3/3] [--qat-epochs 30]

The full run takes about 35 minutes on one core: at 2-3 weight bits the default recipe tries
six candidates, two of them with AdaRound, each on both weight grids.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quantflow import ptq, recipes  # noqa: E402
from quantflow.flow import (  # noqa: E402
    Method,
    finetune,
    load_data,
    load_model,
    quantize_data_free,
    quantize_model,
    quantize_recipe,
)
from quantflow.qat import QATConfig  # noqa: E402

BITS = [(8, 8), (6, 6), (4, 8), (4, 4), (3, 3), (2, 8), (2, 2)]
#: Extra rows beside the range-setting methods, in table order.
EXTRA = ["recipe", "qat", "data-free"]
#: The issue's targets: (model, label, W, A) -> minimum test accuracy (fraction), or for
#: data-free the largest drop from float.
TARGETS = {
    ("digits-cnn", "recipe", 2, 2): 0.96, ("digits-cnn", "recipe", 2, 8): 0.975,
    ("digits-cnn", "recipe", 3, 3): 0.98, ("digits-mlp", "recipe", 2, 2): 0.92,
    ("digits-mlp", "recipe", 3, 3): 0.965, ("digits-cnn", "qat", 2, 2): 0.97,
    ("digits-mlp", "qat", 2, 2): 0.93,
}
DATA_FREE_DROP = {("digits-cnn", 4, 4): 0.02}


def measure(models, bits, methods, extra, qat_epochs, progress):
    ds = load_data()
    rows = []
    for spec in models:
        name, net = load_model(spec, ds)
        for wb, ab in bits:
            cfg = ptq.PTQConfig(wb, ab)
            for method in methods:
                t0 = time.perf_counter()
                r = quantize_model(name, net, ds, cfg, method)
                rows.append(r.summary(method) | {"seconds": time.perf_counter() - t0})
                progress()
            if "recipe" in extra or "qat" in extra:
                t0 = time.perf_counter()
                r = quantize_recipe(name, net, ds, cfg, recipes.AUTO)
                seconds = time.perf_counter() - t0
                if "recipe" in extra:
                    rows.append(r.summary("recipe") | {"seconds": seconds,
                                                       "candidates": r.choices})
                progress()
                if "qat" in extra:
                    t0 = time.perf_counter()
                    q = finetune(r, net, ds, QATConfig(epochs=qat_epochs))
                    rows.append(q.summary("qat") | {"seconds": seconds + time.perf_counter() - t0,
                                                    "qat_epochs": qat_epochs})
                    progress()
            if "data-free" in extra:
                t0 = time.perf_counter()
                r = quantize_data_free(name, net, ds, cfg)
                rows.append(r.summary("data-free") | {"seconds": time.perf_counter() - t0})
                progress()
    return rows


def print_table(rows, labels):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Accuracy on the digits test set (integer reference, top-1 %)")
    table.add_column("model")
    table.add_column("W/A", justify="right")
    table.add_column("float", justify="right")
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("auto w/a", no_wrap=True)
    table.add_column("default recipe", no_wrap=True)
    keyed = {(r["model"], r["wbits"], r["abits"], r["method"]): r for r in rows}
    for model, wb, ab in dict.fromkeys((r["model"], r["wbits"], r["abits"]) for r in rows):
        cells = [keyed.get((model, wb, ab, label)) for label in labels]
        first = next(c for c in cells if c)
        auto = keyed.get((model, wb, ab, Method.AUTO.value))
        rec = keyed.get((model, wb, ab, "recipe"))
        table.add_row(model, f"{wb}/{ab}", f"{100 * first['float_accuracy']:.2f}",
                      *[f"{100 * c['quant_accuracy']:.2f}" if c else "-" for c in cells],
                      f"{auto['w_method']}/{auto['a_method']}" if auto else "-",
                      rec["recipe"] if rec else "-")
    console = Console(width=200)
    console.print(table)
    console.print(targets_table(keyed))


def targets_table(keyed):
    from rich.table import Table

    table = Table(title="Targets of issue 5")
    for col in ("model", "row", "W/A", "target", "measured", "met"):
        table.add_column(col)
    for (model, label, wb, ab), want in TARGETS.items():
        r = keyed.get((model, wb, ab, label))
        if r is not None:
            got = r["quant_accuracy"]
            table.add_row(model, label, f"{wb}/{ab}", f">= {100 * want:.1f}",
                          f"{100 * got:.2f}", "yes" if got >= want else "NO")
    for (model, wb, ab), drop in DATA_FREE_DROP.items():
        r = keyed.get((model, wb, ab, "data-free"))
        if r is not None:
            got = r["float_accuracy"] - r["quant_accuracy"]
            table.add_row(model, "data-free", f"{wb}/{ab}", f"drop <= {100 * drop:.1f}",
                          f"drop {100 * got:.2f}", "yes" if got <= drop else "NO")
    return table


#: Line styles of the series, so that two series with equal values both stay visible.
_STYLES = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("P", "--"),
           ("X", "-."), ("*", ":")]


def plot(rows, series, path):
    """One panel per model: test accuracy per W/A point for each series. Every point sits at
    its own W/A tick (a series that lacks a point has a gap, not a shift), the y axis spans
    every value (nothing is clipped), and the series differ in marker and line style and are
    nudged apart along x, so equal series do not hide one another."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        mine = [r for r in rows if r["model"] == model]
        ticks = list(dict.fromkeys(f"W{r['wbits']}A{r['abits']}" for r in mine))
        values = []
        for k, label in enumerate(series):
            pts = [(ticks.index(f"W{r['wbits']}A{r['abits']}"), 100 * r["quant_accuracy"])
                   for r in mine if r["method"] == label]
            if not pts:
                continue
            nudge = (k - (len(series) - 1) / 2) * 0.06
            marker, style = _STYLES[k % len(_STYLES)]
            ax.plot([x + nudge for x, _ in pts], [y for _, y in pts], marker=marker, ls=style,
                    label=label, alpha=0.85)
            values += [y for _, y in pts]
        ax.axhline(100 * mine[0]["float_accuracy"], color="k", ls="--", lw=1, label="float")
        ax.set_xticks(range(len(ticks)), ticks)
        ax.set_title(model)
        ax.set_ylabel("test accuracy (%)")
        low = min(values + [100 * mine[0]["float_accuracy"]])
        ax.set_ylim(max(0.0, low - 3), 101)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results", help="folder for accuracy.json/.png")
    p.add_argument("--models", default="digits-cnn,digits-mlp")
    p.add_argument("--methods", default="minmax,percentile,mse,mse-out,auto",
                   help="range-setting methods alone (empty for none)")
    p.add_argument("--rows", default=",".join(EXTRA),
                   help="extra rows: " + ", ".join(EXTRA) + " (empty for none)")
    p.add_argument("--bits", default=",".join(f"{w}/{a}" for w, a in BITS),
                   help="W/A pairs, e.g. 2/2,3/3")
    p.add_argument("--qat-epochs", type=int, default=30)
    args = p.parse_args(argv)
    methods = [Method(m) for m in args.methods.split(",") if m]
    extra = [e for e in args.rows.split(",") if e]
    for e in extra:
        if e not in EXTRA:
            p.error(f"{e!r} is not a row ({', '.join(EXTRA)})")
    bits = [tuple(int(v) for v in wa.split("/")) for wa in args.bits.split(",")]
    models = args.models.split(",")
    labels = [m.value for m in methods] + extra

    from rich.progress import Progress

    steps = len(methods) + len(extra)
    with Progress(transient=True) as prog:
        task = prog.add_task("quantizing", total=len(models) * len(bits) * steps)
        rows = measure(models, bits, methods, extra, args.qat_epochs,
                       lambda: prog.advance(task))
    print_table(rows, labels)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "accuracy", "machine": platform.machine(),
           "python": platform.python_version(), "rows": rows}
    (out / "accuracy.json").write_text(json.dumps(doc, indent=1) + "\n")
    plot(rows, labels, out / "accuracy.png")
    print(f"wrote {out / 'accuracy.json'} and {out / 'accuracy.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
