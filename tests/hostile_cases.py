"""Hostile inputs for every `hwgen` subcommand, as a table (issue 12).

Each :class:`Case` prepares a hostile situation in a scratch folder (bad paths, bad cache
variables, corrupt files, bad data, odd options), runs one command, and :func:`judge` sorts
the outcome into one verdict:

- ``traceback``: a Python traceback (or, in-process, an exception escaping ``main``);
- ``silently wrong``: exit status 0 where the input is bad, or a wrong result;
- ``left behind``: litter (``.NAME.tmp-*``, ``.NAME.old-*``, ``hwgen-inputs-*``,
  ``hwgen-sim-*``), a half-written output, or a user file lost;
- ``unclear``: not exactly one ``hwgen CMD: error: ...`` line with exit status 2, or a line
  that does not name the cause;
- ``ok``.

Used by ``tests/test_hostile.py`` (in-process, fast) and ``bench/hostile.py`` (real
processes, the table in the README). The kills and races live in ``tests/test_faults.py``.
"""


import shutil
from pathlib import Path

from hostile_files import corrupt_cases, data_cases
from hostile_run import (ERROR, OK, VERDICTS, Case, Context, Outcome, judge, litter,
                         make_readonly, prepare, readonly_dir, run_case, tmp_file,
                         undo_readonly)

__all__ = ["CASES", "Case", "Context", "Outcome", "VERDICTS", "ERROR", "OK", "run_case", "judge",
           "litter", "make_readonly", "undo_readonly", "prepare"]

# -- the cases ---------------------------------------------------------------------------------

_Q = ["quantize", "--model", "digits-mlp", "--method", "minmax"]
_DEMO = ["demo", "--model", "digits-mlp", "--no-hardware"]


def _with_out(cmd):
    """argv builders for a command taking --out (quantize, generate, demo, synth)."""
    return {
        "quantize": lambda ctx, out: [*_Q, "--out", str(out)],
        "generate": lambda ctx, out: ["generate", str(ctx.q()), "--out", str(out)],
        "demo": lambda ctx, out: [*_DEMO, "--out", str(out)],
        "synth": lambda ctx, out: ["synth", str(ctx.q()), "--board", "icebreaker",
                                   "--out", str(out)],
    }[cmd]


def _path_cases():
    cases = []
    bad_outs = {
        "out-under-file": (lambda ctx: tmp_file(ctx) / "out", r"not a folder"),
        "out-300-chars": (lambda ctx: ctx.tmp / ("n" * 300), r"too long"),
        "out-under-proc": (lambda ctx: Path("/proc/hwgen-out"), r"/proc"),
        "out-read-only": (lambda ctx: readonly_dir(ctx, "ro") / "out", r"cannot write|read-only"),
    }
    for cmd in ("quantize", "generate", "demo", "synth"):
        build = _with_out(cmd)
        for tag, (where, msg) in bad_outs.items():
            cases.append(Case(f"{cmd}/{tag}", "paths",
                              lambda ctx, b=build, w=where: b(ctx, w(ctx)), message=msg))
    cases += [
        Case("simulate/waves-is-a-file", "paths",
             lambda ctx: ["simulate", str(ctx.q()), "--waves", str(tmp_file(ctx, "w.fst"))],
             message=r"--waves.*not a folder"),
        Case("simulate/waves-under-file", "paths",
             lambda ctx: ["simulate", str(ctx.q()), "--waves", str(tmp_file(ctx) / "w")],
             message=r"not a folder"),
        Case("quantize/replace-own-output-with-user-file", "paths", _replace_own,
             message=r"notes\.txt", check=_notes_kept),
        Case("generate/replace-own-output-with-user-file", "paths", _replace_own_generate,
             message=r"notes\.txt", check=_notes_kept),
        Case("quantize/replace-own-output", "paths", _replace_clean, expect=OK),
    ]
    return cases


def _replace_own(ctx):
    out = ctx.tmp / "out"
    shutil.copytree(ctx.q_src, out)
    (out / "notes.txt").write_text("keep me")
    return [*_Q, "--out", str(out)]


def _replace_own_generate(ctx):
    out = ctx.tmp / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    (out / "hwgen_top.v").write_text("")
    (out / "notes.txt").write_text("keep me")
    return ["generate", str(ctx.q()), "--out", str(out)]


