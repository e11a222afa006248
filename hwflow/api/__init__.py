"""The Python API of the flow: each ``hwgen`` command as a function returning a result.

::

    from hwflow import quantize, generate, simulate, estimate

    q = quantize("digits-cnn", wbits=4, abits=4, out="q4")
    g = generate(q, out="gen4", array="8x8")
    s = simulate(q, sim="verilator", images=20)
    e = estimate(q, board="icebreaker")

The keywords are the command's flags (``--layer-bits`` is ``layer_bits``) with the same
defaults, and take the flag's text or the Python value (``array=(8, 8)`` or ``"8x8"``,
``sim=Sim.VERILATOR`` or ``"verilator"``); a QuantizedModel folder is a path or the
:class:`QuantizeResult` that wrote it. Each function returns a frozen dataclass
(:mod:`hwflow.api.results`) whose ``to_dict()`` is exactly the object ``hwgen CMD --json``
prints: the command calls the function and prints that. Errors a user can cause are raised as
:class:`quantflow.errors.UserError` with a one-line message naming the option as the command
spells it (``--wbits must be a bit width in 1..8, not 9``). Nothing is printed: a long step
reports to the optional ``progress(text, done=None, total=None)`` callback (only the notices
of unusual events, a healed cache entry or synth's fallback to a smaller array, are ``hwgen:
notice:`` lines on stderr), and ``simulate(quiet=True)`` keeps the simulator's output in
log files.

Modules: :mod:`~hwflow.api.quantize` (``quantize``, ``load``),
:mod:`~hwflow.api.hardware` (``generate``, ``simulate``, ``estimate``),
:mod:`~hwflow.api.board` (``synth``, ``run``), :mod:`~hwflow.api.build` (``build``: a flow
file, :mod:`~hwflow.api.flowfile`, through every stage with a report,
:mod:`~hwflow.api.report`), :mod:`~hwflow.api.results` (the results),
:mod:`~hwflow.api.values` (the conversion of the keywords' values).
"""

from .board import Target, run, synth
from .build import build
from .hardware import estimate, generate, simulate
from .quantize import load, quantize
from .results import (AsicResult, BuildResult, EstimateResult, GenerateResult, QuantizeResult,
                      Result, RunResult, SimulateResult, StageResult, Status, SynthResult)

__all__ = ["quantize", "load", "generate", "simulate", "estimate", "synth", "run", "build",
           "Target", "Result", "QuantizeResult", "GenerateResult", "SimulateResult",
           "EstimateResult", "SynthResult", "AsicResult", "RunResult", "Status", "StageResult",
           "BuildResult"]
