"""Errors a user can cause. The CLI prints each as one line on stderr and exits with 2."""

__all__ = ["UserError", "ArtifactError", "UnsupportedOpError", "DataError"]


class UserError(Exception):
    """Base class: bad input from the user (never an internal bug)."""


class ArtifactError(UserError):
    """A QuantizedModel folder (or other artifact) is malformed, truncated or mismatched."""


class UnsupportedOpError(UserError):
    """The model contains an operation the flow cannot quantize."""


class DataError(UserError):
    """A data file or model file given by the user cannot be used."""
