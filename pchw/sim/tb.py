"""Common pieces of cocotb testbenches for Amaranth-generated Verilog.

This module runs inside the simulator process (imported by cocotb test modules), and is also
imported by :mod:`pchw.sim.runner` for :data:`TEST_DATA_ENV`, so it imports nothing but cocotb.

Amaranth's Verilog names the clock and synchronous reset of the ``sync`` domain ``clk`` and
``rst``; :class:`ClockedTB` owns both.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from cocotb.clock import Clock
from cocotb.handle import SimHandleBase
from cocotb.triggers import RisingEdge

#: Environment variable holding the path of a JSON file with the data a pytest test hands to the
#: cocotb test module (the configuration the Verilog was generated with, stimulus sizes, ...).
#: :func:`pchw.sim.runner.simulate` sets it from its ``test_data`` argument.
TEST_DATA_ENV = "PCHW_TB_DATA"


def load_test_data() -> dict[str, Any]:
    """Return the data the pytest side passed to :func:`pchw.sim.runner.simulate`.

    Returns an empty dict when the module runs without it (e.g. started by hand).
    """
    path = os.environ.get(TEST_DATA_ENV)
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class ClockedTB:
    """Base of a testbench class: owns the ``clk`` clock and the ``rst`` synchronous reset.

    Subclasses add the drivers and monitors of their device. Creating one starts the clock.

    Parameters
    ----------
    dut:
        The toplevel handle cocotb passes to a test.
    period_ns:
        Clock period in nanoseconds (the harness runs with a 1 ns / 1 ps timescale).
    """

    def __init__(self, dut: SimHandleBase, *, period_ns: int = 10) -> None:
        self.dut = dut
        self.clk = dut.clk
        self.rst = dut.rst
        self.log = logging.getLogger(f"cocotb.tb.{type(self).__name__}")
        self.rst.value = 0
        Clock(self.clk, period_ns, unit="ns").start()

    async def reset(self, cycles: int = 2) -> None:
        """Hold ``rst`` high for *cycles* rising edges, then release it after a clock edge."""
        await RisingEdge(self.clk)
        self.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.clk)
        self.rst.value = 0
        await RisingEdge(self.clk)

    async def cycles(self, count: int) -> None:
        """Wait for *count* rising edges of ``clk``."""
        for _ in range(count):
            await RisingEdge(self.clk)
