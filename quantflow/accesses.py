"""Exact memory-access and operation counts of a Program, per descriptor (for the energy model).

Pure numpy, like the cycle model in :mod:`quantflow.program`, and exact for the same reason:
the descriptors say what the sequencer issues. Per descriptor ``d`` (``tiles`` x ``pixels``
x ``slots`` issue slots, README "design notes"):

- MAC: every issue step reads one weight word (``rows * cols`` weights): ``tiles * pixels *
  steps``. A step also reads one activation word unless its tap lies in the padding (padding
  reads as zero, from no memory): ``tiles * wdigits * in_g * sum over pixels of the taps
  inside the map`` (a wide layer re-reads its activations once per weight digit). The array
  does ``rows * cols`` multiply-accumulates per step, useful or not (zero weights between
  groups, idle lanes, padding).
- MAX / SUM (pooling): one activation word per tap (pools have no padding), one
  ``cols``-channel group per tile.
- ADD: two activation words (A and B) per pixel and group.
- The drain reads the bias (when ``bias_en``) and the ``(M, s)`` pair (when ``requant_en``;
  an add reads one pair per input) of every output element it emits, and writes the element
  to the activation memory (``act_bits``) or the logits memory (``to_acc``).
- The sequencer reads ``desc_words`` program words per descriptor.

Counts are in words of each memory (weights, activations, program) or entries (bias,
requantization, logits); :mod:`boards.energy` turns them into bits with the memories' widths.
"""

import numpy as np

from .program import Op

__all__ = ["layer_accesses", "program_accesses", "ACCESS_KEYS"]

#: The keys of one descriptor's counts.
ACCESS_KEYS = ("weight_reads", "act_reads", "act_writes", "acc_writes", "bias_reads",
               "rq_reads", "prog_reads", "array_macs", "useful_macs")


def _inside_taps(d):
    """Taps inside the input map, summed over output pixels (separable in y and x)."""
    def axis(out_n, stride, pad, k, in_n):
        pos = np.arange(out_n)[:, None] * stride - pad + np.arange(k)[None, :]
        return int(((pos >= 0) & (pos < in_n)).sum())
    return axis(d.out_h, d.sy, d.py, d.kh, d.in_h) * axis(d.out_w, d.sx, d.px, d.kw, d.in_w)


def layer_accesses(d, cfg, useful_macs=0):
    """``{key: count}`` (``ACCESS_KEYS``) of descriptor ``d`` on configuration ``cfg``."""
    out = dict.fromkeys(ACCESS_KEYS, 0)
    out["prog_reads"] = cfg.desc_words
    elements = d.pixels * d.out_ch
    if d.op is Op.MAC:
        steps = d.tiles * d.pixels * d.steps
        out["weight_reads"] = steps
        out["act_reads"] = d.tiles * d.wdigits * d.in_g * _inside_taps(d)
        out["array_macs"] = steps * cfg.rows * cfg.cols
        out["useful_macs"] = useful_macs
    elif d.op is Op.ADD:
        out["act_reads"] = 2 * d.tiles * d.pixels
    else:
        out["act_reads"] = d.tiles * _inside_taps(d)
    pairs = 2 if d.op is Op.ADD else 1
    out["bias_reads"] = elements if d.bias_en else 0
    out["rq_reads"] = pairs * elements if (d.requant_en or d.op is Op.ADD) else 0
    out["acc_writes" if d.to_acc else "act_writes"] = elements
    return out


def program_accesses(program, cfg):
    """Per-descriptor counts (a list of dicts, with ``op``) and their totals."""
    rows = []
    for d, macs in zip(program.descs, program.macs, strict=True):
        rows.append({"op": d.op.name, **layer_accesses(d, cfg, macs)})
    total = {k: sum(r[k] for r in rows) for k in ACCESS_KEYS}
    return rows, total
