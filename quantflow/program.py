"""The Program: a QuantizedModel scheduled onto an overlay, its memory images and cycle model.

Pure numpy (no torch, no Amaranth). The hardware configuration is read by attribute only
(``rows``, ``cols``, ``act_bits``, depths, latencies and ``need``), so this module does not
import ``hwgen``; :class:`hwgen.config.AccelConfig` is the configuration it is written for.

Dataflow the descriptors encode (README "design notes"):

- Activations live in two memories (banks), one word per ``(pixel, group)`` holding ``cols``
  channels of ``act_bits`` each, pixel-major: word ``base + (y*W + x)*stride + g``. Every live
  tensor of the DAG gets its own region (:mod:`quantflow.alloc`: first fit over both banks,
  kept until its last reader; a chain gets the classic ping-pong). A tensor's lane map says
  which channel each lane of its ``groups`` words holds (``-1``: unused), so a concatenation
  costs nothing: its parts are written side by side (each from a word boundary) into one
  region whose pixel ``stride`` is the sum of the parts' groups, and a reader of the concat
  packs its weights by the joint lane map. Signed tensors are stored as two's complement lanes
  and the descriptor's ``a_signed``/``b_signed`` say how the datapath reads them. The network input
  may be wider than a lane: it is stored as ``digits = ceil(input_bits / act_bits)`` digits of
  ``act_bits`` in adjacent lanes (``cols // digits`` channels per word) and the PE shifts lane
  ``l``'s product left by ``act_bits * (l % digits)`` before the adder tree, so
  ``sum_d w * digit_d << (act_bits*d) == w * x`` exactly. An activation tensor wider than the
  lanes (an 8-bit first-layer output on 2-bit lanes) is stored the same way: the drain writes
  an element's ``odigits`` digits into adjacent lanes in one cycle (the output positions
  follow from ``odigits``: :func:`quantflow.schedule.out_position`), and its reader sees it
  exactly as the first layer sees a wide input. Why
  digits in lanes rather than an activation path ``max(input_bits, act_bits)`` wide: the
  multipliers, the activation memories and the pool unit stay ``act_bits`` wide for every
  layer (at 2 bits an 8-bit path would make each multiplier 4x larger for the sake of one
  layer), and the first layer, whose input has
  few channels (1 for digits), fills otherwise idle lanes instead of taking extra cycles; when
  ``act_bits`` divides ``input_bits`` the digits are literally the input's bits, so packing is
  free. Cost: ``cols >= digits`` (checked by AccelConfig) and the network input cannot be
  pooled before a MAC layer (UnsupportedOpError). The accumulator is sized for
  ``max(input_bits, act_bits)`` so the first layer cannot overflow.
- Every MAC layer is a convolution: LINEAR reads its (flattened) input as a ``(C, H, W)`` map
  with a ``H x W`` kernel, so FLATTEN costs nothing (its output is its input, read in torch's
  ``C, H, W`` order by the host).
- A MAC layer runs ``tiles = ceil(O / rows)`` output-channel tiles; for each output pixel it
  issues ``steps = kh * kw * G_in`` array cycles (im2col addresses generated on the fly,
  padding read as zero), then the ``rows`` accumulators drain serially through bias add and
  requantization while the next pixel computes. Each pixel takes ``slots = max(steps, rows)``
  cycles, which makes the cycle count exact and the utilisation ``macs / (cycles * rows*cols)``.
- Pooling runs one ``cols``-channel group per tile, lane-wise max or sum over the window.
- A grouped or depthwise convolution runs as a convolution whose weights are zero between
  groups (each output channel reads only its own group's channels; the zero products cost
  cycles, which the throughput issue's depthwise mode removes).
- An add runs one ``cols``-channel group per tile: per pixel it reads the word of input A, then
  the word of input B (``src2_delta`` words away, in bank ``src2_buf``), and the drain rescales
  the lanes of each pair with their own ``(M, s)``, sums them and clamps
  (:func:`quantflow.numerics.add_requantize`): ``2 * cols`` drain cycles, so a pixel takes
  ``slots = 2 * cols + 1``.
"""

