"""Gates and transistors of the ASIC overlay against bit width, beside the FPGA LUTs.

Usage::

    .venv/bin/python bench/asic.py [--model digits-cnn] [--bits 2,4,8] [--array 8x8]
        [--board ulx3s-85f] [--out bench/results]

Each point quantizes the model at W=A=bits (MSE ranges: the hardware depends only on the
widths), runs ``hwgen synth --target asic``'s generic synthesis (:func:`boards.asic.asic_report`,
cached by digest) and, for the same configuration (shift-and-add multipliers), the FPGA LUT
estimate of ``--board`` (:func:`boards.estimate.estimate_config`, within 10% of real builds on
the bench grid). Writes ``asic.json`` and ``asic.png`` (gates and transistors per module group
against bit width, LUTs beside them) to ``--out`` and prints a table. About a minute per point.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: Module groups drawn one by one; the rest are summed as "other".
_SHOWN = ("multipliers", "pe", "sequencer", "requantizer", "drain")


def _point(model, bits, array, board, root):
    from boards import board_by_name
    from boards.asic import asic_config, asic_report
    from boards.estimate import estimate_config
    from quantflow import ptq, serialize
    from quantflow.flow import Method, load_data, load_model, quantize_model

    ds = load_data(None, model)
    name, net = load_model(model, ds)
    q = quantize_model(name, net, ds, ptq.PTQConfig(bits, bits), Method.MSE).qmodel
    serialize.save(q, Path(root) / f"q{bits}")
    start = time.monotonic()
    doc = asic_report(q, array)
    target = board_by_name(board).value
    est = estimate_config(target, asic_config(q, array), "lut")
    return {"bits": bits, "array": doc["array"], "groups": doc["groups"],
            "total": doc["total"], "memories": doc["memories"], "cycles": doc["cycles"],
            "energy": doc["energy"], "seconds": round(time.monotonic() - start, 1),
            "cached": doc["cached"], "fpga": {"board": board, "lut": est["lut"],
                                              "ff": est["ff"], "modules": est["modules"]}}


def _plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bits = [r["bits"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, key, label in ((axes[0], "gates", "gates"),
                           (axes[1], "transistors", "transistors (stat -tech cmos)")):
        bottom = [0] * len(rows)
        for g in _SHOWN + ("other",):
            vals = [sum(v[key] for k, v in r["groups"].items() if k not in _SHOWN)
                    if g == "other" else r["groups"].get(g, {}).get(key, 0) for r in rows]
            ax.bar([str(b) for b in bits], vals, bottom=bottom, label=g)
            bottom = [a + b for a, b in zip(bottom, vals, strict=True)]
        ax.set_xlabel("W = A bits")
        ax.set_ylabel(label)
        ax.set_title(f"ASIC {label.split()[0]} per module")
    axes[0].legend(fontsize=7)
    ax = axes[2]
    ax.plot(bits, [r["total"]["gates"] for r in rows], "o-", label="ASIC gates")
    ax.plot(bits, [r["fpga"]["lut"] for r in rows], "s-",
            label=f"FPGA LUTs ({rows[0]['fpga']['board']}, estimate)")
    ax.set_xlabel("W = A bits")
    ax.set_ylabel("count")
    ax.set_title(f"same overlay, array {rows[0]['array'][0]}x{rows[0]['array'][1]}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    from hwflow.commands.generate import array_shape

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="digits-cnn")
    p.add_argument("--bits", default="2,4,8")
    p.add_argument("--array", type=array_shape, default=None)
    p.add_argument("--board", default="ulx3s-85f")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for b in (int(x) for x in args.bits.split(",")):
            r = _point(args.model, b, args.array, args.board, root)
            rows.append(r)
            t = r["total"]
            print(f"W{b}A{b} {r['array'][0]}x{r['array'][1]}: {t['gates']} gates,"
                  f" {t['ffs']} FFs, {t['transistors']} transistors, {t['memory_bits']} SRAM"
                  f" bits; FPGA LUT estimate {r['fpga']['lut']} ({r['seconds']} s)",
                  flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "asic.json").write_text(json.dumps({"model": args.model, "points": rows},
                                              indent=1) + "\n")
    _plot(rows, out / "asic.png")
    print(f"| W=A | gates | FFs | transistors | of which multipliers | PEs | sequencer |"
          f" requantizer | SRAM bits | FPGA LUTs ({args.board}, est.) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        g, t = r["groups"], r["total"]
        print(f"| {r['bits']} | {t['gates']} | {t['ffs']} | {t['transistors']} |"
              f" {g['multipliers']['transistors']} | {g['pe']['transistors']} |"
              f" {g['sequencer']['transistors']} | {g['requantizer']['transistors']} |"
              f" {t['memory_bits']} | {r['fpga']['lut']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
