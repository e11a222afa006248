"""Verilog and manifest for one overlay configuration, written together and atomically.

``verilog.convert(top, name=...)`` is called with no port list: the ports come from the Top's
signature. ``manifest.json`` beside it is the only way ``rtl_tests`` and board scripts learn
about the design (config, derived widths, latencies, ports, memories, program memory map,
digest). Source locations are not emitted, so identical inputs give byte-identical files.
"""

import hashlib
import importlib.metadata
import json
from functools import cache
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import data, wiring

from quantflow.packing import chunks_per_word
from quantflow.fsutil import atomic_dir, check_out

from .errors import UserError
from .layouts import Command, Mem, mem_depth, mem_width
from .top import Top

__all__ = ["TOP_NAME", "MANIFEST_VERSION", "manifest", "emit_verilog", "emit", "check_emittable",
           "generator_digest"]

TOP_NAME = "hwgen_top"
MANIFEST_VERSION = 1


@cache
def generator_digest():
    """Short hash of what turns a configuration into Verilog: the gateware sources, the
    program format they decode (quantflow's program, packing, numerics) and Amaranth's version.
    Caches of generated designs are keyed by it with the configuration digest, so a changed
    generator never reuses a design emitted by the old one."""
    root = Path(__file__).resolve().parent
    files = sorted(root.glob("*.py")) + [root.parent / "quantflow" / f"{n}.py"
                                         for n in ("program", "packing", "numerics")]
    h = hashlib.sha256(importlib.metadata.version("amaranth").encode())
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _ports(top):
    ports = [{"name": "clk", "dir": "in", "width": 1}, {"name": "rst", "dir": "in", "width": 1}]
    for path, member, _value in top.signature.flatten(top):
        shape = member.shape
        width = shape.size if isinstance(shape, data.Layout) else Shape.cast(shape).width
        ports.append({"name": "__".join(str(p) for p in path),
                      "dir": "in" if member.flow is wiring.In else "out", "width": width})
    return ports


def manifest(cfg, top=None, program=None):
    """The manifest document (a dict) for ``cfg``; ``program`` adds its memory map and cycles."""
    top = top if top is not None else Top(cfg)
    doc = {
        "format": "hwgen.manifest", "version": MANIFEST_VERSION, "top": TOP_NAME,
        "digest": cfg.digest, "generator": generator_digest(), "config": cfg.to_json(),
        "derived": cfg.derived_json(),
        "ports": _ports(top),
        "memories": [{"id": int(mem), "name": mem.name, "width": mem_width(cfg, mem),
                      "depth": mem_depth(cfg, mem),
                      "chunks": chunks_per_word(mem_width(cfg, mem), cfg.host_bits)}
                     for mem in Mem],
        "commands": {c.name: int(c) for c in Command},
    }
    if program is not None:
        doc["program"] = {
            "name": program.name, "memory_map": program.memory_map(),
            "descriptors": [d.fields() for d in program.descs],
            "layer_descriptor": program.layer_desc,
            "cycles": program.cycles, "macs": program.macs,
        }
    return doc


def emit_verilog(cfg):
    top = Top(cfg)
    return top, verilog.convert(top, name=TOP_NAME, emit_src=False)


def check_emittable(out_dir):
    """Raise :class:`UserError` (one line) unless ``out_dir`` can receive :func:`emit`'s
    folder: a usable path, and nothing there but an empty folder or an earlier output."""
    out_dir = Path(out_dir)
    check_out(out_dir)
    ours = out_dir.is_dir() and (not any(out_dir.iterdir())
                                 or (out_dir / "manifest.json").exists())
    if out_dir.exists() and not ours:
        # atomic_dir replaces the whole folder: never do that to something we did not write.
        raise UserError(f"{out_dir}: refusing to replace it, it is not an hwgen output folder")


def emit(cfg, out_dir, program=None):
    """Write ``<TOP_NAME>.v`` and ``manifest.json`` into ``out_dir`` atomically; return paths."""
    out_dir = Path(out_dir)
    check_emittable(out_dir)
    top, text = emit_verilog(cfg)
    doc = manifest(cfg, top, program)
    with atomic_dir(out_dir) as tmp:
        (tmp / f"{TOP_NAME}.v").write_text(text)
        (tmp / "manifest.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return out_dir / f"{TOP_NAME}.v", out_dir / "manifest.json"
