"""Post-training quantization: a captured float graph -> FakeQuantNet -> QuantizedModel.

The default recipe (``auto``) picks the weight and activation range-setting methods that give
the best accuracy on a validation split of the *training* data; the test set is never used
for a choice. Scales come from float activations of calibration images drawn from the
training data.
"""

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

from . import metrics, reference
from .adaround import layer_rows, row_groups
from .calibrate import RangeMethod, activation_scale, weight_scales
from .errors import UnsupportedOpError, UserError
from .fakequant import FakeQuantNet, _FQLayer
from .importers import Act, run_float, sources
from .numerics import DEFAULT_MULT_BITS, QFormat, Requant, WeightGrid, check_bits
from .qmodel import MAC_KINDS, LayerKind

__all__ = ["PTQConfig", "quantize", "assemble", "quantize_auto", "check_chain", "grids", "GRIDS",
           "check_layer_bits", "accuracy", "val_score", "plan_formats", "tensor_scales",
           "layer_inputs", "choose_config", "classifier_input"]


@dataclass(frozen=True)
class PTQConfig:
    """One quantization recipe.

    ``w_method``/``a_method``: range setting for weights (per output channel) and for each
    activation tensor. ``layer_bits``: optional ``{layer name: (w_bits, a_bits)}`` overrides.
    ``w_grid``: the weights' :class:`~quantflow.numerics.WeightGrid`, or ``None`` to let the
    flow choose it on the validation split (:mod:`quantflow.choice`); a net built directly
    from a config without one (:func:`quantize`) uses :attr:`grid`, the narrow grid.
    """

    wbits: int
    abits: int
    input_bits: int = 8
    w_method: RangeMethod = RangeMethod.MSE
    a_method: RangeMethod = RangeMethod.MSE
    mult_bits: int = DEFAULT_MULT_BITS
    layer_bits: dict = field(default_factory=dict)
    w_grid: WeightGrid | None = None

    def __post_init__(self):
        check_bits("Weight bits", self.wbits)
        check_bits("Activation bits", self.abits)
        check_bits("Input bits", self.input_bits)
        Requant(self.mult_bits)  # 2..31 bits, so the products acc * M fit int64
        for attr in ("w_method", "a_method"):
            if not isinstance(getattr(self, attr), RangeMethod):
                raise TypeError(f"{attr} must be a RangeMethod, not {getattr(self, attr)!r}")
        if self.w_grid is not None and not isinstance(self.w_grid, WeightGrid):
            raise TypeError(f"w_grid must be a WeightGrid or None, not {self.w_grid!r}")

    @property
    def grid(self):
        """The weight grid a net is built with: ``w_grid``, narrow when it is still open."""
        return self.w_grid or WeightGrid.NARROW

    def bits_for(self, name):
        return self.layer_bits.get(name, (self.wbits, self.abits))

    @property
    def weight_widths(self):
        """Every weight width the config names: ``wbits`` and the per-layer ones."""
        return {self.wbits} | {w for w, _ in self.layer_bits.values()}

    def describe(self):
        return {"wbits": self.wbits, "abits": self.abits, "input_bits": self.input_bits,
                "w_method": self.w_method.value, "a_method": self.a_method.value,
                "mult_bits": self.mult_bits, "w_grid": self.grid.value}


#: The weight grids a choice compares when the config leaves the grid open.
GRIDS = (WeightGrid.NARROW, WeightGrid.FULL)


def grids(cfg):
    """The weight grids to try for ``cfg``: its own, or both when it leaves the grid open
    (one when every weight is 1 bit: both grids are then the bipolar +-1)."""
    if cfg.w_grid is not None:
        return (cfg.w_grid,)
    return GRIDS[:1] if cfg.weight_widths == {1} else GRIDS


