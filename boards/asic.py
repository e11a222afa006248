"""ASIC: Yosys's generic synthesis of the emitted overlay, gates and transistors per module.

The overlay's Verilog (:func:`hwgen.emit.emit_verilog`, the host-stream ``Top`` that
``hwgen generate`` writes) is technology-independent. ``synthesize_asic`` runs it through
Yosys (YoWASP) with no FPGA cells and keeps the hierarchy (every Amaranth submodule is a
module of its own, so the figures are per module without attributing a flat netlist):

- ``synth -run :fine`` (the coarse steps; its ``memory -nomap`` leaves each buffer a
  ``$mem_v2`` cell), then the fine steps without ``memory_map``: an ASIC takes its buffers
  from a memory compiler (SRAM macros), not from flip-flops, so they are reported as macros
  with their words and width, and their energy is the SRAM column of :mod:`boards.energy`
  (the read-only ``$mem_v2`` cells Yosys's ``proc_rom`` makes of a ``case`` statement are
  logic, and are mapped to gates);
- ``dfflegalize`` to plain ``$_DFF_P_`` flip-flops (their enables and synchronous resets
  become gates), right before ``abc -g cmos`` maps the logic to NAND/NOR/AOI/OAI/NOT/XOR/MUX
  gates: ``stat -tech cmos`` knows the transistors of exactly those cells (Yosys
  ``kernel/cost.h``: NAND2 4, NOT 2, XOR 12, DFF 16, ...) and of nothing else;
- with a Liberty file (``liberty=``, e.g. sky130's ``sky130_fd_sc_hd__tt_025C_1v80.lib``),
  ``dfflibmap`` and ``abc -liberty`` map to its cells instead and ``stat -liberty`` adds the
  cell area (the library's unit, usually um^2). Transistors are then not counted (the
  library's cells are opaque to Yosys).

Yosys's ``stat`` gives each module's own cells and, for transistors, the count including its
submodules; the report keeps both (``transistors`` own, ``transistors_total`` with the
submodules). The runs are cached by the digest of the Verilog, the script and the library in
``$HWGEN_BUILD_CACHE/asic-<digest>``, built under a temporary name and renamed when done.
"""

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from hwgen.errors import ToolError

from .build import cache_root, tool_env

__all__ = ["ASIC_SCRIPT", "asic_script", "synthesize_asic", "parse_stat", "module_group",
           "asic_config", "asic_report", "liberty_flops"]

#: The generic flow (``{liberty}`` lines are filled in by :func:`asic_script`).
ASIC_SCRIPT = """\
read_verilog top.v
hierarchy -top {top}
synth -top {top} -run :fine
memory_map t:$mem_v2 r:WR_PORTS=0 %i
opt -fast -full
techmap
opt -fast
{map_ffs}
{map_logic}
opt_clean
tee -q -o stat.json stat {stat_opts} -json
tee -q -o mems.il dump t:$mem_v2
"""


def asic_script(top, liberty=None):
    """The Yosys script for ``top`` (module name), generic CMOS gates or ``liberty``'s
    cells."""
    if liberty is None:
        # Only plain DFFs have a transistor cost in stat -tech cmos; no opt between this and
        # abc, or opt_dff would fold the enables and resets back into $_SDFFE_ cells.
        return ASIC_SCRIPT.format(top=top, map_ffs="dfflegalize -cell $_DFF_P_ 01",
                                  map_logic="abc -g cmos", stat_opts="-tech cmos")
    lib = Path(liberty).name
    return ASIC_SCRIPT.format(top=top, map_ffs=f"dfflibmap -liberty {lib}",
                              map_logic=f"abc -liberty {lib}", stat_opts=f"-liberty {lib}")


def module_group(name, top):
    """The report component of a module (``hwgen_top.core.array.pe0.mul3`` ->
    ``multipliers``), named as :func:`boards.reports.module_breakdown` names them."""
    from .reports import _component

    parts = name.lstrip("\\").split(".")
    if parts[0] != top:
        return "host"
    return _component(".".join(["top", "top"] + parts[1:]))


