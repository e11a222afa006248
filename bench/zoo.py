#!/usr/bin/env python3
"""The zoo's networks trained from scratch: size, MACs, data set and float test metric.

Trains each network on its default data set (digits or its MLPerf Tiny proxy,
:func:`quantflow.zoo.default_data`) with its recipe (:data:`quantflow.zoo.RECIPES`), on one
thread, into a fresh temporary cache (so the training time is measured, and the user's cache is
untouched), then prints a table (also as Markdown) and writes ``zoo.json``. The metric is top-1
accuracy on the test split, or for the autoencoder its mean squared error. The proxy data sets
are not the benchmarks' data: their figures say nothing about Speech Commands, Visual Wake
Words, CIFAR-10 or ToyADMOS.

    .venv/bin/python bench/zoo.py [--out bench/results] [--models dscnn-kws,...]

About 6 minutes on one core without ``mobilenetv1-vww`` (96x96), which alone takes about 6.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from quantflow import data, metrics, zoo, zoo_nets  # noqa: E402

DEFAULT_MODELS = [m.value for m in zoo.ZooModel if m is not zoo.ZooModel.MOBILENETV1_VWW]


def measure(names, progress=print):
    rows = []
    for name in names:
        which = zoo.ZooModel(name)
        ds = zoo.default_data(which)
        t0 = time.perf_counter()
        net = zoo.load_or_train(which, ds)
        seconds = time.perf_counter() - t0
        rows.append({
            "model": name, "params": zoo_nets.keras_param_count(net),
            "trainable_params": sum(p.numel() for p in net.parameters()),
            "macs": zoo_nets.macs(net, ds.input_shape), "input_shape": list(ds.input_shape),
            "data": ds.name, "data_note": ds.note, "recipe": repr(zoo.RECIPES[which]),
            "metric": metrics.metric_name(ds.y_test),
            "float_test": zoo.accuracy(net, ds.x_test, ds.y_test),
            "train_images": len(data.fit_split(ds)[0]), "test_images": len(ds.x_test),
            "train_seconds": seconds,
        })
        progress(_line(rows[-1]))
    return rows


def _metric(r):
    if r["metric"] == "mse":
        return f"MSE {r['float_test']:.5f}"
    return f"{100 * r['float_test']:.2f}%"


def _line(r):
    return (f"| `{r['model']}` | {'x'.join(map(str, r['input_shape']))} | {r['params']:,} | "
            f"{r['macs']:,} | {r['data']} | {_metric(r)} | {r['train_seconds']:.0f} |")


def markdown(rows):
    head = ("| model | input | params | MACs | data | float test | train s |\n"
            "|---|---|---|---|---|---|---|")
    return "\n".join([head] + [_line(r) for r in rows])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results", help="folder for zoo.json")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help="comma-separated zoo names (default: all but mobilenetv1-vww)")
    args = p.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="hwgen-zoo-bench-") as cache:
        os.environ["HWGEN_CACHE"] = cache
        rows = measure(names)
    print(markdown(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"rows": rows, "torch": torch.__version__, "python": platform.python_version(),
           "machine": platform.machine(), "threads": 1}
    (out / "zoo.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out / 'zoo.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
