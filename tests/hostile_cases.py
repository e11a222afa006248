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

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Case", "Outcome", "CASES", "VERDICTS", "Context", "run_case", "judge", "litter",
           "make_readonly", "undo_readonly", "prepare"]

VERDICTS = ("ok", "traceback", "silently wrong", "left behind", "unclear")
ERROR, OK = "error", "ok"
_LITTER = re.compile(r"^(\..+\.(tmp|old)-.*|hwgen-(inputs|sim)-.*)$")
FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class Context:
    """One case's scratch folder, environment overrides and the shared prepared inputs."""
    tmp: Path
    q_src: Path            # a valid QuantizedModel folder (digits-mlp W4A4), never mutated
    zoo_src: Path          # a warm zoo cache folder ($HWGEN_CACHE), never mutated
    env: dict = field(default_factory=dict)
    readonly: list = field(default_factory=list)

    def q(self):
        """A private copy of the QuantizedModel folder."""
        dst = self.tmp / "q"
        if not dst.exists():
            shutil.copytree(self.q_src, dst)
        return dst

    def warm_cache(self):
        """A private copy of the warm zoo cache, set as $HWGEN_CACHE."""
        dst = self.tmp / "cache"
        if not dst.exists():
            (dst / "zoo").mkdir(parents=True)
            for f in (self.zoo_src / "zoo").glob("digits-mlp-*"):
                shutil.copy2(f, dst / "zoo" / f.name)
        self.env["HWGEN_CACHE"] = str(dst)
        return dst


@dataclass(frozen=True)
class Case:
    name: str
    cls: str
    setup: object          # (Context) -> argv
    expect: str = ERROR    # ERROR: exit 2 and one line matching `message`; OK: exit 0
    message: str = ""      # regex the error line must match (it names the cause)
    check: object = None   # (Context, stdout, stderr) -> list of problems ("left behind")
    process: bool = False  # needs a real process (pipes, sys.exit in user code)
    pipe_head: bool = False  # read one byte of stdout, then close it (`| head -c 1`)


@dataclass
class Outcome:
    case: str
    cls: str
    verdict: str
    code: object
    detail: str


# -- helpers used by the setups ---------------------------------------------------------------

def make_readonly(path):
    """Make ``path`` a folder nobody can write into, root included (chmod alone does not stop
    root: then the immutable attribute). Returns False when neither works here."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o555)
    if _writable(path):
        subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    return not _writable(path)


def undo_readonly(path):
    subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)
    with contextlib.suppress(OSError):
        path.chmod(0o755)


def _writable(path):
    probe = path / ".probe"
    try:
        probe.write_text("")
    except OSError:
        return False
    probe.unlink()
    return True


def _ro(ctx, name):
    ro = ctx.tmp / name
    if not make_readonly(ro):
        raise RuntimeError("cannot make a read-only folder here")
    ctx.readonly.append(ro)
    return ro


def _file(ctx, name="afile", text="not a folder\n"):
    f = ctx.tmp / name
    f.write_text(text)
    return f


def _rewrite_model(q, edit_doc=None, edit_arrays=None, fix_digest=True):
    """Change a QuantizedModel folder's model.json and/or tensors, keeping the digest valid
    (a consistent but hostile folder, not a torn one)."""
    from quantflow.serialize import tensor_digest

    doc = json.loads((q / "model.json").read_text())
    with np.load(q / "tensors.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if edit_arrays:
        edit_arrays(arrays)
        with open(q / "tensors.npz", "wb") as f:
            np.savez(f, **arrays)
    if edit_doc:
        edit_doc(doc)
    if fix_digest:
        doc["tensors_sha256"] = tensor_digest(arrays)
    (q / "model.json").write_text(json.dumps(doc))


def _data_file(ctx, edit):
    """A --data .npz from the digits set (small), changed by ``edit(dict)``."""
    from quantflow import data

    ds = data.digits()
    arrays = {"x_train": ds.x_train[:400], "y_train": ds.y_train[:400],
              "x_test": ds.x_test[:100], "y_test": ds.y_test[:100]}
    edit(arrays)
    f = ctx.tmp / "data.npz"
    np.savez(f, **arrays)
    return f


def _zoo_entry(ctx):
    """The warm cache's digits-mlp weights file (in the private copy)."""
    cache = ctx.warm_cache()
    entries = [p for p in (cache / "zoo").glob("digits-mlp-*") if p.suffix == ".pt"]
    assert len(entries) == 1, entries
    return entries[0]


