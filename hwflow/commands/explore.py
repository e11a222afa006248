"""`hwgen explore`: a design-space sweep (model x W/A x recipe x array x target) on Dask."""

import argparse
import json
import sys
import time

NAME = "explore"
HELP = ("sweep models x bit widths x arrays x boards (or asic): accuracy, cycles, estimates,"
        " Pareto fronts and a report, on a Dask cluster; cached and resumable")

__all__ = ["NAME", "HELP", "add_arguments", "run", "bit_list", "target_list", "array_list"]


def bit_list(value):
    """argparse type: ``2,3,4`` -> ``[2, 3, 4]`` (each a bit width)."""
    from hwflow.commands.quantize import bits

    return [bits(v) for v in value.split(",")]


def target_list(value):
    """argparse type: board names and/or ``asic``, comma-separated."""
    from boards import board_by_name
    from boards.explore import ASIC

    out = []
    for name in value.split(","):
        if name != ASIC:
            try:
                board_by_name(name)
            except ValueError as e:
                raise argparse.ArgumentTypeError(f"{e} (or {ASIC})") from None
        out.append(name)
    return out


def array_list(value):
    """argparse type: ``2x2,4x4`` -> ``[(2, 2), (4, 4)]``."""
    from hwflow.commands.generate import array_shape

    return [array_shape(v) for v in value.split(",")]


def add_arguments(p):
    from hwflow.commands.quantize import layer_bits

    p.add_argument("--model", metavar="MODEL", action="append", default=None,
                   help="zoo model or path/to/file.py:factory; repeat for several; none:"
                        " digits-cnn")
    p.add_argument("--data", metavar="FILE.npz", default=None,
                   help="data for every model; none: each zoo model's own")
    p.add_argument("--bits", metavar="B,B,...", type=bit_list, default=[1, 2, 3, 4, 6, 8],
                   help="W = A bit widths (1: a binary network, trained with QAT)")
    p.add_argument("--wbits", metavar="B,B,...", type=bit_list, default=None,
                   help="weight bits: with --abits, sweeps every W x A pair instead of --bits")
    p.add_argument("--abits", metavar="B,B,...", type=bit_list, default=None,
                   help="activation bits (see --wbits)")
    p.add_argument("--recipe", metavar="R,R,...", default="auto",
                   help="PTQ recipes, comma-separated (hwgen quantize --recipe)")
    p.add_argument("--layer-bits", metavar="NAME=W/A,...", type=layer_bits, action="append",
                   default=None, help="a per-layer recipe as in hwgen quantize; repeat for"
                   " several; each adds its variant of every W/A point to the plain one")
    p.add_argument("--board", metavar="NAME,...", type=target_list, default=["icebreaker"],
                   help="boards and/or asic")
    p.add_argument("--arrays", metavar="RxC,...", type=array_list, default=None,
                   help="MAC-array shapes; none: each target's own")
    p.add_argument("--synth-pareto", action="store_true",
                   help="also build the Pareto points for real (hwgen synth; minutes each)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                   help="an existing Dask scheduler; none: a LocalCluster on this machine")
    p.add_argument("--connect-timeout", metavar="S", type=float, default=20.0,
                   help="seconds to wait for --scheduler")
    p.add_argument("--workers", metavar="N", type=int, default=2,
                   help="LocalCluster worker processes (one thread each)")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="results folder (reused: stored points are not run again)")
    p.add_argument("--json", action="store_true",
                   help="print the minimum-energy table as one JSON object")


def _pairs(args):
    from hwgen.errors import UserError

    if (args.wbits is None) != (args.abits is None):
        raise UserError("--wbits and --abits go together")
    if args.wbits is not None:
        return [(w, a) for w in args.wbits for a in args.abits]
    return [(b, b) for b in args.bits]


def run(args):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.progress import TimeElapsedColumn

    console = Console(stderr=True)
    start = time.monotonic()
    # Shown before Dask and torch are imported and the cluster starts (a few seconds); on a
    # pipe (a log) one line per finished task instead of the bar.
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False,
                  disable=not console.is_terminal) as prog:
        task = prog.add_task("explore: planning", total=None)
        if not console.is_terminal:
            print("explore: planning", file=sys.stderr, flush=True)
        rows, moons, failures = _sweep(args, prog, task)
    if args.json:
        print(json.dumps({m: {k: v for k, v in t.items()} for m, t in moons.items()},
                         sort_keys=True, default=str))
        return 1 if failures else 0
    _print(rows, moons, failures, args.out, time.monotonic() - start)
    return 1 if failures else 0


def _sweep(args, prog, task):
    from boards.pareto import write_results
    from boards.sweep import local_cluster, make_plan, run_sweep
    from hwgen.errors import UserError

    layer_bits = [None] + list(args.layer_bits or [])
    plan = make_plan(args.model or ["digits-cnn"], _pairs(args), args.board,
                     args.arrays or [None], args.recipe.split(","), layer_bits, args.data)
    from quantflow import recipes

    for name in args.recipe.split(","):
        try:
            recipes.by_name(name)
        except ValueError as e:
            raise UserError(str(e)) from None
    from distributed import Client

    cluster = None
    if args.scheduler is None:
        prog.update(task, description=f"explore: starting a LocalCluster ({args.workers}"
                    " workers)")
        cluster = local_cluster(args.workers)
    else:
        prog.update(task, description=f"explore: connecting to {args.scheduler}")
    try:
        try:
            client = Client(cluster if cluster is not None else args.scheduler,
                            timeout=args.connect_timeout)
        except OSError as e:
            raise UserError(f"no Dask scheduler at {args.scheduler}: {e}") from None
        with client:
            def tick(done, total, what):
                text = f"explore: {what} ({len(plan.points)} points)"
                prog.update(task, completed=done, total=total, description=text)
                if prog.disable:
                    print(f"{text}: {done}/{total} tasks", file=sys.stderr, flush=True)

            rows, failures = run_sweep(plan, args.out, client,
                                       synth_pareto=args.synth_pareto, progress=tick)
    finally:
        if cluster is not None:
            cluster.close()
    moons = write_results(rows, args.out, failures)
    return rows, moons, failures


def _print(rows, moons, failures, out, seconds):
    from boards.pareto import TOLERANCE

    print(f"{len(rows)} points in {out} ({seconds:.0f} s): points.json, points.csv,"
          " pareto_energy.png, pareto_lut.png, report.md")
    for model, m in moons.items():
        b = m["best"]
        if b is None:
            print(f"  {model}: no point within {TOLERANCE} points of float")
            continue
        saving = f", {m['saving']:.2f}x less than W8A8" if m["saving"] else ""
        print(f"  {model}: least energy within {TOLERANCE} points of float"
              f" ({100 * m['float_accuracy']:.2f}%): W{b['wbits']}A{b['abits']}"
              f" {b['array'][0]}x{b['array'][1]} on {b['target']}, test"
              f" {100 * b['quant_accuracy']:.2f}%, {b['energy_45nm_uj']:.3f} uJ{saving}")
    for f in failures:
        print(f"  failed (rerun to retry): {f}")
