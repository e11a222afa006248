"""Resource and timing figures from the tools' own JSON, per build and per module.

Three files of an amaranth platform build (:mod:`boards.build` asks for the first two):

- ``top.report.json``, nextpnr's ``--report``: ``utilization`` (``{bel type: {used,
  available}}``), ``fmax`` (``{clock: {achieved, constraint}}``, the routed figure) and
  ``critical_paths`` (per clock pair, each hop with its delay in ns). nextpnr writes it only
  when it finishes, so a design it refused has none.
- ``top.stat.json``, Yosys's ``stat -json`` of the synthesized (flat) netlist, tee'd after
  ``synth_<family>``: cells by type. It gives the flip-flops where nextpnr's bel count is not
  the design's (below) and the fit check of a design nextpnr refused.
- the synthesized netlist itself (``top.json``; ``top.syn.json`` on Gowin), for the
  per-module breakdown: :func:`module_breakdown`.

Per-family rules (the units of the device's figures):

- iCE40: a logic cell pairs a LUT4 with a flip-flop and a carry, so nextpnr counts cells
  (``ICESTORM_LC``) only: the LUT figure is logic cells, the flip-flops come from Yosys
  (``SB_DFF*`` cells).
- ECP5: ``TRELLIS_COMB`` (LUT4 positions, two per ``CCU2C`` carry cell) and ``TRELLIS_FF``.
- Gowin (nextpnr-himbaechel): ``LUT4`` and ``ALU`` (a carry-chain bit) each take one of the
  device's LUT positions, and a shadow SRAM (``RAM16SDP4``) takes the six LUT positions of the
  three slices it is built from (``_GOWIN_SSRAM_LUTS``), so the LUT figure is their sum. The
  report counts the placed netlist's cells (the LUT4 figure equals the LUT cells on LUT bels of
  ``top.pnr.json``), where the log's pre-placement block counted more: on the Tang Nano 9K 4x4
  W4 build 5059 LUT4 against 4552 placed, and 2639 DFF against the design's 2423, six per
  shadow SRAM (36 of them), which is where the six positions come from. The flip-flops are
  Yosys's (``DFF*`` cells, equal to the report's DFF). The DSP figure is in 18x18 multiplier
  units, the unit of the device's DSP count: a ``MULT9X9`` is half of one.
"""

import json
import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction

from hwgen.errors import DoesNotFitError

__all__ = ["SynthReport", "FIELDS", "read_json", "nextpnr_figures", "yosys_units", "report",
           "module_breakdown"]

#: The report's resource fields, in display order.
FIELDS = ("lut", "ff", "bram", "spram", "dsp")

#: nextpnr bel type -> report field, per family.
_BELS = {
    "ice40": {"ICESTORM_LC": "lut", "ICESTORM_RAM": "bram", "ICESTORM_SPRAM": "spram",
              "ICESTORM_DSP": "dsp"},
    "ecp5": {"TRELLIS_COMB": "lut", "TRELLIS_FF": "ff", "DP16KD": "bram",
             "MULT18X18D": "dsp"},
    "gowin": {"LUT4": "lut", "DFF": "ff", "BSRAM": "bram", "MULT18X18": "dsp"},
}

#: Gowin multiplier cells in 18x18 multipliers (two per DSP macro, four 9x9 or one 36x36 per
#: two macros).
_GOWIN_MULTIPLIERS = {"MULT9X9": Fraction(1, 2), "MULT18X18": 1, "MULTALU18X18": 1,
                      "MULTADDALU18X18": 2, "MULTALU36X18": 2, "MULT36X36": 4}

#: LUT positions a Gowin shadow SRAM (RAM16SDP4) occupies: three slices of two LUTs.
_GOWIN_SSRAM_LUTS = 6

#: Yosys cell type -> (report field, weight), per family: the units of :func:`yosys_units`.
#: A type listed by prefix (ending in ``*``) covers every flip-flop variant.
_CELLS = {
    "ice40": {"SB_LUT4": ("lut", 1), "SB_DFF*": ("ff", 1), "SB_RAM40_4K": ("bram", 1),
              "SB_SPRAM256KA": ("spram", 1), "SB_MAC16": ("dsp", 1)},
    "ecp5": {"LUT4": ("lut", 1), "CCU2C": ("lut", 2), "TRELLIS_DPR16X4": ("lut", 2),
             "TRELLIS_FF": ("ff", 1), "DP16KD": ("bram", 1), "MULT18X18D": ("dsp", 1)},
    "gowin": {"LUT1": ("lut", 1), "LUT2": ("lut", 1), "LUT3": ("lut", 1), "LUT4": ("lut", 1),
              "ALU": ("lut", 1), "RAM16SDP4": ("lut", _GOWIN_SSRAM_LUTS),
              "DFF*": ("ff", 1), "SDPB": ("bram", 1),
              "SDPX9B": ("bram", 1), "DPB": ("bram", 1), "DPX9B": ("bram", 1),
              "SP": ("bram", 1), "SPX9": ("bram", 1), "pROM": ("bram", 1),
              "pROMX9": ("bram", 1),
              **{cell: ("dsp", w) for cell, w in _GOWIN_MULTIPLIERS.items()}},
}