def _user_model(ctx, body, name="user_model.py"):
    f = ctx.tmp / name
    f.write_text("import sys\nimport torch\nfrom torch import nn\n\n" + body)
    return f


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
        "out-under-file": (lambda ctx: _file(ctx) / "out", r"not a folder"),
        "out-300-chars": (lambda ctx: ctx.tmp / ("n" * 300), r"too long"),
        "out-under-proc": (lambda ctx: Path("/proc/hwgen-out"), r"/proc"),
        "out-read-only": (lambda ctx: _ro(ctx, "ro") / "out", r"cannot write|read-only"),
    }
    for cmd in ("quantize", "generate", "demo", "synth"):
        build = _with_out(cmd)
        for tag, (where, msg) in bad_outs.items():
            cases.append(Case(f"{cmd}/{tag}", "paths",
                              lambda ctx, b=build, w=where: b(ctx, w(ctx)), message=msg))
    cases += [
        Case("simulate/waves-is-a-file", "paths",
             lambda ctx: ["simulate", str(ctx.q()), "--waves", str(_file(ctx, "w.fst"))],
             message=r"--waves.*not a folder"),
        Case("simulate/waves-under-file", "paths",
             lambda ctx: ["simulate", str(ctx.q()), "--waves", str(_file(ctx) / "w")],
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
                return _file(ctx, "cachefile")
            if kind == "under-file":
                return _file(ctx, "cachefile") / "cache"
            return _ro(ctx, "rocache")
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
             lambda ctx: (ctx.env.update(HWGEN_BUILD_CACHE=str(_file(ctx))),
                          ["estimate", str(ctx.q()), "--board", "icebreaker"])[1], expect=OK),
        Case("doctor/HWGEN_CACHE-file", "cache variables",
             lambda ctx: (ctx.env.update(HWGEN_CACHE=str(_file(ctx))), ["doctor"])[1],
             expect=OK),
    ]
    return cases


def _generate_q(edit):
    def setup(ctx):
        q = ctx.q()
        edit(q)
        return ["generate", str(q), "--out", str(ctx.tmp / "rtl")]
    return setup


def _json_folder(q):
    (q / "model.json").unlink()
    (q / "model.json").mkdir()


def _json_loop(q):
    (q / "model.json").unlink()
    (q / "loop").symlink_to(q / "model.json")
    (q / "model.json").symlink_to(q / "loop")


def _json_nested(q):
    (q / "model.json").write_text("[" * 100000 + "]" * 100000)