def check_chain(layers):
    """The network output (the last layer) must be a Conv2d/Linear returning logits, possibly
    followed by Flatten, and nothing else may read those logits. Returns the logits layer's
    index. Every other Conv2d/Linear requantizes: unsigned after a ReLU, signed otherwise."""
    if not any(lyr.kind in MAC_KINDS for lyr in layers):
        raise UnsupportedOpError("the model has no Conv2d or Linear layer")
    last = len(layers) - 1
    path = [last]
    while layers[last].kind is LayerKind.FLATTEN and sources(layers, last)[0] >= 0:
        last = sources(layers, last)[0]
        path.append(last)
    lyr = layers[last]
    if lyr.kind not in MAC_KINDS:
        raise UnsupportedOpError(f"{lyr.kind.value} layer {lyr.name!r} gives the network output:"
                                 " it must come from a Conv2d/Linear (logits)")
    if lyr.act is not Act.NONE:
        raise UnsupportedOpError(f"the last layer {lyr.name!r} must return logits,"
                                 " not pass through a ReLU")
    for j, other in enumerate(layers):
        if j not in path and any(k in path[1:] for k in sources(layers, j)):
            raise UnsupportedOpError(f"layer {other.name!r} reads the logits of {lyr.name!r}:"
                                     " the last Conv2d/Linear returns its accumulator, which"
                                     " only the network output may read")
    return last


def classifier_input(layers):
    """Index of the requantizing layer (Conv2d/Linear or add) whose output feeds the logits
    layer, through flatten and pooling (a global average pool keeps its input's format), or
    ``None`` when the classifier reads the network input."""
    j = sources(layers, check_chain(layers))[0]
    while j >= 0 and layers[j].kind in (LayerKind.FLATTEN, LayerKind.AVGPOOL, LayerKind.MAXPOOL):
        j = sources(layers, j)[0]
    if j < 0 or layers[j].kind not in MAC_KINDS + (LayerKind.ADD,):
        return None
    return j


def plan_formats(layers, cfg, input_fmt):
    """Each layer's output format (``None`` for the logits layer), by the numerics contract:
    a Conv2d/Linear is unsigned after a ReLU and signed without; an add is signed unless a
    ReLU follows it or all its inputs are unsigned; pooling and flatten keep their input's
    format; a concat's inputs are requantized to one format (signed if any is, the widest).
    """
    logits = check_chain(layers)
    forced = {}
    for _ in range(len(layers) + 1):
        fmts = {-1: input_fmt}
        for i, fl in enumerate(layers):
            src = sources(layers, i)
            _, ab = cfg.bits_for(fl.name)
            if i in forced:
                fmts[i] = forced[i]
            elif fl.kind in MAC_KINDS:
                fmts[i] = None if i == logits else _act_fmt(fl, ab, fl.act is Act.NONE)
            elif fl.kind is LayerKind.ADD:
                fmts[i] = _act_fmt(fl, ab, fl.act is Act.NONE
                                   and any(fmts[j].signed for j in src))
            elif fl.kind is LayerKind.CONCAT:
                fmts[i] = QFormat(max(fmts[j].bits for j in src),
                                  any(fmts[j].signed for j in src))
            else:
                fmts[i] = fmts[src[0]]
        changed = False
        for i, fl in enumerate(layers):
            if fl.kind is not LayerKind.CONCAT:
                continue
            for j in sources(layers, i):
                if fmts[j] == fmts[i]:
                    continue
                if j < 0 or not _requantizes(layers, j, logits):
                    raise UnsupportedOpError(
                        f"concat {fl.name!r}: input {_tensor_name(layers, j)!r} is"
                        f" {fmts[j]} and cannot be requantized to the concat's {fmts[i]} (only"
                        " Conv2d/Linear/add outputs can)")
                forced[j], changed = fmts[i], True
        if not changed:
            return fmts
    raise AssertionError("concat formats did not settle")  # each pass only widens formats


def _act_fmt(fl, bits, signed):
    """The output format of a requantizing layer; a signed one needs 2+ bits."""
    if signed and bits < 2:
        raise UserError(f"layer {fl.name!r} has no ReLU after it, so its output is signed, and a"
                        " 1-bit activation is unsigned (0 or 1): give that layer 2..8"
                        " activation bits (per-layer bits)")
    return QFormat.activation(bits, signed)


def _requantizes(layers, j, logits):
    return j != logits and layers[j].kind in MAC_KINDS + (LayerKind.ADD,)