import enum
from dataclasses import dataclass, field

import numpy as np

from .errors import UnsupportedOpError, UserError
from .qmodel import LayerKind

__all__ = ["Op", "Buffer", "LayerDesc", "TensorLoc", "Program", "compile_program",
           "execute", "pack_input", "read_loc", "layer_cycles", "DESC_FIELDS", "add_slots",
           "JOINING_OPS"]


class Op(enum.Enum):
    """What the datapath does with the activation words of one layer."""
    MAC = 0
    MAX = 1
    SUM = 2
    ADD = 3

    @property
    def joins_digits(self):
        """The pool unit joins each element's digit lanes into one value before the drain (a
        sum and an add rescale whole values; max pooling compares digit groups as they are)."""
        return self in JOINING_OPS


#: The ops whose inputs' digit lanes the pool unit joins into values (:attr:`Op.joins_digits`;
#: the sequencer, the core and the software model read this one place). A tuple, not a set:
#: the gateware iterates it, and a set of enums iterates in an order that changes with
#: PYTHONHASHSEED (the emitted Verilog differed between processes).
JOINING_OPS = (Op.SUM, Op.ADD)


class Buffer(enum.Enum):
    """Where a tensor lives: one of the two activation banks or the logits memory."""
    ACT0 = 0
    ACT1 = 1
    ACC = 2


#: Descriptor fields in hardware order (hwgen.layouts builds the bit layout from this list).
DESC_FIELDS = (
    "op", "src_buf", "dst_buf", "to_acc", "bias_en", "requant_en", "a_signed", "b_signed",
    "src2_buf",
    "in_h", "in_w", "in_g", "px_words", "row_words", "sx_words", "sy_words", "src2_delta",
    "out_h", "out_w", "out_g",
    "kh", "kw", "sy", "sx", "py", "px",
    "tiles", "steps", "slots", "out_ch", "digits", "wdigits", "tdiv", "ginc",
    "odigits",
    "w_base", "p_base", "src_base", "src_org", "dst_base", "lo", "hi",
)


@dataclass(frozen=True)
class LayerDesc:
    """One instruction of the sequencer: a whole layer (see the module docstring)."""
    op: Op
    src_buf: int
    dst_buf: int
    to_acc: bool
    bias_en: bool
    requant_en: bool
    a_signed: bool
    b_signed: bool
    src2_buf: int
    in_h: int
    in_w: int
    in_g: int
    px_words: int
    row_words: int
    sx_words: int
    sy_words: int
    src2_delta: int
    out_h: int
    out_w: int
    out_g: int
    kh: int
    kw: int
    sy: int
    sx: int
    py: int
    px: int
    tiles: int
    steps: int
    slots: int
    out_ch: int
    digits: int
    wdigits: int
    tdiv: int
    ginc: int
    odigits: int
    w_base: int
    p_base: int
    src_base: int
    src_org: int
    dst_base: int
    lo: int
    hi: int

    def fields(self):
        """Every field as an int, keyed by name (the hardware encoding's input)."""
        out = {}
        for name in DESC_FIELDS:
            v = getattr(self, name)
            out[name] = v.value if isinstance(v, Op) else int(v)
        return out

    @property
    def pixels(self):
        return self.out_h * self.out_w

    @property
    def issue_slots(self):
        return self.tiles * self.pixels * self.slots


