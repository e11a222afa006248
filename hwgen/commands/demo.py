"""`hwgen demo`: the whole flow on the embedded default (digits-cnn on scikit-learn's digits).

Train (cached) -> quantize at 8, 6, 4, 3 and 2 bits -> accuracy table, with a progress display.
Each QuantizedModel lands in ``--out`` with a ``summary.json``.
"""

import json

NAME = "demo"
HELP = "run the flow on the embedded demo network (digits-cnn on scikit-learn's digits)"

__all__ = ["NAME", "HELP", "add_arguments", "run", "DEMO_BITS"]

#: (weight bits, activation bits) the demo quantizes to.
DEMO_BITS = [(8, 8), (6, 6), (4, 4), (3, 3), (2, 2)]


def add_arguments(p):
    p.add_argument("--model", metavar="MODEL", default="digits-cnn", help="zoo model")
    p.add_argument("--out", metavar="DIR", default="build/demo", help="output folder")


def run(args):
    from pathlib import Path

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from quantflow import ptq, serialize
    from quantflow.flow import Method, load_data, load_model, quantize_model

    console = Console()
    out = Path(args.out)
    ds = load_data()
    rows = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"training {args.model}", total=None)
        name, net = load_model(args.model, ds, lambda e, n: progress.update(
            task, completed=e, total=n))
        progress.update(task, description="quantizing", completed=0, total=len(DEMO_BITS))
        for wb, ab in DEMO_BITS:
            progress.update(task, description=f"quantizing W{wb}A{ab}")
            result = quantize_model(name, net, ds, ptq.PTQConfig(wb, ab), Method.AUTO)
            baseline = quantize_model(name, net, ds, ptq.PTQConfig(wb, ab), Method.MINMAX)
            folder = serialize.save(result.qmodel, out / f"{name}-w{wb}a{ab}")
            rows.append(result.summary(Method.AUTO) | {
                "minmax_accuracy": baseline.quant_accuracy, "qmodel": str(folder)})
            progress.advance(task)
    table = Table(title=f"{name} on digits: post-training quantization (test set, "
                        f"{len(ds.y_test)} images)")
    for col in ("W/A", "recipe (w/a)", "float", "quantized", "delta", "plain min-max"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['wbits']}/{r['abits']}", f"{r['w_method']}/{r['a_method']}",
                      f"{100 * r['float_accuracy']:.2f}%", f"{100 * r['quant_accuracy']:.2f}%",
                      f"{100 * (r['quant_accuracy'] - r['float_accuracy']):+.2f}",
                      f"{100 * r['minmax_accuracy']:.2f}%")
    console.print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    console.print(f"QuantizedModels and summary.json in {out}/")
    return 0