def _tensor_name(layers, j):
    return "the network input" if j < 0 else layers[j].name


def tensor_scales(layers, fmts, input_scale, out_scales):
    """The scale of every tensor (``-1``: the input) from the chosen ``out_scales`` of the
    requantizing layers: pooling, flatten and concat keep their input's scale. A concat needs
    equal scales on its inputs (PTQ gives them one shared scale)."""
    scales = {-1: float(input_scale)}
    for i, fl in enumerate(layers):
        src = sources(layers, i)
        if i in out_scales and fmts[i] is not None and fl.kind is not LayerKind.AVGPOOL:
            scales[i] = float(out_scales[i])
        else:
            scales[i] = scales[src[0]]
        if fl.kind is LayerKind.CONCAT:
            got = {scales[j] for j in src}
            if len(got) != 1:
                raise UnsupportedOpError(f"concat {fl.name!r}: its inputs have different scales"
                                         f" ({sorted(got)}); only Conv2d/Linear/add outputs can"
                                         " share one")
    return scales


def layer_inputs(layers, acts, index):
    """Float values of layer ``index``'s first input; ``acts`` maps -1 to the network input and
    each layer index to its output."""
    return acts[sources(layers, index)[0]]


def _weight_scales(fl, bits, method, x, grid):
    """Per-output-channel weight scales of a MAC layer; ``x`` (its float calibration inputs)
    only for MSE_OUTPUT, which weighs each group's error by that group's input correlation."""
    if method is not RangeMethod.MSE_OUTPUT:
        return weight_scales(fl.weight, bits, method, grid=grid)
    rows, _ = layer_rows(fl, x)
    out = np.zeros(len(fl.weight))
    for outs, cols in row_groups(fl):
        out[outs] = weight_scales(fl.weight[outs], bits, method, rows[:, cols], grid)
    return out


def check_layer_bits(layers, layer_bits):
    """Every key of ``layer_bits`` must name a Conv2d/Linear or add layer of the graph."""
    valid = [lyr.name for lyr in layers if lyr.kind in MAC_KINDS + (LayerKind.ADD,)]
    for key, value in layer_bits.items():
        if key not in valid:
            raise UserError(f"Layer name must be one of {', '.join(valid)}, not {key!r}")
        if not (isinstance(value, tuple) and len(value) == 2):
            raise TypeError(f"Layer bits must be a (w_bits, a_bits) tuple, not {value!r}")
        check_bits(f"Weight bits of layer {key!r}", value[0])
        check_bits(f"Activation bits of layer {key!r}", value[1])


def input_format(x_calib, bits):
    """The network input's format: signed when the calibration data has negative values (the
    format is chosen to hold the data, never clipped to zero)."""
    x = np.asarray(x_calib)
    signed = bool(x.size and float(x.min()) < 0)
    if signed and bits < 2:
        raise UserError("The network input has negative values, so it is signed, and a signed"
                        " input must have 2..8 bits, not 1")
    return QFormat(bits, signed)


def quantize(layers, name, input_shape, x_calib, cfg):
    """Build the FakeQuantNet for ``cfg`` from a captured float graph and calibration inputs."""
    check_layer_bits(layers, cfg.layer_bits)
    input_fmt = input_format(x_calib, cfg.input_bits)
    fmts = plan_formats(layers, cfg, input_fmt)
    outs = [a.numpy() for a in run_float(layers, x_calib)]
    acts = {-1: np.asarray(x_calib, dtype=np.float64)} | dict(enumerate(outs))
    input_scale = activation_scale(x_calib, cfg.input_bits, cfg.a_method, input_fmt.signed)
    w_scales, out_scales = {}, {}
    for i, fl in enumerate(layers):
        wb, _ = cfg.bits_for(fl.name)
        if fl.kind in MAC_KINDS:
            w_scales[i] = _weight_scales(fl, wb, cfg.w_method, layer_inputs(layers, acts, i),
                                         cfg.grid)
        if fmts[i] is not None and fl.kind in MAC_KINDS + (LayerKind.ADD,):
            out_scales[i] = activation_scale(acts[i], fmts[i].bits, cfg.a_method,
                                             fmts[i].signed)
    _share_concat_scales(layers, fmts, acts, cfg, out_scales)
    return assemble(layers, name, input_shape, cfg, input_scale, w_scales, out_scales,
                    input_fmt)


