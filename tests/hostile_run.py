"""Running and judging the hostile cases of :mod:`hostile_cases` (issue 12): the case and
context types, the verdicts, the litter check, and the in-process and real-process runners."""

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Case", "Outcome", "Context", "VERDICTS", "ERROR", "OK", "run_case", "judge",
           "litter", "make_readonly", "undo_readonly", "prepare", "tmp_file", "readonly_dir"]

VERDICTS = ("ok", "traceback", "silently wrong", "left behind", "unclear")
ERROR, OK = "error", "ok"
_LITTER = re.compile(r"^(\..+\.(tmp|old)-.*|hwgen-(inputs|sim)-.*)$")


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
            from quantflow import zoo

            (dst / "zoo").mkdir(parents=True)
            # Only the entry this code serves: older entries of digits-mlp (another recipe or
            # torch) may sit beside it in a long-lived cache.
            mlp = zoo.ZooModel.DIGITS_MLP
            name = zoo.entry_name(mlp, zoo.default_data(mlp))
            for f in (self.zoo_src / name, self.zoo_src / (name + ".sha256")):
                shutil.copy2(f, dst / f.relative_to(self.zoo_src))
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
    pipe_head: bool = False  # stdout's reader has left (`| head -c 1`, deterministic)


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


def readonly_dir(ctx, name):
    ro = ctx.tmp / name
    if not make_readonly(ro):
        raise RuntimeError("cannot make a read-only folder here")
    ctx.readonly.append(ro)
    return ro


def tmp_file(ctx, name="afile", text="not a folder\n"):
    f = ctx.tmp / name
    f.write_text(text)
    return f

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
    from hwflow.cli import main

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
    cmd = [sys.executable, "-m", "hwflow.cli", *argv]
    full = dict(os.environ, **env)
    if not pipe_head:
        p = subprocess.run(cmd, env=full, cwd=cwd, capture_output=True, text=True,
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    with subprocess.Popen(cmd, env=full, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as p:
        # The reader leaves before the command writes (the race `| head -c 1` can lose:
        # output that fits the pipe's buffer before head exits raises nothing).
        p.stdout.close()
        err = p.stderr.read().decode(errors="replace")
        p.wait(timeout=timeout)
    return p.returncode, "", err
