"""`hwgen doctor`: versions of every tool and package the flow uses, and what is missing."""

import json
import sys

NAME = "doctor"
HELP = "report the versions of every tool and package the flow uses"

__all__ = ["NAME", "HELP", "add_arguments", "run"]


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args):
    from hwgen.tools import doctor_checks

    checks = doctor_checks()
    missing = [c for c in checks if c.required and not c.ok]
    if args.json:
        json.dump({"ok": not missing, "checks": [
            {"name": c.name, "kind": c.kind, "required": c.required, "version": c.version,
             "ok": c.ok, "fix": None if c.ok else c.fix} for c in checks]}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="hwgen doctor")
        for col in ("tool", "kind", "version", "status"):
            table.add_column(col)
        for c in checks:
            status = "[green]ok[/]" if c.ok else (
                f"[red]missing[/]: {c.fix}" if c.required else f"[yellow]optional[/]: {c.fix}")
            table.add_row(c.name, c.kind, c.version or "-", status)
        Console().print(table)
        if missing:
            print(f"{len(missing)} required piece(s) missing", file=sys.stderr)
    return 1 if missing else 0
