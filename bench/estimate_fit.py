"""The least-squares refit of boards/estimate.json from finished sweep points (bench/estimate.py).

Per family: the logic-memory threshold that counts each buffer's block RAMs best, the DSPs
outside the PEs, each component's LUTs and flip-flops on its own Yosys cells (pooled over all
families when a family has few builds), nextpnr's LUT figure and the flip-flops from the summed
cells, and the clock period with a constant per board. Least squares on relative error, with
negative terms dropped one at a time (a cost never goes down with size).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["fit", "cfg_of", "target_of", "components_of"]


def cfg_of(rec):
    from hwgen.config import AccelConfig
    return AccelConfig(**rec["config"])


def target_of(rec):
    from boards import board_by_name
    return board_by_name(rec["board"]).value


def components_of(modules):
    """A build's breakdown summed into the estimate's components."""
    from boards.estimate import component_of

    out = {}
    for name, m in modules.items():
        acc = out.setdefault(component_of(name), {"lut": 0, "ff": 0})
        acc["lut"] += m["lut"]
        acc["ff"] += m["ff"]
    return out


def _lstsq(rows, ys, names, keep=("const",), floor=False):
    """Least squares on relative error (weights 1/y; ``floor``: at least 1, for counts that
    may be 0), dropping negative terms one at a time (a cost never goes down with size) until
    every coefficient but ``keep`` is >= 0."""
    import numpy as np

    active = list(names)
    if not active:
        return {}
    while True:
        a = np.array([[r[n] for n in active] for r in rows], dtype=float)
        y = np.array(ys, dtype=float)
        w = 1.0 / np.maximum(np.abs(y), 1.0 if floor else 1e-9)
        coef = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)[0]
        neg = [(c, n) for c, n in zip(coef, active, strict=True) if c < 0 and n not in keep]
        if not neg:
            return {n: float(c) for n, c in zip(active, coef, strict=True)}
        active.remove(min(neg)[1])
        if not active:
            return {}


def _varying(rows, names):
    """The terms that vary over the fitted points (a constant term is fitted once)."""
    return [n for n in names if n == "const" or len({r[n] for r in rows}) > 1]


def fit(records):
    """The coefficient document from the built points, per family."""
    from collections import Counter

    from boards.estimate import (component_estimate, dsp_blocks, features, mapped_style,
                                 memory_blocks, period_features)

    fams = {}
    for rec in records:
        if "lut" in rec:
            fams.setdefault(target_of(rec).family, []).append(rec)
    doc = {"version": 1, "points": len(records), "families": {}}
    built = [r for recs in fams.values() for r in recs]
    pooled = _component_fit([features(cfg_of(r), mapped_style(target_of(r), cfg_of(r),
                                                            r["multipliers"])) for r in built],
                            [components_of(r["modules"]) for r in built])
    for fam, recs in sorted(fams.items()):
        cfgs = [(cfg_of(r), r["multipliers"], target_of(r)) for r in recs]
        # DSPs outside the PEs (the requantizer's acc x M, an ECP5 sequencer product).
        fixed = Counter(r["dsp"] - dsp_blocks(t, c, st, 0)
                        for (c, st, t), r in zip(cfgs, recs, strict=True))
        # The logic-memory threshold that counts each buffer's block RAMs best (the per-module
        # breakdown says what each buffer took).
        sizes = sorted({0} | {w * d for c, _, _ in cfgs for w, d in _mem_sizes(c)})
        err = {s: sum(abs(v.get("bram", 0) - r["modules"].get(name, {}).get("bram", 0))
                      for (c, _, t), r in zip(cfgs, recs, strict=True)
                      for name, v in memory_blocks(t, c, s)[2].items()) for s in sizes}
        logic_bits = min(sizes, key=lambda s: (err[s], s))
        feats = [features(c, mapped_style(t, c, st)) for c, st, t in cfgs]
        mods = [components_of(r["modules"]) for r in recs]
        # Few builds of a family: its components take the fit over every family's builds (all
        # three map to LUT4s and carries); nextpnr's figure below stays the family's own.
        components = (_component_fit(feats, mods) if len(recs) >= _MIN_FAMILY_POINTS
                      else pooled)
        # nextpnr's LUT figure (and the flip-flops) from the components' estimated cells, so a
        # pooled component fit's bias for this family is absorbed here.
        fam_doc = {"components": components}
        cells = [{k: sum(m[k] for m in component_estimate(
            fam_doc, c, mapped_style(t, c, st)).values()) for k in ("lut", "ff")}
            for c, st, t in cfgs]
        pf = [period_features(c, st, t.name) for c, st, t in cfgs]
        timed = [(p, r) for p, r in zip(pf, recs, strict=True) if r["fmax_mhz"] > 0]
        doc["families"][fam] = {
            "points": len(recs), "logic_bits": logic_bits,
            "fixed_dsp": fixed.most_common(1)[0][0], "components": components,
            "lut_from_cells": _lstsq(cells, [r["lut"] for r in recs], ["lut", "ff"], keep=()),
            "ff_from_cells": _lstsq(cells, [r["ff"] for r in recs], ["ff"], keep=()),
            "period_ns": _period_fit(timed),
        }
    return doc


#: A family with fewer builds than this takes the component fit over all families.
_MIN_FAMILY_POINTS = 3


def _component_fit(feats, mods):
    from boards.estimate import COMPONENT_TERMS

    out = {}
    for comp, terms in COMPONENT_TERMS.items():
        names = _varying(feats, list(terms)) if "const" in terms else [
            t for t in terms if any(f[t] for f in feats)]
        out[comp] = {k: _lstsq(feats, [m.get(comp, {}).get(k, 0) for m in mods], names,
                               floor=True) for k in ("lut", "ff")}
    return out


def _period_fit(timed):
    """The clock period (ns) by least squares: one constant per board, shared slopes."""
    rows = [p for p, _ in timed]
    names = sorted({k for p in rows for k in p})
    full = [{n: p.get(n, 0.0) for n in names} for p in rows]
    consts = tuple(n for n in names if n.startswith("const@"))
    slopes = [n for n in names if n not in consts and len({r[n] for r in full}) > 1]
    return _lstsq(full, [1e3 / r["fmax_mhz"] for _, r in timed], [*consts, *slopes],
                  keep=consts)


def _mem_sizes(cfg):
    from boards.estimate import _mems
    return [(w, d) for w, d in _mems(cfg).values()]
