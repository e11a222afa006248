"""The `hwgen` command: one argparse subcommand per module in :mod:`hwflow.commands`.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) ->
int``; heavy imports (torch, boards) happen inside ``run``. Every
:class:`quantflow.errors.UserError` becomes one line on stderr and exit status 2; a traceback is
shown only with ``--debug``.
"""

import argparse
import contextlib
import importlib
import os
import re
import signal
import sys

from quantflow.errors import UserError

__all__ = ["main", "COMMANDS"]

#: Subcommand modules, in the order `hwgen --help` lists them.
COMMANDS = ["quantize", "generate", "simulate", "estimate", "synth", "build", "explore", "program",
            "run", "demo", "doctor"]


def _load(name):
    try:
        return importlib.import_module(f"hwflow.commands.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"hwflow.commands.{name}":
            return None  # a command not built yet is simply not offered
        raise


def _shown(value):
    """A default as a user types it: an enum's value, an array shape as ``8x8``, a list
    comma-separated."""
    import enum

    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
        return "x".join(map(str, value))
    if isinstance(value, (list, tuple)):
        return ",".join(map(_shown, value))
    return str(value)


class _HelpFormatter(argparse.HelpFormatter):
    """Defaults in the help as a user would type them, and only where they say something:
    not for a required option, a flag, an unset (``None``) or empty default, or a help text
    that already states its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (not action.option_strings or action.required or "default" in text
                or default is None or isinstance(default, bool)
                or default is argparse.SUPPRESS
                or (isinstance(default, (dict, list, tuple, str)) and not default)):
            return text
        return f"{text} (default: {_shown(default).replace('%', '%%')})"


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hwgen")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit status 2 (``--help`` shows the usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(argv=None):
    """The parser; given ``argv``, only the invoked subcommand's arguments are added (another
    command's ``add_arguments`` may import heavy modules: ``quantize`` imports torch, seconds
    that ``hwgen estimate`` must not pay)."""
    names = set(COMMANDS)
    wanted = next((a for a in argv if a in names), None) if argv is not None else None
    parser = _Parser(
        prog="hwgen", description="From a trained network to bit-exact low-bit FPGA hardware.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"hwgen {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = _load(name)
        if module is None:
            continue
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                           formatter_class=_HelpFormatter)
        if argv is None or module.NAME == wanted:
            module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _one_line(text):
    """A message as one line: no colour codes, no line breaks (a tool's multi-line error
    joined with ' | ')."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text))
    return " | ".join(ln.strip() for ln in text.splitlines() if ln.strip())


def _stdout_closed():
    """The reader of our stdout left (``hwgen generate | head -c 1``): the work is done, so
    exit quietly with the status a tool killed by SIGPIPE has; point stdout at /dev/null so
    the interpreter's final flush does not fail again."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except (UserError, OSError, RecursionError) as e:
        if args.debug:
            raise
        if isinstance(e, OSError):
            # A file system refusal the checks before the work did not foresee (a disk
            # full, a folder made read-only meanwhile): still one line.
            from quantflow.fsutil import describe_os_error
            e = describe_os_error(e)
        elif isinstance(e, RecursionError):
            e = "input nested too deeply"
        print(f"hwgen {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hwgen {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
