"""Post-training quantization: a captured float chain -> FakeQuantNet -> QuantizedModel.

The default recipe (``auto``) picks the weight and activation range-setting methods that give
the best accuracy on a validation split of the *training* data; the test set is never used
for a choice. Scales come from float activations of calibration images drawn from the
training data.
"""

import itertools
from dataclasses import dataclass, field

import numpy as np

from . import metrics, reference
from .calibrate import RangeMethod, activation_scale, weight_scales
from .errors import UnsupportedOpError, UserError
from .fakequant import FakeQuantNet, _FQLayer
from .importers import Act, run_float
from .numerics import DEFAULT_MULT_BITS, QFormat, Requant, check_bits
from .qmodel import MAC_KINDS, LayerKind

__all__ = ["PTQConfig", "quantize", "assemble", "quantize_auto", "check_chain",
           "check_layer_bits", "accuracy", "val_score"]


@dataclass(frozen=True)
class PTQConfig:
    """One quantization recipe.

    ``w_method``/``a_method``: range setting for weights (per output channel) and for each
    activation tensor. ``layer_bits``: optional ``{layer name: (w_bits, a_bits)}`` overrides.
    """

    wbits: int
    abits: int
    input_bits: int = 8
    w_method: RangeMethod = RangeMethod.MSE
    a_method: RangeMethod = RangeMethod.MSE
    mult_bits: int = DEFAULT_MULT_BITS
    layer_bits: dict = field(default_factory=dict)

    def __post_init__(self):
        check_bits("Weight bits", self.wbits)
        check_bits("Activation bits", self.abits)
        check_bits("Input bits", self.input_bits)
        Requant(self.mult_bits)  # 2..31 bits, so the products acc * M fit int64
        for attr in ("w_method", "a_method"):
            if not isinstance(getattr(self, attr), RangeMethod):
                raise TypeError(f"{attr} must be a RangeMethod, not {getattr(self, attr)!r}")

    def bits_for(self, name):
        return self.layer_bits.get(name, (self.wbits, self.abits))

    def describe(self):
        return {"wbits": self.wbits, "abits": self.abits, "input_bits": self.input_bits,
                "w_method": self.w_method.value, "a_method": self.a_method.value,
                "mult_bits": self.mult_bits}


def check_chain(layers):
    """Every MAC layer but the last must end in ReLU/ReLU6 (activations are unsigned); the
    last MAC layer returns logits and may only be followed by Flatten."""
    macs = [i for i, lyr in enumerate(layers) if lyr.kind in MAC_KINDS]
    if not macs:
        raise UnsupportedOpError("the model has no Conv2d or Linear layer")
    last = macs[-1]
    for i in macs[:-1]:
        if layers[i].act is Act.NONE:
            raise UnsupportedOpError(
                f"layer {layers[i].name!r} has no ReLU after it: intermediate activations are"
                " unsigned, so every Conv2d/Linear but the last must be followed by ReLU/ReLU6")
    if layers[last].act is not Act.NONE:
        raise UnsupportedOpError(f"the last layer {layers[last].name!r} must return logits,"
                                 " not pass through a ReLU")
    for lyr in layers[last + 1:]:
        if lyr.kind is not LayerKind.FLATTEN:
            raise UnsupportedOpError(f"{lyr.kind.value} layer {lyr.name!r} after the last"
                                     " Conv2d/Linear is not supported (logits come from it)")
    return last


def _layer_inputs(fl, x):
    """Calibration inputs of a MAC layer as rows (N*positions, K) in the weight's order."""
    x = np.asarray(x, dtype=np.float64)
    if fl.kind is LayerKind.LINEAR:
        return x.reshape(len(x), -1)
    win = reference._windows(x, fl.kernel, fl.stride, fl.padding)  # (N, C, Ho, Wo, kh, kw)
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(-1, int(np.prod(fl.weight.shape[1:])))


def check_layer_bits(layers, layer_bits):
    """Every key of ``layer_bits`` must name a Conv2d/Linear layer of the chain."""
    valid = [lyr.name for lyr in layers if lyr.kind in MAC_KINDS]
    for key, value in layer_bits.items():
        if key not in valid:
            raise UserError(f"Layer name must be one of {', '.join(valid)}, not {key!r}")
        if not (isinstance(value, tuple) and len(value) == 2):
            raise TypeError(f"Layer bits must be a (w_bits, a_bits) tuple, not {value!r}")
        check_bits(f"Weight bits of layer {key!r}", value[0])
        check_bits(f"Activation bits of layer {key!r}", value[1])


