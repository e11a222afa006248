#!/usr/bin/env python3
"""Our default PTQ recipe beside Brevitas' PTQ recipes and torch.ao's int8 PTQ, same weights.

For each zoo model (digits-mlp, digits-cnn) the float chain our flow captures (BatchNorm folded:
the exact float weights we quantize) is rebuilt in Brevitas in our numerics contract's layout
(``bench/peers_brevitas.py``: 8-bit unsigned input, per-channel weights, per-tensor unsigned
activations, logits at accumulator scale) and quantized with Brevitas' min-max, CLE + bias
correction, MSE, GPTQ, GPFQ and AdaRound (Brevitas' learned-round quantizer trained layer by
layer here, at 2-3 weight bits only) recipes on our 512 calibration images, at each W/A pair. Beside
them: our default recipe (``recipes.AUTO``, every choice on the validation split of the
training data), and torch.ao's int8 FX-mode PTQ (8/8 only; its own layout: affine per-tensor
activations, per-channel weights, fbgemm). ``best Brevitas`` is the best of its recipes picked
on the *test* set (an oracle); ours never sees the test set.

    .venv/bin/python bench/peers.py [--out bench/results] [--models digits-mlp,digits-cnn]
        [--bits 8/8,2/2] [--ours-from bench/results/accuracy.json]

``--ours-from`` takes our default recipe's figures from ``bench/accuracy.py``'s JSON (its
``recipe`` rows) instead of re-running it (the default recipe is deterministic).
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

BITS = [(8, 8), (6, 6), (4, 8), (4, 4), (3, 3), (2, 8), (2, 2)]
MODELS = ["digits-mlp", "digits-cnn"]


def _torch_ao_int8(layers, x_calib, x_test, y_test):
    """torch.ao FX-mode post-training static quantization (fbgemm qconfig), 8/8."""
    import warnings

    import numpy as np
    import peers_brevitas
    import torch
    from torch import nn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of pt2e
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        model = nn.Sequential(*peers_brevitas.float_modules(layers)).eval()
        example = (torch.as_tensor(x_calib[:1]),)
        prepared = prepare_fx(model, get_default_qconfig_mapping("fbgemm"), example)
        with torch.no_grad():
            prepared(torch.as_tensor(x_calib))
            q = convert_fx(prepared)
            pred = q(torch.as_tensor(x_test)).argmax(1).numpy()
    return float(np.mean(pred == y_test))


def _ours(name, net, ds, wb, ab, ours_from):
    from quantflow import ptq, recipes
    from quantflow.flow import quantize_recipe

    if ours_from is not None:
        got = ours_from.get((name, wb, ab))
        if got is not None:
            return got["quant_accuracy"], got["recipe"], got.get("seconds")
    t0 = time.perf_counter()
    r = quantize_recipe(name, net, ds, ptq.PTQConfig(wb, ab), recipes.AUTO)
    rec = r.qmodel.meta["recipe"]
    return r.quant_accuracy, f"{rec['recipe']}/{rec['w_grid']}", time.perf_counter() - t0


def measure(models, bits, ours_from, prog, task):
    import peers_brevitas

    from quantflow import importers
    from quantflow.flow import calibration_set, load_data, load_model

    ds = load_data()
    x_cal = calibration_set(ds)
    rows = []
    for spec in models:
        prog.update(task, description=f"{spec}: float network")
        name, net = load_model(spec, ds)
        layers = importers.capture(net, ds.input_shape)
        t0 = time.perf_counter()
        acc = _torch_ao_int8(layers, x_cal, ds.x_test, ds.y_test)
        rows.append({"model": name, "wbits": 8, "abits": 8, "tool": "torch.ao",
                     "recipe": "int8-ptq-fx", "accuracy": acc,
                     "seconds": time.perf_counter() - t0})
        for wb, ab in bits:
            for recipe in peers_brevitas.RECIPES:
                if not peers_brevitas.applies(recipe, wb):
                    prog.advance(task)
                    continue
                prog.update(task, description=f"{name} W{wb}A{ab}: Brevitas {recipe}")
                t0 = time.perf_counter()
                model = peers_brevitas.run(recipe, layers, wb, ab, x_cal)
                acc = peers_brevitas.accuracy(model, ds.x_test, ds.y_test)
                rows.append({"model": name, "wbits": wb, "abits": ab, "tool": "brevitas",
                             "recipe": recipe, "accuracy": acc,
                             "seconds": time.perf_counter() - t0})
                prog.advance(task)
            prog.update(task, description=f"{name} W{wb}A{ab}: our default recipe")
            acc, chosen, seconds = _ours(name, net, ds, wb, ab, ours_from)
            rows.append({"model": name, "wbits": wb, "abits": ab, "tool": "quantflow",
                         "recipe": "default", "chosen": chosen, "accuracy": acc,
                         "seconds": seconds})
            prog.advance(task)
    return rows


def summarize(rows):
    """Per (model, W/A): ours, the best Brevitas recipe on the test set, and the margin."""
    out = []
    for model, wb, ab in dict.fromkeys((r["model"], r["wbits"], r["abits"]) for r in rows
                                       if r["tool"] != "torch.ao"):
        mine = [r for r in rows if (r["model"], r["wbits"], r["abits"]) == (model, wb, ab)]
        ours = next(r for r in mine if r["tool"] == "quantflow")
        brev = max((r for r in mine if r["tool"] == "brevitas"), key=lambda r: r["accuracy"])
        out.append({"model": model, "wbits": wb, "abits": ab, "ours": ours["accuracy"],
                    "ours_chosen": ours.get("chosen"), "best_brevitas": brev["accuracy"],
                    "best_brevitas_recipe": brev["recipe"],
                    "margin": ours["accuracy"] - brev["accuracy"],
                    "holds": ours["accuracy"] >= brev["accuracy"]})
    return out


def print_table(rows, summary):
    import peers_brevitas
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Digits test set, top-1 % (Brevitas best: picked on the test set)")
    for col in ["model", "W/A", *[f"brevitas {r}" for r in peers_brevitas.RECIPES],
                "best brevitas", "ours (default)", "ours - best", "torch.ao int8"]:
        table.add_column(col, justify="right" if col not in ("model",) else "left")
    keyed = {(r["model"], r["wbits"], r["abits"], r["tool"], r["recipe"]): r for r in rows}
    for s in summary:
        k = (s["model"], s["wbits"], s["abits"])
        ao = keyed.get((*k, "torch.ao", "int8-ptq-fx"))
        table.add_row(s["model"], f"{s['wbits']}/{s['abits']}",
                      *[f"{100 * keyed[(*k, 'brevitas', r)]['accuracy']:.2f}"
                        if (*k, "brevitas", r) in keyed else "-" for r in peers_brevitas.RECIPES],
                      f"{100 * s['best_brevitas']:.2f}",
                      f"{100 * s['ours']:.2f} ({s['ours_chosen']})",
                      f"{100 * s['margin']:+.2f}" + ("" if s["holds"] else " NO"),
                      f"{100 * ao['accuracy']:.2f}" if ao else "-")
    Console(width=220).print(table)


def _load_ours(path):
    if path is None:
        return None
    doc = json.loads(Path(path).read_text())
    return {(r["model"], r["wbits"], r["abits"]): r | {
        "recipe": f"{r['recipe']}/{r.get('w_grid', '?')}"}
        for r in doc["rows"] if r["method"] == "recipe"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results", help="folder for peers.json")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--bits", default=",".join(f"{w}/{a}" for w, a in BITS),
                   help="W/A pairs, e.g. 2/2,3/3")
    p.add_argument("--ours-from", default=None, metavar="ACCURACY.json",
                   help="our default recipe's figures from bench/accuracy.py's JSON")
    args = p.parse_args(argv)
    try:
        bits = [tuple(int(v) for v in wa.split("/")) for wa in args.bits.split(",")]
    except ValueError:
        p.error(f"{args.bits!r} is not a list of W/A pairs")
    models = args.models.split(",")

    from rich.progress import Progress

    with Progress() as prog:  # shown before the heavy imports: progress within 2 s
        task = prog.add_task("loading torch and Brevitas", total=None)
        prog.update(task, total=len(models) * len(bits) * (len(_recipes()) + 1))
        rows = measure(models, bits, _load_ours(args.ours_from), prog, task)
    summary = summarize(rows)
    print_table(rows, summary)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "peers", "machine": platform.machine(),
           "python": platform.python_version(), "rows": rows, "summary": summary}
    (out / "peers.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out / 'peers.json'}")
    return 0


def _recipes():
    import peers_brevitas

    return peers_brevitas.RECIPES


if __name__ == "__main__":
    sys.exit(main())
