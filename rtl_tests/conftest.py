"""pytest options and fixtures for the cocotb tier.

``--sim`` restricts the simulators (default: both); ``--seed`` fixes the random seed (default:
derived from the test's node id, so every test has its own reproducible stream). A simulator
that is not installed gives a skip with the reason, never a pass.
"""

import hashlib

import pytest

from rtl_tests.runner import Sim, available


def pytest_addoption(parser):
    parser.addoption("--sim", action="append", choices=[s.value for s in Sim],
                     help="simulator(s) to run the cocotb tests on (default: all)")
    parser.addoption("--seed", type=int, default=None, help="random seed for rtl tests")


def pytest_generate_tests(metafunc):
    if "sim" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--sim") or [s.value for s in Sim]
        params = [pytest.param(Sim(s), id=s, marks=getattr(pytest.mark, s)) for s in chosen]
        metafunc.parametrize("sim", params)


@pytest.fixture
def seed(request):
    fixed = request.config.getoption("--seed")
    if fixed is not None:
        return fixed
    return int.from_bytes(hashlib.sha256(request.node.nodeid.encode()).digest()[:4], "little")


@pytest.fixture(autouse=True)
def _skip_missing_simulator(request):
    sim = request.node.callspec.params.get("sim") if hasattr(request.node, "callspec") else None
    if sim is not None:
        reason = available(sim)
        if reason:
            pytest.skip(reason)