@dataclass(frozen=True, eq=False)
class TensorLoc:
    """Where and how one layer output (or the input) is stored.

    ``stored`` is ``(C, H, W)`` as laid out in words (a vector is ``(F, 1, 1)``); ``shape`` is
    the model's logical shape of the tensor. ``groups`` words per pixel hold its channels,
    ``stride`` words separate two pixels (more than ``groups`` for a part of a concat), and
    ``lanes[g, l]`` is the channel in lane ``l`` of group ``g`` (``-1``: unused; lane ``l``
    holds digit ``l % digits`` of its channel).
    """
    buf: Buffer
    base: int
    stored: tuple
    shape: tuple
    groups: int = 1
    digits: int = 1
    per_word: int = 1
    stride: int = 1
    lanes: np.ndarray | None = None
    signed: bool = False

    @property
    def words(self):
        c, h, w = self.stored
        if self.buf is Buffer.ACC:
            return c * h * w
        return (h * w - 1) * self.stride + self.groups

    def reshaped(self, shape):
        """The same words seen with another logical shape (a flatten)."""
        return TensorLoc(self.buf, self.base, self.stored, tuple(shape), self.groups,
                         self.digits, self.per_word, self.stride, self.lanes, self.signed)

    def at(self, buf, base, stride):
        return TensorLoc(buf, base, self.stored, self.shape, self.groups, self.digits,
                         self.per_word, stride, self.lanes, self.signed)


@dataclass(eq=False)
class Program:
    """Descriptors, memory images and the placement of every layer output."""
    name: str
    config_digest: str
    descs: list
    layer_desc: list          # model layer index -> descriptor index (None: FLATTEN, CONCAT)
    outputs: list             # model layer index -> TensorLoc
    input_loc: TensorLoc
    weights: np.ndarray       # (words, rows, cols) int64
    bias: np.ndarray          # (entries,) int64
    mult: np.ndarray          # (entries,) int64
    shift: np.ndarray         # (entries,) int64
    macs: list                # useful MACs per descriptor
    cycles: list              # analytical cycles per descriptor
    usage: dict = field(default_factory=dict)
    input_patches: object = None  # quantflow.patches.InputPatches: the host gathers taps

    def memory_map(self):
        return dict(self.usage)

    def cycle_report(self, array_macs):
        """Rows of (descriptor, op, macs, cycles, utilisation) from the analytical model."""
        rows = []
        for i, (d, macs, cyc) in enumerate(zip(self.descs, self.macs, self.cycles, strict=True)):
            rows.append({"desc": i, "op": d.op.name, "macs": macs, "cycles": cyc,
                         "utilization": macs / (cyc * array_macs) if cyc else 0.0})
        return rows

