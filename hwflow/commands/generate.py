"""`hwgen generate`: Verilog + manifest.json of the overlay a QuantizedModel needs."""

import argparse
import json

NAME = "generate"
HELP = "generate the overlay's Verilog and manifest.json for a QuantizedModel folder"

__all__ = ["NAME", "HELP", "add_arguments", "run", "array_shape", "add_drain_argument"]


def array_shape(value):
    """argparse type: ``ROWSxCOLS`` with positive integers."""
    parts = value.lower().split("x")
    try:
        rows, cols = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an array shape ROWSxCOLS") from None
    if rows < 1 or cols < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not an array shape of positive sizes")
    return rows, cols


def add_arguments(p):
    from hwflow.commands.synth import add_board_arguments

    p.add_argument("qdir", metavar="QDIR", help="QuantizedModel folder (hwgen quantize --out)")
    add_board_arguments(
        p, required=False,
        board_help="; optional: emit the design synth builds for it (array, multipliers,"
                   " memories, and its UART bridge as hwgen_uart_top.v: the same files) and"
                   " print its estimate",
        array_help="MAC-array shape: output-channel PEs x input SIMD lanes (default: the"
                   " board's with --board, else 8x8)")
    p.add_argument("--out", metavar="DIR", required=True, help="folder to write (replaced)")
    add_drain_argument(p)
    p.add_argument("--json", action="store_true", help="print the manifest summary as JSON")


def add_drain_argument(p):
    p.add_argument("--drain-lanes", metavar="N", type=int, default=1,
                   help="requantizers side by side in the drain, a power of two up to the"
                        " array's rows (the generic overlay only; default 1)")


def run(args):
    from hwflow.api import generate
    from hwflow.commands.progress import phases

    with phases("compiling the program and elaborating the Verilog"):
        r = generate(args.qdir, out=args.out, board=args.board, array=args.array,
                     drain_lanes=args.drain_lanes)
    if args.json:
        print(json.dumps(r.to_dict(), sort_keys=True))
        return 0
    cfg, program = r.config, r.program
    util = sum(program.macs) / (sum(program.cycles) * cfg.array_macs)
    print(f"wrote {r.verilog} and {r.manifest} (config {cfg.digest}, array {cfg.rows}x"
          f"{cfg.cols}, {cfg.weight_bits}-bit weights, {cfg.act_bits}-bit activations,"
          f" {cfg.acc_bits}-bit accumulators)")
    print(f"analytical cycles per inference: {sum(program.cycles)}, MAC utilisation"
          f" {util:.1%}")
    for row in program.cycle_report(cfg.array_macs):
        print(f"  desc {row['desc']:2d} {row['op']:3s} cycles {row['cycles']:7d}"
              f"  macs {row['macs']:8d}  utilisation {row['utilization']:.1%}")
    est = r.estimate
    if est is not None:
        from hwflow.commands.estimate import print_estimate
        print(f"on {est.board} ({est.device}), multipliers in {est.multipliers}s:")
        print_estimate(est)
    return 0
