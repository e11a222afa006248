"""The one place that decides a board's overlay: its array shape and multiplier style.

Light on purpose (no gateware import): ``hwgen estimate`` answers in about a second, and
:mod:`boards.build` (the synthesis), ``hwgen run`` and ``generate --board`` read the same
decision from here.
"""

__all__ = ["DSP_MIN_PRODUCT_BITS", "multiplier_style", "default_array", "board_config"]


#: Narrowest product worth a DSP block: below it a shift-and-add multiplier is a handful of
#: LUTs, and Yosys's iCE40 DSP mapping leaves products under 11 bits in LUTs anyway.
DSP_MIN_PRODUCT_BITS = 9


def multiplier_style(target, rows, cols, weight_bits, act_bits):
    """``"dsp"`` when the products are at least ``DSP_MIN_PRODUCT_BITS`` wide and the device
    has a DSP block for each of the ``rows * cols`` multipliers, else ``"lut"``
    (shift-and-add): a half-mapped array would still be LUT-bound."""
    wide = weight_bits + act_bits >= DSP_MIN_PRODUCT_BITS
    return "dsp" if wide and target.device.dsp >= rows * cols else "lut"


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


def board_config(target, model, array=None):
    """``(AccelConfig, multiplier style)`` of ``model``'s overlay on ``target``: the one place
    that decides a board's array and multipliers (``hwgen synth`` and ``hwgen run`` agree).
    The multipliers are as wide as the overlay's lanes (a wider layer runs as weight digits),
    not as the widest layer. Raises ``ValueError``/``TypeError`` for a configuration that
    cannot be built (e.g. too few columns for the input's digits)."""
    from hwgen.config import AccelConfig, lane_bits

    rows, cols = tuple(array) if array is not None else default_array(target, model)
    wbits, abits = lane_bits(model, (rows, cols))
    style = multiplier_style(target, rows, cols, wbits, abits)
    cfg = AccelConfig.for_model(model, array=(rows, cols), lut_multipliers=style == "lut",
                                weight_bits=wbits, act_bits=abits)
    return cfg, style
