"""Every module of quantflow, hwgen and boards imports, and its ``__all__`` resolves (rule 24).

The modules are found by walking the packages, so a new module is covered without editing this
file; an import failure is a test failure, never a skip.
"""

import importlib
import pkgutil
import subprocess
import sys

import pytest

PACKAGES = ("quantflow", "hwgen", "boards", "formal", "hwflow")

#: Package ``__init__`` modules that still lack ``__all__`` (owned elsewhere; rule 24 wants one).
#: The test fails when one of them gains ``__all__``, so this list can only shrink.
NO_ALL_YET = {"hwgen", "hwflow.commands"}


def _fail(name):
    raise ImportError(f"cannot import package {name} while walking it")


def _walk():
    names = []
    for top in PACKAGES:
        pkg = importlib.import_module(top)
        names.append(top)
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, f"{top}.", onerror=_fail)]
    return names


MODULES = _walk()


def test_walk_found_the_core_modules():
    for name in ("quantflow.numerics", "quantflow.qmodel", "quantflow.reference",
                 "quantflow.serialize", "quantflow.importers", "quantflow.calibrate",
                 "quantflow.fakequant", "quantflow.ptq", "quantflow.flow", "quantflow.zoo",
                 "quantflow.data", "quantflow.errors", "hwflow.cli", "hwgen.tools",
                 "hwflow.commands.quantize", "hwflow.commands.demo", "hwflow.commands.doctor"):
        assert name in MODULES, name


@pytest.mark.parametrize("name", MODULES)
def test_module_all_resolves(name):
    module = importlib.import_module(name)
    if name in NO_ALL_YET:
        assert not hasattr(module, "__all__"), f"{name} has __all__ now: drop it from NO_ALL_YET"
        return
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    names = module.__all__
    assert isinstance(names, (list, tuple)), f"{name}.__all__ is a {type(names).__name__}"
    assert all(isinstance(n, str) for n in names), f"{name}.__all__ holds a non-string"
    assert len(set(names)) == len(names), f"{name}.__all__ has duplicates"
    for attr in names:
        assert not attr.startswith("_"), f"{name}.__all__ exports private {attr!r}"
        assert hasattr(module, attr), f"{name}.__all__ names missing {attr!r}"


def test_hwgen_and_the_numpy_core_do_not_import_torch():
    """Rule 2: hwgen (and quantflow's pure-numpy part) import without torch."""
    hw = [m for m in MODULES if m.startswith(("hwgen", "boards"))]
    core = ["quantflow", "quantflow.numerics", "quantflow.qmodel", "quantflow.reference",
            "quantflow.serialize", "quantflow.errors", "quantflow.data"]
    code = ("import importlib, sys\n"
            f"for m in {hw + core!r}: importlib.import_module(m)\n"
            "heavy = sorted(k for k in ('torch', 'sklearn') if k in sys.modules)\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported at import time: {out.stdout.strip()}"
