"""Per-layer bit widths (PTQConfig.layer_bits) are validated against the captured chain."""

import numpy as np
import pytest
from flowkit import calib_set, captured, digits

from quantflow import ptq
from quantflow.errors import UserError


def test_unknown_layer_name_lists_the_valid_ones():
    cfg = ptq.PTQConfig(2, 2, layer_bits={"fc": (8, 8)})
    with pytest.raises(UserError, match=r"^Layer name must be one of 0, 3, 7, 10, not 'fc'$"):
        ptq.quantize(captured("digits-cnn"), "m", (1, 8, 8), calib_set(), cfg)


def test_layer_bits_must_name_a_mac_layer_not_a_pool():
    with pytest.raises(UserError, match=r"^Layer name must be one of 0, 3, 7, 10, not '6'$"):
        ptq.check_layer_bits(captured("digits-cnn"), {"6": (8, 8)})


@pytest.mark.parametrize(("value", "exc", "msg"), [
    ((8,), TypeError, r"^Layer bits must be a \(w_bits, a_bits\) tuple, not \(8,\)$"),
    ((9, 8), ValueError, r"^Weight bits of layer '0' must be an integer in 1\.\.8, not 9$"),
    ((8, 0), ValueError, r"^Activation bits of layer '0' must be an integer in 1\.\.8, not 0$"),
])
def test_layer_bits_values_are_validated(value, exc, msg):
    with pytest.raises(exc, match=msg):
        ptq.check_layer_bits(captured("digits-cnn"), {"0": value})


def test_layer_bits_set_each_layers_formats():
    cfg = ptq.PTQConfig(2, 2, layer_bits={"0": (8, 6), "10": (4, 8)})
    qm = ptq.quantize(captured("digits-cnn"), "m", digits().input_shape, calib_set(),
                      cfg).export()
    by = {lyr.name: lyr for lyr in qm.layers}
    assert (by["0"].w_fmt.bits, by["0"].out_fmt.bits) == (8, 6)
    assert by["3"].in_fmt.bits == 6 and (by["3"].w_fmt.bits, by["3"].out_fmt.bits) == (2, 2)
    assert by["10"].w_fmt.bits == 4 and not by["10"].requant
    assert np.all(np.abs(by["0"].weight) <= 127)
