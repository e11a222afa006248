"""Verilog and manifest for one overlay design, written together and atomically.

``verilog.convert(top, name=...)`` is called with no port list: the ports come from the Top's
signature. ``manifest.json`` beside it is the only way ``rtl_tests`` and board scripts learn
about the design (config, derived widths, latencies, ports, memories, program memory map,
digest, and what a board adds: :class:`Design`). Source locations are not emitted, so
identical inputs give byte-identical files.

A board's design (:func:`boards.overlay.board_design`) is more than a configuration: its
buffer factory (iCE40 SPRAM for the weights), the UART bridge at the board's divisor, and the
vendor primitives' simulation models. Its folder holds ``hwgen_top.v`` (the accelerator),
``hwgen_uart_top.v`` (the bridge, instantiating ``hwgen_top`` by name) and the models; the
board build reads the same two Verilog files (:mod:`boards.build`), so the file a simulation
proves bit-exact is the file in the bitstream, byte for byte (the manifest records their
SHA-256).
"""

import hashlib
import importlib.metadata
import json
from dataclasses import dataclass, field
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

__all__ = ["TOP_NAME", "UART_NAME", "MANIFEST_VERSION", "Design", "manifest", "emit_verilog",
           "emit_uart_verilog", "design_files", "emit", "check_emittable", "generator_digest"]

TOP_NAME = "hwgen_top"
MANIFEST_VERSION = 1
#: The board-level design: the UART bridge around an instance of ``TOP_NAME``.
UART_NAME = "hwgen_uart_top"


@dataclass(frozen=True)
class Design:
    """One overlay design: a configuration and what a board adds to it.

    ``memory``: the Core's buffer factory (``None``: block RAM everywhere); ``divisor``: clock
    cycles per UART bit (``None``: no UART bridge is emitted); ``models``: ``(file name,
    Verilog)`` simulation models of the vendor primitives the Verilog instantiates;
    ``key``: names ``memory`` and ``models`` in cache keys (digest of their sources);
    ``about``: what the manifest's ``design`` entry records (board, multipliers, memories)."""
    cfg: object
    memory: object = None
    divisor: int = None
    models: tuple = ()
    key: str = ""
    about: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def digest(self):
        """The configuration's digest, extended by what the board adds (cache keys)."""
        if self.memory is None and self.divisor is None and not self.models:
            return self.cfg.digest
        h = hashlib.sha256(f"{self.cfg.digest}|{self.divisor}|{self.key}".encode())
        for name, text in self.models:
            h.update(name.encode() + b"\0" + text.encode())
        return h.hexdigest()[:16]


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


def emit_verilog(cfg, memory=None):
    """``(Top, Verilog text)`` of the accelerator (``memory``: the Core's buffer factory)."""
    top = Top(cfg, memory=memory)
    return top, verilog.convert(top, name=TOP_NAME, emit_src=False)


def emit_uart_verilog(cfg, divisor):
    """Verilog of the UART bridge at ``divisor`` around an instance of ``TOP_NAME`` (the
    module :func:`emit_verilog` writes)."""
    from .uart import UARTTop

    return verilog.convert(UARTTop(cfg, divisor, core=TOP_NAME), name=UART_NAME,
                           emit_src=False)


def _sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


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


def design_files(design):
    """``{file name: text}`` of ``design`` (a :class:`Design` or an ``AccelConfig``) and its
    manifest's ``design`` entry (without the program)."""
    if not isinstance(design, Design):
        design = Design(design)
    top, text = emit_verilog(design.cfg, design.memory)
    files = {f"{TOP_NAME}.v": text}
    if design.divisor is not None:
        files[f"{UART_NAME}.v"] = emit_uart_verilog(design.cfg, design.divisor)
    files.update(dict(design.models))
    entry = {"board": None, "multipliers": "lut" if design.cfg.lut_multipliers else "dsp",
             "memories": "block RAM", **design.about, "uart_divisor": design.divisor,
             "models": [name for name, _ in design.models],
             "sha256": {name: _sha256(t) for name, t in files.items()}}
    return top, files, entry


def emit(cfg, out_dir, program=None):
    """Write ``<TOP_NAME>.v`` (and, for a board's :class:`Design`, ``<UART_NAME>.v`` and the
    primitives' models) and ``manifest.json`` into ``out_dir`` atomically; return the paths of
    ``<TOP_NAME>.v`` and the manifest. ``cfg``: an ``AccelConfig`` or a :class:`Design`."""
    out_dir = Path(out_dir)
    check_emittable(out_dir)
    design = cfg if isinstance(cfg, Design) else Design(cfg)
    top, files, entry = design_files(design)
    doc = manifest(design.cfg, top, program)
    doc["design"] = entry
    with atomic_dir(out_dir) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text)
        (tmp / "manifest.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return out_dir / f"{TOP_NAME}.v", out_dir / "manifest.json"
