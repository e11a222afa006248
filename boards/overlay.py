"""The one place that decides a board's overlay: its array shape and multiplier style.

Light on purpose (no gateware import): ``hwgen estimate`` answers in about a second, and
:mod:`boards.build` (the synthesis), ``hwgen run`` and ``generate --board`` read the same
decision from here.
"""

__all__ = ["DSP_MIN_PRODUCT_BITS", "fixed_dsp", "multiplier_style", "smaller_arrays",
           "default_array", "board_configs", "board_config", "board_design"]


#: Narrowest product worth a DSP block: below it a shift-and-add multiplier is a handful of
#: LUTs, and Yosys's iCE40 DSP mapping leaves products under 11 bits in LUTs anyway.
DSP_MIN_PRODUCT_BITS = 9


def fixed_dsp(target):
    """DSP blocks the rest of the design takes whatever the array (the requantizer's
    ``acc x M`` product; on ECP5 one for the sequencer's address arithmetic), as the estimate's
    calibration measured them (``boards/estimate.json``); 2 for an uncalibrated family."""
    from .estimate import load_coeffs

    fam = load_coeffs()["families"].get(target.family, {})
    return fam.get("fixed_dsp", 2)


def multiplier_style(target, rows, cols, weight_bits, act_bits):
    """``"dsp"`` when the products are at least ``DSP_MIN_PRODUCT_BITS`` wide and the device
    has a DSP block for each of the ``rows * cols`` multipliers besides the ones the rest of
    the design takes (:func:`fixed_dsp`), else ``"lut"`` (shift-and-add): a half-mapped array
    would still be LUT-bound."""
    wide = weight_bits + act_bits >= DSP_MIN_PRODUCT_BITS
    return "dsp" if wide and target.device.dsp >= rows * cols + fixed_dsp(target) else "lut"


def default_array(target, model):
    """The board's array, its columns widened to the next power of two that holds the network
    input's digits (an 8-bit input at 2 activation bits is 4 digits in adjacent lanes), so a
    board builds at every bit width."""
    from hwgen.config import act_widths, input_digits, model_act_bits

    rows, cols = target.array
    # the narrowest lanes the model may get carry its widest tensor as the most digits
    digits = input_digits(max(model.input_fmt.bits, model_act_bits(model)),
                          min(act_widths(model)))
    while cols < digits:
        cols *= 2
    return rows, cols


def smaller_arrays(rows, cols, min_cols=1):
    """``(rows, cols)`` and the shapes below it, halving the larger side (rows on a tie) down
    to 1 x ``min_cols``."""
    shapes = [(rows, cols)]
    while True:
        r, c = shapes[-1]
        if r >= c and r > 1:
            r //= 2
        elif c // 2 >= min_cols and c > 1:
            c //= 2
        elif r > 1:
            r //= 2
        else:
            return shapes
        shapes.append((r, c))


def board_configs(target, model, array=None):
    """Every overlay :func:`board_config` considers for ``model`` on ``target``, lazily, in its
    order of preference: ``(AccelConfig, multiplier style, estimated to fit: True, False or
    None when the family is not calibrated)``. ``hwgen synth`` without ``--array`` falls back
    along it when a real build does not fit where the estimate said it would."""
    from hwgen.config import AccelConfig, lane_pairs

    from .estimate import NotCalibratedError, estimate_config

    rows, cols = tuple(array) if array is not None else default_array(target, model)
    shapes = [(rows, cols)] if array is not None else smaller_arrays(rows, cols)
    made = 0
    for n, (r, c) in enumerate(shapes):
        for wbits, abits in lane_pairs(model, (r, c)):
            style = multiplier_style(target, r, c, wbits, abits)
            try:
                cfg = AccelConfig.for_model(model, array=(r, c), weight_bits=wbits,
                                            act_bits=abits, lut_multipliers=style == "lut")
            except (TypeError, ValueError):
                if n == 0 and not made:
                    raise
                continue  # a smaller array without room for the digits
            try:
                fits = bool(estimate_config(target, cfg, style)["fits"])
            except NotCalibratedError:
                fits = None
            made += 1
            yield cfg, style, fits


def board_config(target, model, array=None):
    """``(AccelConfig, multiplier style)`` of ``model``'s overlay on ``target``: the one place
    that decides a board's array and multipliers (``hwgen synth``, ``hwgen run`` and
    ``hwgen estimate`` agree).

    The multipliers are as wide as the overlay's lanes (a wider layer runs as digits), not as
    the widest layer. Of the lane widths :func:`hwgen.config.lane_pairs` ranks by area x
    cycles, the first the estimate says fits the board is taken (digits of a wide activation
    tensor cost their reader weight memory: each channel's weights are stored once per digit
    lane). Without ``array`` the board's array is tried first, then smaller ones
    (:func:`smaller_arrays`) until one fits (the OrangeCrab-25F's 8x8 at W8A8 needs 28k of its
    24k LUTs, its 4x4 fits); when nothing fits, the first choice is returned and ``synth``'s
    check names the resource; an uncalibrated family gets the first by area x cycles.
    Raises ``ValueError``/``TypeError`` for a configuration that cannot be built (e.g. too
    few columns for the input's digits)."""
    first = None
    for cfg, style, fits in board_configs(target, model, array):
        if fits or fits is None:
            return cfg, style
        first = first or (cfg, style)
    return first


def board_design(target, model, array=None, cfg=None):
    """The :class:`hwgen.emit.Design` that ``hwgen synth`` builds for ``model`` on ``target``
    (``cfg``: its configuration, default :func:`board_config`'s): the board's buffer factory
    (iCE40 SPRAM for the weights), its UART divisor and the primitives' simulation models.
    ``hwgen simulate --board`` simulates exactly these files; the build reads the same ones."""
    import hashlib
    from pathlib import Path

    from hwgen.emit import Design
    from hwgen.uart import divisor_for

    from . import memories

    if cfg is None:
        cfg, _ = board_config(target, model, array)
    style = "lut" if cfg.lut_multipliers else "dsp"
    models = memories.sim_models(target)
    source = Path(memories.__file__).read_bytes()
    key = hashlib.sha256(f"{target.name}|".encode() + source).hexdigest()[:16]
    about = {"board": target.name, "device": target.device.name, "multipliers": style,
             "memories": memories.placement(target, cfg)}
    return Design(cfg, memory=target.memory_factory(),
                  divisor=divisor_for(target.clock_mhz * 1e6, target.baud), models=models,
                  key=key, about=about)
