"""Binary networks on the generated overlay, Verilator and Icarus, every layer compared.

1-bit weights run on bipolar lanes (a stored bit c is the weight 2c - 1: the product is a
select between the activation and its negation) and 1-bit activations on 1-bit lanes (the
8-bit network input as eight 1-bit digits); the zoo networks after a short QAT, so their
activations are those of a working binary network. A grouped convolution, which needs zero
weights, sends a binary network to 2-bit weight lanes (behind ``slow``; tests/test_ptq.py
checks the choice).
"""

import pytest

from rtl_tests.runner import Sim


@pytest.mark.verilator
def test_binary_digits_cnn_verilator(quantized_zoo, zoo_bit_exact, seed):
    """digits-cnn W1A1 after 10 epochs of QAT on the default 8x8 array: bipolar weight lanes,
    1-bit activation lanes, 30 test images, every layer bit-exact."""
    s = zoo_bit_exact(quantized_zoo("digits-cnn", 1, 1, qat=10), Sim.VERILATOR, 30, seed,
                      (1, 1))
    assert s["accuracy"] is not None and s["accuracy"] > 0.85, s["accuracy"]


@pytest.mark.icarus
def test_binary_digits_mlp_icarus(quantized_zoo, zoo_bit_exact, seed):
    zoo_bit_exact(quantized_zoo("digits-mlp", 1, 1, qat=10), Sim.ICARUS, 3, seed, (1, 1))


@pytest.mark.slow  # a design of its own (2-bit weight lanes, 1-bit activations): 1.5 min
@pytest.mark.verilator
def test_binary_depthwise_net_takes_two_bit_weight_lanes(quantized_zoo, zoo_bit_exact, seed):
    """digits-dsconv W1A1: its depthwise layers need zero weights between groups, which a
    bipolar lane cannot hold, so the overlay gets 2-bit weight lanes (the +-1 codes on them)
    and 1-bit activation lanes."""
    zoo_bit_exact(quantized_zoo("digits-dsconv", 1, 1), Sim.VERILATOR, 10, seed, (2, 1))
