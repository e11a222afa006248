#!/usr/bin/env python3
"""The zoo's DAG and MLPerf Tiny networks on the overlay: MACs, weight storage, cycles per
inference and MAC-array utilisation per layer kind, at W8A8, W4A4 and 8-bit first/last layers
around a 2- or 4-bit body (weights only, or weights and activations: "A8"), and the
smallest board each fits by the estimate, from the Program compiler's cycle model (exact:
the rtl tests check measured = model on every layer).

Cycles depend only on layer shapes and word lengths, so the networks are built with seeded
initial weights (no training) and quantized on their default data (digits or its proxy).

    .venv/bin/python bench/networks.py [--out bench/results] [--arrays 8x8,2x4]
        [--synth W8A8,8/2/8]

``--synth RECIPES`` confirms the estimate's smallest board with real builds (``hwgen synth``'s
path: Yosys and nextpnr, the board's own array): starting at the estimate's pick it builds on
each larger board until one fits, and records the routed figures and that board as
``smallest_board_synth`` (one to five minutes a build).
"""

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from hwgen.config import AccelConfig  # noqa: E402
from quantflow import importers, ptq, zoo  # noqa: E402
from quantflow.program import compile_program  # noqa: E402
from quantflow.qmodel import LayerKind  # noqa: E402

NETWORKS = ["digits-cnn", "digits-resnet", "digits-dsconv", "dscnn-kws", "mobilenetv1-vww-32",
            "resnet8-ic", "fc-autoencoder"]
#: (label, body bits, first/last layer weight bits or None, 8-bit activations at the ends)
RECIPES = [("W8A8", 8, None, False), ("W4A4", 4, None, False), ("8/4/8", 4, 8, False),
           ("8/2/8", 2, 8, False), ("8/2/8 A8", 2, 8, True)]
KINDS = ("conv", "depthwise/grouped", "linear", "add", "pool")


def _quantized(name, body, ends, wide_acts=False):
    which = zoo.ZooModel(name)
    torch.manual_seed(0)
    net = zoo.build(which).eval()
    ds = zoo.default_data(which)
    layers = importers.capture(net, ds.input_shape)
    bits = {}
    if ends:
        macs = [lyr.name for lyr in layers if lyr.kind in (LayerKind.CONV2D, LayerKind.LINEAR)]
        bits = {macs[0]: (ends, body), macs[-1]: (ends, body)}
        if wide_acts:  # the first layer's output and the last layer's input at 8 bits too
            bits[macs[0]] = (ends, 8)
            bits[macs[-2]] = (body, 8)
    cfg = ptq.PTQConfig(body, body, layer_bits=bits)
    return ptq.quantize(layers, name, ds.input_shape, ds.x_train[:128], cfg).export()


def _kind(model, i):
    layer = model.layers[i]
    if layer.kind is LayerKind.CONV2D:
        return "depthwise/grouped" if layer.groups > 1 else "conv"
    if layer.kind is LayerKind.LINEAR:
        return "linear"
    if layer.kind is LayerKind.ADD:
        return "add"
    return "pool"


def row(name, label, model, shape):
    cfg = AccelConfig.for_model(model, array=shape)
    prog = compile_program(model, cfg)
    total = sum(prog.cycles)
    per = {k: [0, 0] for k in KINDS}  # macs, cycles
    for i, d in enumerate(prog.layer_desc):
        if d is None:
            continue
        k = _kind(model, i)
        per[k][0] += prog.macs[d]
        per[k][1] += prog.cycles[d]
    return {
        "model": name, "recipe": label, "array": f"{shape[0]}x{shape[1]}",
        "macs": sum(prog.macs),
        "weight_bits": int(sum(lyr.weight.size * lyr.w_fmt.bits for lyr in model.mac_layers)),
        "lanes": f"W{cfg.weight_bits}A{cfg.act_bits}",
        "weight_digits_max": cfg.weight_digits_max,
        "act_digits_max": cfg.act_digits_max,
        "cycles_per_inference": total,
        "mac_utilization": sum(prog.macs) / (total * cfg.array_macs),
        "cycle_share": {k: c / total for k, (_, c) in per.items() if c},
        "utilization": {k: m / (c * cfg.array_macs) for k, (m, c) in per.items() if c and m},
        "descriptors": len(prog.descs),
        "memory": prog.usage,
    }


