"""Range setting: min-max, percentile and MSE scales, and the optimality each method claims."""

import numpy as np
import pytest
from flowkit import node_rng

from quantflow.calibrate import (
    MSE_GRID,
    PERCENTILE,
    RangeMethod,
    activation_scale,
    weight_scales,
)
from quantflow.numerics import WeightGrid


def _act_err(x, scale, bits):
    levels = (1 << bits) - 1
    return float(np.mean((x - np.clip(np.rint(x / scale), 0, levels) * scale) ** 2))


def _w_err(w, scales, bits, corr=None):
    qmax = (1 << (bits - 1)) - 1
    d = w - np.clip(np.rint(w / scales[:, None]), -qmax, qmax) * scales[:, None]
    if corr is None:
        return np.mean(d ** 2, axis=1)
    return np.einsum("ok,kl,ol->o", d, corr, d)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_activation_minmax_and_percentile(request, bits):
    seed, rng = node_rng(request)
    x = np.abs(rng.standard_t(3, size=20000))
    levels = (1 << bits) - 1
    assert activation_scale(x, bits, RangeMethod.MINMAX) == x.max() / levels
    p = activation_scale(x, bits, RangeMethod.PERCENTILE)
    assert p == pytest.approx(np.percentile(x, PERCENTILE) / levels), f"seed={seed}"
    assert p < x.max() / levels, f"seed={seed}: a heavy tail must be clipped"


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_activation_mse_is_best_on_its_grid(request, bits):
    seed, rng = node_rng(request)
    x = np.maximum(rng.normal(0.3, 1.0, size=5000), 0)
    s = activation_scale(x, bits, RangeMethod.MSE)
    levels = (1 << bits) - 1
    err = _act_err(x, s, bits)
    for f in MSE_GRID:
        assert err <= _act_err(x, x.max() * f / levels, bits) + 1e-15, f"seed={seed} f={f}"
    assert err <= _act_err(x, activation_scale(x, bits, RangeMethod.MINMAX), bits)
    assert activation_scale(x, bits, RangeMethod.MSE_OUTPUT) == s  # MSE for activations


@pytest.mark.parametrize("method", list(RangeMethod), ids=[m.value for m in RangeMethod])
def test_activation_dead_tensor_scale_is_one(method):
    assert activation_scale(np.zeros(100), 4, method) == 1.0
    assert activation_scale(np.full(10, -3.0), 4, method) == 1.0  # all clipped by ReLU anyway
    assert activation_scale(np.zeros(0), 4, method) == 1.0


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_weight_scales_per_channel(request, bits):
    seed, rng = node_rng(request)
    w = rng.normal(0, 1, size=(6, 3, 3, 3)) * np.arange(1, 7)[:, None, None, None]
    w[5] = 0.0  # a dead channel
    qmax = (1 << (bits - 1)) - 1
    mm = weight_scales(w, bits, RangeMethod.MINMAX)
    assert mm.shape == (6,)
    flat = w.reshape(6, -1)
    assert np.array_equal(mm[:5], np.abs(flat[:5]).max(axis=1) / qmax)
    assert mm[5] == 1.0 / qmax
    for method in RangeMethod:
        inputs = rng.normal(size=(200, 27)) if method is RangeMethod.MSE_OUTPUT else None
        s = weight_scales(w, bits, method, inputs)
        assert s.shape == (6,) and np.all(s > 0) and np.all(np.isfinite(s)), method
        assert np.all(s <= mm + 1e-12), f"seed={seed} {method}: never wider than min-max"
    mse = weight_scales(w, bits, RangeMethod.MSE)
    assert np.all(_w_err(flat, mse, bits) <= _w_err(flat, mm, bits) + 1e-15), f"seed={seed}"


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_full_grid_scales_and_codes(request, bits):
    """The full grid: min-max puts -max|w| on the code -2^(b-1) (step max / 2^(b-1)); at 2 bits
    the codes it rounds to are all four values, and MSE on that grid never has more error than
    min-max on it."""
    seed, rng = node_rng(request)
    w = rng.normal(0, 1, size=(5, 40))
    w[:, 0] = -np.abs(w).max(axis=1) * 1.5  # the largest magnitude is negative: reaches -2^(b-1)
    full, narrow = WeightGrid.FULL, WeightGrid.NARROW
    mm = weight_scales(w, bits, RangeMethod.MINMAX, grid=full)
    assert np.array_equal(mm, np.abs(w).max(axis=1) / (1 << (bits - 1))), f"seed={seed}"
    assert np.array_equal(weight_scales(w, bits, RangeMethod.MINMAX, grid=narrow),
                          np.abs(w).max(axis=1) / ((1 << (bits - 1)) - 1))
    codes = np.clip(np.rint(w / mm[:, None]), full.lo(bits), full.hi(bits))
    assert codes.min() == -(1 << (bits - 1)) and codes.max() <= (1 << (bits - 1)) - 1
    if bits == 2:
        assert set(np.unique(codes)) == {-2, -1, 0, 1}, f"seed={seed}: the fourth code"
    mse = weight_scales(w, bits, RangeMethod.MSE, grid=full)

    def err(s):
        q = np.clip(np.rint(w / s[:, None]), full.lo(bits), full.hi(bits)) * s[:, None]
        return np.mean((w - q) ** 2, axis=1)

    assert np.all(err(mse) <= err(mm) + 1e-15), f"seed={seed}"


def test_weight_grid_bounds_and_message():
    assert [(g.lo(2), g.hi(2), g.steps(2)) for g in WeightGrid] == [(-1, 1, 1), (-2, 1, 2)]
    assert [(g.lo(8), g.hi(8)) for g in WeightGrid] == [(-127, 127), (-128, 127)]
    with pytest.raises(TypeError, match=r"^Weight grid must be a WeightGrid, not 'full'$"):
        weight_scales(np.ones((2, 3)), 4, RangeMethod.MINMAX, grid="full")


def test_weight_mse_output_minimises_output_error(request):
    seed, rng = node_rng(request)
    w = rng.normal(0, 1, size=(4, 8))
    # strongly correlated, unequal inputs: output error differs from weight error
    mix = rng.normal(size=(8, 8)) * np.linspace(0.1, 3, 8)
    x = rng.normal(size=(500, 8)) @ mix
    corr = x.T @ x / len(x)
    out = weight_scales(w, 3, RangeMethod.MSE_OUTPUT, x)
    for other in (RangeMethod.MINMAX, RangeMethod.MSE, RangeMethod.PERCENTILE):
        s = weight_scales(w, 3, other)
        assert np.all(_w_err(w, out, 3, corr) <= _w_err(w, s, 3, corr) * (1 + 1e-9)), (
            f"seed={seed}: mse-out worse than {other.value}")


def test_method_messages():
    with pytest.raises(ValueError,
                       match=r"^Range method mse-out must have calibration inputs, not None$"):
        weight_scales(np.ones((2, 3)), 4, RangeMethod.MSE_OUTPUT)
    with pytest.raises(TypeError, match=r"^Range method must be a RangeMethod, not 'minmax'$"):
        weight_scales(np.ones((2, 3)), 4, "minmax")
    with pytest.raises(TypeError, match=r"^Range method must be a RangeMethod, not 'mse'$"):
        activation_scale(np.ones(3), 4, "mse")


def test_grid_ends_at_min_max():
    assert MSE_GRID[-1] == 1.0 and 0 < MSE_GRID[0] < 1 and np.all(np.diff(MSE_GRID) > 0)
