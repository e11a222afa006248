"""Post-training quantization: chain checks, config validation, recipes, and a sanity regression."""

import numpy as np
import pytest
import torch
from flowkit import calib_set, captured, digits, quantized, trained
from torch import nn

from quantflow import data, flow, ptq, reference, zoo
from quantflow.calibrate import RangeMethod
from quantflow.errors import UnsupportedOpError
from quantflow.importers import capture
from quantflow.numerics import QFormat


def _chain(*modules, shape=(1, 8, 8)):
    return capture(nn.Sequential(*modules), shape)


def test_check_chain_accepts_the_zoo():
    assert ptq.check_chain(captured("digits-cnn")) == 5
    assert ptq.check_chain(captured("digits-mlp")) == 3
    # Flatten after the last MAC layer is fine (logits are a vector either way)
    assert ptq.check_chain(_chain(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 3, 6),
                                  nn.Flatten())) == 1


def test_layers_without_relu_are_signed():
    """A Conv2d/Linear without ReLU that is not the last layer gives a signed tensor."""
    layers = _chain(nn.Flatten(), nn.Linear(64, 8), nn.Linear(8, 3))
    x = np.linspace(0, 1, 64 * 4).reshape(4, 1, 8, 8)
    qm = ptq.quantize(layers, "m", (1, 8, 8), x, ptq.PTQConfig(4, 4)).export()
    assert qm.layers[1].out_fmt == QFormat(4, True)
    assert (qm.layers[1].lo, qm.layers[1].hi) == (-8, 7)


def test_binary_networks_refuse_what_one_bit_cannot_hold():
    """A signed tensor or a signed input at 1 bit, AdaRound on 1-bit weights, and a grouped
    convolution on bipolar weight lanes each get one line naming the fix."""
    from quantflow.adaround import AdaRound
    from quantflow.errors import UserError
    from quantflow.program import compile_program

    from hwgen.config import AccelConfig

    x = np.linspace(0, 1, 64 * 4).reshape(4, 1, 8, 8)
    layers = _chain(nn.Flatten(), nn.Linear(64, 8), nn.Linear(8, 3))
    with pytest.raises(UserError, match=r"^layer '1' has no ReLU after it, so its output is"
                       r" signed, and a 1-bit activation is unsigned \(0 or 1\)"):
        ptq.quantize(layers, "m", (1, 8, 8), x, ptq.PTQConfig(4, 1))
    relu = _chain(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(UserError, match=r"^The network input has negative values, so it is"
                       r" signed, and a signed input must have 2\.\.8 bits, not 1$"):
        ptq.quantize(relu, "m", (1, 8, 8), x - 0.5, ptq.PTQConfig(1, 1, input_bits=1))
    net = ptq.quantize(relu, "m", (1, 8, 8), x, ptq.PTQConfig(1, 1))
    assert ptq.grids(ptq.PTQConfig(1, 1)) == ptq.GRIDS[:1]  # both grids are +-1 at 1 bit
    with pytest.raises(UserError, match=r"^AdaRound chooses between two neighbouring codes"):
        AdaRound().apply(net, relu, x)
    grouped = _chain(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=4), nn.ReLU(),
                     nn.Flatten(), nn.Linear(64, 3))
    qm = ptq.quantize(grouped, "g", (1, 8, 8), x, ptq.PTQConfig(1, 2)).export()
    with pytest.raises(UnsupportedOpError, match=r"grouped convolution: .* a bipolar 1-bit"
                       r" weight lane has no zero"):
        compile_program(qm, AccelConfig(weight_bits=1, act_bits=2, rows=4, cols=4))
    assert AccelConfig.for_model(qm, array=(4, 4)).weight_bits == 2  # so it gets 2-bit lanes


@pytest.mark.parametrize(("modules", "message"), [
    ((nn.Flatten(), nn.Linear(64, 3), nn.ReLU()),
     r"^the last layer '1' must return logits, not pass through a ReLU$"),
    ((nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3), nn.ReLU6()),
     r"^the last layer '3' must return logits, not pass through a ReLU$"),
    ((nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.MaxPool2d(2)),
     r"^maxpool layer '3' gives the network output: it must come from a Conv2d/Linear"
     r" \(logits\)$"),
    ((nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.AvgPool2d(2)),
     r"^avgpool layer '3' gives the network output"),
    ((nn.MaxPool2d(2), nn.Flatten()), r"^the model has no Conv2d or Linear layer$"),
])
def test_check_chain_messages(modules, message):
    layers = _chain(*modules)
    with pytest.raises(UnsupportedOpError, match=message):
        ptq.check_chain(layers)
    with pytest.raises(UnsupportedOpError, match=message):  # quantize checks first
        ptq.quantize(layers, "m", (1, 8, 8), np.zeros((2, 1, 8, 8)), ptq.PTQConfig(4, 4))