def _int(value):
    """``stat``'s counts; a transistor estimate ends in ``+`` when a cell had no cost."""
    return int(str(value).rstrip("+")) if value not in (None, "") else 0


def liberty_flops(text):
    """Names of the cells of a Liberty library that hold state (an ``ff`` or ``latch``
    group): the flip-flops of a mapped netlist, whatever the library calls them."""
    out = set()
    for chunk in re.split(r"\bcell\s*\(", text)[1:]:
        name = chunk.split(")", 1)[0].strip().strip('"')
        if re.search(r"\b(ff|latch|ff_bank)\s*\(", chunk):
            out.add(name)
    return out


def parse_stat(stat, mems, top, flops=None):
    """``{"modules": {name: {...}}, "groups": {...}, "total": {...}, "memories": [...]}`` from
    ``stat -json`` and :func:`_memories`' ``(module, width, words)``. ``flops`` (a Liberty
    run's state-holding cell names, :func:`liberty_flops`) switches from transistors to the
    library's area."""
    own_mods = {n.lstrip("\\"): m for n, m in stat["modules"].items()}
    measure = "transistors" if flops is None else "area"
    modules = {}
    for name, m in own_mods.items():
        by_type = m.get("num_cells_by_type", {})
        if flops is None:
            ffs = sum(v for k, v in by_type.items() if "DFF" in k.upper())
            total = _int(m.get("estimated_num_transistors"))
        else:
            ffs = sum(v for k, v in by_type.items() if k.lstrip("\\") in flops)
            total = float(m.get("area", 0.0))
        macros = by_type.get("$mem_v2", 0)
        cells = m.get("num_cells", 0)  # submodule instances are counted apart
        modules[name] = {"cells": cells, "gates": cells - ffs - macros, "ffs": ffs,
                         "macros": macros, measure: total}
    # Yosys gives transistors and area including the submodules: keep each module's own.
    for row in modules.values():
        row[measure + "_total"] = row[measure]
    for name, row in modules.items():
        by_type = own_mods[name].get("num_cells_by_type", {})
        sub = sum(modules[k.lstrip("\\")][measure + "_total"] * v
                  for k, v in by_type.items() if k.lstrip("\\") in modules)
        row[measure] = round(row[measure + "_total"] - sub, 3)
    memories = [{"module": mod, "width": width, "words": size, "bits": width * size}
                for mod, width, size in mems]
    keys = ["cells", "gates", "ffs", "macros", measure]
    groups = {}
    for name, row in sorted(modules.items()):
        g = groups.setdefault(module_group(name, top), dict.fromkeys(keys, 0))
        for k in keys:
            g[k] = round(g[k] + row[k], 3)
    total = {k: round(sum(r[k] for r in modules.values()), 3) for k in keys}
    total["memory_bits"] = sum(m["bits"] for m in memories)
    return {"measure": measure, "modules": modules, "groups": groups, "total": total,
            "memories": memories}


