"""Errors a user can cause in hardware generation; the CLI prints each as one line, exit 2."""

from quantflow.errors import ArtifactError, DataError, UnsupportedOpError, UserError

__all__ = ["UserError", "ArtifactError", "DataError", "UnsupportedOpError", "ConfigError",
           "DoesNotFitError", "ToolError"]


class ConfigError(UserError):
    """A hardware configuration is invalid."""


class DoesNotFitError(UserError):
    """A model does not fit a configuration or a board: names the resource, need and have."""


class ToolError(UserError):
    """An external tool (simulator, synthesis) is missing or failed."""
