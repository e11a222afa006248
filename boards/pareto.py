"""A sweep's results: merged rows, Pareto fronts, plots, the Markdown report and Moons's answer.

Accuracy is the integer reference's top-1 on the test split (``quant_accuracy``); the choice
of a bit width (:func:`min_energy`) is made on the validation split, as every choice in the
flow is, and reported with its test accuracy. Energy per inference is the 45 nm column of
:mod:`boards.energy` (Horowitz's figures on the Program's exact access counts): the one
figure every target has, so boards, arrays and the ASIC compare on one axis. LUTs are the
estimate's (:mod:`boards.estimate`), or a real build's with ``--synth-pareto``.
"""

import csv
import json

__all__ = ["FRONTS", "TOLERANCE", "merge_rows", "pareto", "pareto_digests", "min_energy",
           "write_results", "label"]

#: Front name -> the cost minimised against accuracy (a row key).
FRONTS = {"energy": "energy_45nm_uj", "lut": "lut"}
#: Moons et al.'s "iso-accuracy": within this many points (percent) of float.
TOLERANCE = 0.5

_CSV = ("model", "wbits", "abits", "recipe", "chosen", "target", "array", "multipliers",
        "float_accuracy", "float_val_accuracy", "quant_accuracy", "val_accuracy", "lut", "ff",
        "bram", "spram", "dsp", "fits", "fmax_mhz", "cycles", "latency_us", "latency_fmax_us",
        "energy_45nm_uj", "energy_fpga_uj", "synth_lut", "synth_fmax_mhz", "synth_gates",
        "synth_transistors", "error", "digest")


def merge_rows(plan, store):
    """One dict per stored hardware point: float, quantization, estimate and synthesis
    figures together."""
    rows = []
    for pd, (hs, qd) in plan.points.items():
        hw = store.get("hw", pd)
        if hw is None:
            continue
        qs, fd = plan.quants[qd]
        row = {**(store.get("float", fd) or {}), **(store.get("quant", qd) or {}), **hw,
               **(store.get("synth", pd) or {})}
        row.update({"digest": pd, "model": qs["model"], "target": hs["target"]})
        rows.append(row)
    return rows


def label(row):
    """What changes between points, for a marker: ``W4A4 2x4`` (and the target)."""
    arr = row.get("array") or ["?", "?"]
    return f"W{row['wbits']}A{row['abits']} {arr[0]}x{arr[1]}"


def _usable(rows, cost):
    return [r for r in rows if "error" not in r and r.get("fits") and r.get(cost) is not None
            and r.get("quant_accuracy") is not None]


def pareto(rows, cost):
    """The rows no other row beats: higher or equal accuracy at lower or equal ``cost``, one of
    them strictly. Sorted by cost."""
    pts = sorted(_usable(rows, cost), key=lambda r: (r[cost], -r["quant_accuracy"]))
    front, best = [], -1.0
    for r in pts:
        if r["quant_accuracy"] > best:
            front.append(r)
            best = r["quant_accuracy"]
    return front


def pareto_digests(rows):
    """Digests of the points on any front of any model (``--synth-pareto``'s builds)."""
    out = []
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        for cost in FRONTS.values():
            out += [r["digest"] for r in pareto(mine, cost) if r["digest"] not in out]
    return out


def min_energy(rows, tolerance=TOLERANCE):
    """Moons et al.'s question per model: the least-energy point whose validation accuracy is
    within ``tolerance`` points of the float network's, with the 8-bit point's energy beside
    it. ``{model: {...}}``."""
    out = {}
    for model in sorted({r["model"] for r in rows}):
        mine = _usable([r for r in rows if r["model"] == model], "energy_45nm_uj")
        if not mine:
            continue
        ref = mine[0].get("float_val_accuracy")
        ok = [r for r in mine if ref is not None
              and 100 * r["val_accuracy"] >= 100 * ref - tolerance]
        w8 = [r for r in mine if r["wbits"] == 8 and r["abits"] == 8]
        best = min(ok, key=lambda r: r["energy_45nm_uj"]) if ok else None
        base = min(w8, key=lambda r: r["energy_45nm_uj"]) if w8 else None
        out[model] = {"float_accuracy": mine[0].get("float_accuracy"),
                      "float_val_accuracy": ref, "best": best, "w8a8": base,
                      "saving": base["energy_45nm_uj"] / best["energy_45nm_uj"]
                      if best and base else None}
    return out


