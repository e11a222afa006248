"""Dependencies point one way: quantflow -> hwgen -> boards / rtl_tests / formal -> hwflow.

Every module's imports are read with ``ast`` (lazy imports inside functions included, so a
dependency cannot hide in a function body) and none may name a package above its own.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The packages each one must not import (the layers above it).
ABOVE = {
    "quantflow": {"hwgen", "boards", "rtl_tests", "formal", "hwflow"},
    "hwgen": {"boards", "rtl_tests", "formal", "hwflow"},
    "boards": {"hwflow"},
    "rtl_tests": {"hwflow"},
    "formal": {"hwflow"},
}


def imported(path):
    """The top-level package names ``path`` imports, with the line of each."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


def violations(package):
    return [f"{path.relative_to(ROOT)}:{line} imports {name}"
            for path in sorted((ROOT / package).rglob("*.py"))
            for name, line in imported(path) if name in ABOVE[package]]


@pytest.mark.parametrize("package", sorted(ABOVE))
def test_no_import_from_a_higher_layer(package):
    assert violations(package) == []


def test_the_check_sees_a_lazy_import(tmp_path):
    """A function-level import is found too (the check can fail)."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from hwflow.cli import main\n    import boards.build\n")
    assert sorted(imported(f)) == [("boards", 3), ("hwflow", 2)]
