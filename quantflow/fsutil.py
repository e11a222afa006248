"""The one place that decides how files are written: atomic folders and files, cache locks,
scratch folders, and paths checked before any work is done.

- :class:`atomic_dir` builds a folder under a temporary name beside its destination and swaps
  it in. On Linux the swap is one ``renameat2(RENAME_EXCHANGE)``, so at every instant the
  destination holds the old folder or the new one; elsewhere two renames, and a kill between
  them leaves the old folder under ``.NAME.old-PID-*``, which the next run on that path puts
  back. Temporary and old folders carry their writer's PID: a later run removes those whose
  writer is dead. The swap holds a lock on the parent folder (``flock`` on the folder itself,
  no lock file), so two processes writing one new folder take turns instead of failing.
  Replacing a folder never deletes a file the new folder does not hold: that is refused
  (:class:`~quantflow.errors.UserError` naming it), the old folder left as it was.
- :func:`cache_lock` serialises processes on one cache entry (``flock`` on ``NAME.lock``
  beside it): a second process waits, then finds the entry built.
- :func:`write_bytes` writes one file atomically (temporary file, ``fsync``, rename).
- :func:`scratch_dir` is a temporary folder that a killed run cannot leave behind for good:
  it carries the PID and the next run removes the dead ones.
- :func:`check_out` / :func:`check_cache_root` turn an unusable path into one line before
  minutes of work, not an ``OSError`` after them.
"""

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from .errors import UserError

__all__ = ["cache_dir", "atomic_dir", "write_bytes", "cache_lock", "scratch_dir", "check_out",
           "check_out_file", "check_cache_root", "file_digest", "sweep", "notice",
           "describe_os_error"]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def cache_dir():
    """Where hwgen caches zoo weights, designs and simulator builds: ``$HWGEN_CACHE`` or
    ``~/.cache/hwgen``."""
    root = os.environ.get("HWGEN_CACHE") or Path.home() / ".cache" / "hwgen"
    return Path(root)


def notice(message):
    """A one-line notice on stderr (a healed cache entry, a moved file)."""
    print(f"hwgen: notice: {message}", file=sys.stderr)


def describe_os_error(e):
    """``OSError`` -> ``'PATH: strerror'`` (one line, no errno clutter)."""
    where = e.filename if e.filename is not None else ""
    what = e.strerror or str(e)
    if e.errno == errno.ENAMETOOLONG:
        what = "file name too long"
    elif e.errno == errno.ENOTDIR:
        what = "a path component is not a folder"
    elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        what = f"cannot write here ({e.strerror or 'read-only'})"
    return f"{where}: {what}" if where else what


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(name):
    m = re.search(r"-(\d+)-[^-]*$", name)
    return int(m.group(1)) if m else None


def sweep(parent, pattern):
    """Remove the entries of ``parent`` matching ``pattern`` (a regex with the PID as
    ``-PID-`` before a random tail) whose writer process is dead. Returns what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in Path(parent).iterdir():
            pid = _owner(entry.name)
            if re.fullmatch(pattern, entry.name) and pid is not None and not _alive(pid):
                _remove(entry)
                removed.append(entry)
    return removed


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _exchange(a, b):
    """Swap two paths atomically (Linux renameat2); False when the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def _dir_lock(folder):
    """An exclusive ``flock`` on the folder itself (no lock file to leave behind)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _recover(path):
    """Put back an old folder a killed two-rename replace left without its successor, and
    remove the dead writers' temporary and old folders."""
    parent, name = path.parent, re.escape(path.name)
    if not path.exists():
        olds = [p for p in parent.iterdir()
                if re.fullmatch(rf"\.{name}\.old-\d+-.*", p.name)
                and (pid := _owner(p.name)) is not None and not _alive(pid)]
        if olds:
            os.replace(max(olds, key=lambda p: p.stat().st_mtime), path)
            notice(f"{path}: restored the previous folder an interrupted run had moved aside")
    sweep(parent, rf"\.{name}\.(tmp|old)-\d+-.*")


