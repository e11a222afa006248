#!/usr/bin/env python3
"""What the drain's extra requantizers cost and buy (``AccelConfig.drain_lanes``), on real builds.

For each board, the board's own overlay for a zoo network (``board_config``'s array, lanes and
multipliers) is built with 1, 2, 4 ... drain lanes (up to the array's rows) through Yosys and
nextpnr (``boards.build.build``, cached by digest), and the table gives LUT, FF, DSP, BRAM,
Fmax, the drain's and requantizers' own cells (the per-module breakdown), the compiler's exact
cycles per inference and MAC/cycle per 1,000 LUT. The network's weights are seeded (cycles
and resources depend only on shapes and widths).

    .venv/bin/python bench/drain.py [--boards icebreaker,ulx3s-85f] [--model digits-dsconv]
        [--bits 4] [--out bench/results]

One to three minutes per build on two cores.
"""

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def point(target, model, cfg):
    """One build's row: resources, the drain's cells, cycles and density."""
    from boards.build import build
    from boards.overlay import board_design
    from quantflow.program import compile_program

    t = time.monotonic()
    prog = compile_program(model, cfg)
    cycles, macs = sum(prog.cycles), sum(prog.macs)
    row = {"board": target.name, "array": [cfg.rows, cfg.cols], "drain_lanes": cfg.drain_lanes,
           "lanes": f"W{cfg.weight_bits}A{cfg.act_bits}", "cycles": cycles, "macs": macs}
    try:
        rep = build(target, board_design(target, model, cfg=cfg)).report
    except Exception as e:  # a build that does not fit is a row, not the end of the sweep
        return row | {"error": str(e).splitlines()[0], "seconds": round(time.monotonic() - t)}
    drain = {k: sum(m.get(k, 0) for name, m in rep.modules.items()
                    if name in ("drain", "requantizer") or name.startswith("requant"))
             for k in ("lut", "ff", "dsp")}
    return row | {"lut": rep.lut, "ff": rep.ff, "dsp": rep.dsp, "bram": rep.bram,
                  "fmax_mhz": rep.fmax_mhz, "target_mhz": rep.target_mhz, "fits": rep.fits,
                  "drain_cells": drain,
                  "mac_per_cycle_per_klut": round(macs / cycles / (rep.lut / 1000), 2),
                  "us_at_fmax": round(cycles / rep.fmax_mhz, 1),
                  "seconds": round(time.monotonic() - t)}


def main(argv=None):
    from boards import board_by_name
    from boards.overlay import board_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--boards", default="icebreaker,ulx3s-85f")
    p.add_argument("--model", default="digits-dsconv")
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    from networks import _quantized  # the same seeded zoo network, quantized

    model = _quantized(args.model, args.bits, None)
    rows = []
    print(f"{'board':12s} {'array':>5s} {'D':>2s} {'LUT':>6s} {'FF':>6s} {'DSP':>3s} {'BRAM':>4s}"
          f" {'Fmax':>6s} {'drain LUT/FF/DSP':>17s} {'cycles':>8s} {'MAC/c/kLUT':>10s}"
          f" {'us@Fmax':>8s}", flush=True)
    for name in args.boards.split(","):
        target = board_by_name(name).value
        base, _ = board_config(target, model)
        lanes = 1
        while lanes <= base.rows:
            cfg = dataclasses.replace(base, drain_lanes=lanes,
                                      param_depth=max(base.param_depth, lanes))
            print(f"{name:12s} {cfg.rows}x{cfg.cols} {lanes:2d} building (Yosys and nextpnr, cached"
                  " by digest; one to three minutes)...", flush=True)
            r = point(target, model, cfg) | {"model": args.model, "bits": args.bits}
            rows.append(r)
            a = f"{cfg.rows}x{cfg.cols}"
            if "lut" in r:
                d = r["drain_cells"]
                print(f"{name:12s} {a:>5s} {lanes:2d} {r['lut']:6d} {r['ff']:6d} {r['dsp']:3d}"
                      f" {r['bram']:4d} {r['fmax_mhz']:6.1f} {d['lut']:7d}/{d['ff']}/{d['dsp']:<4d}"
                      f" {r['cycles']:8,d} {r['mac_per_cycle_per_klut']:10.2f}"
                      f" {r['us_at_fmax']:8.1f}", flush=True)
            else:
                print(f"{name:12s} {a:>5s} {lanes:2d} not built: {r['error']}", flush=True)
            lanes *= 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "drain", "machine": platform.machine(), "rows": rows}
    (out / "drain.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out / 'drain.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
