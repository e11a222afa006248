"""quantflow.fsutil: atomic folders under real SIGKILLs and races, cache locks, scratch folders
and the path checks (issue 12). Real processes, no mocks: each child is a few lines of Python
that imports only quantflow.fsutil, so a kill lands at any instant of a replace."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from quantflow import fsutil
from quantflow.errors import UserError

_REPLACER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from quantflow.fsutil import atomic_dir
    target, rounds = Path(sys.argv[1]), int(sys.argv[2])
    n = 0
    while rounds == 0 or n < rounds:
        n += 1
        with atomic_dir(target) as tmp:
            for i in range(30):
                (tmp / f"f{i}").write_text(str(n))
            (tmp / "done").write_text(str(n))
""")


def _complete(folder):
    """The folder is one whole write: every file holds the round ``done`` names."""
    done = (folder / "done").read_text()
    return all((folder / f"f{i}").read_text() == done for i in range(30))


def _dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _replace_once(target):
    p = subprocess.run([sys.executable, "-c", _REPLACER, str(target), "1"], capture_output=True,
                       text=True, check=False)
    assert p.returncode == 0, p.stderr


def _spawn(script, *args):
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_at_any_instant_of_a_replace_leaves_old_or_new(tmp_path):
    """A child replaces the folder in a loop; SIGKILL at random instants. After each kill the
    folder is there and whole, and the next replace leaves nothing else behind."""
    seed = 12
    rng = np.random.default_rng(seed)
    target = tmp_path / "out"
    _replace_once(target)
    for _ in range(12):
        child = _spawn(_REPLACER, target, 0)
        time.sleep(0.15 + rng.uniform(0, 0.25))  # past the import, inside the loop
        child.kill()
        child.wait()
        child.stderr.close()
        assert target.is_dir() and _complete(target), f"seed {seed}: torn after a kill"
    _replace_once(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], f"seed {seed}: litter"
    assert _complete(target)


def test_two_processes_into_one_new_folder_both_succeed(tmp_path):
    for round_ in range(4):
        target = tmp_path / f"new{round_}"
        children = [_spawn(_REPLACER, target, 1) for _ in range(2)]
        errs = [c.communicate()[1] for c in children]
        assert [c.returncode for c in children] == [0, 0], errs
        assert _complete(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"new{i}" for i in range(4)]


