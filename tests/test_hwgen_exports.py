"""Every name in each hwgen / program module's ``__all__`` resolves (STYLE rule 24)."""

import importlib

import pytest

MODULES = ["hwgen.config", "hwgen.layouts", "hwgen.mac", "hwgen.array", "hwgen.pool",
           "hwgen.requant", "hwgen.buffers", "hwgen.drain", "hwgen.sequencer", "hwgen.core",
           "hwgen.top", "hwgen.host", "hwgen.emit", "hwflow.commands.generate",
           "quantflow.program", "quantflow.packing", "hwflow.commands.explore",
           "hwflow.commands.synth", "hwflow.commands.synth_asic", "boards.asic", "boards.explore",
           "boards.sweep", "boards.pareto"]


@pytest.mark.parametrize("name", MODULES)
def test_all_resolves(name):
    module = importlib.import_module(name)
    assert len(set(module.__all__)) == len(module.__all__)
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.__all__ names missing {attr!r}"
