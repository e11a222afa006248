"""Range setting: the clipping range of each quantized tensor, by min-max, percentile or MSE.

Activations are unsigned (``[0, t]`` with ``2**b - 1`` steps); weights are per output channel on
a :class:`~quantflow.numerics.WeightGrid`: narrow (``[-t, t]`` with ``2**(b-1) - 1`` steps each
side) or full (``2**(b-1)`` steps from ``-t`` to 0, one fewer above); at 1 bit both are the
bipolar ``±s``. Each function returns the scale (real value of one LSB). Pure numpy on float64.
"""

import enum

import numpy as np

from .numerics import WeightGrid

__all__ = ["RangeMethod", "Method", "activation_scale", "weight_scales", "PERCENTILE",
           "MSE_GRID", "RECIPE_NAMES"]

#: Percentile (of the values, or of |w| per channel) used by RangeMethod.PERCENTILE.
PERCENTILE = 99.99
#: Candidate clipping thresholds for the MSE search, as fractions of the maximum.
MSE_GRID = np.linspace(0.05, 1.0, 96)
#: Values sampled from a calibration tensor for the MSE search (deterministic stride).
_MSE_SAMPLES = 1 << 18
_TINY = 1e-12


class RangeMethod(enum.Enum):
    """How a clipping range is chosen.

    MSE minimises the quantization error of the tensor itself. MSE_OUTPUT (weights only; for
    activations it is MSE) minimises the error of the layer's *output* on calibration inputs,
    ``E||x^T (w - q(w))||^2 = d^T C d`` with ``C`` the input correlation, per output channel.
    """

    MINMAX = "minmax"
    PERCENTILE = "percentile"
    MSE = "mse"
    MSE_OUTPUT = "mse-out"


class Method(enum.Enum):
    """Range-setting recipe: one method for weights and activations, or the default ``auto``
    (best weight/activation pair on a validation split of the training data). Used by
    :func:`quantflow.flow.quantize_model`; defined here, with numpy only, so that a command
    line is checked before torch loads."""

    AUTO = "auto"
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    MSE = "mse"
    MSE_OUTPUT = "mse-out"


#: The names of :mod:`quantflow.recipes`' recipes, ``auto`` first: that module builds them
#: (and checks it builds exactly these); here a name is checked before torch loads.
RECIPE_NAMES = ("auto", "minmax", "mse", "mse-out", "cle", "bc", "cle-bc", "adaround",
                "adaround-bc", "cle-adaround", "cle-adaround-bc", "bc-search",
                "adaround-bc-search", "gptq-bc", "gptq-bc-search")


def _fake_unsigned(x, t, levels):
    s = t / levels
    return np.clip(np.rint(x / s), 0, levels) * s


def activation_scale(values, bits, method, signed=False):
    """Scale for a ``bits``-bit activation tensor from calibration ``values``: unsigned
    (``[0, t]``, ``2**b - 1`` steps) or signed symmetric (``[-t, t]``, ``2**(b-1) - 1`` steps
    each side; the range is set on ``|x|``)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if signed:
        x = np.abs(x)
    levels = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    top = float(x.max()) if x.size else 0.0
    if top <= _TINY:
        return 1.0  # a dead tensor: any scale is exact, keep 1 so ratios stay finite
    if method is RangeMethod.MINMAX:
        t = top
    elif method is RangeMethod.PERCENTILE:
        t = max(float(np.percentile(x, PERCENTILE)), top * MSE_GRID[0])
    elif method in (RangeMethod.MSE, RangeMethod.MSE_OUTPUT):
        if x.size > _MSE_SAMPLES:
            x = x[:: x.size // _MSE_SAMPLES]
        errs = [np.mean((x - _fake_unsigned(x, top * f, levels)) ** 2) for f in MSE_GRID]
        t = top * MSE_GRID[int(np.argmin(errs))]
    else:
        raise TypeError(f"Range method must be a RangeMethod, not {method!r}")
    return t / levels


def weight_scales(weight, bits, method, inputs=None, grid=WeightGrid.NARROW):
    """Per-output-channel scales (shape ``(O,)``) for signed ``bits``-bit weights on ``grid``.

    The threshold ``t`` (min-max: ``max |w|``) becomes the scale ``t / grid.steps(bits)``; the
    MSE searches measure the error with the grid's own clamp. ``inputs``: calibration inputs
    of the layer as rows ``(N, K)`` in the weight's flattened order; needed by MSE_OUTPUT only.

    At 1 bit (bipolar ``±s``) min-max and percentile give ``mean |w|`` per channel, the scale
    that minimises ``||w - s sign(w)||^2`` (XNOR-Net, Rastegari et al. 2016): ``max |w|``
    would put every weight at the extreme. The MSE searches measure the sign's error as usual.
    """
    if not isinstance(grid, WeightGrid):
        raise TypeError(f"Weight grid must be a WeightGrid, not {grid!r}")
    w = np.asarray(weight, dtype=np.float64).reshape(len(weight), -1)
    qmax = grid.steps(bits)
    top = np.abs(w).max(axis=1)
    if bits == 1 and method in (RangeMethod.MINMAX, RangeMethod.PERCENTILE):
        t = np.abs(w).mean(axis=1)
    elif method is RangeMethod.MINMAX:
        t = top
    elif method is RangeMethod.PERCENTILE:
        t = np.maximum(np.percentile(np.abs(w), PERCENTILE, axis=1), top * MSE_GRID[0])
    elif method in (RangeMethod.MSE, RangeMethod.MSE_OUTPUT):
        cands = top[:, None] * MSE_GRID[None, :]  # (O, G)
        s = np.maximum(cands / qmax, _TINY)[:, :, None]
        d = w[:, None, :] - grid.codes(w[:, None, :] / s, bits) * s
        if method is RangeMethod.MSE:
            errs = np.mean(d ** 2, axis=2)
        else:
            if inputs is None:
                raise ValueError("Range method mse-out must have calibration inputs, not None")
            x = np.asarray(inputs, dtype=np.float64)
            corr = x.T @ x / max(len(x), 1)
            errs = np.einsum("ogk,kl,ogl->og", d, corr, d, optimize=True)
        t = cands[np.arange(len(w)), np.argmin(errs, axis=1)]
    else:
        raise TypeError(f"Range method must be a RangeMethod, not {method!r}")
    t = np.where(t > _TINY, t, 1.0)  # an all-zero channel quantizes exactly at any scale
    return t / qmax
