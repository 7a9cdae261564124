"""RTL simulation of the generated Verilog with cocotb on Icarus Verilog and Verilator."""