def _replace_clean(ctx):
    out = ctx.tmp / "out"
    shutil.copytree(ctx.q_src, out)
    return [*_Q, "--out", str(out)]


def _notes_kept(ctx, out, err):
    notes = ctx.tmp / "out" / "notes.txt"
    return [] if notes.exists() and notes.read_text() == "keep me" else ["notes.txt lost"]


def _cache_cases():
    def bad(kind):
        def make(ctx):
            if kind == "file":
                return tmp_file(ctx, "cachefile")
            if kind == "under-file":
                return tmp_file(ctx, "cachefile") / "cache"
            return readonly_dir(ctx, "rocache")
        return make

    cases = []
    for kind, msg in (("file", r"HWGEN_CACHE.*not a folder"),
                      ("under-file", r"HWGEN_CACHE.*not a folder"),
                      ("read-only", r"HWGEN_CACHE.*cannot write")):
        def env_cache(ctx, var="HWGEN_CACHE", k=kind):
            ctx.env[var] = str(bad(k)(ctx))

        cases.append(Case(f"quantize/HWGEN_CACHE-{kind}", "cache variables",
                          lambda ctx, e=env_cache: (e(ctx), [*_Q, "--out",
                                                             str(ctx.tmp / "o")])[1],
                          message=msg))
        cases.append(Case(f"simulate/HWGEN_CACHE-{kind}", "cache variables",
                          lambda ctx, e=env_cache: (e(ctx), ["simulate", str(ctx.q()),
                                                             "--images", "1"])[1],
                          message=msg))
        cases.append(Case(f"synth/HWGEN_BUILD_CACHE-{kind}", "cache variables",
                          lambda ctx, e=env_cache: (e(ctx, "HWGEN_BUILD_CACHE"),
                                                    ["synth", str(ctx.q()), "--board",
                                                     "icebreaker"])[1],
                          message=msg.replace("HWGEN_CACHE", "HWGEN_BUILD_CACHE")))
    cases += [
        Case("estimate/HWGEN_BUILD_CACHE-file", "cache variables",
             lambda ctx: (ctx.env.update(HWGEN_BUILD_CACHE=str(tmp_file(ctx))),
                          ["estimate", str(ctx.q()), "--board", "icebreaker"])[1], expect=OK),
        Case("doctor/HWGEN_CACHE-file", "cache variables",
             lambda ctx: (ctx.env.update(HWGEN_CACHE=str(tmp_file(ctx))), ["doctor"])[1],
             expect=OK),
    ]
    return cases


def _option_cases():
    o = "options and streams"
    return [
        Case("run/array-1x1", o, lambda ctx: ["run", str(ctx.q()), "--port", "/dev/null",
                                              "--array", "1x1"], message=r"(?i)1x1|array"),
        Case("run/port-not-a-tty", o, lambda ctx: ["run", str(ctx.q()), "--port", "/dev/null"],
             message=r"/dev/null.*serial"),
        Case("run/port-missing", o, lambda ctx: ["run", str(ctx.q()), "--port",
                                                 str(ctx.tmp / "ttyNONE")],
             message=r"ttyNONE"),
        Case("demo/images-negative", o, lambda ctx: [*_DEMO, "--images", "-3", "--out",
                                                     str(ctx.tmp / "d")],
             message=r"--images"),
        Case("simulate/images-negative", o, lambda ctx: ["simulate", str(ctx.q()), "--images",
                                                         "-3"], message=r"--images"),
        Case("run/images-negative", o, lambda ctx: ["run", str(ctx.q()), "--port", "/dev/null",
                                                    "--images", "-3"], message=r"--images"),
        Case("generate/stdout-closed", o,
             lambda ctx: ["generate", str(ctx.q()), "--out", str(ctx.tmp / "rtl")],
             expect=OK, process=True, pipe_head=True, check=_generated),
        Case("doctor/stdout-closed", o, lambda ctx: ["doctor", "--json"], expect=OK,
             process=True, pipe_head=True),
    ]


def _generated(ctx, out, err):
    rtl = ctx.tmp / "rtl"
    ok = (rtl / "manifest.json").exists() and (rtl / "hwgen_top.v").stat().st_size > 0
    return [] if ok else ["the output folder is missing or half-written"]


CASES = _path_cases() + _cache_cases() + corrupt_cases() + data_cases() + _option_cases()
