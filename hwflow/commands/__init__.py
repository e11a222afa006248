"""Subcommands of `hwgen`, one module each (see hwflow.cli)."""