@dataclass(frozen=True)
class SynthReport:
    """One build's figures; ``fits`` means it placed and routed and met ``target_mhz``.

    ``modules`` is the per-component breakdown (:func:`module_breakdown`), ``critical_path``
    the slowest clock's worst path (from, to, delay in ns, logic hops).
    """
    lut: int
    ff: int
    bram: int
    spram: int
    dsp: int
    fmax_mhz: float
    target_mhz: float
    fits: bool
    available: dict
    fmax_by_clock: dict = field(default_factory=dict)
    critical_path: dict = field(default_factory=dict)
    modules: dict = field(default_factory=dict)

    def to_json(self):
        return asdict(self)


def read_json(path):
    """The JSON document at ``path``, or ``None`` when the tool did not write it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _matches(cell_type, pattern):
    return (cell_type.startswith(pattern[:-1]) if pattern.endswith("*")
            else cell_type == pattern)


def yosys_units(family, cells_by_type):
    """``{field: count}`` of Yosys cells (``stat -json``'s ``num_cells_by_type``) in the
    family's units (``_CELLS``); fractional DSP units round up."""
    out = dict.fromkeys(FIELDS, 0)
    for cell_type, n in cells_by_type.items():
        for pattern, (fld, weight) in _CELLS[family].items():
            if _matches(cell_type, pattern):
                out[fld] += weight * n
                break
    return {k: math.ceil(v) for k, v in out.items()}


def nextpnr_figures(family, doc):
    """``(figures, available)`` from a nextpnr report: the family's fields (``_BELS``), Gowin's
    LUT as LUT4 + ALU and its DSP in 18x18 units."""
    util = {bel: (u["used"], u["available"]) for bel, u in doc["utilization"].items()}
    figures, available = dict.fromkeys(FIELDS, 0), {}
    for bel, fld in _BELS[family].items():
        if bel in util:
            figures[fld], available[fld] = util[bel]
    if family == "gowin":
        used = {bel: n for bel, (n, _) in util.items()}
        figures["lut"] = (used.get("LUT4", 0) + used.get("ALU", 0)
                          + _GOWIN_SSRAM_LUTS * used.get("RAM16SDP4", 0))
        figures["dsp"] = math.ceil(sum(w * used.get(c, 0) for c, w in _GOWIN_MULTIPLIERS.items()))
    return figures, available


def _critical_path(doc, clock):
    """The worst path of ``clock`` (launch and capture), as from/to cells, ns and hops."""
    paths = [p for p in doc.get("critical_paths", [])
             if p.get("from", "").endswith(clock) and p.get("to", "").endswith(clock)]
    if not paths or not paths[0].get("path"):
        return {}
    hops = paths[0]["path"]
    return {"clock": clock, "from": hops[0]["from"]["cell"], "to": hops[-1]["to"]["cell"],
            "delay_ns": round(sum(h["delay"] for h in hops), 3),
            "logic_levels": sum(1 for h in hops if h["type"] == "logic")}


def _check_capacity(what, figures, available):
    for fld in FIELDS:
        have = available.get(fld)
        if have is not None and figures[fld] > have:
            raise DoesNotFitError(f"the design needs {figures[fld]} {what(fld)} but the device"
                                  f" has {have}")


def report(family, folder, target_mhz, device, *, routed):
    """The :class:`SynthReport` of the build in ``folder`` (its JSON files, module docstring).

    ``device`` (a :class:`boards.Device`) gives the capacities when nextpnr wrote no report.

    Raises
    ------
    DoesNotFitError
        A resource over its capacity (resource, need, have): nextpnr's utilisation, or for a
        design nextpnr refused, Yosys's cell counts (a lower bound for iCE40 logic cells).
    """
    stat = read_json(folder / "top.stat.json")
    cells = yosys_units(family, stat["design"]["num_cells_by_type"]) if stat else None
    doc = read_json(folder / "top.report.json")
    if doc is None:
        if cells is not None:
            have = {fld: getattr(device, fld) for fld in FIELDS}
            have["ff"] = None if family == "ice40" else have["ff"]
            _check_capacity(lambda f: f"{f.upper()} (Yosys cells)", cells, have)
        figures, available, fmax = dict.fromkeys(FIELDS, 0), {}, {}
    else:
        figures, available = nextpnr_figures(family, doc)
        names = {fld: bel for bel, fld in _BELS[family].items()}
        if family == "gowin":
            names["lut"] = "LUT4+ALU+SSRAM"
        _check_capacity(lambda f: f"{names.get(f, f)} ({f})", figures, available)
        fmax = {clock: round(f["achieved"], 2) for clock, f in doc.get("fmax", {}).items()}
    if family in ("ice40", "gowin") and cells is not None:
        figures["ff"] = cells["ff"]
    fmax_mhz = min(fmax.values()) if fmax else 0.0
    slowest = min(fmax, key=fmax.get) if fmax else None
    return SynthReport(**figures, fmax_mhz=fmax_mhz, target_mhz=target_mhz,
                       fits=bool(routed and doc is not None and fmax_mhz >= target_mhz),
                       available=available, fmax_by_clock=fmax,
                       critical_path=_critical_path(doc, slowest) if slowest else {},
                       modules=module_breakdown(family, folder))


def _component(scope):
    """The report component of an Amaranth submodule path under the board top: ``uart`` (the
    bridge, pins, reset), ``host`` (the command FSM), ``core`` (its glue: buffer muxes, stream
    registers), ``sequencer``, ``array`` (its own skew/valid logic), ``pe`` (accumulators and
    adder trees), ``multipliers``, ``pool``, ``drain``, ``requantizer`` and one ``mem_*`` per
    buffer."""
    p = scope.split(".")
    if p[:3] != ["top", "top", "core"]:
        return "host" if p[:2] == ["top", "top"] else "uart"
    if len(p) == 3:
        return "core"
    sub = p[3]
    if sub == "array":
        return ("array", "pe", "multipliers")[min(len(p), 6) - 4]
    if sub == "drain":
        return "drain" if len(p) == 4 else "requantizer"
    return "sequencer" if sub == "seq" else sub


def module_breakdown(family, folder):
    """``{component: {field: count}}`` of the synthesized netlist, in Yosys cells of the
    family's units (:func:`yosys_units`; iCE40 LUTs are LUT4 cells, not logic cells).

    Hierarchical synthesis (``synth_<family> -noflatten``) would keep module boundaries, but it
    is a different design from the flat one the bitstream comes from (no optimisation across
    boundaries), doubles Yosys's time, and in the pinned Yosys 0.70 trips an assertion in
    ``abc9`` (``ABC_OPS_REINTEGRATE``: ``count_id(wire->name) == 0``) on the MAC array. So the
    flat netlist is attributed instead: ``flatten`` leaves a ``$scopeinfo`` cell per former
    module, and the synthesis scripts' final ``autoname`` names every mapped cell after a
    wire it drives, which carries the module path (``top.top.core.seq.cnt_SB_DFFESR_Q``). A
    cell belongs to the longest scope that prefixes its name, so the breakdown sums exactly to
    Yosys's totals. Cached beside the netlist as ``top.modules.json``.
    """
    cached = folder / "top.modules.json"
    doc = read_json(cached)
    if doc is not None:
        return doc
    netlist = folder / ("top.syn.json" if family == "gowin" else "top.json")
    data = read_json(netlist)
    if data is None:
        return {}
    module = data["modules"]["top"]
    cells = module["cells"]
    scopes = {name for name, c in cells.items() if c["type"] == "$scopeinfo"}
    counts = {}
    for name, cell in cells.items():
        if cell["type"] == "$scopeinfo":
            continue
        parts, scope = name.split("."), ""
        for i in range(len(parts) - 1, 0, -1):
            if ".".join(parts[:i]) in scopes:
                scope = ".".join(parts[:i])
                break
        comp = _component(scope) if scope else "uart"
        by_type = counts.setdefault(comp, {})
        by_type[cell["type"]] = by_type.get(cell["type"], 0) + 1
    out = {comp: yosys_units(family, by_type) for comp, by_type in sorted(counts.items())}
    try:
        cached.write_text(json.dumps(out, indent=1) + "\n")
    except OSError:
        pass  # a read-only cache still reports
    return out
