"""Every proof and broken variant, with its configuration, engine settings and expected status.

The configurations cover the edge classes of the datapath: 2, 4 and 8 bits; unsigned and
signed activation lanes; the 8-bit network input as 4 or 2 digits in adjacent lanes (2 and 4
bits) or in one lane (8 bits); and the largest reduction :class:`~hwgen.config.AccelConfig`
allows (``max_reduction = 2**20``) besides the default 4096. The proofs are written against
the configuration, so they are instances of one property each, not of one array. The streams
and the sequencer are checked on a tiny overlay (their control does not depend on word lengths;
a BMC's cost grows with the datapath the whole Core drags in).
"""

from dataclasses import dataclass, field, replace

from hwgen.config import AccelConfig

from .pe import PEProof
from .requant import RequantProof
from .sby import run_sby
from .sequencer import SequencerProof, longest_run
from .streams import StreamProof
from .variants import (DROP_ROUNDING, FORCE_IN_VALID, IGNORE_OUT_READY, AccOneBitFewer,
                       FlushOneCycleLonger, broken)

__all__ = ["CONFIGS", "TINY", "Proof", "PROOFS", "run_proof"]

#: Datapath configurations (rows x cols kept small: a PE's lanes are what the solver pays for).
CONFIGS = {
    "w2a2-k2^20": AccelConfig(weight_bits=2, act_bits=2, rows=1, cols=4, max_reduction=1 << 20),
    "w4a4s-k4096": AccelConfig(weight_bits=4, act_bits=4, rows=1, cols=2, signed_acts=True),
    "w8a8-k2^20": AccelConfig(weight_bits=8, act_bits=8, rows=1, cols=1, max_reduction=1 << 20),
    "w8a8s-k2^20": AccelConfig(weight_bits=8, act_bits=8, rows=1, cols=1, signed_acts=True,
                               max_reduction=1 << 20),
}

#: The smallest overlay: 1x1 array, 2-bit words, memories of two words, two descriptors.
TINY = AccelConfig(weight_bits=2, act_bits=2, input_bits=2, rows=1, cols=1, max_reduction=4,
                   weight_depth=2, act_depth=2, param_depth=2, acc_depth=2, max_layers=2,
                   max_dim=3, host_bits=16, counter_bits=8)


@dataclass(frozen=True)
class Proof:
    """One sby task: ``name`` (the property), ``config`` (label), ``variant`` (None for the
    proof itself, else what is broken), the harness factory, engine mode and depth, extra Yosys
    commands, the status it must end with, and whether it is in the default test suite."""
    name: str
    config: str
    variant: str | None
    harness: object = field(repr=False)
    mode: str = "prove"
    depth: int = 4
    script: tuple = ()
    passes: tuple = ()
    expect: str = "PASS"
    fast: bool = True

    @property
    def label(self):
        return f"{self.name}[{self.config}{'' if self.variant is None else ', ' + self.variant}]"


def _proofs():
    out = []
    for label, cfg in CONFIGS.items():
        # k-induction over the pipeline: one step more than the requantizer's latency
        out.append(Proof("requant", label, None, lambda c=cfg: RequantProof(c),
                         depth=cfg.requant_latency + 1, fast=not label.startswith("w8")))
    for label, cfg in CONFIGS.items():
        # k-induction over the PE's pipeline (its latency; the tree is registered halfway)
        out.append(Proof("pe", label, None, lambda c=cfg: PEProof(c), depth=cfg.pe_latency,
                         fast=not label.startswith("w8")))
    # Streams: one memory word per command (any memory, so 1 or 2 host words each) in the
    # default suite, two words (the address steps) behind slow. memory_map: the tiny memories
    # as registers, which yices solves about twice as fast as SMT arrays.
    mm = ("memory_map",)
    out += [
        Proof("streams", "tiny-1x1", None, lambda: StreamProof(TINY, words=1), mode="bmc",
              depth=16, passes=mm),
        Proof("streams", "tiny-1x1-2w", None, lambda: StreamProof(TINY, words=2), mode="bmc",
              depth=18, passes=mm, fast=False),
    ]
    # Sequencer: runs of 1 tile, 1 pixel, up to 2 slots per layer in the default suite; up to
    # 2 tiles, 2 x 2 pixels behind slow (the depth covers the longest run of two layers).
    small, large = dict(max_tiles=1, max_side=1, max_slots=2), dict(max_slots=2)
    out += [
        Proof("sequencer", "tiny-1x1", None, lambda: SequencerProof(TINY, **small), mode="bmc",
              depth=longest_run(TINY, **small) + 2),
        Proof("sequencer", "tiny-1x1-2t2x2", None, lambda: SequencerProof(TINY, **large),
              mode="bmc", depth=longest_run(TINY, **large) + 2, fast=False),
    ]
    # Broken variants: each must FAIL with a counterexample trace.
    w4 = CONFIGS["w4a4s-k4096"]
    small_k = replace(CONFIGS["w2a2-k2^20"], max_reduction=8)  # an overflow within reach
    out += [
        Proof("requant", "w4a4s-k4096", "rounding term dropped", lambda: RequantProof(w4),
              depth=w4.requant_latency + 1, script=DROP_ROUNDING, expect="FAIL"),
        Proof("pe", "w2a2-k8", "accumulator one bit fewer",
              lambda: PEProof(small_k, broken(AccOneBitFewer, small_k)), mode="bmc",
              depth=14, expect="FAIL"),
        Proof("streams", "tiny-1x1", "output ready ignored (word lost)",
              lambda: StreamProof(TINY, words=1), mode="bmc", depth=16,
              script=IGNORE_OUT_READY, passes=mm, expect="FAIL"),
        Proof("streams", "tiny-1x1", "input valid forced (word duplicated)",
              lambda: StreamProof(TINY, words=1), mode="bmc", depth=16,
              script=FORCE_IN_VALID, passes=mm, expect="FAIL"),
        Proof("sequencer", "tiny-1x1", "flush one cycle longer",
              lambda: SequencerProof(TINY, broken(FlushOneCycleLonger, TINY), **small),
              mode="bmc", depth=longest_run(TINY, **small) + 2, expect="FAIL"),
    ]
    return out


#: Every proof and broken variant, proofs first.
PROOFS = _proofs()


def run_proof(proof, workdir, **kwargs):
    """Run ``proof`` in ``workdir`` (an empty folder outside the source tree)."""
    return run_sby(proof.harness(), workdir, mode=proof.mode, depth=proof.depth,
                   script=proof.script, passes=proof.passes, **kwargs)
