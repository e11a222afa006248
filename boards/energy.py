"""Energy per inference: a 45 nm column from exact access counts, and an FPGA column per board.

**45 nm column** (an ASIC-like figure for the same schedule). Horowitz's ISSCC 2014 figures
("Computing's energy problem (and what we can do about it)", ISSCC 2014, pp. 10-14), as QKeras
qtools encodes them: ``google/qkeras``, ``qkeras/qtools/config_public.py``, the ``"horowitz"``
settings (``fpm_mul``, ``fpm_add``, ``sram_rd``, ``dram_rd``), with the multiplier's gate bits
``sqrt(b_w * b_a)`` from ``quantized_operators/multiplier_impl.py``:

- multiply: ``0.0029948 * b_w * b_a + 0.0010417 * sqrt(b_w * b_a)`` pJ (``MUL_PJ``; 0.2 pJ
  at 8 x 8 bits, 3.1 pJ at 32 x 32: Horowitz's 8-bit and 32-bit integer multiplies);
- add: ``0.003125`` pJ per accumulator bit (``ADD_PJ_PER_BIT``; 0.1 pJ for a 32-bit add);
- SRAM read or write, per bit, a cubic in ``t = log2(size in bits)``:
  ``9.02427321e-4 t^3 - 2.68847858e-2 t^2 + 2.08900804e-1 t`` pJ (``SRAM_PJ``: 0.156 pJ at 8 KB,
  0.3125 at 32 KB, 1.5625 at 1 MB: Horowitz's 10 / 20 / 100 pJ per 64-bit read). qtools writes
  cost as much as reads (``qenergy.py``: ``"wr": cfg.sram_rd``); so does this model. Two
  deliberate differences from qtools: qtools multiplies the per-bit figure by
  ``ceil(bits / 64)`` (``sram_mul_factor = 1/64``), i.e. charges it per 64-bit word, where
  Horowitz's figure is per 64-bit read, so here it is charged per bit; and below 8 KB (the
  smallest point of the fit, where the cubic turns up again) the 8 KB figure is used
  (``SRAM_MIN_BITS``), which overstates the small memories rather than extrapolating.
- DRAM: ``20.3125`` pJ per bit (``DRAM_PJ_PER_BIT``; Horowitz's 1.3-2.6 nJ per 64 bits). The
  overlay keeps everything on chip; :func:`energy_45nm` reports what fetching the weights
  from DRAM once per inference would add, for comparison.

The counts are exact (:mod:`quantflow.accesses`); the memories' sizes and word widths are the
overlay's own (:func:`hwgen.layouts.mem_shape` / ``mem_depth``).

**FPGA column** (an estimate with its uncertainty): core power ``P = P_static + f * (p_idle +
p_logic * u)`` mW, ``f`` in MHz, ``u`` the design's share of the device's logic cells, times the
latency at ``f``. iCE40UP5K constants (``FPGA_POWER``): ``P_static`` about 0.1 mW of static core
power and ``p_idle`` about 0.05 mW/MHz for a near-empty design (the figures issue 14 quotes for
Lattice's iCE40 UltraPlus; not re-measured here); ``p_logic`` from MARLANN, the open iCE40UP5K
CNN accelerator, a full ~5k-LC design: Symbiotic EDA's "UP5K power usage running MLAccel
firmware" (github.com/SymbioticEDA/MARLANN, 31/12/2018) measures the 1.2 V core at 10.58 mW
running at 12 MHz and 16.99 mW at 20 MHz, a slope of 0.80 mW/MHz at ``u`` about 1, so
``p_logic = 0.80 - 0.05 = 0.75`` mW/MHz. The model gives 9.7 and 16.1 mW at those two points
(8% and 5% under); the same document's idle core (loaded, not computing, 3.53 mW at 12 MHz)
shows how much depends on switching activity, which the model does not see, hence the stated
uncertainty of +-50%. No measurement of the ECP5 or Gowin boards is on hand, so those boards
get no FPGA column (``None``) rather than a guess.
"""

import math

__all__ = ["MUL_PJ", "ADD_PJ_PER_BIT", "SRAM_PJ", "SRAM_MIN_BITS", "DRAM_PJ_PER_BIT",
           "mul_pj", "add_pj", "sram_pj_per_bit", "memory_sizes", "energy_45nm",
           "FPGA_POWER", "fpga_power_mw", "energy_fpga", "energy"]