def _umask():
    """The process's umask (read by setting it, so set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class atomic_dir:
    """Context manager yielding a temporary folder that replaces ``path`` on success.

    On an exception the temporary folder is removed and ``path`` is left as it was. A file in
    the old folder that the new one does not hold is never deleted: the replace is refused,
    unless its name is in ``replaceable`` (files the caller knows it wrote there itself: a
    build's record of its own outputs).
    """

    def __init__(self, path, replaceable=()):
        self.path = Path(path)
        self.replaceable = frozenset(replaceable)

    def __enter__(self):
        check_out(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _dir_lock(self.path.parent):
            _recover(self.path)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.tmp-{os.getpid()}-",
                                         dir=self.path.parent))
        # mkdtemp makes it 0700 (private scratch); an output folder gets what mkdir gives
        self.tmp.chmod(0o777 & ~_umask())
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        try:
            with _dir_lock(self.path.parent):
                self._swap()
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        return False

    def _swap(self):
        path, tmp = self.path, self.tmp
        if not path.exists():
            os.rename(tmp, path)
            return
        if not path.is_dir() or path.is_symlink():
            raise UserError(f"{path}: exists and is not a folder (refusing to replace it)")
        # a write probe (ours or a killed run's) is never a user's file
        lost = sorted(p.name for p in path.iterdir()
                      if not (tmp / p.name).exists() and p.name not in self.replaceable
                      and not re.fullmatch(_PROBE, p.name))
        if lost:
            raise UserError(f"{path}: holds {', '.join(lost[:3])}{', ...' if len(lost) > 3 else ''}"
                            " that this run does not write (refusing to delete it: move it"
                            " away or choose another output folder)")
        if _exchange(tmp, path):
            shutil.rmtree(tmp, ignore_errors=True)  # now the old folder
            return
        old = path.with_name(f".{path.name}.old-{os.getpid()}-{tmp.name.rpartition('-')[2]}")
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)


def write_bytes(path, data):
    """Write ``data`` to ``path`` atomically: a reader sees the old file or the whole new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    try:
        # mkstemp makes it 0600 (private scratch); an output file gets what open() gives
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def cache_lock(entry):
    """Hold an exclusive lock on the cache entry ``entry`` (``flock`` on ``entry.lock``);
    a second process blocks here until the first is done. The lock file stays (it is the
    lock; removing it would let a third process lock another inode)."""
    entry = Path(entry)
    entry.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(entry.with_name(entry.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def scratch_dir(prefix):
    """A temporary folder named ``PREFIX-PID-*``, removed on exit; the dead runs' ones of the
    same prefix are removed on entry (a SIGKILL runs no cleanup)."""
    root = Path(tempfile.gettempdir())
    sweep(root, rf"{re.escape(prefix)}-\d+-.*")
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=root))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _first_bad_component(path):
    """The first existing non-folder among ``path``'s ancestors, or None."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def check_out(path, what="output folder"):
    """Raise a one-line :class:`UserError` when ``path`` cannot become a folder we write:
    a name too long, an ancestor that is a file, a parent we cannot write into."""
    path = Path(path)
    if any(len(os.fsencode(part)) > 255 for part in path.parts):
        raise UserError(f"{path}: {what}: file name too long (over 255 bytes)")
    bad = _first_bad_component(path)
    if bad is not None:
        raise UserError(f"{path}: {what}: {bad} is not a folder")
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: {what} exists and is not a folder")
    parent = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    target = parent if parent != path else path
    if not os.access(target, os.W_OK | os.X_OK) or not _can_create(target):
        raise UserError(f"{path}: {what}: cannot write in {target}")


def check_out_file(path, what="output file"):
    """Raise a one-line :class:`UserError` when ``path`` cannot become a file that
    :func:`write_bytes` writes: a name too long, an ancestor that is a file, a folder at the
    path, a folder we cannot write into (missing folders above it are created on writing)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: {what} is a folder")
    check_out(path.parent, what=f"{what}'s folder")
    if any(len(os.fsencode(part)) > 255 for part in path.parts):
        raise UserError(f"{path}: {what}: file name too long (over 255 bytes)")


#: The write probe's name (with its writer's PID): a probe a killed run left is litter.
_PROBE = r"\.hwgen-probe-\d+-.*"


def _can_create(folder):
    """A real probe: ``os.access`` says yes to root in a read-only or immutable folder. A
    probe a killed run left here (a SIGKILL between its create and unlink) is removed first:
    else the next replace of ``folder`` would count it as a user's file."""
    sweep(folder, _PROBE)
    try:
        fd, probe = tempfile.mkstemp(prefix=f".hwgen-probe-{os.getpid()}-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def check_cache_root(root, variable):
    """``root`` (from ``$variable`` or the default) as a folder we can write; else one line
    naming the variable."""
    root = Path(root)
    try:
        check_out(root, what="cache folder")
        root.mkdir(parents=True, exist_ok=True)
    except UserError as e:
        raise UserError(f"{variable}={root}: not usable as a cache ({_reason(e, root)})") \
            from None
    except OSError as e:
        raise UserError(f"{variable}={root}: not usable as a cache ({describe_os_error(e)})") \
            from None
    return root


def _reason(e, root):
    text = str(e).removeprefix(f"{root}: cache folder")
    text = text.lstrip(": ").strip()
    if "is not a folder" in text:
        return f"not a folder: {text}"
    return text


def file_digest(path):
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