def _json_truncated(q):
    text = (q / "model.json").read_text()
    (q / "model.json").write_text(text[:len(text) // 2])


def _fractional(q):
    def edit(arrays):
        key = next(k for k in sorted(arrays) if k.endswith(".weight"))
        arrays[key] = arrays[key].astype(np.float64) + 0.5
    _rewrite_model(q, edit_arrays=edit)


def _drop_last(q):
    _rewrite_model(q, edit_doc=lambda doc: doc["layers"].pop())


def _input_scale(value):
    def edit(q):
        _rewrite_model(q, edit_doc=lambda doc: doc.update(input_scale=value))
    return edit


def _corrupt_cases():
    gen = "QuantizedModel files"
    cases = [
        Case("generate/model.json-is-a-folder", gen, _generate_q(_json_folder),
             message=r"model\.json"),
        Case("generate/model.json-symlink-loop", gen, _generate_q(_json_loop),
             message=r"model\.json"),
        Case("generate/model.json-deeply-nested", gen, _generate_q(_json_nested),
             message=r"model\.json.*nest"),
        Case("generate/model.json-truncated", gen, _generate_q(_json_truncated),
             message=r"model\.json: not valid JSON"),
        Case("generate/fractional-weights", gen, _generate_q(_fractional),
             message=r"integ"),
        Case("generate/missing-last-layer", gen, _generate_q(_drop_last),
             message=r"layer \d+, which model\.json does not describe"),
        Case("generate/negative-input-scale", gen, _generate_q(_input_scale(-0.5)),
             message=r"input_scale"),
        Case("generate/nan-input-scale", gen, _generate_q(_input_scale(float("nan"))),
             message=r"input_scale"),
        Case("estimate/fractional-weights", gen,
             lambda ctx: (_fractional(ctx.q()), ["estimate", str(ctx.q()), "--board",
                                                  "icebreaker"])[1], message=r"integ"),
        Case("synth/missing-last-layer", gen,
             lambda ctx: (_drop_last(ctx.q()), ["synth", str(ctx.q()), "--board",
                                                "icebreaker"])[1],
             message=r"layer \d+, which model\.json does not describe"),
        Case("run/nan-input-scale", gen,
             lambda ctx: (_input_scale(float("nan"))(ctx.q()),
                          ["run", str(ctx.q()), "--port", "/dev/null"])[1],
             message=r"input_scale"),
        Case("simulate/negative-input-scale", gen,
             lambda ctx: (_input_scale(-0.5)(ctx.q()), ["simulate", str(ctx.q())])[1],
             message=r"input_scale"),
    ]
    zoo = "zoo cache and model files"
    cases += [
        Case("quantize/zoo-entry-holds-a-tensor", zoo, _zoo_tensor, expect=OK,
             check=_zoo_healed),
        Case("quantize/zoo-entry-is-a-folder", zoo, _zoo_folder, expect=OK, check=_zoo_healed),
        Case("quantize/zoo-entry-zeroed-weights", zoo, _zoo_zeroed, expect=OK,
             check=_zoo_healed),
        Case("quantize/zoo-entry-truncated", zoo, _zoo_truncated, expect=OK,
             check=_zoo_healed),
        Case("quantize/empty-onnx-file", zoo,
             lambda ctx: ["quantize", "--model", str(_file(ctx, "m.onnx", "")), "--out",
                          str(ctx.tmp / "o")], message=r"m\.onnx.*empty"),
        Case("quantize/pickled-model-refused", zoo, _pickled, message=r"weights_only"),
        Case("quantize/lstm", zoo, _lstm, message=r"unsupported op LSTM|LSTM"),
        Case("quantize/factory-calls-sys-exit", zoo, _sys_exit, message=r"sys\.exit",
             process=True),
    ]
    return cases


def _zoo_tensor(ctx):
    import torch

    torch.save(torch.zeros(3), _zoo_entry(ctx))
    return [*_Q, "--json", "--out", str(ctx.tmp / "o")]


def _zoo_folder(ctx):
    entry = _zoo_entry(ctx)
    entry.unlink()
    entry.mkdir()
    (entry / "x").write_text("")
    return [*_Q, "--json", "--out", str(ctx.tmp / "o")]


def _zoo_zeroed(ctx):
    import torch

    entry = _zoo_entry(ctx)
    state = torch.load(entry, weights_only=True)
    torch.save({k: torch.zeros_like(v) for k, v in state.items()}, entry)
    return [*_Q, "--json", "--out", str(ctx.tmp / "o")]


def _zoo_truncated(ctx):
    entry = _zoo_entry(ctx)
    entry.write_bytes(entry.read_bytes()[:100])
    return [*_Q, "--json", "--out", str(ctx.tmp / "o")]


def _zoo_healed(ctx, out, err):
    problems = []
    if not re.search(r"discard", err):
        problems.append("no notice that the cache entry was discarded")
    try:
        acc = json.loads(out.strip().splitlines()[-1])["float_accuracy"]
    except (ValueError, IndexError, KeyError):
        return problems + ["no JSON summary"]
    if acc < 0.9:
        problems.append(f"float accuracy {acc:.2f}: the bad entry was served")
    return problems


def _pickled(ctx):
    import torch

    torch.save(torch.nn.Linear(64, 10), ctx.tmp / "whole.pt")
    f = _user_model(ctx, "def make():\n    return torch.load(%r, weights_only=True)\n"
                    % str(ctx.tmp / "whole.pt"))
    return ["quantize", "--model", f"{f}:make", "--out", str(ctx.tmp / "o")]


def _lstm(ctx):
    f = _user_model(ctx, "class Net(nn.Module):\n"
                         "    def __init__(self):\n"
                         "        super().__init__()\n"
                         "        self.lstm = nn.LSTM(8, 10, batch_first=True)\n"
                         "    def forward(self, x):\n"
                         "        return self.lstm(x.reshape(-1, 8, 8))[0][:, -1]\n\n"
                         "def make():\n    return Net()\n")
    return ["quantize", "--model", f"{f}:make", "--method", "minmax", "--out",
            str(ctx.tmp / "o")]


def _sys_exit(ctx):
    f = _user_model(ctx, "def make():\n    sys.exit(3)\n")
    return ["quantize", "--model", f"{f}:make", "--out", str(ctx.tmp / "o")]


def _data_cases():
    d = "bad data"

    def one_hot(a):
        a["y_train"] = np.eye(10, dtype=np.int64)[a["y_train"]]
        a["y_test"] = np.eye(10, dtype=np.int64)[a["y_test"]]

    def outside(a):
        a["y_test"] = a["y_test"] + 10

    def complex_x(a):
        a["x_train"] = a["x_train"].astype(np.complex64)
        a["x_test"] = a["x_test"].astype(np.complex64)

    def nan_x(a):
        a["x_test"] = a["x_test"].copy()
        a["x_test"][0, 0] = np.nan

    def object_x(a):
        a["x_test"] = a["x_test"].astype(object)

    def quantize(edit):
        return lambda ctx: [*_Q, "--data", str(_data_file(ctx, edit)), "--out",
                            str(ctx.tmp / "o")]

    def simulate(edit):
        return lambda ctx: ["simulate", str(ctx.q()), "--data", str(_data_file(ctx, edit))]

    return [
        Case("quantize/one-hot-labels", d, quantize(one_hot), message=r"y_train.*one"),
        Case("quantize/labels-outside-classes", d, quantize(outside), message=r"class"),
        Case("quantize/complex-data", d, quantize(complex_x), message=r"complex|real"),
        Case("quantize/object-data", d, quantize(object_x), message=r"data\.npz"),
        Case("quantize/nan-data", d, quantize(nan_x), message=r"finite"),
        Case("simulate/labels-outside-classes", d, simulate(outside), message=r"class"),
        Case("simulate/complex-data", d, simulate(complex_x), message=r"complex|real"),
        Case("simulate/one-hot-labels", d, simulate(one_hot), message=r"y_train.*one"),
    ]


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


CASES = _path_cases() + _cache_cases() + _corrupt_cases() + _data_cases() + _option_cases()


# -- running and judging -----------------------------------------------------------------------

def litter(*roots):
    """Paths under ``roots`` that a finished run must not leave behind."""
    found = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                if _LITTER.match(name):
                    found.append(str(Path(dirpath) / name))
    return found


def prepare(root):
    """(QuantizedModel folder, warm zoo cache) shared by every case: digits-mlp W4A4 (min-max)
    quantized with the weights of ``$HWGEN_CACHE`` (trained there when missing)."""
    from quantflow import flow, ptq, serialize, zoo

    ds = flow.load_data(None, "digits-mlp")
    name, net = flow.load_model("digits-mlp", ds)
    result = flow.quantize_model(name, net, ds, ptq.PTQConfig(4, 4), flow.Method.MINMAX)
    q = serialize.save(result.qmodel, Path(root) / "q-digits-mlp-w4a4")
    return q, zoo.cache_dir()


def run_case(case, ctx, in_process=True):
    """Run ``case`` in ``ctx``; return its :class:`Outcome`."""
    tmpdir = ctx.tmp / "tmp"
    tmpdir.mkdir(exist_ok=True)
    try:
        argv = case.setup(ctx)
        env = dict(ctx.env, TMPDIR=str(tmpdir))
        if in_process and not case.process:
            code, out, err = _in_process(argv, env)
        else:
            code, out, err = _subprocess(argv, env, ctx.tmp, case.pipe_head)
        problems = list(case.check(ctx, out, err)) if case.check else []
        problems += [f"left {p}" for p in litter(ctx.tmp)]
    finally:
        for ro in ctx.readonly:
            undo_readonly(ro)
    verdict, detail = judge(case, code, out, err, problems)
    return Outcome(case.name, case.cls, verdict, code, detail)


def judge(case, code, out, err, problems):
    """(verdict, detail) of one run (see the module docstring)."""
    command = case.name.split("/")[0]
    if "Traceback" in err:
        return "traceback", err.strip().splitlines()[-1] if err.strip() else ""
    if case.expect == ERROR and code == 0:
        return "silently wrong", "exit status 0"
    if problems:
        return ("silently wrong" if any("served" in p for p in problems) else "left behind",
                "; ".join(problems))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if case.pipe_head and code in (0, 141) and not lines:
        return "ok", ""  # the reader left: quiet, like a tool killed by SIGPIPE
    if case.expect == OK:
        return ("ok", "") if code == 0 else ("unclear", f"exit {code}: {err.strip()[-200:]}")
    errors = [ln for ln in lines if ln.startswith(f"hwgen {command}: error: ")]
    if code != 2 or len(errors) != 1 or len(lines) != 1:
        return "unclear", f"exit {code}: {err.strip()[-300:]!r}"
    if "\x1b[" in errors[0] or not re.search(case.message, errors[0]):
        return "unclear", errors[0]
    return "ok", errors[0]


def _in_process(argv, env):
    from hwgen.cli import main

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    tempfile.tempdir = None
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:
                code = e.code
            except BaseException:  # noqa: BLE001 - an escaping exception is the finding
                code = None
                err.write(traceback.format_exc())
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        tempfile.tempdir = None
    return code, out.getvalue(), err.getvalue()


def _subprocess(argv, env, cwd, pipe_head=False, timeout=600):
    cmd = [sys.executable, "-m", "hwgen.cli", *argv]
    full = dict(os.environ, **env)
    if not pipe_head:
        p = subprocess.run(cmd, env=full, cwd=cwd, capture_output=True, text=True,
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    with subprocess.Popen(cmd, env=full, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as p:
        p.stdout.read(1)
        p.stdout.close()
        err = p.stderr.read().decode(errors="replace")
        p.wait(timeout=timeout)
    return p.returncode, "", err
