"""RTL tests: generated Verilog simulated under Icarus Verilog and Verilator with cocotb.

Two sides live here. The pytest side (:mod:`rtl_tests.harness`, ``test_*.py``) generates Verilog
from Amaranth components, builds it once per configuration and simulator, and runs cocotb test
modules against it. The cocotb side (:mod:`rtl_tests.tb`, :mod:`rtl_tests.streams`, ``*_tb.py``)
runs inside the simulator process: it drives and samples ports and compares against golden models
it imports from elsewhere.
"""