def _plot(rows, cost, path, xlabel):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(8 * max(1, len(models)), 5.5),
                             squeeze=False)
    for ax, model in zip(axes[0], models, strict=False):
        mine = [r for r in rows if r["model"] == model]
        targets = sorted({r["target"] for r in mine})
        for i, target in enumerate(targets):
            pts = _usable([r for r in mine if r["target"] == target], cost)
            ax.scatter([r[cost] for r in pts], [100 * r["quant_accuracy"] for r in pts],
                       s=18, alpha=0.5, color=f"C{i}", label=target)
        front = pareto(mine, cost)
        ax.plot([r[cost] for r in front], [100 * r["quant_accuracy"] for r in front], "k-",
                lw=1, label="Pareto front")
        on_front = {r["digest"] for r in front}
        # Every marker says what changes between points (W/A and array, and the target when
        # there are several); the front's in black.
        # Neighbours at one accuracy alternate below and above their marker.
        pts = sorted(_usable(mine, cost), key=lambda r: (r["quant_accuracy"], r[cost]))
        for i, r in enumerate(pts):
            ax.annotate(label(r) + ("" if len(targets) == 1 else f" {r['target']}"),
                        (r[cost], 100 * r["quant_accuracy"]), fontsize=6, rotation=20,
                        color="black" if r["digest"] in on_front else "grey",
                        xytext=(2, -9 if i % 2 else 3), textcoords="offset points")
        fl = mine[0].get("float_accuracy")
        if fl is not None:
            ax.axhline(100 * fl, color="grey", ls=":", lw=1, label="float")
        costs = [r[cost] for r in _usable(mine, cost)]
        if costs and min(costs) > 0 and max(costs) > 3 * min(costs):
            ax.set_xscale("log")  # energy spans decades across widths and arrays
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(model)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f}"


def _uj(row):
    return "-" if row is None or row.get("energy_45nm_uj") is None \
        else f"{row['energy_45nm_uj']:.3f}"


def _report(rows, moons, failures):
    lines = ["# Design-space sweep", "",
             f"{len(rows)} points; accuracy is the integer reference's top-1 on the test split,"
             " energy the 45 nm column of `boards.energy` per inference.", "",
             f"## Minimum-energy bit width within {TOLERANCE} points of float "
             "(chosen on the validation split)", "",
             "| model | float test % | chosen W/A | array | target | test % | val % |"
             " energy (uJ) | W8A8 energy (uJ) | saving |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model, m in moons.items():
        b, base = m["best"], m["w8a8"]
        if b is None:
            lines.append(f"| {model} | {_pct(m['float_accuracy'])} | none within"
                         f" {TOLERANCE} | | | | | | | |")
            continue
        lines.append(
            f"| {model} | {_pct(m['float_accuracy'])} | W{b['wbits']}A{b['abits']} |"
            f" {b['array'][0]}x{b['array'][1]} | {b['target']} | {_pct(b['quant_accuracy'])} |"
            f" {_pct(b['val_accuracy'])} | {_uj(b)} | {_uj(base)} |"
            f" {'-' if m['saving'] is None else format(m['saving'], '.2f') + 'x'} |")
    for name, cost in FRONTS.items():
        lines += ["", f"## Pareto front: accuracy against {name}", "",
                  "| model | point | target | test % | " + cost + " |", "|---|---|---|---|---|"]
        for model in sorted({r["model"] for r in rows}):
            for r in pareto([x for x in rows if x["model"] == model], cost):
                lines.append(f"| {model} | {label(r)} | {r['target']} |"
                             f" {_pct(r['quant_accuracy'])} | {r[cost]:.4g} |")
    lines += ["", "## Every point", "", "| model | point | target | test % | val % | LUT |"
              " fits | cycles | energy (uJ) | note |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["target"], r.get("wbits", 0),
                                         r.get("abits", 0), str(r.get("array")))):
        lines.append(f"| {r['model']} | {label(r) if 'wbits' in r else '-'} | {r['target']} |"
                     f" {_pct(r.get('quant_accuracy'))} | {_pct(r.get('val_accuracy'))} |"
                     f" {r.get('lut', '-')} | {r.get('fits', '-')} | {r.get('cycles', '-')} |"
                     f" {_uj(r)} |"
                     f" {r.get('error', '')} |")
    if failures:
        lines += ["", "## Failed tasks (not stored; a rerun retries them)", ""]
        lines += [f"- {f}" for f in failures]
    return "\n".join(lines) + "\n"


def write_results(rows, out, failures=()):
    """``points.json``, ``points.csv``, ``pareto_energy.png``, ``pareto_lut.png`` and
    ``report.md`` in ``out``; returns :func:`min_energy`'s table."""
    from pathlib import Path

    out = Path(out)
    (out / "points.json").write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    with open(out / "points.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_CSV, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "array": "x".join(map(str, r.get("array") or []))})
    if rows:
        _plot(rows, FRONTS["energy"], out / "pareto_energy.png",
              "energy per inference, 45 nm (uJ)")
        if any(r.get("lut") is not None for r in rows):
            _plot(rows, FRONTS["lut"], out / "pareto_lut.png", "LUTs (estimate)")
    moons = min_energy(rows)
    (out / "report.md").write_text(_report(rows, moons, list(failures)))
    return moons
