"""Deliberately broken variants: each must make its proof FAIL with a counterexample.

None changes production code. A broken configuration is an :class:`~hwgen.config.AccelConfig`
subclass with one derived size off by one (the component under proof is built with it while the
property keeps the real configuration); a broken netlist is a Yosys command run on the real
component's flattened netlist before the proof (``connect -set`` cuts a wire from its driver
and ties it to a value), so the mutation names a signal of the gateware.
"""

from hwgen.config import AccelConfig

__all__ = ["AccOneBitFewer", "FlushOneCycleLonger", "broken", "DROP_ROUNDING",
           "IGNORE_OUT_READY", "FORCE_IN_VALID"]


class AccOneBitFewer(AccelConfig):
    """The accumulator (PE register, drain bias add) one bit narrower than derived."""

    @property
    def acc_bits(self):
        return super().acc_bits - 1


class FlushOneCycleLonger(AccelConfig):
    """The sequencer waits one cycle more after a layer than the compiler's model says."""

    @property
    def layer_flush_cycles(self):
        return super().layer_flush_cycles + 1


def broken(cls, cfg):
    """``cfg``'s fields in the broken configuration class ``cls``."""
    return cls(**cfg.to_json())


#: The requantizer without its rounding term: floor instead of round half up.
DROP_ROUNDING = ("connect -set dut.round_term 0",)
#: The host interface deaf to the output's ready: a reply word not taken is lost.
IGNORE_OUT_READY = ("connect -set dut.o__ready 1'1",)
#: The host interface seeing a word on its input every cycle: a word offered once is taken
#: again (a duplicate).
FORCE_IN_VALID = ("connect -set dut.i__valid 1'1",)