@pytest.mark.parametrize(("kwargs", "exc", "message"), [
    ({"wbits": 9}, ValueError, r"^Weight bits must be an integer in 1\.\.8, not 9$"),
    ({"wbits": 0}, ValueError, r"^Weight bits must be an integer in 1\.\.8, not 0$"),
    ({"abits": 0}, ValueError, r"^Activation bits must be an integer in 1\.\.8, not 0$"),
    ({"abits": 4.5}, TypeError, r"^Activation bits must be an integer, not 4\.5$"),
    ({"wbits": "4"}, TypeError, r"^Weight bits must be an integer, not '4'$"),
    ({"input_bits": 16}, ValueError, r"^Input bits must be an integer in 1\.\.8, not 16$"),
    ({"w_method": "mse"}, TypeError, r"^w_method must be a RangeMethod, not 'mse'$"),
    ({"a_method": None}, TypeError, r"^a_method must be a RangeMethod, not None$"),
    ({"mult_bits": 40}, ValueError, r"^Multiplier bits must be an integer in 2\.\.31, not 40$"),
    ({"mult_bits": 1}, ValueError, r"^Multiplier bits must be an integer in 2\.\.31, not 1$"),
    ({"mult_bits": 16.0}, TypeError, r"^Multiplier bits must be an integer, not 16\.0$"),
    ({"w_grid": "full"}, TypeError, r"^w_grid must be a WeightGrid or None, not 'full'$"),
])
def test_ptq_config_messages(kwargs, exc, message):
    args = {"wbits": 4, "abits": 4} | kwargs
    with pytest.raises(exc, match=message):
        ptq.PTQConfig(**args)


def test_ptq_config_describe_and_overrides():
    cfg = ptq.PTQConfig(3, 5, input_bits=6, w_method=RangeMethod.MINMAX,
                        a_method=RangeMethod.PERCENTILE, mult_bits=12,
                        layer_bits={"fc": (8, 8)})
    assert cfg.describe() == {"wbits": 3, "abits": 5, "input_bits": 6, "w_method": "minmax",
                              "a_method": "percentile", "mult_bits": 12, "w_grid": "narrow"}
    assert cfg.bits_for("fc") == (8, 8) and cfg.bits_for("other") == (3, 5)


@pytest.mark.parametrize("method", list(RangeMethod), ids=[m.value for m in RangeMethod])
def test_every_range_method_gives_an_exact_twin(method):
    """Each method, on the MLP at W3A3 with 12-bit multipliers and 6-bit input: the export
    validates, honours the config, and fake-quant equals the reference on the test set."""
    a_method = RangeMethod.MSE if method is RangeMethod.MSE_OUTPUT else method
    cfg = ptq.PTQConfig(3, 3, input_bits=6, w_method=method, a_method=a_method, mult_bits=12)
    net = ptq.quantize(captured("digits-mlp"), "digits-mlp", (1, 8, 8), calib_set(), cfg)
    qm = net.export()
    assert qm.input_fmt.bits == 6 and qm.wbits == 3 and qm.abits == 3
    for layer in qm.layers:
        if layer.requant and layer.mult is not None:
            assert np.all(layer.mult < 1 << 12), method
    x = qm.quantize_input(digits().x_test)
    with torch.no_grad():
        got = net.forward_int(torch.as_tensor(x, dtype=torch.float64))
    for i, (a, b) in enumerate(zip(reference.run(qm, x), got, strict=True)):
        assert np.array_equal(a, b.numpy()), f"{method.value}: layer {i} differs"
    assert ptq.accuracy(qm, digits().x_test, digits().y_test) > 0.5, method


def test_layer_bits_override_one_layer():
    cfg = ptq.PTQConfig(2, 2, w_method=RangeMethod.MINMAX, a_method=RangeMethod.MINMAX,
                        layer_bits={"1": (8, 6)})
    qm = ptq.quantize(captured("digits-mlp"), "m", (1, 8, 8), calib_set(), cfg).export()
    fc1, fc2, fc3 = qm.mac_layers
    assert (fc1.w_fmt.bits, fc1.out_fmt.bits) == (8, 6)
    assert fc2.in_fmt.bits == 6 and (fc2.w_fmt.bits, fc2.out_fmt.bits) == (2, 2)
    assert fc3.w_fmt.bits == 2 and not fc3.requant


