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
        [--qat [--only-qat] [--qat-bits 3/3,2/2,1/1] [--qat-epochs 30]]

``--ours-from`` takes our default recipe's figures from ``bench/accuracy.py``'s JSON (its
``recipe`` rows) instead of re-running it (the default recipe is deterministic).

QAT side by side (``--qat``, at ``--qat-bits``, default 3/3, 2/2, 1/1; ``--only-qat`` skips the
PTQ rows; ``--bits`` then does not apply). Ours is exactly ``hwgen quantize --qat``:
``hwflow.api.quantize(model, wbits=W, abits=A, qat=True)``: :func:`quantflow.qat.finetune` for 30
epochs (Adam, cosine over every step, batch 64, seed 0, one thread) from a start and at a
learning rate chosen by :func:`quantflow.qatsearch.choose`: the starts are the default PTQ
recipe's result (chosen on validation) and MSE ranges on the float weights (at 1 bit MSE ranges
only), the learning rates 1e-3, 3e-3 and 1e-2 (scale lr a tenth), each pair scored by four-fold
cross-validation over the training data, the winner trained on all of it.
Ours uses our fake-quant twin: per-channel weight
scales (at 1 bit +-s per channel, mean |w| start, BinaryNet's clipped straight-through
gradient), per-tensor unsigned activation scales, both learned. Brevitas
(``peers_brevitas.qat``) trains the same float chain, rebuilt in our layout, on the same budget
and data (Adam, cosine over every step, batch 64, seed 0, one thread, cross-entropy on the
logits, 30 epochs on ``ds.x_train``; input quantizer fixed as ours) with its learned-scale
quantizers (``PARAMETER_FROM_STATS``): weights ``Int8WeightPerChannelFloat`` (full range) at
W bits, at 1 bit ``SignedBinaryClampedConst`` made per-channel with a learned scale initialised
to mean |w| (``peers_brevitas._WeightBinary``: ``SignedBinaryWeightPerTensorConst`` has one
constant scale; ``Int8WeightPerChannelFloat`` with ``bit_width=1`` is not bipolar);
activations ``Uint8ActPerTensorFloat`` at A bits (1 bit included). Brevitas gets at least our
treatment, every choice on the validation split: its start (max |w| and calibration-maximum
initialisation, or its MSE quantizers ``Int8WeightPerChannelFloatMSE``/
``Uint8ActPerTensorFloatMSE``) by the calibrated model's validation score, then its learning
rate among (1e-3, 3e-3, 1e-2) times a scale learning rate of a tenth or the same, each scored
by the same four folds of the training data as ours (``quantflow.qatsearch.folds``), the winner
retrained on all the training data. Test accuracy of both on the 450 digits test
images; rows ``quantflow-qat``/``brevitas-qat`` in the same JSON and a second table.
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
QAT_BITS = [(3, 3), (2, 2), (1, 1)]
#: Brevitas' QAT candidates: learning rates (ours: ``quantflow.qatsearch.QAT_LRS``)
#: times the scales' learning rate as a fraction of it (ours: a tenth).
QAT_LRS = (1e-3, 3e-3, 1e-2)
QAT_SCALE_LR_FRACTIONS = (0.1, 1.0)
#: The W1A1 must-hold: digits-cnn at least this accurate with QAT.
BINARY_CNN_TARGET = 0.95
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


def _ours_qat(spec, wb, ab, epochs, status):
    """``hwgen quantize --qat`` (``hwflow.api.quantize``) into a scratch folder."""
    import tempfile

    from hwflow.api import quantize

    def progress(text, done=None, total=None):
        status(f"ours: {text}" + ("" if done is None else f" {done}/{total}"))

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="peers-qat-") as tmp:
        r = quantize(spec, out=Path(tmp) / "q", wbits=wb, abits=ab, qat=True,
                     qat_epochs=epochs, progress=progress)
    meta = r.qmodel.meta
    start = meta["recipe"].get("qat_start") or r.recipe
    return {"accuracy": r.quant_accuracy, "chosen": f"{start}/{r.w_grid}",
            "method": r.method, "qat_lr": meta["recipe"].get("qat_lr"),
            "qat_candidates": meta.get("qat_candidates", []),
            "seconds": time.perf_counter() - t0}


