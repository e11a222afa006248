"""Refit the resource/Fmax estimate (boards/estimate.py) from real builds, and its error table.

Usage::

    .venv/bin/python bench/estimate.py [--boards icebreaker,ulx3s-85f,orangecrab-25f,tangnano9k]
        [--bits 1,2,3,4,5,6,7,8] [--model digits-cnn] [--no-build] [--build-only]
        [--points bench/data/estimate-points] [--cache DIR] [--out bench/results]

The grid is every board x weight = activation bits x three arrays per board (``_ARRAYS``).
Each point quantizes the model (MSE ranges; the folders are kept in the cache) and runs
``hwgen synth``'s path with ``force`` (the estimate must not veto its own calibration data),
recording the report or the does-not-fit error as one JSON file per point in ``--points``
(default ``bench/data/estimate-points``, in the repository: the calibration data are hours of
builds, and a cache folder does not outlive the machine): an interrupted sweep resumes where it
stopped, and builds themselves are cached by digest. Each record keeps the SHA-256 of the
Verilog it was built from; a refit leaves out (and lists) the records whose design the current
generator no longer emits, so a datapath change cannot calibrate the estimate on old builds.
Points run in an order that covers every board and
width early (round robin over boards; widths and arrays interleaved), so a partial sweep is
still a spread. Then the coefficients are refitted by least squares (numpy) over the points
that finished and written to ``boards/estimate.json``; the script prints and writes
(``estimate.json`` in ``--out``) the error table: per point the estimated and real LUT, BRAM,
DSP, Fmax and fit verdict, and the worst errors against the targets (LUT and BRAM within 10%,
DSP exact, Fmax within 15%, the verdict right everywhere). It also times ``hwgen estimate``
(the median of five runs in a fresh process each).

Run time: one to three minutes per point on two cores (five to ten on the Tang Nano 9K); the
full grid is 84 points, several hours: run it in the background at ``nice -n 10``.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from estimate_fit import cfg_of, fit, target_of  # noqa: E402  (bench/, beside this script)

#: Three arrays per board: around the board's default, smaller and larger (columns of at least
#: 4, the digits of an 8-bit input at 2 bits).
_ARRAYS = {"icebreaker": ((2, 4), (4, 4), (2, 8)),
           "ulx3s-85f": ((8, 8), (4, 4), (8, 16)),
           "orangecrab-25f": ((4, 8), (4, 4), (8, 8)),
           "tangnano9k": ((4, 4), (2, 4), (4, 8))}
#: Widths in the order the sweep visits them: the ends and the middle first.
_WIDTH_ORDER = (4, 8, 2, 1, 6, 3, 7, 5)
#: The point records, beside this script (committed with the coefficients they fit).
POINTS = Path(__file__).resolve().parent / "data" / "estimate-points"


def _cache_dir(arg):
    if arg:
        return Path(arg)
    base = os.environ.get("HWGEN_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "hwgen") / "estimate-sweep"


def _qdir(model, bits, cache):
    """The QuantizedModel folder of ``model`` at W=A=``bits`` (quantized once, kept)."""
    from quantflow import ptq, serialize

    path = cache / "models" / f"{model}-w{bits}a{bits}"
    if not (path / "model.json").exists():
        from quantflow.flow import Method, load_data, load_model, quantize_model

        ds = load_data()
        name, net = load_model(model, ds)
        q = quantize_model(name, net, ds, ptq.PTQConfig(bits, bits), Method.MSE).qmodel
        serialize.save(q, path)
    return path


def _arrays_at(name, bits):
    """The board's arrays at ``bits``: at 1 bit an 8-bit input is eight digits across the
    columns, so an array gets at least 8 of them."""
    arrays = _ARRAYS[name]
    if bits == 1:
        arrays = tuple(dict.fromkeys((r, max(c, 8)) for r, c in arrays))
    return arrays


def grid(boards, bits):
    """The sweep's points ``(board name, bits, (rows, cols))`` in visiting order."""
    order = [b for b in _WIDTH_ORDER if b in bits] + sorted(set(bits) - set(_WIDTH_ORDER))
    per_board = {}
    for name in boards:
        arrays = {w: _arrays_at(name, w) for w in order}
        per_board[name] = [(name, w, arrays[w][(i + k) % len(arrays[w])])
                           for k in range(len(_ARRAYS[name])) for i, w in enumerate(order)]
        per_board[name] = list(dict.fromkeys(per_board[name]))
    points = []
    for i in range(max(len(v) for v in per_board.values())):
        points += [v[i] for v in per_board.values() if i < len(v)]
    return points