def _share_concat_scales(layers, fmts, acts, cfg, out_scales):
    """A concat's inputs get one scale, set from the concat's own calibration values."""
    for i, fl in enumerate(layers):
        if fl.kind is LayerKind.CONCAT:
            shared = activation_scale(acts[i], fmts[i].bits, cfg.a_method, fmts[i].signed)
            for j in sources(layers, i):
                if j in out_scales:
                    out_scales[j] = shared


def assemble(layers, name, input_shape, cfg, input_scale, w_scales, out_scales,
             input_fmt=None):
    """The FakeQuantNet from chosen scales: ``w_scales[i]`` (per output channel) for each MAC
    layer and ``out_scales[i]`` (per tensor) for each requantizing layer (Conv2d/Linear, add),
    keyed by index in ``layers``; the logits layer's output scale is ignored (it returns its
    accumulator). ``input_fmt`` defaults to unsigned ``cfg.input_bits``."""
    check_layer_bits(layers, cfg.layer_bits)
    input_fmt = input_fmt or QFormat(cfg.input_bits, False)
    fmts = plan_formats(layers, cfg, input_fmt)
    scales = tensor_scales(layers, fmts, input_scale, out_scales)
    fq = []
    for i, fl in enumerate(layers):
        src = sources(layers, i)
        wb, _ = cfg.bits_for(fl.name)
        in_fmt, in_scale = fmts[src[0]], scales[src[0]]
        w_scale = out_fmt = out_scale = None
        if fl.kind in MAC_KINDS:
            w_scale = w_scales[i]
            if fmts[i] is not None:
                out_fmt, out_scale = fmts[i], scales[i]
        elif fl.kind is LayerKind.ADD:
            in_scale = [scales[j] for j in src]
            out_fmt, out_scale = fmts[i], scales[i]
        elif fl.kind is LayerKind.AVGPOOL:
            out_fmt, out_scale = in_fmt, in_scale  # a mean keeps the scale: ratio 1/k^2
        fq.append(_FQLayer(fl, in_fmt, in_scale, wb, w_scale, out_fmt, out_scale, cfg.mult_bits,
                           inputs=src, w_grid=cfg.grid))
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
    """Range setting alone, every (weight, activation) method pair on every open weight grid;
    keep the best on the validation data. Returns ``(FakeQuantNet, QuantizedModel, choices)``;
    ``choices`` lists each candidate's validation accuracy and log-likelihood (also stored in
    ``qm.meta["candidates"]``)."""
    a_methods = [m for m in RangeMethod if m is not RangeMethod.MSE_OUTPUT]
    pairs = list(itertools.product(RangeMethod, a_methods))
    return choose_config(layers, name, input_shape, x_calib, x_val, y_val, cfg, pairs,
                         progress)


def choose_config(layers, name, input_shape, x_calib, x_val, y_val, cfg, pairs, progress=None):
    """The best of ``pairs`` (weight, activation range methods) x :func:`grids` on the
    validation data, by (accuracy, log-likelihood); see :func:`quantize_auto`."""
    best, choices = None, []
    for (w_m, a_m), grid in itertools.product(pairs, grids(cfg)):
        trial = replace(cfg, w_method=w_m, a_method=a_m, w_grid=grid)
        net = quantize(layers, name, input_shape, x_calib, trial)
        qm = net.export()
        acc = val_score(qm, x_val, y_val)
        choices.append({"w_method": w_m.value, "a_method": a_m.value, "w_grid": grid.value,
                        "val_accuracy": acc[0], "val_log_likelihood": acc[1], "chosen": False})
        if best is None or acc > best[0]:
            best = (acc, net, qm, trial, len(choices) - 1)
        if progress is not None:
            progress()
    _, net, qm, trial, pick = best
    choices[pick]["chosen"] = True
    qm.meta["recipe"] = trial.describe()
    qm.meta["candidates"] = choices
    return net, qm, choices