def _brevitas_qat(layers, ds, wb, ab, x_cal, epochs, status):
    """Brevitas QAT: its start by the calibrated model's validation score, then (lr, scale lr)
    by four folds of the training data (the folds ours uses), the winner retrained on all the
    training data (``peers_brevitas.qat``)."""
    import numpy as np
    import peers_brevitas

    from quantflow import data, qatsearch

    x_val, y_val = data.validation_split(ds)
    t0 = time.perf_counter()
    starts = []
    for start in peers_brevitas.QAT_STARTS:
        model = peers_brevitas.qat_model(start, layers, wb, ab, x_cal)
        starts.append({"start": start,
                       "val_score": peers_brevitas.val_score(model, x_val, y_val)})
    start = max(starts, key=lambda c: c["val_score"])["start"]
    trials = [(lr, float(f"{lr * f:.3g}")) for lr in QAT_LRS for f in QAT_SCALE_LR_FRACTIONS]
    splits = qatsearch.folds(ds.y_train)
    candidates = []
    for i, (lr, scale_lr) in enumerate(trials):
        scores = []
        for k, (fit, held) in enumerate(splits):
            def epoch(e, n, loss, i=i, k=k, lr=lr, scale_lr=scale_lr):
                status(f"Brevitas QAT lr {lr:g}/{scale_lr:g} ({i + 1}/{len(trials)}, fold"
                       f" {k + 1}) epoch {e}/{n} loss {loss:.4f}")
            model = peers_brevitas.qat_model(start, layers, wb, ab, x_cal)
            peers_brevitas.qat(model, ds.x_train[fit], ds.y_train[fit], lr, scale_lr, epochs,
                               progress=epoch)
            scores.append(peers_brevitas.val_score(model, ds.x_train[held], ds.y_train[held]))
        candidates.append({"lr": lr, "scale_lr": scale_lr, "val_score": tuple(
            float(np.mean([sc[j] for sc in scores])) for j in range(2))})
    best = max(candidates, key=lambda c: c["val_score"])
    lr, scale_lr = best["lr"], best["scale_lr"]

    def epoch(e, n, loss):
        status(f"Brevitas QAT lr {lr:g}/{scale_lr:g} (all training data) epoch {e}/{n}"
               f" loss {loss:.4f}")
    model = peers_brevitas.qat_model(start, layers, wb, ab, x_cal)
    peers_brevitas.qat(model, ds.x_train, ds.y_train, lr, scale_lr, epochs, progress=epoch)
    return {"accuracy": peers_brevitas.accuracy(model, ds.x_test, ds.y_test), "start": start,
            "lr": lr, "scale_lr": scale_lr, "starts": starts, "candidates": candidates,
            "seconds": time.perf_counter() - t0}


def measure_qat(models, bits, epochs, prog, task):
    """The QAT rows: ours (``hwgen quantize --qat``) and Brevitas QAT at each W/A."""
    from quantflow import importers
    from quantflow.flow import calibration_set, load_data, load_model

    ds = load_data()
    x_cal = calibration_set(ds)
    rows = []
    for spec in models:
        name, net = load_model(spec, ds)
        layers = importers.capture(net, ds.input_shape)
        for wb, ab in bits:
            def status(text, head=f"{name} W{wb}A{ab} QAT: "):
                prog.update(task, description=head + text)
            status("Brevitas")
            got = _brevitas_qat(layers, ds, wb, ab, x_cal, epochs, status)
            rows.append({"model": name, "wbits": wb, "abits": ab, "tool": "brevitas-qat",
                         "recipe": "qat", "epochs": epochs} | got)
            prog.advance(task)
            status("ours")
            got = _ours_qat(spec, wb, ab, epochs, status)
            rows.append({"model": name, "wbits": wb, "abits": ab, "tool": "quantflow-qat",
                         "recipe": "default+qat", "epochs": epochs} | got)
            prog.advance(task)
    return rows


