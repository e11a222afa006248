"""AccelConfig: validation messages, derived widths, fitting a model, digest."""

import re

import numpy as np
import pytest

from factories import digits_cnn, digits_mlp
from hwgen.config import AccelConfig
from hwgen.errors import DoesNotFitError
from quantflow.numerics import QFormat, acc_bits


@pytest.mark.parametrize("kwargs,exc,message", [
    ({"weight_bits": 0}, ValueError, "Weight bits must be an integer in 1..8, not 0"),
    ({"weight_bits": 9}, ValueError, "Weight bits must be an integer in 1..8, not 9"),
    ({"weight_bits": 1, "layer_weight_bits": 2}, ValueError,
     "Layer weight bits must be 1 on bipolar 1-bit weight lanes (they hold +-1 only), not 2:"
     " wider layers need weight lanes of 2+ bits"),
    ({"weight_bits": 4.0}, TypeError, "Weight bits must be an integer, not 4.0"),
    ({"act_bits": True}, TypeError, "Activation bits must be an integer, not True"),
    ({"act_bits": 0}, ValueError, "Activation bits must be an integer in 1..8, not 0"),
    ({"input_bits": 17}, ValueError, "Input bits must be an integer in 1..16, not 17"),
    ({"mult_bits": 1}, ValueError, "Multiplier bits must be an integer in 2..31, not 1"),
    ({"rows": 0}, ValueError, "Array rows must be an integer in 1..64, not 0"),
    ({"cols": "8"}, TypeError, "Array columns must be an integer, not '8'"),
    ({"max_reduction": 0}, ValueError,
     "Maximum reduction must be an integer in 1..1048576, not 0"),
    ({"weight_depth": 1}, ValueError, "Weight depth must be an integer in 2..1048576, not 1"),
    ({"act_depth": 1}, ValueError,
     "Activation depth must be an integer in 2..1048576, not 1"),
    ({"max_layers": 1}, ValueError, "Maximum layers must be an integer in 2..1048576, not 1"),
    ({"lut_multipliers": 1}, TypeError, "LUT multipliers must be a bool, not 1"),
    ({"host_bits": 20}, ValueError, "Host word bits must be a multiple of 8, not 20"),
    ({"host_bits": 8}, ValueError, "Host word bits must be an integer in 16..64, not 8"),
    ({"host_bits": 16, "act_depth": 1 << 16}, ValueError,
     "Host word bits must be at least the 17 bits of a buffer count, not 16"),
    ({"host_bits": 16}, ValueError, "Counter bits must be an integer in 8..16, not 32"),
    ({"cols": 3, "act_bits": 2}, ValueError,
     "Array columns must be at least the 4 digits of a 8-bit input at 2 activation bits,"
     " not 3"),
])
def test_validation_messages(kwargs, exc, message):
    with pytest.raises(exc, match=rf"^{re.escape(message)}$"):
        AccelConfig(**kwargs)


def test_frozen():
    cfg = AccelConfig()
    with pytest.raises(AttributeError):
        cfg.rows = 4


@pytest.mark.parametrize("wbits,abits,inbits", [(2, 2, 8), (4, 4, 8), (8, 8, 8), (3, 6, 6)])
def test_derived_widths(wbits, abits, inbits):
    cfg = AccelConfig(weight_bits=wbits, act_bits=abits, input_bits=inbits, rows=4, cols=4)
    widest = QFormat(max(abits, inbits), False)
    assert cfg.acc_bits == acc_bits(QFormat(wbits, True), widest, cfg.max_reduction)
    assert cfg.digits_max == -(-inbits // abits)
    assert cfg.shift_max == cfg.acc_bits + cfg.mult_bits - 1
    assert cfg.act_word_bits == 4 * abits
    assert cfg.weight_word_bits == 16 * wbits
    # the worst-case accumulation fits the accumulator width
    k = cfg.max_reduction
    worst = k * (1 << (wbits - 1)) * ((1 << max(abits, inbits)) - 1) * 2
    assert worst <= 1 << (cfg.acc_bits - 1)


def test_for_model_and_digest():
    model = digits_cnn(np.random.default_rng(0), 3, 5)
    cfg = AccelConfig.for_model(model, array=(4, 8))
    assert (cfg.weight_bits, cfg.act_bits, cfg.input_bits) == (3, 5, 8)
    assert (cfg.rows, cfg.cols) == (4, 8)
    assert cfg.check_fits(model)
    assert cfg.digest == AccelConfig.for_model(model, array=(4, 8)).digest
    assert cfg.digest != AccelConfig.for_model(model, array=(8, 8)).digest
    assert re.fullmatch(r"[0-9a-f]{16}", cfg.digest)


@pytest.mark.parametrize("override,buffer", [
    ({"weight_depth": 16}, r"weight memory \(words\) does not fit: needs 362, has 16"),
    ({"act_depth": 64}, r"activation memory \(words per bank; the live tensors at layer 1"
                        r" \('conv1'\)\) does not fit: needs 256, has 64"),
    ({"param_depth": 8}, r"bias/requantization memory \(entries\) does not fit: needs 90,"
                         r" has 8"),
    ({"max_layers": 4}, r"program memory \(layer descriptors\) does not fit: needs 5, has 4"),
    ({"acc_depth": 4}, r"logits memory \(entries\) does not fit: needs 10, has 4"),
])
def test_does_not_fit(override, buffer):
    model = digits_cnn(np.random.default_rng(0))
    cfg = AccelConfig.for_model(model, **override)
    with pytest.raises(DoesNotFitError, match=rf"^{buffer} \(configuration [0-9a-f]{{16}}\)$"):
        cfg.check_fits(model)


def test_word_lengths_must_fit():
    model = digits_mlp(np.random.default_rng(0), 6, 6)
    cfg = AccelConfig(weight_bits=4, act_bits=6, rows=4, cols=4)
    with pytest.raises(DoesNotFitError, match=r"^layer 1 \('linear1'\) weight bits does not"
                                              r" fit: needs 6, has 4 "):
        cfg.check_fits(model)
