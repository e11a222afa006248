"""Subcommands of `hwgen`, one module each (see hwgen.cli)."""
