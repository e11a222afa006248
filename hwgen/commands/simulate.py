"""`hwgen simulate`: run a QuantizedModel on the generated Verilog through cocotb."""

import json
import sys

NAME = "simulate"
HELP = ("simulate the overlay running a QuantizedModel (Verilator or Icarus, via cocotb) and"
        " compare every layer output with the integer reference")

__all__ = ["NAME", "HELP", "add_arguments", "run"]


def add_arguments(p):
    from hwgen.commands.generate import array_shape
    from hwgen.config import DEFAULT_ARRAY
    from rtl_tests.runner import Sim

    p.add_argument("qdir", metavar="QDIR", help="QuantizedModel folder (hwgen quantize --out)")
    p.add_argument("--sim", metavar="SIM", type=Sim, choices=list(Sim), default=Sim.VERILATOR,
                   help="simulator: verilator or icarus")
    p.add_argument("--images", metavar="N", type=int, default=0,
                   help="test images to run (0: the whole test set)")
    p.add_argument("--array", metavar="ROWSxCOLS", type=array_shape, default=DEFAULT_ARRAY,
                   help="MAC-array shape")
    p.add_argument("--data", metavar="FILE.npz", default=None,
                   help="test images from this file (x_test, y_test) instead of digits")
    p.add_argument("--seed", metavar="N", type=int, default=0, help="random seed")
    p.add_argument("--waves", metavar="DIR", nargs="?", const="waves", default=None,
                   help="write an FST (Verilator) / VCD (Icarus) trace into DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _print(s):
    from rich.console import Console
    from rich.table import Table

    console = Console()
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


def run(args):
    from hwgen.errors import UserError
    from hwgen.simulate import simulate

    if args.images < 0:
        raise UserError(f"--images must be a non-negative integer, not {args.images!r}")
    report = simulate(args.qdir, args.sim, images=args.images, array=args.array,
                      waves=args.waves is not None, seed=args.seed, data=args.data,
                      test_dir=args.waves, quiet=True)
    s = report.summary()
    if args.json:
        json.dump(s, sys.stdout)
        sys.stdout.write("\n")
    else:
        _print(s)
    return 0 if s["bit_exact"] else 1