def smallest_board(model):
    """:func:`boards.estimate.smallest_board`'s board name, or ``"none"``."""
    from boards.estimate import smallest_board as pick

    board, _ = pick(model)
    return board.value.name if board is not None else "none"


def synth_board(model, start):
    """Real builds from the estimate's pick ``start`` upwards: the first board whose
    ``hwgen synth`` build fits and meets its clock, with its report's figures, and the boards
    tried before it with the reason each failed."""
    import tempfile

    from boards import Board
    from hwflow.api import synth
    from quantflow import serialize
    from quantflow.errors import UserError

    boards = sorted(Board, key=lambda b: b.value.device.lut)
    names = [b.value.name for b in boards]
    tried = []
    with tempfile.TemporaryDirectory(prefix="bench-networks-") as tmp:
        qdir = serialize.save(model, Path(tmp) / "q")
        for board in boards[names.index(start):]:
            try:
                r = synth(qdir, board=board).to_dict()
            except UserError as e:
                tried.append({"board": board.value.name, "error": str(e)})
                continue
            if r["fits"] and r["fmax_mhz"] >= r["target_mhz"]:
                keep = ("board", "array", "weight_bits", "act_bits", "multipliers", "lut",
                        "ff", "bram", "spram", "dsp", "fmax_mhz", "target_mhz")
                return {"smallest_board_synth": board.value.name,
                        "synth": {k: r[k] for k in keep if k in r}, "synth_tried": tried}
            tried.append({"board": board.value.name, "error": "does not fit or meet the clock",
                          **{k: r.get(k) for k in ("lut", "fmax_mhz", "target_mhz")}})
    return {"smallest_board_synth": "none", "synth_tried": tried}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results")
    p.add_argument("--arrays", default="8x8,2x4",
                   help="comma-separated RxC shapes (default 8x8 and the iCEBreaker's 2x4)")
    p.add_argument("--models", default=",".join(NETWORKS))
    p.add_argument("--synth", default="",
                   help="comma-separated recipes whose smallest board real builds confirm")
    args = p.parse_args(argv)
    shapes = [tuple(int(v) for v in a.split("x")) for a in args.arrays.split(",")]

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    torch.set_num_threads(1)
    models = args.models.split(",")
    rows = []
    with Progress(transient=True) as bar:
        task = bar.add_task("quantizing and compiling", total=len(models) * len(RECIPES))
        for name in models:
            for label, body, ends, wide_acts in RECIPES:
                model = _quantized(name, body, ends, wide_acts)
                board = smallest_board(model)
                extra = {}
                if label in args.synth.split(",") and board != "none":
                    bar.update(task, description=f"building {name} {label} for {board}")
                    extra = synth_board(model, board)
                    bar.console.print(f"{name} {label}: estimate {board}, synth "
                                      f"{extra['smallest_board_synth']} {extra.get('synth')}")
                    bar.update(task, description="quantizing and compiling")
                rows += [{**row(name, label, model, s), "smallest_board": board, **extra}
                         for s in shapes]
                bar.advance(task)

    table = Table(title="networks on the overlay (compiler cycle model; measured = model)")
    for col in ("model", "recipe", "array", "lanes", "MACs", "weight kbit", "cycles", "util",
                *KINDS, "smallest board"):
        table.add_column(col, justify="right")
    for r in rows:
        kinds = [f"{r['utilization'][k]:.0%} ({r['cycle_share'][k]:.0%})"
                 if k in r["utilization"] else
                 (f"- ({r['cycle_share'][k]:.0%})" if k in r["cycle_share"] else "")
                 for k in KINDS]
        table.add_row(r["model"], r["recipe"], r["array"], r["lanes"], f"{r['macs']:,}",
                      f"{r['weight_bits'] / 1000:.0f}", f"{r['cycles_per_inference']:,}",
                      f"{r['mac_utilization']:.1%}", *kinds, r["smallest_board"])
    Console(width=180).print(table)
    print("per kind: utilisation of the array while running that kind (share of all cycles)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "networks", "machine": platform.machine(), "rows": rows}
    (out / "networks.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out / 'networks.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
