"""cocotb modules, one per DUT; they run inside the simulator's Python."""
