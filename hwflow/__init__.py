"""hwflow: the flow layer on top of the others, the Python API and the `hwgen` command.

It may import every package below it (quantflow, hwgen, boards, rtl_tests, formal); none of
them imports it (tests/test_layering.py). The API (:mod:`hwflow.api`) is re-exported here:
``from hwflow import quantize, generate, simulate, estimate, build``.
"""

from .api import (AsicResult, BuildResult, EstimateResult, GenerateResult, QuantizeResult,
                  Result, RunResult, SimulateResult, StageResult, Status, SynthResult, Target,
                  build, estimate, generate, load, quantize, run, simulate, synth)

__all__ = ["quantize", "load", "generate", "simulate", "estimate", "synth", "run", "build",
           "Target", "Result", "QuantizeResult", "GenerateResult", "SimulateResult",
           "EstimateResult", "SynthResult", "AsicResult", "RunResult", "Status", "StageResult",
           "BuildResult"]
