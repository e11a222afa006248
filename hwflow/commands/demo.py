"""`hwgen demo`: the whole flow on the embedded default (digits-cnn on scikit-learn's digits).

Train (cached) -> quantize at 8, 6, 4, 3 and 2 bits -> accuracy table, with a progress
display; then the 4-bit model -> Verilog (``hwgen generate``) -> Verilator through cocotb
(``hwgen simulate``) -> summary: accuracy, bit-exact verdict, cycles per inference, MAC-array
utilisation. Everything lands in ``--out`` with a ``summary.json``.
"""

import json

NAME = "demo"
HELP = "run the flow on the embedded demo network (digits-cnn on scikit-learn's digits)"

__all__ = ["NAME", "HELP", "add_arguments", "run", "DEMO_BITS"]

#: (weight bits, activation bits) the demo quantizes to.
DEMO_BITS = [(8, 8), (6, 6), (4, 4), (3, 3), (2, 2)]


#: (weight bits, activation bits) taken through the hardware steps.
HW_BITS = (4, 4)


def add_arguments(p):
    p.add_argument("--model", metavar="MODEL", default="digits-cnn", help="zoo model")
    p.add_argument("--out", metavar="DIR", default="build/demo", help="output folder")
    p.add_argument("--images", metavar="N", type=int, default=100,
                   help="test images simulated on Verilator (0: all)")
    from hwflow.commands.synth import _board

    p.add_argument("--board", metavar="NAME", type=_board, default=None,
                   help="simulate the design hwgen synth builds for this board (its array,"
                        " lanes, multipliers and memories: the same Verilog files) instead of"
                        " the generic 8x8 overlay")
    p.add_argument("--no-hardware", action="store_true",
                   help="stop after the accuracy table (no Verilog, no simulation)")


def run(args):
    from pathlib import Path

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from quantflow.errors import UserError
    from quantflow.fsutil import check_out, write_bytes

    if args.images < 0:
        raise UserError(f"--images must be a non-negative integer, not {args.images!r}")
    out = Path(args.out)
    check_out(out)
    console = Console()
    rows = []
    with Progress(console=console, transient=True) as progress:
        # up before torch loads (seconds): the first line within two seconds
        task = progress.add_task("loading torch and the data", total=None)
        from quantflow import ptq, recipes, serialize
        from quantflow.flow import Method, load_data, load_model, quantize_model, quantize_recipe

        ds = load_data()
        progress.update(task, description=f"training {args.model}")
        name, net = load_model(args.model, ds, lambda e, n: progress.update(
            task, completed=e, total=n))
        progress.update(task, description="quantizing", completed=0, total=len(DEMO_BITS))
        for wb, ab in DEMO_BITS:
            progress.update(task, description=f"quantizing W{wb}A{ab}")
            # the default of `hwgen quantize` (recipe auto), so the figures are the same
            result = quantize_recipe(name, net, ds, ptq.PTQConfig(wb, ab), recipes.AUTO)
            baseline = quantize_model(name, net, ds, ptq.PTQConfig(wb, ab), Method.MINMAX)
            folder = serialize.save(result.qmodel, out / f"{name}-w{wb}a{ab}")
            rows.append(result.summary(recipes.AUTO.name) | {
                "minmax_accuracy": baseline.quant_accuracy, "qmodel": str(folder)})
            progress.advance(task)
    table = Table(title=f"{name} on digits: post-training quantization (test set, "
                        f"{len(ds.y_test)} images)")
    for col in ("W/A", "recipe chosen (ranges w/a)", "float", "quantized", "delta",
                "plain min-max"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['wbits']}/{r['abits']}",
                      f"{r.get('recipe') or r['method']} ({r['w_method']}/{r['a_method']})",
                      f"{100 * r['float_accuracy']:.2f}%", f"{100 * r['quant_accuracy']:.2f}%",
                      f"{100 * (r['quant_accuracy'] - r['float_accuracy']):+.2f}",
                      f"{100 * r['minmax_accuracy']:.2f}%")
    console.print(table)
    doc = {"quantization": rows}
    status = 0
    if not args.no_hardware:
        row = next((r for r in rows if (r["wbits"], r["abits"]) == HW_BITS), rows[-1])
        hw = _hardware(console, out, name, row, args, len(ds.y_test))
        doc["hardware"] = hw
        status = 0 if hw["bit_exact"] else 1
    row = next((r for r in rows if (r["wbits"], r["abits"]) == HW_BITS), rows[-1])
    doc["board"] = _next_steps(console, row)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(out / "summary.json", (json.dumps(doc, indent=1) + "\n").encode())
    console.print(f"QuantizedModels, Verilog and summary.json in {out}/")
    return status


