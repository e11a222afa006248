"""QuantizedModel / QLayer: derived properties and every validation message."""

import numpy as np
import pytest
from flowkit import tiny_model

from quantflow.errors import ArtifactError, UserError
from quantflow.numerics import QFormat, acc_bits
from quantflow.qmodel import LayerKind, QuantizedModel


def test_tiny_model_is_valid_and_derives_properties():
    m = tiny_model()
    assert m.validate() is m
    conv, pool, avg, flat, fc = m.layers
    assert conv.reduction == 9 and fc.reduction == 2 and avg.reduction == 4
    assert pool.reduction == flat.reduction == 1
    assert conv.acc_fmt == QFormat(acc_bits(QFormat(3, True), QFormat(4, False), 9), True)
    assert conv.acc_fmt.bits == 3 + 4 + 4 + 1
    assert avg.acc_fmt == QFormat(3 + 2 + 1, True)  # 4 window values of 3 bits, signed
    assert pool.acc_fmt == pool.in_fmt
    assert conv.macs == 2 * 4 * 4 * 9 and fc.macs == 3 * 2 and pool.macs == avg.macs == 0
    assert (m.wbits, m.abits) == (3, 3)
    assert m.mac_layers == [conv, fc]
    assert np.array_equal(m.output_scale, [0.1, 0.2, 0.3])
    rows = m.summary_rows()
    assert [r["kind"] for r in rows] == ["conv2d", "maxpool", "avgpool", "flatten", "linear"]
    assert rows[0] == {"name": "conv", "kind": "conv2d", "inputs": "-1", "in": "1x4x4",
                       "out": "2x4x4",
                       "w": 3, "a_in": 4, "a_out": 3, "acc": 12, "macs": 288}
    assert rows[1]["w"] == "" and rows[1]["acc"] == ""


def test_quantize_input_rounds_half_to_even_and_clamps():
    m = tiny_model()  # 4-bit unsigned input
    m.input_scale = 0.25  # binary, so x / scale is exact and the ties are real ties
    x = np.array([-0.3, 0.0, 0.125, 0.375, 0.625, 0.626, 2.5, 3.75, 3.875, 99.0])
    got = m.quantize_input(x)
    assert got.dtype == np.int64
    assert got.tolist() == [0, 0, 0, 2, 2, 3, 10, 15, 15, 15]


def _broken(mutate):
    m = tiny_model()
    mutate(m)
    return m


