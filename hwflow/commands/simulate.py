"""`hwgen simulate`: run a QuantizedModel on the generated Verilog through cocotb."""

import json
import sys

NAME = "simulate"
HELP = ("simulate the overlay running a QuantizedModel (Verilator or Icarus, via cocotb) and"
        " compare every layer output with the integer reference")

__all__ = ["NAME", "HELP", "add_arguments", "run"]


def add_arguments(p):
    from hwflow.commands.generate import add_drain_argument
    from hwgen.config import DEFAULT_ARRAY
    from rtl_tests.runner import Sim

    p.add_argument("qdir", metavar="QDIR", help="QuantizedModel folder (hwgen quantize --out)")
    p.add_argument("--sim", metavar="SIM", type=Sim, choices=list(Sim), default=Sim.VERILATOR,
                   help="simulator: verilator or icarus")
    p.add_argument("--images", metavar="N", type=int, default=0,
                   help="test images to run (0: the whole test set)")
    from hwflow.commands.synth import add_board_arguments

    add_board_arguments(
        p, required=False,
        board_help="; optional: simulate exactly the design hwgen synth builds for it (its"
                   " array, lanes, multipliers, memories with their vendor models: the same"
                   " Verilog file)",
        array_help=f"MAC-array shape (default: the board's with --board, else"
                   f" {DEFAULT_ARRAY[0]}x{DEFAULT_ARRAY[1]})")
    p.add_argument("--uart", action="store_true",
                   help="with --board: simulate the board's top, UART bridge included, driven"
                        " through its rx/tx pins at the board's baud rate (slower)")
    p.add_argument("--data", metavar="FILE.npz", default=None,
                   help="test images from this file (x_test, y_test) instead of digits")
    p.add_argument("--seed", metavar="N", type=int, default=0, help="random seed")
    add_drain_argument(p)
    p.add_argument("--jobs", metavar="N", type=int, default=None,
                   help="simulator processes sharing the images (default: one per CPU core,"
                        " at least 25 images each)")
    p.add_argument("--waves", metavar="DIR", nargs="?", const="waves", default=None,
                   help="write an FST (Verilator) / VCD (Icarus) trace into DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="also write the --json object to FILE (atomically)")


def _print(s):
    from rich.console import Console
    from rich.table import Table

    console = Console()
    d = s.get("design") or {}
    if d:
        where = f"{d['board']}'s design" if d.get("board") else "design"
        console.print(f"{where}: array {d['array'][0]}x{d['array'][1]}, W{d['weight_bits']}A"
                      f"{d['act_bits']} lanes, {d['multipliers'].upper()} multipliers,"
                      f" {_memories(d['memories'])}; simulated top {d['simulated_top']}"
                      + (f" (UART at {d['uart_divisor']} cycles per bit)"
                         if d["simulated_top"] != "hwgen_top" else ""))
    verdict = "[green]bit-exact[/]" if s["bit_exact"] else f"[red]{s['mismatches']} mismatches[/]"
    console.print(f"{s['simulator']}: {s['images']} images, {verdict} against the integer"
                  f" reference; {s['cycles_per_inference']} cycles per inference (analytical"
                  f" {s['analytical_cycles_per_inference']}), MAC utilisation"
                  f" {s['mac_utilization']:.1%}; {s['wall_seconds']:.1f} s")
    table = Table(title="per descriptor (median over images)")
    for col in ("desc", "cycles", "analytical", "MACs", "utilisation"):
        table.add_column(col, justify="right")
    for row in s["layers"]:
        table.add_row(str(row["descriptor"]), str(row["cycles"]),
                      str(row["analytical_cycles"]), str(row["macs"]),
                      f"{row['mac_utilization']:.1%}")
    console.print(table)
    if s.get("waves"):
        console.print(f"trace: {s['waves']}")
    for m in s["first_mismatches"][:10]:
        console.print(f"  mismatch: image {m['image']} layer {m['layer']} ({m['name']})"
                      f" index {m['index']}: expected {m['expected']}, got {m['got']}")


def _memories(mems):
    if isinstance(mems, str):
        return f"buffers in {mems}"
    special = {k: v for k, v in mems.items() if v != "block RAM"}
    rest = "block RAM" + (" elsewhere" if special else "")
    return ", ".join([*(f"{k.lower()} in {v}" for k, v in special.items()), rest])


def run(args):
    from hwflow.api import simulate
    from hwflow.commands.progress import phases

    with phases("checking the options") as phase:
        r = simulate(args.qdir, sim=args.sim, images=args.images, board=args.board,
                     array=args.array, uart=args.uart, data=args.data, seed=args.seed,
                     jobs=args.jobs, waves=args.waves, out=args.out, progress=phase,
                     drain_lanes=args.drain_lanes)
    if args.json:
        json.dump(r.to_dict(), sys.stdout)
        sys.stdout.write("\n")
    else:
        _print(r.to_dict())
    return 0 if r.bit_exact else 1