def _next_steps(console, row):
    """The smallest board the estimate says the model fits (its resources against the
    device's, and Fmax against the board clock), and the commands that put it there."""
    from boards.estimate import smallest_board
    from quantflow import serialize

    qdir = row["qmodel"]
    board, est = smallest_board(serialize.load(qdir))
    tag = f"W{row['wbits']}A{row['abits']}"
    if board is None:
        console.print(f"{tag} fits none of the supported boards by the estimate (hwgen estimate"
                      f" {qdir} --board NAME says what is short)")
        return None
    name = board.value.name
    fit = est["fit"]
    used = ", ".join(f"{fit[k]['need']:,} of {fit[k]['have']:,} {k.upper()}"
                     for k in ("lut", "bram", "dsp") if k in fit)
    console.print(
        f"{tag} fits the {name} at {est['array'][0]}x{est['array'][1]} (estimate: {used};"
        f" Fmax {est['fmax_mhz']:.0f} MHz against its {est['target_mhz']:.0f} MHz clock). Next:\n"
        f"  hwgen synth {qdir} --board {name} --out build/{name}   # the real build\n"
        f"  hwgen program --board {name} build/{name}              # load it over USB\n"
        f"  hwgen run {qdir} --board {name}                        # test images on the board")
    return {"board": name, "array": est["array"], "fit": fit, "fmax_mhz": est["fmax_mhz"],
            "target_mhz": est["target_mhz"], "source": "estimate"}


def _hardware(console, out, name, row, args, n_test):
    """The 4-bit model -> Verilog + manifest -> Verilator simulation -> summary dict."""
    from hwflow.api import generate, simulate

    gen = generate(row["qmodel"], out=out / f"{name}-w{row['wbits']}a{row['abits']}-verilog",
                   board=args.board)
    cfg, vpath = gen.config, gen.verilog
    where = f" {args.board.value.name}'s" if args.board is not None else ""
    with console.status(f"Verilator: building{where} design (once per configuration) and"
                        f" simulating {args.images or 'all'} test images"):
        s = simulate(row["qmodel"], sim="verilator", images=args.images, board=args.board,
                     jobs=1).to_dict()
    verdict = ("[green]bit-exact[/] on every layer output" if s["bit_exact"]
               else f"[red]{s['mismatches']} mismatching elements[/]")
    console.print(
        f"W{row['wbits']}A{row['abits']} on the{where} {cfg.rows}x{cfg.cols} overlay ({vpath}):\n"
        f"  accuracy {100 * row['quant_accuracy']:.2f}% (integer reference, all"
        f" {n_test} test images); Verilator: {s['images']} images {verdict}\n"
        f"  {s['cycles_per_inference']} cycles per inference (analytical"
        f" {s['analytical_cycles_per_inference']}), MAC-array utilisation"
        f" {s['mac_utilization']:.1%}; simulation {s['wall_seconds']:.0f} s")
    for m in s["first_mismatches"][:5]:
        console.print(f"  mismatch: image {m['image']} layer {m['layer']} ({m['name']}) index"
                      f" {m['index']}: expected {m['expected']}, got {m['got']}")
    return {"verilog": str(vpath), "config_digest": cfg.digest, "design": s["design"]} | {
        k: s[k] for k in ("images", "bit_exact", "mismatches", "cycles_per_inference",
                          "analytical_cycles_per_inference", "mac_utilization",
                          "wall_seconds")} | {"accuracy": row["quant_accuracy"]}