#: Multiply: pJ = a * b_w * b_a + b * sqrt(b_w * b_a) (qtools ``fpm_mul``).
MUL_PJ = (0.002994791667, 0.001041666667)
#: Add: pJ per accumulator bit (qtools ``fpm_add``).
ADD_PJ_PER_BIT = 0.003125
#: SRAM access per bit: cubic coefficients (t^3, t^2, t, 1) in t = log2(bits) (qtools
#: ``sram_rd``).
SRAM_PJ = (9.02427321e-04, -2.68847858e-02, 2.08900804e-01, 0.0)
#: Memories smaller than this (8 KB) are charged the 8 KB figure (see the module docstring).
SRAM_MIN_BITS = 8 * 1024 * 8
#: DRAM access, pJ per bit (qtools ``dram_rd``).
DRAM_PJ_PER_BIT = 20.3125


def mul_pj(b_w, b_a):
    """Energy of one ``b_w x b_a``-bit integer multiply, pJ."""
    return MUL_PJ[0] * b_w * b_a + MUL_PJ[1] * math.sqrt(b_w * b_a)


def add_pj(bits):
    """Energy of one ``bits``-wide add, pJ."""
    return ADD_PJ_PER_BIT * bits


def sram_pj_per_bit(size_bits):
    """Energy per bit read or written in an SRAM of ``size_bits``, pJ."""
    t = math.log2(max(size_bits, SRAM_MIN_BITS))
    a, b, c, d = SRAM_PJ
    return ((a * t + b) * t + c) * t + d


def memory_sizes(cfg):
    """``{memory name: (word bits, depth)}`` of the overlay's buffers."""
    from hwgen.layouts import Mem, mem_depth, mem_width

    return {mem.name.lower(): (mem_width(cfg, mem), mem_depth(cfg, mem)) for mem in Mem}


#: Access count key -> (memory, bits per access: None = the memory's word).
_TRAFFIC = {"weight_reads": ("weight", None), "act_reads": ("act0", None),
            "act_writes": ("act0", "act_bits"), "acc_writes": ("acc", None),
            "bias_reads": ("bias", None), "rq_reads": ("rq", None),
            "prog_reads": ("prog", None)}


def energy_45nm(program, cfg):
    """The 45 nm column: ``{"total_pj", "mac_pj", "memory_pj", "per_layer", "counts",
    "dram_weights_pj"}`` for one inference (see the module docstring)."""
    from quantflow.accesses import program_accesses

    rows, total = program_accesses(program, cfg)
    sizes = memory_sizes(cfg)
    # One lane product (b_w x the activation operand) and one accumulator-wide add per MAC.
    mac = mul_pj(cfg.weight_bits, cfg.a_operand_bits) + add_pj(cfg.acc_bits)
    per_layer = []
    for r in rows:
        mem = 0.0
        for key, (name, width) in _TRAFFIC.items():
            word, depth = sizes[name]
            bits = getattr(cfg, width) if width else word
            mem += r[key] * bits * sram_pj_per_bit(word * depth)
        per_layer.append({"op": r["op"], "mac_pj": r["array_macs"] * mac, "memory_pj": mem})
    mac_pj = sum(r["mac_pj"] for r in per_layer)
    mem_pj = sum(r["memory_pj"] for r in per_layer)
    weight_bits = total["weight_reads"] * sizes["weight"][0]
    return {"total_pj": mac_pj + mem_pj, "mac_pj": mac_pj, "memory_pj": mem_pj,
            "pj_per_mac": mac, "per_layer": per_layer, "counts": total,
            "dram_weights_pj": weight_bits * DRAM_PJ_PER_BIT}


#: Device name -> (static mW, idle mW/MHz, logic mW/MHz at full use, relative uncertainty).
FPGA_POWER = {"iCE40UP5K": (0.1, 0.05, 0.75, 0.5)}


def fpga_power_mw(device, lut_share, mhz):
    """``(mW, relative uncertainty)`` of ``device`` at ``lut_share`` of its logic and ``mhz``,
    or ``None`` without a published measurement."""
    if device not in FPGA_POWER:
        return None
    static, idle, logic, unc = FPGA_POWER[device]
    return static + mhz * (idle + logic * min(1.0, max(0.0, lut_share))), unc


def energy_fpga(device, lut_share, mhz, cycles):
    """The FPGA column for one inference at ``mhz``: ``{"power_mw", "energy_uj",
    "uncertainty"}`` or ``None``."""
    got = fpga_power_mw(device, lut_share, mhz)
    if got is None:
        return None
    mw, unc = got
    return {"power_mw": mw, "energy_uj": mw * 1e-3 * cycles / (mhz * 1e6) * 1e6,
            "uncertainty": unc, "mhz": mhz}


def energy(program, cfg, device, lut_share, mhz):
    """Both columns for one inference: ``{"asic_45nm": ..., "fpga": ...}``."""
    cycles = sum(program.cycles)
    return {"asic_45nm": energy_45nm(program, cfg),
            "fpga": energy_fpga(device, lut_share, mhz, cycles)}
