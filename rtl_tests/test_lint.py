"""The generated Verilog passes ``verilator --lint-only -Wall`` with only the waivers in
rtl_tests/verilator.vlt (each narrow, each with its reason)."""

import re
import subprocess

import pytest

from hwgen.config import AccelConfig
from hwgen.emit import TOP_NAME, emit_verilog
from hwgen.tools import tool_env
from rtl_tests.runner import WAIVERS, Sim, available


def _lint(cfg, tmp_path):
    reason = available(Sim.VERILATOR)
    if reason:
        pytest.skip(reason)
    _, text = emit_verilog(cfg)
    src = tmp_path / f"{TOP_NAME}.v"
    src.write_text(text)
    r = subprocess.run(["verilator", "--lint-only", "-Wall", str(WAIVERS), str(src)],
                       env=tool_env(), capture_output=True, text=True, timeout=600)
    warnings = re.findall(r"^%(?:Warning|Error)-?[A-Z_]*:.*$", r.stderr, re.M)
    assert r.returncode == 0 and not warnings, "\n".join(warnings[:20]) or r.stderr[-2000:]


@pytest.mark.verilator
@pytest.mark.parametrize("wbits,abits", [(4, 4), (2, 8)])
def test_lint_clean(wbits, abits, tmp_path):
    _lint(AccelConfig(weight_bits=wbits, act_bits=abits), tmp_path)


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("bits", [2, 3, 5, 6, 7, 8])
def test_lint_clean_every_width(bits, tmp_path):
    _lint(AccelConfig(weight_bits=bits, act_bits=bits), tmp_path)