def test_a_killed_two_rename_replace_is_put_back(tmp_path, capsys):
    """Where no atomic exchange exists, a kill between the two renames leaves the old folder
    aside and none in place: the next run puts it back before replacing it."""
    target = tmp_path / "q"
    old = tmp_path / f".q.old-{_dead_pid()}-abc"
    old.mkdir()
    (old / "model.json").write_text("old")
    with pytest.raises(RuntimeError), fsutil.atomic_dir(target):
        raise RuntimeError("the new write fails")
    assert (target / "model.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]
    assert re.search(r"restored the previous folder", capsys.readouterr().err)


def test_replace_refuses_to_delete_a_file_it_does_not_write(tmp_path):
    target = tmp_path / "q"
    target.mkdir()
    (target / "model.json").write_text("old")
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match=rf"^{re.escape(str(target))}: holds notes\.txt that"
                                        r" this run does not write \(refusing to delete it"):
        with fsutil.atomic_dir(target) as tmp:
            (tmp / "model.json").write_text("new")
    assert (target / "notes.txt").read_text() == "keep me"
    assert (target / "model.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]


_LOCKER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from quantflow.fsutil import cache_lock
    entry, log = Path(sys.argv[1]), Path(sys.argv[2])
    with cache_lock(entry):
        with open(log, "a") as f:
            f.write(f"start {os.getpid()}\\n")
        time.sleep(0.3)
        with open(log, "a") as f:
            f.write(f"end {os.getpid()}\\n")
""")


def test_cache_lock_serialises_processes(tmp_path):
    log = tmp_path / "log"
    children = [_spawn(_LOCKER, tmp_path / "cache" / "entry", log) for _ in range(3)]
    for c in children:
        assert c.wait() == 0, c.stderr.read()
        c.stderr.close()
    lines = log.read_text().split()
    events = list(zip(lines[::2], lines[1::2], strict=True))
    # start a, end a, start b, end b, ...: no two holders at once
    assert [e[0] for e in events] == ["start", "end"] * 3
    assert all(events[i][1] == events[i + 1][1] for i in range(0, 6, 2))


def test_scratch_dir_removes_dead_runs_folders_only(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / f"hwgen-sim-{_dead_pid()}-x"
    alive = tmp_path / f"hwgen-sim-{os.getppid()}-y"
    other = tmp_path / f"hwgen-inputs-{_dead_pid()}-z"
    for d in (dead, alive, other):
        d.mkdir()
    with fsutil.scratch_dir("hwgen-sim") as tmp:
        assert tmp.name.startswith(f"hwgen-sim-{os.getpid()}-") and tmp.is_dir()
    assert not tmp.exists() and not dead.exists() and alive.exists() and other.exists()


@pytest.mark.parametrize(("make", "message"), [
    (lambda t: t / ("n" * 300), r": output folder: file name too long \(over 255 bytes\)$"),
    (lambda t: (t / "f").write_text("") or t / "f" / "out",
     r": output folder: .*/f is not a folder$"),
    (lambda t: (t / "f").write_text("") or t / "f", r": output folder exists and is not a"
                                                    r" folder$"),
    (lambda t: __import__("pathlib").Path("/proc/hwgen-x"),
     r"^/proc/hwgen-x: output folder: cannot write in /proc$"),
])
def test_check_out_messages(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(UserError, match=message):
        fsutil.check_out(path)


def test_check_out_read_only_folder(tmp_path):
    import hostile_cases

    ro = tmp_path / "ro"
    if not hostile_cases.make_readonly(ro):
        pytest.skip("cannot make a read-only folder here (neither chmod nor chattr)")
    try:
        with pytest.raises(UserError, match=rf"^{re.escape(str(ro))}/out: output folder:"
                                            rf" cannot write in {re.escape(str(ro))}$"):
            fsutil.check_out(ro / "out")
        with pytest.raises(UserError, match=r"^HWGEN_CACHE=.*: not usable as a cache"
                                            r" \(cannot write in .*\)$"):
            fsutil.check_cache_root(ro / "cache", "HWGEN_CACHE")
    finally:
        hostile_cases.undo_readonly(ro)


def test_check_cache_root_names_the_variable(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match=r"^HWGEN_BUILD_CACHE=.*/f: not usable as a cache \(not"
                                        r" a folder: exists and is not a folder\)$"):
        fsutil.check_cache_root(tmp_path / "f", "HWGEN_BUILD_CACHE")
    assert fsutil.check_cache_root(tmp_path / "new" / "c", "HWGEN_CACHE").is_dir()


def test_write_bytes_is_whole_and_leaves_nothing(tmp_path):
    f = tmp_path / "x"
    fsutil.write_bytes(f, b"one")
    fsutil.write_bytes(f, b"two")
    assert f.read_bytes() == b"two" and [p.name for p in tmp_path.iterdir()] == ["x"]


def test_sigterm_is_not_needed_for_cleanup(tmp_path):
    """A replacer stopped by SIGTERM (no Python cleanup) is swept like a SIGKILLed one."""
    target = tmp_path / "out"
    _replace_once(target)
    child = _spawn(_REPLACER, target, 0)
    time.sleep(0.3)
    child.send_signal(signal.SIGTERM)
    child.wait()
    child.stderr.close()
    assert _complete(target)
    _replace_once(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_folder_mode_follows_the_umask(tmp_path):
    """Not mkdtemp's private 0700: an output folder is made as mkdir would make it."""
    import os
    import stat

    from quantflow.fsutil import atomic_dir

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "f.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755


def test_output_file_mode_follows_the_umask(tmp_path):
    """Not mkstemp's private 0600: a file write_bytes replaces is made as open() would make
    it (simulate --out, a build's estimate.json and report)."""
    import os
    import stat

    from quantflow.fsutil import write_bytes

    old = os.umask(0o022)
    try:
        write_bytes(tmp_path / "f.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == 0o644


def test_a_killed_runs_write_probe_is_litter_not_a_user_file(tmp_path):
    """A SIGKILL between the write probe's create and unlink leaves `.hwgen-probe-PID-*` in
    the output folder; the next replace removes it instead of refusing it as a user's file
    (found by the random-instant SIGKILL test)."""
    import subprocess
    import sys

    from quantflow.fsutil import atomic_dir

    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("1")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    probe = tmp_path / "out" / f".hwgen-probe-{dead}-abc123"
    probe.write_text("")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("2")
    assert (tmp_path / "out" / "a.txt").read_text() == "2" and not probe.exists()


def test_a_replace_drops_only_the_files_named_replaceable(tmp_path):
    """A build replaces its own output folder by one with other files (a board's design has
    a UART top, the generic one not): the files it names go, any other is still refused."""
    from quantflow.errors import UserError
    from quantflow.fsutil import atomic_dir

    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a.v").write_text("1")
        (tmp / "uart.v").write_text("1")
    (tmp_path / "out" / "mine.txt").write_text("user")
    with pytest.raises(UserError, match=r"holds mine\.txt that this run does not write"):
        with atomic_dir(tmp_path / "out", replaceable={"uart.v"}) as tmp:
            (tmp / "a.v").write_text("2")
    assert (tmp_path / "out" / "uart.v").exists()
    with atomic_dir(tmp_path / "out", replaceable={"uart.v", "mine.txt"}) as tmp:
        (tmp / "a.v").write_text("2")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.v"]
