"""Kills and races on the real tools (issue 12): SIGKILL during a Verilator build, during a
simulation and during a board build, two processes on one empty cache or one new output
folder, and damaged cache entries. Each asserts that the next run succeeds, with a notice where
a cache entry was discarded, and that nothing is left behind. All ``slow`` (Verilator and
Yosys builds)."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flowkit import trained

import hostile_cases as hc
from quantflow import serialize
from quantflow.fsutil import cache_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def qdir(tmp_path_factory):
    trained("digits-mlp")
    return hc.prepare(tmp_path_factory.mktemp("faults"))[0]


def _env(tmp_path, cache=None):
    """A fresh cache (the compiler cache shared with the session: only the runtime objects)."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    return dict(os.environ, HWGEN_CACHE=str(cache or tmp_path / "cache"), TMPDIR=str(tmpdir),
                HWGEN_BUILD_CACHE=str(tmp_path / "boards"),
                CCACHE_DIR=str(cache_dir() / "ccache"))


def _hwgen(*argv):
    return [sys.executable, "-m", "hwflow.cli", *map(str, argv)]


def _run(argv, env, timeout=900):
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def _kill_when(argv, env, ready, timeout=600):
    """Start ``argv`` in its own process group; SIGKILL the whole group (the compilers too)
    once ``ready()`` holds. Returns whether it was killed before it finished."""
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.monotonic() + timeout
    while p.poll() is None and time.monotonic() < deadline:
        if ready():
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return True
        time.sleep(0.05)
    p.wait()
    return False


def _builds(cache, sim="verilator"):
    return list(Path(cache, "rtl").glob(f"*/{sim}"))


def _any(cache, pattern):
    def ready():
        return any(next(b.rglob(pattern), None) for b in _builds(cache))
    return ready


@pytest.mark.parametrize("point", ["Vtop.mk", "*.gch", "Vtop__ALL.a"])
def test_sigkill_during_a_verilator_build_then_the_next_run_succeeds(qdir, tmp_path, point):
    env = _env(tmp_path)
    argv = _hwgen("simulate", qdir, "--images", "2")
    killed = _kill_when(argv, env, _any(env["HWGEN_CACHE"], point))
    assert killed, f"the build finished before {point} appeared"
    p = _run(argv, env)
    assert p.returncode == 0, p.stderr
    assert re.search(r"simulator build .* is incomplete or damaged; discarded, rebuilding",
                     p.stderr), p.stderr
    assert hc.litter(tmp_path) == []


def test_two_simulations_on_one_empty_cache_both_succeed(qdir, tmp_path):
    env = _env(tmp_path)
    procs = [subprocess.Popen(_hwgen("simulate", qdir, "--images", "2", "--json"), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1] for r in results]
    assert all('"bit_exact": true' in r[0] for r in results)
    assert len(_builds(env["HWGEN_CACHE"])) == 1
    assert hc.litter(tmp_path) == []


def test_damaged_cache_entries_are_rebuilt(qdir, tmp_path):
    """A truncated simulator, a deleted one, and a design whose Verilog was cut: each is
    discarded with a notice and built again; the run is bit-exact."""
    env = _env(tmp_path)
    argv = _hwgen("simulate", qdir, "--images", "2", "--sim", "icarus")
    assert _run(argv, env).returncode == 0
    build = _builds(env["HWGEN_CACHE"], "icarus")[0]
    design = next(Path(env["HWGEN_CACHE"], "designs").glob("*/hwgen_top.v"))
    for damage, notice in [
        (lambda: (build / "sim.vvp").write_bytes((build / "sim.vvp").read_bytes()[:100]),
         r"simulator build .* discarded, rebuilding"),
        (lambda: (build / "sim.vvp").unlink(), r"simulator build .* discarded, rebuilding"),
        (lambda: design.write_text(design.read_text()[:1000]),
         r"design cache entry .* discarded, emitting it again"),
    ]:
        damage()
        p = _run(argv, env)
        assert p.returncode == 0 and re.search(notice, p.stderr), p.stderr


def test_a_broken_testbench_reports_its_error(qdir, tmp_path, monkeypatch):
    """The testbench fails after the simulation (its reference folder is unreadable): the
    error names the cause, not '0 images, None mismatches'."""
    from hwgen.errors import ToolError
    from rtl_tests.simulate import simulate
    from rtl_tests.runner import Sim

    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad"
    shutil.copytree(qdir, bad)
    (bad / "tensors.npz").write_bytes(b"")
    with pytest.raises(ToolError, match=r"^the testbench failed before reporting a result"
                                        r" \(.*ArtifactError: .*tensors\.npz.*\); see .*sim\.log$"):
        simulate(qdir, Sim.ICARUS, images=1, reference=bad, quiet=True)


def test_sigkill_during_a_simulation_leaves_nothing_for_good(qdir, tmp_path):
    env = _env(tmp_path)
    argv = _hwgen("simulate", qdir, "--images", "20", "--sim", "icarus")
    assert _run(argv, env).returncode == 0  # built
    tmpdir = Path(env["TMPDIR"])
    killed = _kill_when(argv, env, lambda: any(tmpdir.glob("hwgen-sim-*")))
    assert killed
    assert hc.litter(tmpdir), "the kill left nothing: the test did not test"
    assert _run(_hwgen("simulate", qdir, "--images", "1", "--sim", "icarus"),
                env).returncode == 0
    assert hc.litter(tmp_path) == []


def test_two_quantize_runs_into_one_new_folder_and_one_empty_zoo_cache(tmp_path):
    env = _env(tmp_path)
    out = tmp_path / "q"
    argv = _hwgen("quantize", "--model", "digits-mlp", "--method", "minmax", "--out", out)
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    errs = [p.communicate(timeout=900)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert not any("Traceback" in e for e in errs)
    serialize.load(out)
    assert hc.litter(tmp_path) == []


def test_sigkill_during_a_board_build_then_the_next_build_succeeds(qdir, tmp_path):
    env = _env(tmp_path)
    boards = Path(env["HWGEN_BUILD_CACHE"])
    argv = _hwgen("synth", qdir, "--board", "icebreaker", "--json")
    assert _kill_when(argv, env, lambda: any(boards.glob(".*/top.il")) or
                      any(boards.glob(".*/*.json")))
    p = _run(argv, env, timeout=1800)
    assert p.returncode == 0, p.stderr
    assert [e.name for e in boards.iterdir() if e.name.startswith(".")] == []
