"""quantflow: from a trained PyTorch network to a bit-exact integer model (no torch at import)."""

__all__ = []
