"""Resources and Fmax of the board design per board x bit width x array shape (a benchmark).

Usage::

    .venv/bin/python bench/synth.py [--boards icebreaker,ulx3s-85f,orangecrab-25f,tangnano9k]
        [--bits 2,3,4,6,8] [--arrays board|2x2,2x4,4x4,8x8] [--model digits-cnn]
        [--out bench/results]

Each point quantizes the model at W=A=bits (MSE ranges, cached per run), builds the overlay with
its UART bridge for the board (``hwgen synth``'s path; builds are cached by digest) and records
LUT/FF/BRAM/SPRAM/DSP/Fmax and the throughput figures (:func:`throughput`: MAC/cycle, array
utilisation, MAC/cycle per 1,000 LUT, GMAC/s and microseconds per inference at the routed
Fmax); a design that does not fit is a row with ``fits: false`` and the reason. Writes
``synth.json`` and ``synth.png`` (resources against bit width, each point labelled with its
array) to ``--out`` and prints a table. Run time: one to three minutes per point on two
cores (first builds; five to seven on the Tang Nano 9K); the full default grid is 80 points,
so run it overnight or narrow it.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _quantize(model, bits, root, cache):
    from quantflow import ptq, serialize
    from quantflow.flow import Method, load_data, load_model, quantize_model

    key = (model, bits)
    if key not in cache:
        ds = cache.setdefault("data", load_data())
        name, net = load_model(model, ds)
        q = quantize_model(name, net, ds, ptq.PTQConfig(bits, bits), Method.MSE).qmodel
        cache[key] = serialize.save(q, Path(root) / f"{model}-w{bits}a{bits}")
    return cache[key]


def _point(qdir, board, array):
    from hwflow.api import synth
    from hwgen.errors import UserError
    try:
        return synth(qdir, board=board, array=array).to_dict()
    except UserError as e:
        return {"board": board.value.name, "array": list(array) if array else None,
                "fits": False,
                "error": str(e)}


def throughput(r):
    """The throughput issue's figures for a built point ``r`` (``synth().to_dict()``): the
    compiler's exact cycles and MACs per inference (from its estimate entry) against the
    array, the LUTs and the routed Fmax."""
    est = r.get("estimate") or {}
    if "lut" not in r or not est.get("cycles"):
        return {}
    cycles, macs = est["cycles"], est["macs"]
    rows, cols = r["array"]
    per_cycle = macs / cycles
    return {"cycles_per_inference": cycles, "macs_per_inference": macs,
            "mac_per_cycle": round(per_cycle, 2),
            "utilization": round(per_cycle / (rows * cols), 4),
            "mac_per_cycle_per_klut": round(per_cycle / (r["lut"] / 1000), 2),
            "gmacs_at_fmax": round(per_cycle * r["fmax_mhz"] / 1000, 4),
            "us_per_inference_at_fmax": round(cycles / r["fmax_mhz"], 1),
            "us_per_inference_at_clock": round(cycles / r["target_mhz"], 1)}


def _plot(rows, path, by_board=False):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    series = {}
    for r in rows:
        if "lut" in r:
            key = (r["board"] if by_board
                   else f"{r['board']} {r['array'][0]}x{r['array'][1]}")
            series.setdefault(key, []).append(r)
    for key, rs in sorted(series.items()):
        rs.sort(key=lambda r: r["bits"])
        bits = [r["bits"] for r in rs]
        ys = ([r["lut"] / r["available"].get("lut", 1) * 100 for r in rs],
              [r["ff"] for r in rs], [r["fmax_mhz"] for r in rs])
        for ax, y in zip(axes, ys, strict=True):
            ax.plot(bits, y, "o-", label=key)
            # the array can change between points (a board's default widens at 2-3 bits)
            for b, v, r in zip(bits, y, rs, strict=True):
                ax.annotate(f"{r['array'][0]}x{r['array'][1]}", (b, v), fontsize=6,
                            textcoords="offset points", xytext=(3, 3))
    for ax, title in zip(axes, ("LUT (% of device)", "flip-flops", "Fmax (MHz)"), strict=True):
        ax.set_xlabel("weight = activation bits")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    from boards import board_by_name
    from hwflow.commands.generate import array_shape

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--boards", default="icebreaker,ulx3s-85f,orangecrab-25f,tangnano9k")
    p.add_argument("--bits", default="2,3,4,6,8")
    p.add_argument("--arrays", default="board",
                   help="'board' (each board's default array) or shapes, e.g. 2x2,2x4,8x8")
    p.add_argument("--model", default="digits-cnn")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    boards = [board_by_name(b) for b in args.boards.split(",")]
    bits = [int(b) for b in args.bits.split(",")]
    arrays = ([None] if args.arrays == "board"
              else [array_shape(a) for a in args.arrays.split(",")])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, cache = [], {}
    print(f"{'board':15s} {'bits':>4s} {'array':>5s} {'LUT':>6s} {'FF':>6s} {'BRAM':>4s}"
          f" {'SPRAM':>5s} {'DSP':>3s} {'Fmax':>7s} {'clk':>5s} fits  {'MAC/cyc':>7s}"
          f" {'util':>5s} {'/kLUT':>6s} {'GMAC/s':>6s} {'us@Fmax':>8s}  seconds")
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        for board in boards:
            for b in bits:
                qdir = _quantize(args.model, b, tmp, cache)
                for array in arrays:
                    t = time.monotonic()
                    r = _point(qdir, board, array) | {"bits": b, "model": args.model}
                    r |= throughput(r)
                    r.setdefault("wall_seconds", round(time.monotonic() - t, 1))
                    rows.append(r)
                    shape = r.get("array") or array or ("?", "?")
                    a = f"{shape[0]}x{shape[1]}"
                    if "lut" in r:
                        print(f"{r['board']:15s} {b:4d} {a:>5s} {r['lut']:6d} {r['ff']:6d}"
                              f" {r['bram']:4d} {r['spram']:5d} {r['dsp']:3d}"
                              f" {r['fmax_mhz']:7.2f} {r['target_mhz']:5g} {r['fits']!s:5s}"
                              f" {r.get('mac_per_cycle', 0):7.2f} {r.get('utilization', 0):5.1%}"
                              f" {r.get('mac_per_cycle_per_klut', 0):6.2f}"
                              f" {r.get('gmacs_at_fmax', 0):6.3f}"
                              f" {r.get('us_per_inference_at_fmax', 0):8.1f}"
                              f"  {r['wall_seconds']}", flush=True)
                    else:
                        print(f"{r['board']:15s} {b:4d} {a:>5s} not built: {r['error']}",
                              flush=True)
                    (out / "synth.json").write_text(json.dumps(rows, indent=1) + "\n")
    _plot(rows, out / "synth.png", by_board=args.arrays == "board")
    print(f"wrote {out / 'synth.json'} and {out / 'synth.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