CASES = [
    ("no layers", lambda m: setattr(m, "layers", []), r"^model has no layers$"),
    ("input shape", lambda m: setattr(m, "input_shape", (1, 4, 5)),
     r"^layer 0 \('conv'\) expects input shape \(1, 4, 4\), gets \(1, 4, 5\)$"),
    ("input fmt", lambda m: setattr(m, "input_fmt", QFormat(8, False)),
     r"^layer 0 \('conv'\) expects input QFormat\(bits=4, signed=False\), gets "
     r"QFormat\(bits=8, signed=False\)$"),
    ("chain fmt", lambda m: setattr(m.layers[1], "in_fmt", QFormat(4, False)),
     r"^layer 1 \('pool'\) expects input QFormat\(bits=4, signed=False\), gets "
     r"QFormat\(bits=3, signed=False\)$"),
    ("rank", lambda m: (setattr(m.layers[3], "out_shape", (2, 1)),
                        setattr(m.layers[4], "in_shape", (2, 1))),
     r"^layer 3 \('flat', flatten\): shapes must be \(C, H, W\) or \(F,\) of positive "
     r"integers$"),
    ("zero dim", lambda m: setattr(m.layers[4], "out_shape", (0,)),
     r"^layer 4 \('fc', linear\): shapes must be \(C, H, W\) or \(F,\) of positive integers$"),
    ("missing weight", lambda m: setattr(m.layers[0], "weight", None),
     r"^layer 0 \('conv', conv2d\): missing weight$"),
    ("missing bias", lambda m: setattr(m.layers[4], "bias", None),
     r"^layer 4 \('fc', linear\): missing bias$"),
    ("missing w_scale", lambda m: setattr(m.layers[4], "w_scale", None),
     r"^layer 4 \('fc', linear\): missing w_scale$"),
    ("missing mult", lambda m: setattr(m.layers[0], "mult", None),
     r"^layer 0 \('conv', conv2d\): missing mult$"),
    ("missing shift", lambda m: setattr(m.layers[0], "shift", None),
     r"^layer 0 \('conv', conv2d\): missing shift$"),
    ("per channel", lambda m: setattr(m.layers[0], "shift", np.array([1, 2, 3])),
     r"^layer 0 \('conv', conv2d\): per-channel arrays must have 2 entries$"),
    ("bias entries", lambda m: setattr(m.layers[4], "bias", np.zeros(2, dtype=np.int64)),
     r"^layer 4 \('fc', linear\): per-channel arrays must have 3 entries$"),
    ("unsigned weights", lambda m: setattr(m.layers[4], "w_fmt", QFormat(3, False)),
     r"^layer 4 \('fc', linear\): weight format must be signed$"),
    ("weight range", lambda m: m.layers[0].weight.__setitem__((1, 0, 0, 0), -5),
     r"^layer 0 \('conv', conv2d\): weights outside QFormat\(bits=3, signed=True\)$"),
    ("weight shape", lambda m: setattr(m.layers[4], "weight", np.zeros((3, 3), np.int64)),
     r"^layer 4 \('fc', linear\): weight shape \(3, 3\) != expected \(3, 2\)$"),
    ("weight rank", lambda m: setattr(m.layers[4], "weight", np.zeros(3, np.int64)),
     r"^layer 4 \('fc', linear\): weight shape \(3,\) != expected \(3, 2\)$"),
    ("conv kernel", lambda m: setattr(m.layers[0], "weight", np.zeros((2, 1, 2, 2), np.int64)),
     r"^layer 0 \('conv', conv2d\): weight shape \(2, 1, 2, 2\) != expected \(2, 1, 3, 3\)$"),
    # bound for fc: K=2, |w| <= 4, a <= 7 -> 56
    ("bias bound", lambda m: m.layers[4].bias.__setitem__(0, -57),
     r"^layer 4 \('fc', linear\): bias outside the accumulator bound$"),
    ("negative mult", lambda m: m.layers[0].mult.__setitem__(1, -1),
     r"^layer 0 \('conv', conv2d\): multipliers must be non-negative$"),
    ("shift 64", lambda m: m.layers[0].shift.__setitem__(0, 64),
     r"^layer 0 \('conv', conv2d\): shifts must be in 0\.\.63$"),
    ("negative shift", lambda m: m.layers[2].shift.__setitem__(0, -1),
     r"^layer 2 \('avg', avgpool\): shifts must be in 0\.\.63$"),
    ("clamp hi", lambda m: setattr(m.layers[0], "hi", 8),
     r"^layer 0 \('conv', conv2d\): clamp bounds 0\.\.8 outside "
     r"QFormat\(bits=3, signed=False\)$"),
    ("clamp lo", lambda m: setattr(m.layers[2], "lo", -1),
     r"^layer 2 \('avg', avgpool\): clamp bounds -1\.\.7 outside "
     r"QFormat\(bits=3, signed=False\)$"),
    ("clamp order", lambda m: (setattr(m.layers[0], "lo", 5), setattr(m.layers[0], "hi", 4)),
     r"^layer 0 \('conv', conv2d\): clamp bounds 5\.\.4 outside "
     r"QFormat\(bits=3, signed=False\)$"),
    ("acc not last", lambda m: setattr(m.layers[0], "requant", False),
     r"^layer 0 \('conv'\) returns its accumulator but is not the last layer$"),
    # geometry: the output shape must follow from kernel, stride and padding
    ("conv out", lambda m: (setattr(m.layers[0], "padding", (0, 0))),
     r"^layer 0 \('conv', conv2d\): output shape \(2, 4, 4\) != expected \(2, 2, 2\)$"),
    ("stride 0", lambda m: setattr(m.layers[1], "stride", (0, 2)),
     r"^layer 1 \('pool', maxpool\): stride must be two integers >= 1, not \(0, 2\)$"),
    ("negative stride", lambda m: setattr(m.layers[0], "stride", (-1, -1)),
     r"^layer 0 \('conv', conv2d\): stride must be two integers >= 1, not \(-1, -1\)$"),
    ("kernel rank", lambda m: setattr(m.layers[1], "kernel", (2,)),
     r"^layer 1 \('pool', maxpool\): kernel must be two integers >= 1, not \(2,\)$"),
    ("negative padding", lambda m: setattr(m.layers[2], "padding", (0, -1)),
     r"^layer 2 \('avg', avgpool\): padding must be two integers >= 0, not \(0, -1\)$"),
    ("pool channels", lambda m: (setattr(m.layers[1], "out_shape", (3, 2, 2))),
     r"^layer 1 \('pool', maxpool\): output shape \(3, 2, 2\) != expected \(2, 2, 2\)$"),
    ("kernel too big", lambda m: setattr(m.layers[2], "kernel", (3, 3)),
     r"^layer 2 \('avg', avgpool\): output shape \(2, 1, 1\) != expected \(2, 0, 0\)$"),
    ("pool on vector", lambda m: (setattr(m.layers[4], "kind", LayerKind.MAXPOOL)),
     r"^layer 4 \('fc', maxpool\): input must be \(C, H, W\), not \(2,\)$"),
    ("flatten size", lambda m: (setattr(m.layers[3], "out_shape", (3,)),
                                setattr(m.layers[4], "in_shape", (3,))),
     r"^layer 3 \('flat', flatten\): output shape \(3,\) != expected \(2,\)$"),
    ("linear out", lambda m: setattr(m.layers[4], "out_shape", (3, 1, 1)),
     r"^layer 4 \('fc', linear\): output shape \(3, 1, 1\) != expected \(3,\)$"),
]


@pytest.mark.parametrize(("mutate", "message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_validate_messages(mutate, message):
    m = _broken(mutate)
    with pytest.raises(ArtifactError, match=message):
        m.validate()


def test_artifact_error_is_a_user_error():
    assert issubclass(ArtifactError, UserError)


def test_layer_kinds_cover_the_contract():
    assert {k.value for k in LayerKind} == {"conv2d", "linear", "maxpool", "avgpool", "flatten",
                                          "add", "concat"}


def test_abits_without_requantizing_layers_is_the_input_width():
    m = tiny_model()
    fc = m.layers[4]
    solo = QuantizedModel(name="solo", input_shape=(2,), input_fmt=fc.in_fmt, input_scale=1.0,
                          layers=[fc]).validate()
    assert solo.abits == 3 and solo.wbits == 3