def _ceil(a, b):
    return -(-a // b)


def add_slots(cfg, digits=1, group=1):
    """Issue slots per pixel and group of an add: the drain's ``2 * ceil(n / group)`` cycles
    for the word's ``n = cols // digits`` elements (``group`` pairs side by side, A's lanes in
    one cycle and B's in the next: :func:`quantflow.schedule.drain_group`), and one more so
    input A of the next pixel never overwrites a pair still draining."""
    return 2 * _ceil(cfg.cols // digits, group) + 1


def layer_cycles(desc, cfg):
    """Analytical (and, by construction, exact) cycles of one descriptor on the overlay."""
    flush = cfg.add_flush_cycles if desc.op is Op.ADD else cfg.layer_flush_cycles
    return cfg.layer_setup_cycles + desc.issue_slots + flush

def compile_program(model, cfg):
    """QuantizedModel + configuration -> :class:`Program` (deterministic).

    Raises
    ------
    UnsupportedOpError
        For a layer the overlay cannot run (pooling the wide network input, a concat it cannot
        lay out, an add of two layouts).
    Whatever ``cfg.need`` raises (``hwgen.errors.DoesNotFitError``)
        When a buffer, a field or a word length of the configuration is too small.
    """
    model.validate()
    patches = choose_patches(model, cfg)
    if patches is None:
        return _compile(model, cfg, None)
    # Gathered taps are kept only where they save cycles without a larger activation bank
    # (the memory a configuration sizes from this Program), else the plain layout.
    try:
        packed = _compile(model, cfg, patches)
    except UserError:
        packed = None  # the gathered input does not fit or cannot be laid out
    try:
        plain = _compile(model, cfg, None)
    except UserError:
        if packed is None:
            raise
        return packed
    if packed is not None and sum(packed.cycles) < sum(plain.cycles) \
            and packed.usage["act_words"] <= plain.usage["act_words"]:
        return packed
    return plain


def _compile(model, cfg, patches):
    b = _Builder(model, cfg)
    input_loc = _input_loc(model, cfg, patches)
    locs, part_of, alias = _layouts(model, cfg, input_loc)
    placed, regions = _place(model, cfg, locs, part_of, alias)
    input_loc = placed[-1]
    outputs, layer_desc = [], []
    for i, layer in enumerate(model.layers):
        srcs = [placed[j] for j in model.sources(i)]
        for j, s in zip(model.sources(i), srcs, strict=True):
            if _root(j, alias, {}) >= 0 and s.buf is not Buffer.ACC \
                    and layer.kind is not LayerKind.FLATTEN:
                cfg.need(f"layer {i} ({layer.name!r}) input bits", model.tensor_fmt(j).bits,
                         cfg.wide_act_bits)
        if any(s.buf is Buffer.ACC for s in srcs) and layer.kind is not LayerKind.FLATTEN:
            raise UnsupportedOpError(f"layer {i} ({layer.name!r}) follows a layer that"
                                     " returns its accumulator")
        dst = placed[i]
        if layer.kind in (LayerKind.FLATTEN, LayerKind.CONCAT):
            layer_desc.append(None)
        else:
            layer_desc.append(len(b.descs))
            if layer.kind in (LayerKind.CONV2D, LayerKind.LINEAR):
                if patches is not None and i == patches.reader:
                    layer = patches.layer(layer)  # the input arrives with its taps gathered
                _mac_layer(b, i, layer, srcs[0], dst)
            elif layer.kind is LayerKind.ADD:
                _add_layer(b, i, layer, srcs, dst)
            else:
                _pool_layer(b, i, layer, srcs[0], dst)
        outputs.append(dst)
    act_words = max([0] + [reg.end for reg in regions.values()])
    acc_words = max([0] + [o.words for o in outputs if o.buf is Buffer.ACC])
    busiest = max(regions.values(), key=lambda r: r.end)
    at = "the network input" if busiest.first < 0 else \
        f"layer {busiest.first} ({model.layers[busiest.first].name!r})"
    cfg.need(f"activation memory (words per bank; the live tensors at {at})", act_words,
             cfg.act_depth)
    cfg.need("weight memory (words)", b.n_weights, cfg.weight_depth)
    cfg.need("bias/requantization memory (entries)", b.n_params, cfg.param_depth)
    cfg.need("logits memory (entries)", acc_words, cfg.acc_depth)
    cfg.need("program memory (layer descriptors)", len(b.descs), cfg.max_layers)
    for d in b.descs:
        cfg.need("feature map size", max(d.in_h, d.in_w), cfg.max_dim)
    empty = np.zeros((0, cfg.rows, cfg.cols), dtype=np.int64)
    prog = Program(
        name=model.name, config_digest=cfg.digest, descs=b.descs, layer_desc=layer_desc,
        outputs=outputs, input_loc=input_loc, input_patches=patches,
        weights=_cat(b.weights, empty), bias=_cat(b.bias, np.zeros(0, np.int64)),
        mult=_cat(b.mult, np.zeros(0, np.int64)), shift=_cat(b.shift, np.zeros(0, np.int64)),
        macs=b.macs, cycles=[layer_cycles(d, cfg) for d in b.descs])
    prog.usage = {"weight_words": b.n_weights, "param_entries": b.n_params,
                  "act_words": act_words, "acc_words": acc_words, "descriptors": len(b.descs)}
    return prog


from .patches import choose as choose_patches  # noqa: E402
from .placement import _input_loc, _layouts, _place, _root  # noqa: E402
from .progmodel import execute, pack_input, read_loc  # noqa: E402  (re-exported)
from .schedule import _add_layer, _Builder, _cat, _mac_layer, _pool_layer  # noqa: E402
