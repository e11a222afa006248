"""Resource and timing figures from the Yosys log (``top.rpt``) and the nextpnr log
(``top.tim``) of an amaranth platform build.

nextpnr prints a "Device utilisation" block (``Info:     ICESTORM_LC:  1234/ 5280   23%``) before
placement, and "Max frequency for clock 'name': 31.25 MHz (PASS at 12.00 MHz)" after each
timing analysis; the last line per clock is the routed figure. iCE40 logic cells pair a LUT
with a flip-flop, so nextpnr counts cells only: the flip-flops come from Yosys's cell
statistics (``SB_DFF*``).

Gowin (nextpnr-himbaechel) counts bels: ``LUT4`` and ``ALU`` (a carry-chain bit) each take one
of the device's LUT positions, so the LUT figure is their sum (Gowin's own "Logic" figure).
Shadow SRAM (``RAM16SDP4``) also blocks LUT and DFF positions, so nextpnr's ``DFF`` count is
more than the design's flip-flops: those come from Yosys (``DFF*`` cells). The DSP figure is
in 18x18-multiplier units, the unit of the device's DSP count: a ``MULT9X9`` is half of one.
"""

import math
import re
from dataclasses import asdict, dataclass
from fractions import Fraction

from hwgen.errors import DoesNotFitError

__all__ = ["SynthReport", "parse_utilisation", "parse_fmax", "parse_yosys_ffs", "report"]

#: nextpnr cell type -> report field, per family.
_CELLS = {
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

_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz")


@dataclass(frozen=True)
class SynthReport:
    """One build's figures; ``fits`` means it placed and routed and met ``target_mhz``."""
    lut: int
    ff: int
    bram: int
    spram: int
    dsp: int
    fmax_mhz: float
    target_mhz: float
    fits: bool
    available: dict

    def to_json(self):
        return asdict(self)


def parse_utilisation(text):
    """{cell type: (used, available)} from nextpnr's "Device utilisation" block."""
    start = text.find("Device utilisation")
    if start < 0:
        return {}
    block = text[start:].split("\n\n", 1)[0]
    out = {}
    for name, used, avail in _UTIL.findall(block):
        out.setdefault(name, (int(used), int(avail)))
    return out


def parse_fmax(text):
    """{clock: MHz}, the last (routed) figure for each clock."""
    out = {}
    for clock, mhz in _FMAX.findall(text):
        out[clock] = float(mhz)
    return out


def parse_yosys_ffs(text, prefix):
    """Flip-flops in Yosys's last cell statistics: the cells whose type starts with
    ``prefix`` (``SB_DFF`` on iCE40), counted once (not again in the hierarchy summary)."""
    start = text.rfind("Printing statistics")
    section = text[start if start >= 0 else 0:]
    end = section.find("design hierarchy")
    if end >= 0:
        section = section[:end]
    total = 0
    for line in section.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].startswith(prefix):
            total += int(parts[0])
        elif len(parts) == 2 and parts[1].isdigit() and parts[0].startswith(prefix):
            total += int(parts[1])
    return total


def report(family, yosys_log, nextpnr_log, target_mhz, *, routed):
    """The :class:`SynthReport` of one build.

    Raises
    ------
    DoesNotFitError
        When the utilisation block shows a resource over its capacity (resource, need, have).
    """
    util = parse_utilisation(nextpnr_log)
    cells = _CELLS[family]
    for cell, (used, avail) in util.items():
        if cell in cells and used > avail:
            raise DoesNotFitError(
                f"the design needs {used} {cell} ({cells[cell]}) but the device has {avail}")
    figures = {field: 0 for field in ("lut", "ff", "bram", "spram", "dsp")}
    available = {}
    for cell, field in cells.items():
        if cell in util:
            figures[field], available[field] = util[cell]
    if family == "ice40":
        figures["ff"] = parse_yosys_ffs(yosys_log, "SB_DFF")
    if family == "gowin":
        figures["lut"], figures["ff"], figures["dsp"] = _gowin_figures(util, yosys_log)
    fmax = parse_fmax(nextpnr_log)
    fmax_mhz = min(fmax.values()) if fmax else 0.0
    return SynthReport(**figures, fmax_mhz=fmax_mhz, target_mhz=target_mhz,
                       fits=bool(routed and fmax_mhz >= target_mhz), available=available)


def _gowin_figures(util, yosys_log):
    """(LUT positions, flip-flops, 18x18 multipliers) of a Gowin build."""
    used = {cell: n for cell, (n, _) in util.items()}
    lut = used.get("LUT4", 0) + used.get("ALU", 0)
    if "LUT4" in util and lut > util["LUT4"][1]:
        raise DoesNotFitError(f"the design needs {lut} LUT4+ALU (lut) but the device has"
                              f" {util['LUT4'][1]}")
    mults = sum(w * used.get(cell, 0) for cell, w in _GOWIN_MULTIPLIERS.items())
    return lut, parse_yosys_ffs(yosys_log, "DFF"), math.ceil(mults)
