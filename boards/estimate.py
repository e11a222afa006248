"""Know before you build: resources, fit, Fmax, latency and energy of a board's overlay in
well under a second, from a per-component cost model.

The design is the one ``hwgen synth`` builds: :func:`boards.build.board_config` decides the
array and the multipliers, the memories' widths and depths are the overlay's own
(:func:`hwgen.layouts.mem_width` / ``mem_depth``), the cycles are the compiler's exact model.

- **Block memories** are counted, not fitted: each buffer takes the fewest blocks any of the
  family's block shapes allows (``_BLOCKS``: iCE40 4 Kbit as 256x16 .. 2048x2, ECP5 DP16KD
  and Gowin BSRAM 18 Kbit as 512x36 .. 16384x1), as Yosys's ``memory_libmap`` picks them; a
  buffer of at most ``logic_bits`` bits (a per-family fitted threshold) goes to LUT RAM or
  flip-flops instead. On the iCE40UP5K the weight buffer is SPRAM (``boards.memories``' rule).
- **DSP blocks** are counted: a DSP-style PE multiplier takes one (a Gowin 9x9 half of one),
  plus the family's constant (``fixed_dsp``: the requantizer's ``acc x M`` product, and on
  ECP5 a sequencer product), read off the builds.
- **LUTs and flip-flops** per component (``COMPONENT_TERMS``), each linear in a few terms of
  its own, fitted on that component's Yosys cells in the per-module breakdown of real builds
  (least squares, per family, in ``estimate.json``, written by ``bench/estimate.py``): a
  constant for the UART and host FSM, the sequencer in its address bits, the array (PEs and
  multipliers) in the LUT multipliers' partial-product bits (``rows * cols * b_w * b_a``: a
  shift-and-add multiplier is about one LUT per bit) and count, the adder trees' bits
  (``rows * cols * product_bits``, and a bit per tree level), the drain and
  requantizer in the accumulator bits, the core's buffer muxes in the buffers' word bits. A
  family with fewer than three builds takes the components' fit over all families. nextpnr's
  LUT figure is then fitted per family from the summed cells
  (``lut_from_cells``: a share of LUT cells plus one of flip-flops, for the iCE40's
  flip-flop-only logic cells and ECP5 route-throughs), the flip-flops likewise
  (``ff_from_cells``).
- **Fmax** is fitted as a clock period: a constant per board (speed grades differ within a
  family) plus shared slopes in the product width and ``log2(rows * cols)``.
"""

import json
import math
from pathlib import Path

from hwgen.errors import UserError

__all__ = ["NotCalibratedError", "smallest_board", "COEFFS_PATH", "COMPONENT_TERMS",
           "COMPONENT_MODULES",
           "component_of", "mapped_style", "load_coeffs", "features",
           "component_estimate", "period_features", "memory_blocks",
           "dsp_blocks", "estimate_config", "estimate", "fit_summary"]

#: The fitted coefficients (written by ``bench/estimate.py``).
COEFFS_PATH = Path(__file__).with_name("estimate.json")

#: Family -> block RAM shapes ``(depth, width, write-enable groups)`` Yosys can use. An
#: activation buffer writes one lane at a time, and each lane needs an enable group of its
#: own: SB_RAM40_4K masks every bit, DP16KD has four 9-bit byte enables at 512x36 and two at
#: 1024x18, Gowin's SDPB four at 32/36 bits and two at 16/18.
_BLOCKS = {
    "ice40": ((256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)),
    "ecp5": ((512, 36, 4), (1024, 18, 2), (2048, 9, 1), (4096, 4, 1), (8192, 2, 1),
             (16384, 1, 1)),
    "gowin": ((512, 36, 4), (512, 32, 4), (1024, 18, 2), (1024, 16, 2), (2048, 9, 1),
              (2048, 8, 1), (4096, 4, 1), (8192, 2, 1), (16384, 1, 1)),
}


class NotCalibratedError(UserError):
    """No fitted coefficients for the board's family (run ``bench/estimate.py``)."""


def load_coeffs(path=None):
    """The coefficient document (``estimate.json``)."""
    return json.loads(Path(path or COEFFS_PATH).read_text())