def test_accuracy_is_the_reference_top1():
    _, qm = quantized("digits-cnn", 4, 4)
    ds = digits()
    pred = reference.predict(qm, qm.quantize_input(ds.x_test))
    assert ptq.accuracy(qm, ds.x_test, ds.y_test) == float(np.mean(pred == ds.y_test))


def test_w8a8_cnn_within_one_point_of_float():
    """Sanity regression, not a tuned figure: plain min-max at W8A8 loses at most 1 point."""
    ds = digits()
    float_acc = zoo.accuracy(trained("digits-cnn"), ds.x_test, ds.y_test)
    _, qm = quantized("digits-cnn", 8, 8)
    quant_acc = ptq.accuracy(qm, ds.x_test, ds.y_test)
    assert float_acc >= 0.97, float_acc
    assert quant_acc >= float_acc - 0.01, (float_acc, quant_acc)


def test_quantize_auto_picks_the_best_validation_recipe():
    """The default recipe on the MLP at W4A4: every pair is tried, the best on the validation
    split (accuracy, then log-likelihood) is returned, and its recipe is recorded."""
    ds = digits()
    x_val, y_val = data.validation_split(ds)
    calls = []
    net, qm, choices = ptq.quantize_auto(captured("digits-mlp"), "digits-mlp", (1, 8, 8),
                                         calib_set(), x_val, y_val, ptq.PTQConfig(4, 4),
                                         progress=lambda: calls.append(1))
    n_pairs = len(RangeMethod) * (len(RangeMethod) - 1)
    assert len(choices) == len(calls) == 2 * n_pairs  # each pair on both weight grids
    assert {(c["w_method"], c["a_method"], c["w_grid"]) for c in choices} == {
        (w.value, a.value, g) for w in RangeMethod for a in RangeMethod
        if a is not RangeMethod.MSE_OUTPUT for g in ("narrow", "full")}
    assert all(0.0 <= c["val_accuracy"] <= 1.0 and c["val_log_likelihood"] <= 0.0
               for c in choices)
    best = max(choices, key=lambda c: (c["val_accuracy"], c["val_log_likelihood"]))
    recipe = qm.meta["recipe"]
    assert (recipe["w_method"], recipe["a_method"], recipe["w_grid"]) == (
        best["w_method"], best["a_method"], best["w_grid"])
    assert best["chosen"] and qm.meta["candidates"] == choices
    assert (recipe["wbits"], recipe["abits"]) == (4, 4)
    pred = reference.predict(qm, qm.quantize_input(x_val))
    assert float(np.mean(pred == y_val)) == best["val_accuracy"]
    # the returned twin is the returned model's twin
    x = qm.quantize_input(ds.x_test)
    with torch.no_grad():
        got = net.forward_int(torch.as_tensor(x, dtype=torch.float64))[-1].numpy()
    assert np.array_equal(got, reference.run(qm, x)[-1])
    # the test split is not among the inputs it saw: validation rows come from training data
    train_rows = {r.tobytes() for r in ds.x_train}
    assert all(r.tobytes() in train_rows for r in x_val)


def test_calibration_images_are_outside_the_validation_split():
    """Bias correction, AdaRound and the range searches fit the calibration images; the default
    recipe's candidates are judged on the validation split, so the two must not overlap."""
    ds = digits()
    x_cal = calib_set()
    assert len(x_cal) == flow.CALIB_IMAGES
    fit_rows = {r.tobytes() for r in data.fit_split(ds)[0]}
    assert all(r.tobytes() in fit_rows for r in x_cal)
    assert len({r.tobytes() for r in x_cal}) == len(x_cal)


@pytest.mark.parametrize(("wbits", "abits"), [(4, 4), (2, 8), (8, 2)])
@pytest.mark.parametrize("name", ["digits-cnn", "digits-mlp"])
def test_exported_widths_are_the_configured_ones(name, wbits, abits):
    """The widths hardware is sized from: the 8-bit input passing through the MLP's leading
    Flatten (or a max pool) is not an activation width."""
    _, qm = quantized(name, wbits, abits)
    assert (qm.wbits, qm.abits, qm.input_fmt.bits) == (wbits, abits, 8)
