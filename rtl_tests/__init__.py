"""cocotb testbenches for the generated Verilog, and the pytest files that run them."""
