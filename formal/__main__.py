"""``python -m formal``: run the proofs and broken variants, one table row each as it ends.

Options: ``--all`` (the slow 8-bit proofs too; default: the default test suite's set),
``--only TEXT`` (labels containing TEXT), ``--keep DIR`` (keep each task's folder, with its
counterexample traces, under DIR; default: a temporary folder removed at the end).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]


def _args(argv):
    p = argparse.ArgumentParser(prog="python -m formal", description=__doc__.splitlines()[0])
    p.add_argument("--all", action="store_true", help="include the slow proofs")
    p.add_argument("--only", metavar="TEXT", default="",
                   help="run only proofs whose label contains TEXT (default: every one)")
    p.add_argument("--keep", metavar="DIR", type=Path, default=None,
                   help="keep the sby folders under DIR (default: a removed temporary folder)")
    return p.parse_args(argv)


def main(argv=None):
    args = _args(argv)
    print("loading the proofs (amaranth, hwgen) ...", flush=True)
    from .proofs import PROOFS, run_proof
    from .sby import FormalToolError, tool_env

    try:
        tool_env()
    except FormalToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    chosen = [p for p in PROOFS if (args.all or p.fast) and args.only in p.label]
    if not chosen:
        print(f"error: no proof matches {args.only!r}", file=sys.stderr)
        return 2
    bad, tty = 0, sys.stdout.isatty()
    print(f"{'proof':<10} {'config':<15} {'variant':<38} {'status':<7} {'expected':<8}"
          f" {'seconds':>8}", flush=True)
    with tempfile.TemporaryDirectory(prefix="hwgen-formal-") as tmp:
        base = args.keep or Path(tmp)
        for i, proof in enumerate(chosen):
            start = time.monotonic()
            # A terminal gets a status line the result overwrites; a pipe or file a line each.
            print(f"running {proof.label} ...", end="\r" if tty else "\n", flush=True)
            workdir = base / f"{i:02d}-{proof.name}-{proof.config}".replace("^", "")
            try:
                result = run_proof(proof, workdir)
                status, traces = result.status, result.traces
            except RuntimeError as exc:  # sby failed or timed out: say so, go on
                status, traces = "ERROR", ()
                print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr, flush=True)
            ok = status == proof.expect and (proof.expect == "PASS" or bool(traces))
            bad += not ok
            row = (f"{proof.name:<10} {proof.config:<15} {proof.variant or '-':<38}"
                   f" {status:<7} {proof.expect:<8} {time.monotonic() - start:8.1f}")
            print(row.ljust(len(proof.label) + 12) + ("" if ok else "   <- UNEXPECTED"),
                  flush=True)
    print(f"{len(chosen) - bad} of {len(chosen)} as expected", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