def summarize_qat(rows):
    """Per (model, W/A) with QAT rows: Brevitas QAT, ours, the margin, whether ours >= it."""
    out = []
    for model, wb, ab in dict.fromkeys((r["model"], r["wbits"], r["abits"]) for r in rows
                                       if r["tool"] == "quantflow-qat"):
        mine = {r["tool"]: r for r in rows
                if (r["model"], r["wbits"], r["abits"]) == (model, wb, ab)}
        ours, brev = mine["quantflow-qat"], mine["brevitas-qat"]
        out.append({"model": model, "wbits": wb, "abits": ab, "ours": ours["accuracy"],
                    "ours_chosen": ours["chosen"], "ours_qat_lr": ours["qat_lr"],
                    "brevitas": brev["accuracy"], "brevitas_start": brev["start"],
                    "brevitas_lr": brev["lr"], "brevitas_scale_lr": brev["scale_lr"],
                    "margin": ours["accuracy"] - brev["accuracy"],
                    "holds": ours["accuracy"] >= brev["accuracy"]})
    return out


def print_qat_table(summary):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="QAT, digits test set, top-1 % (every choice on held-out data)")
    for col in ["model", "W/A", "Brevitas QAT (start, lr/scale lr)",
                "ours QAT (recipe, lr)", "ours - Brevitas", "holds"]:
        table.add_column(col, justify="left" if col == "model" else "right")
    for s in summary:
        table.add_row(s["model"], f"{s['wbits']}/{s['abits']}",
                      f"{100 * s['brevitas']:.2f} ({s['brevitas_start']},"
                      f" {s['brevitas_lr']:g}/{s['brevitas_scale_lr']:g})",
                      f"{100 * s['ours']:.2f} ({s['ours_chosen']}, {s['ours_qat_lr']:g})",
                      f"{100 * s['margin']:+.2f}", "yes" if s["holds"] else "NO")
    console = Console(width=220)
    console.print(table)
    for s in summary:
        if (s["wbits"], s["abits"]) == (1, 1) and s["model"] == "digits-cnn":
            ok = s["ours"] >= BINARY_CNN_TARGET
            console.print(f"W1A1 digits-cnn with QAT: {100 * s['ours']:.2f}%"
                          f" (>= {100 * BINARY_CNN_TARGET:.0f}%: {'yes' if ok else 'NO'})")


def summarize(rows):
    """Per (model, W/A): ours, the best Brevitas recipe on the test set, and the margin."""
    out = []
    for model, wb, ab in dict.fromkeys((r["model"], r["wbits"], r["abits"]) for r in rows
                                       if r["tool"] == "quantflow"):
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
    p.add_argument("--qat", action="store_true",
                   help="also QAT side by side: ours (hwgen quantize --qat) and Brevitas QAT")
    p.add_argument("--only-qat", action="store_true", help="the QAT rows only (implies --qat)")
    p.add_argument("--qat-bits", default=",".join(f"{w}/{a}" for w, a in QAT_BITS),
                   help="W/A pairs of the QAT rows")
    p.add_argument("--qat-epochs", type=int, default=30, help="QAT epochs, both tools")
    args = p.parse_args(argv)
    bits, qat_bits = _pairs(p, "--bits", args.bits), _pairs(p, "--qat-bits", args.qat_bits)
    qat = args.qat or args.only_qat
    if args.only_qat:
        bits = []
    models = args.models.split(",")

    from rich.progress import Progress

    with Progress() as prog:  # shown before the heavy imports: progress within 2 s
        task = prog.add_task("loading torch and Brevitas", total=None)
        prog.update(task, total=len(models) * (len(bits) * (len(_recipes()) + 1)
                                               + (2 * len(qat_bits) if qat else 0)))
        rows = measure(models, bits, _load_ours(args.ours_from), prog, task) if bits else []
        if qat:
            rows += measure_qat(models, qat_bits, args.qat_epochs, prog, task)
    summary, qat_summary = summarize(rows), summarize_qat(rows)
    if summary:
        print_table(rows, summary)
    if qat_summary:
        print_qat_table(qat_summary)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "peers", "machine": platform.machine(),
           "python": platform.python_version(), "rows": rows, "summary": summary,
           "qat_summary": qat_summary}
    (out / "peers.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out / 'peers.json'}")
    return 0


def _pairs(parser, option, text):
    try:
        return [tuple(int(v) for v in wa.split("/")) for wa in text.split(",")]
    except ValueError:
        parser.error(f"{option}: {text!r} is not a list of W/A pairs")


def _recipes():
    import peers_brevitas

    return peers_brevitas.RECIPES


if __name__ == "__main__":
    sys.exit(main())
