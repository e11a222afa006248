#!/usr/bin/env python3
"""Hostile inputs thrown at every `hwgen` subcommand, each as a real process (issue 12).

Runs every case of ``tests/hostile_cases.py`` (bad paths, bad cache variables, corrupt and
hostile files, bad data, odd options and closed pipes) in its own scratch folder, with
``$HWGEN_CACHE`` a private copy of a warm zoo cache and ``$TMPDIR`` a private folder, and
prints the verdicts per class (ok, traceback, silently wrong, left behind, unclear) as a
Markdown table, the cases that are not ok, and writes ``hostile.json``. The kills and races
are ``tests/test_faults.py`` (slow).

    .venv/bin/python bench/hostile.py [--out bench/results] [--cases PATTERN] [-j N]

About 3 minutes on two loaded cores (each case starts Python, most import torch).
"""

import argparse
import collections
import json
import os
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import hostile_cases as hc  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--cases", default="", help="regex: only the cases whose name matches")
    ap.add_argument("-j", type=int, default=2, help="cases run at once")
    args = ap.parse_args(argv)
    cases = [c for c in hc.CASES if re.search(args.cases, c.name)]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hostile-") as root:
        root = Path(root)
        q, zoo = hc.prepare(root)

        def one(i_case):
            i, case = i_case
            tmp = root / f"case{i:03d}"
            tmp.mkdir()
            ctx = hc.Context(tmp=tmp, q_src=q, zoo_src=zoo,
                             env={"HWGEN_CACHE": str(zoo),
                                  "HWGEN_BUILD_CACHE": str(tmp / "boards")})
            try:
                return hc.run_case(case, ctx, in_process=False)
            finally:
                for ro in ctx.readonly:
                    hc.undo_readonly(ro)
                shutil.rmtree(tmp, ignore_errors=True)

        with ThreadPoolExecutor(args.j) as pool:
            outcomes = list(pool.map(one, enumerate(cases)))
    table = collections.OrderedDict()
    for o in outcomes:
        row = table.setdefault(o.cls, collections.Counter())
        row[o.verdict] += 1
    print(f"| class | cases | {' | '.join(hc.VERDICTS)} |")
    print("|---|---|" + "---|" * len(hc.VERDICTS))
    for cls, row in table.items():
        print(f"| {cls} | {sum(row.values())} | "
              + " | ".join(str(row[v]) for v in hc.VERDICTS) + " |")
    total = collections.Counter(o.verdict for o in outcomes)
    print(f"| all | {len(outcomes)} | " + " | ".join(str(total[v]) for v in hc.VERDICTS) + " |")
    for o in outcomes:
        if o.verdict != "ok":
            print(f"  {o.verdict}: {o.case} (exit {o.code}): {o.detail[:200]}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"wall_seconds": round(time.perf_counter() - t0, 1), "cpu_count": os.cpu_count(),
           "classes": {c: dict(r) for c, r in table.items()}, "totals": dict(total),
           "cases": [o.__dict__ for o in outcomes]}
    (out / "hostile.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(outcomes)} cases in {doc['wall_seconds']} s; {out / 'hostile.json'}")
    return 0 if total["ok"] == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
