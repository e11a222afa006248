"""The build report: what a build folder holds, as ``report.md``, ``report.html`` and a plot.

The report is one list of blocks (a heading, a paragraph, a table, the plot) made from the
stages' files; :func:`markdown` and :func:`hwflow.api.report_html.html_page` render the same
blocks, so the two files cannot say different things. The plot is drawn with matplotlib's
Agg backend (no display) and embedded in the HTML as a PNG data URI.
"""

import io
import json

from . import report_html

__all__ = ["FILES", "write", "blocks", "markdown", "plot"]

#: What the report stage writes into the build folder.
FILES = ("report.md", "report.html", "report-cycles.png")
_PLOT = FILES[2]


def _read(out, name):
    return json.loads((out / name).read_text())


def write(out, dest, settings, stages):
    """Write :data:`FILES` into the folder ``dest`` from the build folder ``out`` whose
    stages ``stages`` (names) ran; ``settings``: the flow file's keys."""
    from quantflow.fsutil import write_bytes
    from quantflow.serialize import load

    doc = {"settings": settings, "model": load(out / "quantized"),
           "manifest": _read(out, "verilog/manifest.json"), "sim": _read(out, "simulate.json"),
           "estimate": _read(out, "estimate.json") if "estimate" in stages else None,
           "synth": _read(out, "synth/report.json") if "synth" in stages else None}
    rows = layer_rows(doc)
    png = plot(rows, doc["model"].name)
    body = blocks(doc, rows)
    write_bytes(dest / FILES[0], markdown(body).encode())
    write_bytes(dest / FILES[1], report_html.html_page(body, png).encode())
    write_bytes(dest / _PLOT, png)


def _range(values, fmt="{:.3g}"):
    import numpy as np

    if values is None:
        return "-"
    v = np.asarray(values, dtype=float).ravel()
    lo, hi = float(v.min()), float(v.max())
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}..{fmt.format(hi)}"


def layer_rows(doc):
    """One dict per model layer: its figures from the QuantizedModel, and the cycles and
    utilisation of its descriptor as simulated (a layer fused into another's descriptor,
    or one that needs none, says so)."""
    model, program = doc["model"], doc["manifest"]["program"]
    sim = {r["descriptor"]: r for r in doc["sim"]["layers"]}
    seen = {}
    rows = []
    for i, layer in enumerate(model.layers):
        d = program["layer_descriptor"][i]
        row = {"index": i, "name": layer.name, "kind": layer.kind.value,
               "bits": f"W{layer.w_fmt.bits}A{layer.out_fmt.bits}" if layer.w_fmt
               else f"A{layer.out_fmt.bits}",
               "shape": "x".join(map(str, layer.out_shape)),
               "w_scale": _range(layer.w_scale), "out_scale": _range(layer.out_scale),
               "out_range": "-", "desc": d, "macs": None, "cycles": None,
               "analytical": None, "util": None, "note": ""}
        if layer.weight is None and layer.mult is None:  # a pool, flatten or concat
            row["out_scale"] = "as its input"
        elif layer.requant:
            row["out_range"] = _range([layer.lo * min(layer.out_scale),
                                       layer.hi * max(layer.out_scale)])
        else:
            row["bits"] += " (accumulator out)"
        if d is None:
            row["note"] = "no descriptor (a view of its input)"
        elif d in seen:
            row["note"] = f"in descriptor {d} with layer {seen[d]}"
        else:
            seen[d] = layer.name
            s = sim.get(d, {})
            row.update(macs=program["macs"][d], cycles=s.get("cycles"),
                       analytical=s.get("analytical_cycles"), util=s.get("mac_utilization"))
        rows.append(row)
    return rows