def _mems(cfg):
    from hwgen.layouts import Mem, mem_depth, mem_width

    return {mem: (mem_width(cfg, mem), mem_depth(cfg, mem)) for mem in Mem}


def _blocks(family, width, depth, lane_bits=None):
    """Fewest blocks for ``depth`` words of ``width`` bits, written whole or (``lane_bits``)
    one lane at a time."""
    best = None
    for d, w, groups in _BLOCKS[family]:
        if lane_bits is None:
            n = -(-width // w)
        elif lane_bits <= w:
            per_lane = -(-lane_bits // (w // groups))  # enable groups one lane spans
            n = -(-(width // lane_bits) // (groups // per_lane)) if per_lane <= groups else None
        else:
            n = (width // lane_bits) * -(-lane_bits // w)
        if n is not None:
            n *= -(-depth // d)
            best = n if best is None else min(best, n)
    return best


def memory_blocks(target, cfg, logic_bits=0):
    """``(bram, spram, per buffer)``: block RAMs and SPRAMs of the overlay's buffers."""
    from hwgen.layouts import Mem

    from .memories import SPRAM_DEPTH, SPRAM_WIDTH

    bram = spram = 0
    per = {}
    for mem, (width, depth) in _mems(cfg).items():
        name = f"mem_{mem.name.lower()}"
        sp = -(-width // SPRAM_WIDTH)
        if target.device.spram and mem is Mem.WEIGHT and depth <= SPRAM_DEPTH \
                and sp <= target.device.spram:
            per[name] = {"spram": sp}
            spram += sp
            continue
        lanes = cfg.act_bits if mem in (Mem.ACT0, Mem.ACT1) else None  # hwgen.core's choice
        n = 0 if width * depth <= logic_bits else _blocks(target.family, width, depth, lanes)
        per[name] = {"bram": n}
        bram += n
    return bram, spram, per


#: Family -> narrowest product Yosys maps to a DSP block (synth_ice40 -dsp runs mul2dsp with
#: ``DSP_Y_MINWIDTH=11``; narrower ``*`` products stay in LUTs).
_DSP_MIN_PRODUCT = {"ice40": 11}


def mapped_style(target, cfg, style):
    """The multipliers as Yosys builds them: ``"dsp"`` style whose products are too narrow for
    the family's DSP mapping ends up in LUTs."""
    product = cfg.weight_bits + cfg.a_operand_bits
    return "lut" if style == "dsp" and product < _DSP_MIN_PRODUCT.get(target.family, 0) \
        else style


def dsp_blocks(target, cfg, style, fixed_dsp):
    """DSP units (the device's unit: 18x18 multipliers, SB_MAC16 on iCE40): the PE
    multipliers' and ``fixed_dsp`` more (the requantizer's ``acc x M`` product, and on ECP5 one
    the sequencer's address arithmetic maps to a block)."""
    per_mul = 1.0
    if target.family == "gowin" and max(cfg.weight_bits, cfg.a_operand_bits) <= 9:
        per_mul = 0.5  # a MULT9X9 is half an 18x18
    pe = cfg.rows * cfg.cols * per_mul if mapped_style(target, cfg, style) == "dsp" else 0
    return math.ceil(pe) + fixed_dsp


#: Estimated component -> the terms its LUTs and flip-flops are linear in.
COMPONENT_TERMS = {
    "host": ("const",), "sequencer": ("const", "addr"), "core": ("const", "mem_width"),
    "array": ("mul_lut", "mul_lut_n", "mul_dsp", "mul_bip", "tree", "tree_log"),
    "drain": ("const", "acc", "bip_lanes"),
}
#: :func:`boards.reports.module_breakdown`'s modules in each estimated component. Coarser than
#: the breakdown because the families' synthesis attributes cells across a boundary
#: differently (ECP5 names the LUT multipliers' cells after the PE's wires, so they land in
#: ``pe``; the buffers' read muxes land in ``core`` or in ``mem_*``).
COMPONENT_MODULES = {
    "host": ("uart", "host"), "sequencer": ("sequencer",), "core": ("core", "mem_*"),
    "array": ("array", "pe", "multipliers"), "drain": ("drain", "requantizer", "pool"),
}


def component_of(module):
    """The estimated component a breakdown module belongs to."""
    for comp, mods in COMPONENT_MODULES.items():
        if any(module == m or (m.endswith("*") and module.startswith(m[:-1])) for m in mods):
            return comp
    return "host"


def features(cfg, style):
    """Named terms of the component models: ``mul_lut`` partial-product bits of the LUT
    multipliers (``rows*cols*b_w*b_a``), ``mul_lut_n``/``mul_dsp`` their count by style,
    ``tree`` the PEs' adder-tree bits (``rows*cols*product_bits``; ``tree_log`` the bit each
    of the ``log2(cols)`` levels adds to the partial sums), ``acc`` the accumulator bits
    (``rows*acc_bits``), ``lanes`` the activation word, ``mem_width`` the buffers' word bits
    (the host read mux and the memories' glue), ``addr`` their address bits; on bipolar
    (1-bit) weight lanes, ``mul_bip`` the PEs (a product is a select of ``a`` or ``-a``: its
    partial-product bits stay in ``mul_lut``, the negation is this term) and ``bip_lanes`` the
    activation lanes the drain zero-fills when a word starts. A term no calibration point
    exercises has no coefficient and costs nothing."""
    from hwgen.layouts import Mem

    n = cfg.rows * cfg.cols
    mems = _mems(cfg)
    lut = style == "lut"
    return {
        "const": 1.0, "macs": float(n),
        "mul_lut": float(n * cfg.weight_bits * cfg.a_operand_bits) if lut else 0.0,
        "mul_lut_n": float(n) if lut else 0.0, "mul_dsp": 0.0 if lut else float(n),
        "mul_bip": float(n) if cfg.bipolar_weights else 0.0,
        "bip_lanes": float(cfg.cols * cfg.act_bits) if cfg.bipolar_weights else 0.0,
        "tree": float(n * cfg.product_bits), "acc": float(cfg.rows * cfg.acc_bits),
        "tree_log": n * math.log2(max(2, cfg.cols)),
        "acc_bits": float(cfg.acc_bits), "lanes": float(cfg.cols * cfg.act_bits),
        "mem_width": float(sum(w for w, _ in mems.values())),
        "addr": float(sum(max(1, (d - 1).bit_length()) for m, (_, d) in mems.items()
                          if m is not Mem.CYCLES)),
    }


def component_estimate(fam, cfg, style):
    """``{component: {"lut", "ff"}}`` in Yosys cells, from the family's coefficients."""
    feats = features(cfg, style)
    return {comp: {k: max(0.0, _dot(fam["components"].get(comp, {}).get(k, {}), feats))
                   for k in ("lut", "ff")} for comp in COMPONENT_TERMS}


def period_features(cfg, style, board):
    """Named terms of the clock-period (ns) model: a constant per board (the speed grade:
    the ULX3S's LFE5U-85F is grade 6, the OrangeCrab's 25F grade 8), the widest adders (the
    PE's lane products and tree) and the array's fan-out (``log2(rows * cols)``: the broadcast
    activation word and the drain's multiplexer)."""
    return {f"const@{board}": 1.0, "product_bits": float(cfg.product_bits),
            "log_macs": math.log2(cfg.rows * cfg.cols)}


def _period(coef, cfg, style, board):
    feats = period_features(cfg, style, board)
    key = f"const@{board}"
    if key not in coef:  # a board of the family with no build yet: the family's mean
        consts = [v for k, v in coef.items() if k.startswith("const@")]
        coef = {**coef, key: sum(consts) / len(consts) if consts else 0.0}
    return _dot(coef, feats)


def _dot(coef, feats):
    return sum(coef.get(k, 0.0) * v for k, v in feats.items())


def estimate_config(target, cfg, style, coeffs=None):
    """Resources, fit and Fmax of ``cfg`` built for ``target`` (no model, no cycles)."""
    coeffs = coeffs or load_coeffs()
    fam = coeffs["families"].get(target.family)
    if fam is None:
        raise NotCalibratedError(f"no estimate for {target.name}: the {target.family} family"
                                 " has no fitted coefficients yet (run bench/estimate.py)")
    bram, spram, per_mem = memory_blocks(target, cfg, fam.get("logic_bits", 0))
    comps = component_estimate(fam, cfg, mapped_style(target, cfg, style))
    cells = {k: sum(c[k] for c in comps.values()) for k in ("lut", "ff")}
    # nextpnr's LUT figure from Yosys's cells: route-through LUTs on ECP5, flip-flop-only
    # logic cells on iCE40, carry (ALU) positions on Gowin.
    lut = _dot(fam["lut_from_cells"], cells)
    ff = _dot(fam.get("ff_from_cells", {"ff": 1.0}), cells)
    period = _period(fam["period_ns"], cfg, style, target.name)
    res = {"lut": max(0, round(lut)), "ff": max(0, round(ff)),
           "bram": bram, "spram": spram,
           "dsp": dsp_blocks(target, cfg, style, fam.get("fixed_dsp", 0))}
    dev = target.device
    have = {"lut": dev.lut, "ff": dev.ff, "bram": dev.bram, "spram": dev.spram, "dsp": dev.dsp}
    fit = {k: {"need": res[k], "have": have[k], "ok": res[k] <= have[k]} for k in res}
    fmax = round(1e3 / period, 2) if period > 0 else 0.0
    modules = {c: {k: round(v) for k, v in m.items()} for c, m in comps.items()}
    return {**res, "memories": per_mem, "modules": modules, "fit": fit, "fmax_mhz": fmax,
            "fits": all(f["ok"] for f in fit.values()) and fmax >= target.clock_mhz,
            "target_mhz": target.clock_mhz}


def estimate(target, model, array=None, coeffs=None, choice=None):
    """Everything ``hwgen estimate`` reports for ``model`` on ``target`` (a dict);
    ``choice``: ``(AccelConfig, multiplier style)`` instead of :func:`board_config`'s.

    Raises ``ValueError``/``TypeError`` for a configuration that cannot be built and whatever
    :func:`quantflow.program.compile_program` raises for a model the overlay cannot run.
    """
    from quantflow.program import compile_program

    from .overlay import board_config
    from .energy import energy

    cfg, style = choice if choice is not None else board_config(target, model, array)
    program = compile_program(model, cfg)
    est = estimate_config(target, cfg, style, coeffs)
    cycles = sum(program.cycles)
    clocks = {"board_clock": target.clock_mhz, "fmax": est["fmax_mhz"]}
    timing = {name: {"mhz": mhz,
                     "latency_us": round(cycles / mhz, 2) if mhz else None,
                     "inferences_per_s": round(mhz * 1e6 / cycles, 1) if mhz else None}
              for name, mhz in clocks.items()}
    share = est["lut"] / target.device.lut
    en = energy(program, cfg, target.device.name, share, target.clock_mhz)
    asic = en["asic_45nm"]
    return {
        "board": target.name, "device": target.device.name, "family": target.family,
        "array": [cfg.rows, cfg.cols], "weight_bits": cfg.weight_bits,
        "act_bits": cfg.act_bits, "multipliers": style, "config_digest": cfg.digest,
        **est, "cycles": cycles, "macs": sum(program.macs), "timing": timing,
        "energy": {"asic_45nm_pj": round(asic["total_pj"], 1),
                   "asic_45nm_mac_pj": round(asic["mac_pj"], 1),
                   "asic_45nm_memory_pj": round(asic["memory_pj"], 1),
                   "dram_weights_pj": round(asic["dram_weights_pj"], 1),
                   "counts": asic["counts"], "fpga": en["fpga"]},
        "model": fit_summary(coeffs),
    }


def fit_summary(coeffs=None):
    """Where the coefficients come from: points fitted and the worst errors seen."""
    coeffs = coeffs or load_coeffs()
    return {k: coeffs.get(k) for k in ("points", "worst")}


def smallest_board(model):
    """``(board, estimate)``: the supported board with the fewest LUTs on which ``model`` fits
    at the board's own array and meets the board's clock, by the calibrated estimate; ``(None,
    None)`` when none does. A family without calibration is skipped."""
    from . import Board

    for board in sorted(Board, key=lambda b: b.value.device.lut):
        try:
            est = estimate(board.value, model)
        except (NotCalibratedError, TypeError, ValueError):
            continue
        if all(f["ok"] for f in est["fit"].values()) and est["fmax_mhz"] >= est["target_mhz"]:
            return board, est
    return None, None
