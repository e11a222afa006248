"""hwgen: low-bit overlay accelerator generation, simulation and the `hwgen` command."""