def _point_file(points, model, board, bits, array):
    return points / f"{model}-{board}-w{bits}-{array[0]}x{array[1]}.json"


def run_point(model, board_name, bits, array, cache, points=POINTS):
    """Build one point (or read its cached record); the record is the synth report plus the
    configuration, or ``fits: false`` with the error."""
    from boards import board_by_name
    from boards.build import board_config
    from hwflow.api import synth
    from hwgen.errors import UserError
    from quantflow.serialize import load

    path = _point_file(points, model, board_name, bits, array)
    if path.exists():
        return json.loads(path.read_text())
    board = board_by_name(board_name)
    qdir = _qdir(model, bits, cache)
    cfg, style = board_config(board.value, load(qdir), array)
    design = design_sha(board_name, cfg)
    start = time.monotonic()
    try:
        rec = synth(qdir, board=board, array=array, force=True).to_dict()
    except UserError as e:
        rec = {"board": board_name, "array": list(array), "fits": False, "error": str(e),
               "multipliers": style}
    rec.update(model=model, bits=bits, qdir=str(qdir), config=cfg.to_json(),
               design_sha256=design,
               sweep_seconds=round(time.monotonic() - start, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    tmp.rename(path)
    return rec


def design_sha(board_name, cfg):
    """``{file name: SHA-256}`` of the Verilog the current generator emits for ``cfg`` on the
    board (what ``hwgen synth`` would build)."""
    import hashlib

    from boards import board_by_name
    from boards.build import design_verilog
    from boards.overlay import board_design

    files = design_verilog(board_design(board_by_name(board_name).value, None, cfg=cfg))
    return {n: hashlib.sha256(t.encode()).hexdigest() for n, t in files.items()}


def current(records):
    """``(current, stale)``: the records whose design the generator still emits, and the
    others (a record without a digest is kept: it predates them)."""
    fresh, stale = [], []
    for rec in records:
        recorded = rec.get("design_sha256") or rec.get("verilog_sha256")
        ok = recorded is None or recorded == design_sha(rec["board"], cfg_of(rec))
        (fresh if ok else stale).append(rec)
    return fresh, stale


def sweep(grid_points, model, cache, points=POINTS):
    records = []
    for board, bits, array in grid_points:
        t = time.monotonic()
        rec = run_point(model, board, bits, array, cache, points)
        records.append(rec)
        a = f"{array[0]}x{array[1]}"
        if "lut" in rec:
            print(f"{board:15s} W{bits} {a:>5s} LUT {rec['lut']:6d} BRAM {rec['bram']:3d}"
                  f" DSP {rec['dsp']:3d} Fmax {rec['fmax_mhz']:6.2f} fits {rec['fits']!s:5s}"
                  f" {time.monotonic() - t:6.1f} s", flush=True)
        else:
            print(f"{board:15s} W{bits} {a:>5s} does not fit: {rec['error']}", flush=True)
    return records


def cached_records(folder, model):
    """The finished points, their figures re-read from their build folders with today's
    :mod:`boards.reports` when the folder is on this machine (a rule changed since the build
    applies to it), else as recorded."""
    from boards.reports import report

    if not folder.exists():
        return []
    records = []
    for p in sorted(folder.glob(f"{model}-*.json")):
        rec = json.loads(p.read_text())
        build = Path(rec.get("build_folder", "")) if "lut" in rec else None
        if build is not None and (build / "top.report.json").exists():
            t = target_of(rec)
            rec.update(report(t.family, build, t.clock_mhz, t.device, routed=True).to_json())
        records.append(rec)
    return records


def error_table(records, coeffs):
    """Per point: estimated vs real LUT, BRAM, DSP, Fmax and fit verdict."""
    from boards.estimate import estimate_config

    rows = []
    for rec in records:
        t, cfg = target_of(rec), cfg_of(rec)
        est = estimate_config(t, cfg, rec["multipliers"], coeffs)
        # A tool crash (not a placement refusal) says nothing about fitting.
        tool = rec.get("lut") is None and "build failed" in rec.get("error", "")
        row = {"board": rec["board"], "bits": rec["bits"], "array": rec["array"],
               "multipliers": rec["multipliers"], "fits": None if tool else rec["fits"],
               "est_fits": est["fits"], "verdict_ok": None if tool else est["fits"] == rec["fits"]}
        for k in ("lut", "ff", "bram", "dsp", "fmax_mhz"):
            row[f"est_{k}"] = est[k]
            row[k] = rec.get(k)
            if rec.get("lut") is not None and rec[k]:
                row[f"{k}_err"] = (est[k] - rec[k]) / rec[k]
            elif rec.get("lut") is not None:
                row[f"{k}_err"] = 0.0 if est[k] == 0 else float("inf")
        if rec.get("lut") is None:
            row["error"] = rec.get("error")
        rows.append(row)
    return rows


def add_loo(rows, records):
    """Leave-one-out errors: each built point estimated by a fit on all the others (an honest
    figure while a family has few points: the in-sample fit can interpolate them)."""
    from boards.estimate import NotCalibratedError, estimate_config

    for row, rec in zip(rows, records, strict=True):
        row["lut_loo_err"] = row["bram_loo_err"] = row["fmax_mhz_loo_err"] = None
        if rec.get("lut") is None:
            continue
        others = fit([r for r in records if r is not rec])
        try:
            est = estimate_config(target_of(rec), cfg_of(rec), rec["multipliers"], others)
        except NotCalibratedError:
            continue
        for k in ("lut", "bram", "fmax_mhz"):
            row[f"{k}_loo_err"] = (est[k] - rec[k]) / rec[k] if rec[k] else None


def _worst(rows):
    built = [r for r in rows if r.get("lut") is not None]
    out = {f"{k}_max_abs_err": max((abs(r[f"{k}_err"]) for r in built), default=None)
           for k in ("lut", "ff", "bram", "fmax_mhz")}
    for k in ("lut", "bram", "fmax_mhz"):
        loo = [abs(r[f"{k}_loo_err"]) for r in built if r.get(f"{k}_loo_err") is not None]
        out[f"{k}_loo_max_abs_err"] = max(loo, default=None)
        out[f"{k}_loo_points"] = len(loo)
    out["dsp_exact"] = all(r["est_dsp"] == r["dsp"] for r in built)
    decided = [r for r in rows if r["verdict_ok"] is not None]
    out["verdict_right"] = f"{sum(r['verdict_ok'] for r in decided)}/{len(decided)}"
    out["tool_failures"] = len(rows) - len(decided)
    return out


def _time_cli(records):
    """``hwgen estimate`` in a fresh process, five runs: the median wall seconds and the median
    CPU seconds (user + system, which another engineer's load on a shared machine does not
    inflate), and the load average the wall time was measured under."""
    import resource
    import statistics

    rec = next((r for r in records if "qdir" in r), None)
    if rec is None:
        return None
    hwgen = Path(sys.executable).with_name("hwgen")
    wall, cpu = [], []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.monotonic()
        subprocess.run([str(hwgen), "estimate", rec["qdir"], "--board", rec["board"],
                        "--json"], check=True, stdout=subprocess.DEVNULL)
        wall.append(time.monotonic() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {"wall_s": round(statistics.median(wall), 3), "cpu_s": round(statistics.median(cpu), 3),
            "load_average": round(os.getloadavg()[0], 2)}


def markdown(rows, worst, seconds):
    """The error table as Markdown (the README's)."""
    lines = ["| board | W=A | array | mult | LUT est / real | BRAM est / real | DSP est / real"
             " | Fmax est / real (MHz) | fits est / real | LOO LUT | LOO Fmax |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a = f"{r['array'][0]}x{r['array'][1]}"
        if r.get("lut") is None:
            real = "tool failure" if r["fits"] is None else "no"
            lines.append(f"| {r['board']} | {r['bits']} | {a} | {r['multipliers']} | - | - | -"
                         f" | - | {'yes' if r['est_fits'] else 'no'} / {real} | - | - |")
            continue
        lines.append(
            f"| {r['board']} | {r['bits']} | {a} | {r['multipliers']}"
            f" | {r['est_lut']} / {r['lut']} ({r['lut_err']:+.1%})"
            f" | {r['est_bram']} / {r['bram']} | {r['est_dsp']} / {r['dsp']}"
            f" | {r['est_fmax_mhz']:.1f} / {r['fmax_mhz']:.1f} ({r['fmax_mhz_err']:+.1%})"
            f" | {'yes' if r['est_fits'] else 'no'} / {'yes' if r['fits'] else 'no'}"
            f" | {_pct(r['lut_loo_err']).strip()} | {_pct(r['fmax_mhz_loo_err']).strip()} |")
    return "\n".join(lines) + "\n"


def _pct(v):
    return "   -  " if v is None else f"{v:+6.1%}"


def fit_and_report(records, out, cache, model, grid_size=None):
    from boards.estimate import COEFFS_PATH

    if not records:
        print("no finished points to fit")
        return 1
    coeffs = fit(records)
    rows = error_table(records, coeffs)
    add_loo(rows, records)
    coeffs["worst"] = _worst(rows)
    coeffs["worst"].update(grid_points=grid_size, finished_points=len(records))
    COEFFS_PATH.write_text(json.dumps(coeffs, indent=1, sort_keys=True) + "\n")
    print(f"{'board':15s} {'W':>2s} {'array':>5s} {'mul':>3s} {'LUT est/real':>14s} {'err':>6s}"
          f" {'BRAM':>7s} {'DSP':>7s} {'Fmax est/real':>14s} {'err':>6s} fits est/real")
    for r in rows:
        a = f"{r['array'][0]}x{r['array'][1]}"
        if r.get("lut") is None:
            print(f"{r['board']:15s} {r['bits']:2d} {a:>5s} {r['multipliers']:>3s}"
                  f" {'-':>14s} {'':6s} {'':7s} {'':7s} {'':14s} {'':6s}"
                  f" {r['est_fits']!s:5s}/{r['fits']!s}  (not built: {r['error'][:70]})")
            continue
        print(f"{r['board']:15s} {r['bits']:2d} {a:>5s} {r['multipliers']:>3s}"
              f" {r['est_lut']:6d}/{r['lut']:<7d} {r['lut_err']:+6.1%}"
              f" {r['est_bram']:3d}/{r['bram']:<3d} {r['est_dsp']:3d}/{r['dsp']:<3d}"
              f" {r['est_fmax_mhz']:6.1f}/{r['fmax_mhz']:<7.1f} {r['fmax_mhz_err']:+6.1%}"
              f" {r['est_fits']!s:5s}/{r['fits']!s}  LOO LUT {_pct(r['lut_loo_err'])}"
              f" Fmax {_pct(r['fmax_mhz_loo_err'])}")
    worst = coeffs["worst"]
    of = f" of the grid's {grid_size}" if grid_size else ""
    print(f"{len(records)} points{of} ({sum(r.get('lut') is not None for r in rows)} built):"
          f" worst LUT {worst['lut_max_abs_err']:.1%}, BRAM {worst['bram_max_abs_err']:.1%},"
          f" Fmax {worst['fmax_mhz_max_abs_err']:.1%}, DSP exact {worst['dsp_exact']},"
          f" verdict right {worst['verdict_right']} ({worst['tool_failures']} tool failures)")
    def opt(v):
        return "-" if v is None else f"{v:.1%}"
    print(f"leave-one-out: worst LUT {opt(worst['lut_loo_max_abs_err'])}"
          f" ({worst['lut_loo_points']} points), BRAM {opt(worst['bram_loo_max_abs_err'])},"
          f" Fmax {opt(worst['fmax_mhz_loo_max_abs_err'])}")
    seconds = _time_cli(records)
    if seconds:
        print(f"hwgen estimate: {seconds['wall_s']} s wall, {seconds['cpu_s']} s CPU (medians of"
              f" 5 fresh processes; load average {seconds['load_average']} on this machine)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "estimate.json").write_text(json.dumps(
        {"model": model, "points": rows, "worst": worst, "estimate_seconds": seconds},
        indent=1) + "\n")
    (out / "estimate.md").write_text(markdown(rows, worst, seconds))
    print(f"wrote {COEFFS_PATH}, {out / 'estimate.json'} and {out / 'estimate.md'}")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--boards", default=",".join(_ARRAYS))
    p.add_argument("--bits", default="1,2,3,4,5,6,7,8")
    p.add_argument("--model", default="digits-cnn")
    p.add_argument("--points", default=str(POINTS), help="the point records (one JSON each)")
    p.add_argument("--cache", default=None, help="the quantized models")
    p.add_argument("--no-build", action="store_true", help="fit on the cached points only")
    p.add_argument("--build-only", action="store_true", help="sweep, do not refit")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    cache = _cache_dir(args.cache)
    points = grid(args.boards.split(","), [int(b) for b in args.bits.split(",")])
    if not args.no_build:
        print(f"{len(points)} points; records in {args.points}", flush=True)
        sweep(points, args.model, cache, Path(args.points))
    if args.build_only:
        return 0
    records = [r for r in cached_records(Path(args.points), args.model)
               if (r["board"], r["bits"], tuple(r["array"])) in set(points)]
    print(f"checking {len(records)} records against the generator's current Verilog",
          flush=True)
    records, stale = current(records)
    for r in stale:
        print(f"left out (its design changed since the build): {r['board']} W{r['bits']}"
              f" {r['array'][0]}x{r['array'][1]}")
    return fit_and_report(records, Path(args.out), cache, args.model, len(points))


if __name__ == "__main__":
    sys.exit(main())
