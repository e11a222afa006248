"""`hwgen build`: a flow file's quantize -> generate -> simulate -> estimate -> synth -> report
in one build folder, each stage reused while its inputs are unchanged."""

import json
import sys

NAME = "build"
HELP = ("run a flow file (TOML: model, bits, board, simulator, images) through every stage"
        " into one build folder with a report; unchanged stages are reused")

__all__ = ["NAME", "HELP", "add_arguments", "run"]


def add_arguments(p):
    p.add_argument("flow", metavar="FLOW.toml",
                   help="the flow file (see flows/ and the README's \"Flow files\")")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="build folder (default: build/<flow file stem> in the current folder)")
    p.add_argument("--no-synth", action="store_true",
                   help="stop before Yosys and nextpnr (an earlier synth/ stays, unreported)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


class _Stages:
    """The stage lines on stderr: one when a stage starts, one with its time when it ends;
    the running stage's steps on the status line (``phase``; only on a terminal)."""

    def __init__(self, phase):
        self.phase, self.name = phase, None

    def __call__(self, name, result=None):
        from hwflow.api.results import Status

        self.name = name if result is None else None
        if result is None:
            line = "running"
            self.phase(name)
        elif result.status is Status.BUILT:
            line = f"built in {result.seconds:.1f} s"
        elif result.status is Status.SKIPPED:
            line = f"skipped ({result.reason})"
        else:
            line = "up to date"
        print(f"{name}: {line}", file=sys.stderr, flush=True)

    def progress(self, text, done=None, total=None):
        """The API's progress callback: the running stage's step on the status line."""
        self.phase(f"{self.name}: {text}" if self.name else text, done, total)


def run(args):
    from hwflow.api import build
    from hwflow.commands.progress import phases

    with phases("reading the flow file") as phase:
        stages = _Stages(phase)
        r = build(args.flow, out=args.out, synth=not args.no_synth, progress=stages.progress,
                  stage=stages)
    if args.json:
        print(json.dumps(r.to_dict(), sort_keys=True))
    else:
        verdict = "bit-exact" if r.bit_exact else "NOT bit-exact"
        if r.rebuilt:
            print(f"{r.out}: rebuilt {', '.join(r.rebuilt)}; {verdict}; report {r.report},"
                  f" {r.html}")
        else:
            print(f"nothing was rebuilt: {r.out} is up to date ({verdict}; report"
                  f" {r.report})")
    return 0 if r.bit_exact else 1