def quantize(layers, name, input_shape, x_calib, cfg):
    """Build the FakeQuantNet for ``cfg`` from a captured float chain and calibration inputs."""
    check_chain(layers)
    check_layer_bits(layers, cfg.layer_bits)
    acts = [np.asarray(x_calib, dtype=np.float64)]
    acts += [a.numpy() for a in run_float(layers, x_calib)]
    input_scale = activation_scale(x_calib, cfg.input_bits, cfg.a_method)
    w_scales, out_scales = {}, {}
    for i, fl in enumerate(layers):
        if fl.kind not in MAC_KINDS:
            continue
        wb, ab = cfg.bits_for(fl.name)
        inputs = (_layer_inputs(fl, acts[i]) if cfg.w_method is RangeMethod.MSE_OUTPUT
                  else None)
        w_scales[i] = weight_scales(fl.weight, wb, cfg.w_method, inputs)
        out_scales[i] = activation_scale(acts[i + 1], ab, cfg.a_method)
    return assemble(layers, name, input_shape, cfg, input_scale, w_scales, out_scales)


def assemble(layers, name, input_shape, cfg, input_scale, w_scales, out_scales):
    """The FakeQuantNet from chosen scales: ``w_scales[i]`` (per output channel) and
    ``out_scales[i]`` (per tensor) keyed by the index of each MAC layer in ``layers``; the
    last MAC layer's output scale is ignored (it returns its accumulator)."""
    last = check_chain(layers)
    check_layer_bits(layers, cfg.layer_bits)
    input_fmt = in_fmt = QFormat(cfg.input_bits, False)
    in_scale = input_scale
    fq = []
    for i, fl in enumerate(layers):
        wb, ab = cfg.bits_for(fl.name)
        w_scale = out_fmt = out_scale = None
        if fl.kind in MAC_KINDS:
            w_scale = w_scales[i]
            if i != last:
                out_fmt, out_scale = QFormat.activation(ab), out_scales[i]
        elif fl.kind is LayerKind.AVGPOOL:
            out_fmt, out_scale = in_fmt, in_scale  # a mean keeps the scale: ratio 1/k^2
        layer = _FQLayer(fl, in_fmt, in_scale, wb, w_scale, out_fmt, out_scale, cfg.mult_bits)
        fq.append(layer)
        if out_fmt is not None:
            in_fmt, in_scale = out_fmt, out_scale
    return FakeQuantNet(name, input_shape, input_fmt, input_scale, fq)


def accuracy(qmodel, x, y):
    """Top-1 accuracy (0..1) of the integer reference on float inputs ``x``."""
    if metrics.is_regression(y):
        return metrics.quant_mse(qmodel, x, y)
    pred = reference.predict(qmodel, qmodel.quantize_input(x))
    return float(np.mean(pred == y))


def val_score(qmodel, x, y):
    """(accuracy, -cross-entropy) of the dequantized integer logits: accuracy first; the loss
    breaks ties, which matter because a network is often near 100% on its training data."""
    if metrics.is_regression(y):
        return metrics.quant_val_score(qmodel, x, y)
    logits = reference.run(qmodel, qmodel.quantize_input(x))[-1] * qmodel.output_scale
    logits = logits - logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(np.mean(logits.argmax(1) == y)), float(np.mean(logp[np.arange(len(y)), y]))


def quantize_auto(layers, name, input_shape, x_calib, x_val, y_val, cfg, progress=None):
    """The default recipe: try every (weight, activation) range method, keep the best on the
    validation split. Returns ``(FakeQuantNet, QuantizedModel, choices)``; ``choices`` lists
    each candidate's validation accuracy."""
    best, choices = None, []
    a_methods = [m for m in RangeMethod if m is not RangeMethod.MSE_OUTPUT]
    for w_m, a_m in itertools.product(RangeMethod, a_methods):
        trial = PTQConfig(cfg.wbits, cfg.abits, cfg.input_bits, w_m, a_m, cfg.mult_bits,
                          cfg.layer_bits)
        net = quantize(layers, name, input_shape, x_calib, trial)
        qm = net.export()
        acc = val_score(qm, x_val, y_val)
        choices.append({"w_method": w_m.value, "a_method": a_m.value, "val_accuracy": acc[0],
                        "val_log_likelihood": acc[1]})
        if best is None or acc > best[0]:
            best = (acc, net, qm, trial)
        if progress is not None:
            progress()
    _, net, qm, trial = best
    qm.meta["recipe"] = trial.describe()
    return net, qm, choices