def synthesize_asic(verilog, top, *, liberty=None, root=None, timeout=None):
    """Generic (or ``liberty``) synthesis of ``verilog`` (text) with top module ``top``;
    return :func:`parse_stat`'s document plus ``folder``, ``cached`` and ``wall_seconds``.

    Raises
    ------
    ToolError
        Yosys is missing or failed (the last error lines are in the message).
    """
    start = time.monotonic()
    lib_text = Path(liberty).read_bytes() if liberty is not None else b""
    script = asic_script(top, liberty)
    h = hashlib.sha256()
    for part in (verilog.encode(), script.encode(), lib_text):
        h.update(hashlib.sha256(part).digest())
    root = Path(root) if root is not None else cache_root()
    folder = root / f"asic-{h.hexdigest()[:16]}"
    cached = (folder / "stat.json").exists()
    if not cached:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
        try:
            (tmp / "top.v").write_text(verilog)
            (tmp / "asic.ys").write_text(script)
            if liberty is not None:
                shutil.copy2(liberty, tmp / Path(liberty).name)
            yosys = tool_env()["YOSYS"]
            try:
                subprocess.run([yosys, "-q", "-l", "yosys.log", "asic.ys"], cwd=tmp,
                               check=True, timeout=timeout, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
            except subprocess.CalledProcessError as e:
                log = (tmp / "yosys.log").read_text(errors="replace") \
                    if (tmp / "yosys.log").exists() else ""
                errs = [ln.strip() for ln in (log + "\n" + (e.stderr or "")).splitlines()
                        if "ERROR" in ln] or (e.stderr or "").strip().splitlines()[-2:]
                raise ToolError(f"asic synthesis failed: {' | '.join(errs)}") from None
            except subprocess.TimeoutExpired as e:
                raise ToolError(f"asic synthesis timed out after {timeout} s") from e
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    stat = json.loads((folder / "stat.json").read_text())
    mems = _memories((folder / "mems.il").read_text())
    flops = liberty_flops(lib_text.decode(errors="replace")) if liberty is not None else None
    doc = parse_stat(stat, mems, top, flops)
    return {**doc, "folder": str(folder), "cached": cached,
            "wall_seconds": round(time.monotonic() - start, 1),
            "tool": "yosys " + _version(folder)}


def _memories(dump):
    """``[(module, width, words)]`` of the ``$mem_v2`` cells in an RTLIL ``dump``."""
    out, module, params = [], None, None
    for line in dump.splitlines():
        words = line.split()
        if words[:1] == ["module"]:
            module = words[1].lstrip("\\")
        elif words[:2] == ["cell", "$mem_v2"]:
            params = {}
        elif params is not None and words[:1] == ["parameter"] and len(words) == 3:
            params[words[1].lstrip("\\")] = words[2]
        elif params is not None and words[:1] == ["end"]:
            out.append((module, int(params.get("WIDTH", 0)), int(params.get("SIZE", 0))))
            params = None
    return out


def _version(folder):
    log = folder / "yosys.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    m = re.search(r"Yosys (\d+\.\d+\S*)", text)
    return m.group(1) if m else "?"


def asic_config(model, array=None):
    """``model``'s overlay for an ASIC: ``array`` or :data:`hwgen.config.DEFAULT_ARRAY`, its
    columns widened to the network input's digits as a board's are
    (:func:`boards.overlay.default_array`), shift-and-add multipliers (the RTL the FPGA LUT
    builds synthesize, so the two columns compare one design)."""
    from types import SimpleNamespace

    from hwgen.config import DEFAULT_ARRAY, AccelConfig

    from .overlay import default_array

    if array is None:
        array = default_array(SimpleNamespace(array=DEFAULT_ARRAY), model)
    return AccelConfig.for_model(model, array=tuple(array), lut_multipliers=True)


def asic_report(model, array=None, *, liberty=None, root=None, timeout=None):
    """``hwgen synth --target asic``'s document for ``model``: the design, Yosys's figures
    (:func:`synthesize_asic`), the compiler's cycles and the 45 nm energy per inference."""
    from hwgen.emit import TOP_NAME, emit_verilog
    from quantflow.program import compile_program

    from .energy import energy_45nm

    cfg = asic_config(model, array)
    program = compile_program(model, cfg)
    _, verilog = emit_verilog(cfg)
    syn = synthesize_asic(verilog, TOP_NAME, liberty=liberty, root=root, timeout=timeout)
    en = energy_45nm(program, cfg)
    return {"target": "asic", "array": [cfg.rows, cfg.cols], "weight_bits": cfg.weight_bits,
            "act_bits": cfg.act_bits, "config_digest": cfg.digest,
            "liberty": str(liberty) if liberty is not None else None, **syn,
            "cycles": sum(program.cycles), "macs": sum(program.macs),
            "energy": {"asic_45nm_pj": round(en["total_pj"], 1),
                       "asic_45nm_mac_pj": round(en["mac_pj"], 1),
                       "asic_45nm_memory_pj": round(en["memory_pj"], 1)}}
