#!/usr/bin/env python3
"""Cycles per inference and MAC-array utilisation across models, bit widths and array shapes,
plus simulator speed (simulated cycles per wall second) on Verilator and Icarus.

The sweep uses the Program compiler's analytical cycle model; ``--measure`` also runs one
image per (model, bit width, shape) on Verilator and reports the measured cycles beside it.
Simulator speed is measured on digits-cnn at 4 bits, 8x8 array.

    .venv/bin/python bench/cycles.py [--out bench/results] [--measure] [--images 0]
"""

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hwgen.config import AccelConfig  # noqa: E402
from quantflow import ptq, serialize  # noqa: E402
from quantflow.flow import Method, load_data, load_model, quantize_model  # noqa: E402
from quantflow.program import compile_program  # noqa: E402
from quantflow.qmodel import LayerKind  # noqa: E402

MODELS = ["digits-cnn", "digits-mlp"]
BITS = [2, 3, 4, 6, 8]
ARRAYS = [(4, 4), (8, 8), (16, 8), (8, 16)]


def _conv_util(model, program, cfg):
    """Utilisation over the conv descriptors only (the issue's >= 80% criterion)."""
    conv = [i for i, layer in enumerate(model.layers) if layer.kind is LayerKind.CONV2D]
    descs = [program.layer_desc[i] for i in conv if program.layer_desc[i] is not None]
    macs = sum(program.macs[d] for d in descs)
    cycles = sum(program.cycles[d] for d in descs)
    return macs / (cycles * cfg.array_macs) if cycles else None


def sweep(folders, measure, progress):
    from rtl_tests.simulate import simulate
    from rtl_tests.runner import Sim

    rows = []
    for (model_name, bits), folder in folders.items():
        model = serialize.load(folder)
        for shape in ARRAYS:
            cfg = AccelConfig.for_model(model, array=shape)
            prog = compile_program(model, cfg)
            total = sum(prog.cycles)
            row = {"model": model_name, "bits": bits, "array": f"{shape[0]}x{shape[1]}",
                   "cycles_per_inference": total,
                   "mac_utilization": sum(prog.macs) / (total * cfg.array_macs),
                   "conv_mac_utilization": _conv_util(model, prog, cfg),
                   "layers": prog.cycle_report(cfg.array_macs)}
            if measure:
                s = simulate(folder, Sim.VERILATOR, images=1, array=shape).summary()
                row["measured_cycles_per_inference"] = s["cycles_per_inference"]
                row["bit_exact"] = s["bit_exact"]
            rows.append(row)
            progress()
    return rows


def sim_speed(folder, images):
    """Simulated cycles per wall second, as ``hwgen simulate`` runs: Verilator over the
    whole test set with its default processes (one per core) and with one, Icarus on a
    twentieth of ``images`` (0: the test set). The figure is ``sim_cycles`` (every cycle,
    host traffic included) over ``sim_seconds`` (the simulator processes' wall time, build
    excluded); each run still compares every layer of every image."""
    from hwflow import api

    out = []
    for sim, n, jobs in (("verilator", images, None), ("verilator", images, 1),
                         ("icarus", max(1, (images or 450) // 20), 1)):
        s = api.simulate(folder, sim=sim, images=n, jobs=jobs)
        out.append({"simulator": sim, "images": s.images, "jobs": jobs or "default",
                    "sim_cycles": s.sim_cycles, "sim_seconds": s.sim_seconds,
                    "play_seconds": s.play_seconds,
                    "cycles_per_second": s.sim_cycles / s.sim_seconds,
                    "bit_exact": s.bit_exact})
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results")
    p.add_argument("--measure", action="store_true", help="also measure on Verilator")
    p.add_argument("--images", type=int, default=0,
                   help="images for the speed measurement (0: the test set)")
    p.add_argument("--no-speed", action="store_true", help="skip the simulator speed runs")
    args = p.parse_args(argv)

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    ds = load_data()
    with tempfile.TemporaryDirectory() as tmp, Progress(transient=True) as prog:
        task = prog.add_task("quantizing", total=len(MODELS) * len(BITS))
        folders = {}
        for spec in MODELS:
            name, net = load_model(spec, ds)
            for b in BITS:
                r = quantize_model(name, net, ds, ptq.PTQConfig(b, b), Method.MSE)
                folders[(name, b)] = serialize.save(r.qmodel, Path(tmp) / f"{name}-{b}")
                prog.advance(task)
        prog.update(task, description="cycle model", completed=0,
                    total=len(folders) * len(ARRAYS))
        rows = sweep(folders, args.measure, lambda: prog.advance(task))
        speed = [] if args.no_speed else sim_speed(folders[("digits-cnn", 4)], args.images)

    table = Table(title="cycles per inference and MAC-array utilisation (analytical model)")
    for col in ("model", "W=A", "array", "cycles", "util", "conv util", "measured"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["model"], str(r["bits"]), r["array"], str(r["cycles_per_inference"]),
                      f"{r['mac_utilization']:.1%}",
                      f"{r['conv_mac_utilization']:.1%}" if r["conv_mac_utilization"] else "-",
                      str(r.get("measured_cycles_per_inference", "-")))
    console = Console(width=140)
    console.print(table)
    if speed:
        st = Table(title="simulator speed (digits-cnn W4A4, 8x8, host I/O included, every"
                         " layer compared)")
        for col in ("simulator", "images", "processes", "simulated cycles", "seconds",
                    "cycles/s", "bit-exact"):
            st.add_column(col, justify="right")
        for s in speed:
            st.add_row(s["simulator"], str(s["images"]), str(s["jobs"]), str(s["sim_cycles"]),
                       f"{s['sim_seconds']:.1f}", f"{s['cycles_per_second']:.0f}",
                       "yes" if s["bit_exact"] else "NO")
        console.print(st)
        ratio = speed[1]["cycles_per_second"] / speed[2]["cycles_per_second"]
        console.print(f"Verilator / Icarus speed ratio (one process each): {ratio:.1f}x")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "cycles", "machine": platform.machine(), "rows": rows,
           "simulator_speed": speed}
    (out / "cycles.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out / 'cycles.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