def plot(rows, title):
    """PNG bytes: simulated cycles (bars, log scale) and MAC utilisation per layer with a
    descriptor, each bar labelled by the layer's name and kind."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # no pyplot: no global state, no display

    shown = [r for r in rows if r["cycles"] is not None]
    labels = [f"{r['name']} ({r['kind']})" for r in shown]
    fig = Figure(figsize=(max(6.0, 0.45 * len(shown) + 2), 6.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    x = range(len(shown))
    top.bar(x, [max(r["cycles"], 1) for r in shown], color="#4c72b0")
    top.set_yscale("log")
    top.set_ylabel("cycles (simulated)")
    top.set_title(f"{title}: cycles and MAC utilisation per layer")
    bottom.bar(x, [100 * (r["util"] or 0) for r in shown], color="#dd8452")
    bottom.set_ylabel("MAC utilisation (%)")
    bottom.set_ylim(0, 100)
    bottom.set_xticks(list(x), labels, rotation=60, ha="right", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f}%"


def _metric(v, metric):
    if v is None:
        return "-"
    return f"{v:.5g} (MSE)" if metric == "mse" else _pct(v)


def _settings_rows(settings):
    rows = []
    for key, value in settings.items():
        if isinstance(value, dict):
            rows += [[f"{key}.{k}", _text(v)] for k, v in value.items() if v is not None]
        elif value is not None:
            rows.append([key, _text(value)])
    return rows


def _text(v):
    if isinstance(v, dict):
        return ", ".join(f"{k}={_text(x)}" for k, x in v.items())
    if isinstance(v, list):
        return "x".join(map(str, v)) if all(isinstance(x, int) for x in v) else str(v)
    return str(v).lower() if isinstance(v, bool) else str(v)


def blocks(doc, rows):
    """The report as ``[("h", text) | ("p", text) | ("table", header, rows) |
    ("img", file, alt)]``."""
    model, sim, est, syn = doc["model"], doc["sim"], doc["estimate"], doc["synth"]
    meta, design = model.meta, doc["manifest"]["design"]
    cfg = doc["manifest"]["config"]
    out = [("h", f"Build report: {model.name}")]
    verdict = (f"**bit-exact**: every layer's output on {sim['images']} images equals the"
               f" integer reference ({sim['simulator']})" if sim["bit_exact"] else
               f"**NOT bit-exact**: {sim['mismatches']} mismatching elements on"
               f" {sim['images']} images ({sim['simulator']})")
    same = (sim.get("design") or {}).get("sha256") == design.get("sha256")
    out.append(("p", verdict + "; the simulated Verilog " + (
        "is the generated one (equal SHA-256s)." if same
        else "differs from verilog/ (SHA-256s differ).")))
    out += [("h2", "Flow settings"), ("table", ["key", "value"], _settings_rows(
        doc["settings"]))]
    metric = meta.get("metric", "accuracy")
    out += [("h2", "Accuracy"), ("table", ["", metric], [
        ["float network (test split)", _metric(meta.get("float_accuracy"), metric)],
        ["quantized, integer reference (test split)",
         _metric(meta.get("quant_accuracy"), metric)],
        [f"hardware ({sim['images']} simulated images)",
         _metric(sim.get("mse" if metric == "mse" else "accuracy"), metric)]])]
    out += _performance(sim, est, syn, cfg)
    if est is not None or syn is not None:
        out += _resources(est, syn)
    out += [("h2", "Layers"), ("table",
             ["#", "layer", "kind", "bits", "output", "MACs", "weight scale", "output scale",
              "output range", "cycles", "analytical", "utilisation", ""],
             [[r["index"], r["name"], r["kind"], r["bits"], r["shape"],
               "-" if r["macs"] is None else f"{r['macs']:,}", r["w_scale"], r["out_scale"],
               r["out_range"], "-" if r["cycles"] is None else f"{r['cycles']:,}",
               "-" if r["analytical"] is None else f"{r['analytical']:,}", _pct(r["util"]),
               r["note"]] for r in rows]),
            ("img", _PLOT, "cycles and MAC utilisation per layer")]
    return out


def _performance(sim, est, syn, cfg):
    cycles = sim["cycles_per_inference"]
    rows = [["array", f"{cfg['rows']}x{cfg['cols']} MACs, W{cfg['weight_bits']}A"
                      f"{cfg['act_bits']} lanes"],
            ["cycles per inference", f"{cycles:,} simulated (analytical"
                                     f" {sim['analytical_cycles_per_inference']:,})"],
            ["MAC utilisation", _pct(sim["mac_utilization"])]]
    clock = (syn or est or {}).get("target_mhz")
    if clock:
        rows.append([f"latency at the {clock:g} MHz board clock", f"{cycles / clock:,.1f} us"])
    for label, d in (("synthesized", syn), ("estimated", est)):
        if d is not None:
            rows += [[f"Fmax ({label})", f"{d['fmax_mhz']:.2f} MHz"],
                     [f"latency at the {label} Fmax", f"{cycles / d['fmax_mhz']:,.1f} us"]]
    if est is not None:
        e = est["energy"]
        rows.append(["energy per inference (45 nm ASIC model)",
                     f"{e['asic_45nm_pj'] / 1e6:.3f} uJ"])
        if e.get("fpga"):
            f = e["fpga"]
            rows.append([f"energy per inference ({est['board']})",
                         f"{f['energy_uj']:.2f} uJ +-{f['uncertainty']:.0%} at"
                         f" {f['power_mw']:.1f} mW"])
    return [("h2", "Performance"), ("table", ["", "value"], rows)]


def _resources(est, syn):
    d = syn or est
    names = ["lut", "ff", "bram", "spram", "dsp"]
    have = (syn or {}).get("available") or {}
    rows = []
    for n in names:
        fit = (est or {}).get("fit", {}).get(n, {})
        cap = have.get(n, fit.get("have"))
        used = None if syn is None else syn[n]
        rows.append([n.upper(), "-" if not fit else fit["need"], "-" if used is None else used,
                     "-" if cap is None else cap,
                     "-" if not cap else _pct((used if used is not None else fit["need"])
                                              / cap)])
    where = f"{d['board']} ({d['device']})"
    fits = ("placed and routed, " + ("meets" if syn["fits"] else "DOES NOT meet")
            + f" the {syn['target_mhz']:g} MHz clock") if syn else (
        "the estimate says it fits" if est["fits"] else "the estimate says it DOES NOT fit")
    return [("h2", "Resources"), ("p", f"{where}, {d['multipliers']} multipliers: {fits}."),
            ("table", ["resource", "estimated", "synthesized", "device", "used"], rows)]


def _cell(v):
    return str(v).replace("|", "\\|")


def markdown(body):
    """The blocks as Markdown."""
    lines = []
    for block in body:
        kind = block[0]
        if kind == "h":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(map(_cell, header)) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(map(_cell, r)) + " |" for r in rows]
            lines.append("")
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1]})", ""]
    return "\n".join(lines)
