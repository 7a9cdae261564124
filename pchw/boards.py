"""Board targets, and the pre-synthesis check that a network fits one.

A :class:`Board` names an open FPGA board: its `amaranth-boards`_ platform class, the clock the
design runs on, the device's budget (logic cells, multiplier blocks, block RAM) and how it is
programmed. :func:`estimate` counts what a network needs before any tool runs, and
:func:`check_fit` refuses, with a one-line :class:`~pchw.errors.PchwError` naming what to
change, a network that clearly cannot fit; ``pchw build`` (:mod:`pchw.build`) calls it first.

What the estimate counts (see ``boards/README.md`` for the calibration):

* **Multipliers: exact, or one too many.** Each lane of weight layer ``l`` has one multiplier for ``W x phi``
  and one for the weight update ``eps x phi``; layers ``l >= 2`` have a third for the message
  ``W^T eps`` (layer 1 sends none, so synthesis removes it); the command decoder has one more
  (the parameter walker's ``group x lanes``), which the iCE40 flow puts in logic when every
  layer has one lane. A product wider than the device's multiplier
  block (16 x 16 on iCE40, 18 x 18 on ECP5) takes several blocks. Multipliers are never moved
  into logic: if they are more than the blocks, place and route fails.
* **RAM: a lower bound.** The parameters (``Network.memory_bits()["parameters"]``) and the
  command receiver's payload buffer (the longest command payload) must fit in the device's RAM:
  block RAM, and on ECP5 also distributed RAM (LUTs used as RAM; synthesis puts small memories
  there). Synthesis may need more (one memory per lane, rounded up to block shapes).
* **Logic: rough.** ``LUT_BASE + LUT_PER_STATE_BIT x state bits + LUT_PER_LANE_BIT x lane
  bits``: the state vectors ``x, mu, eps, y`` are registers with multiplexers around them, and
  each lane has wide accumulators, rounding and saturation. The coefficients are fitted to five
  builds of the example models on ``ulx3s-85f`` (each within 15%; iCE40 logic cells came out
  within 16% for three builds); the figure after place and route (the build report) is the
  real one. Only a network whose estimate is above :data:`LUT_MARGIN` times the
  device's logic is refused on logic grounds.

.. _amaranth-boards: https://github.com/amaranth-lang/amaranth-boards
"""

import importlib
import math
from dataclasses import dataclass

from . import protocol
from .errors import PchwError

__all__ = ["Board", "BOARDS", "board", "Estimate", "estimate", "check_fit",
           "LUT_BASE", "LUT_PER_STATE_BIT", "LUT_PER_LANE_BIT", "LUT_MARGIN"]

#: The logic estimate, fitted to whole board designs (UART, command decoder, core; see
#: ``boards/README.md``): a constant, a cost per state register bit, and a cost per lane and
#: weight bit.
LUT_BASE = 2400
LUT_PER_STATE_BIT = 3.1
LUT_PER_LANE_BIT = 30
#: Refuse on logic grounds only above this many times the device's logic cells: the estimate is
#: rough, and the report after place and route is the real figure.
LUT_MARGIN = 1.25


@dataclass(frozen=True)
class Board:
    """An FPGA board pchw can build a bitstream for.

    Attributes
    ----------
    name : str                 the ``--board`` name.
    description : str
    family : str               ``"ice40"`` or ``"ecp5"`` (selects the Amaranth toolchain flow).
    device : str               the FPGA part.
    platform_class : str       ``"module:Class"`` of the amaranth-boards platform.
    clock_hz : int             the board oscillator the design runs on.
    luts : int                 logic cells (iCE40 LCs; ECP5 LUT4s), as nextpnr counts them.
    dsps : int                 multiplier blocks (SB_MAC16; MULT18X18D).
    dsp_width : int            the widest signed operand one block multiplies.
    bram_blocks, bram_block_bits : int   block RAMs and bits in each (EBR).
    lutram_bits : int          distributed RAM (ECP5: 64 bits per 8 LUTs; iCE40 has none).
    programmer : str           the programming tool ``pchw flash`` runs.
    programmer_env : str       the environment variable that names another programmer binary.
    programmer_package : str   the Debian package that has it.
    bitstream_suffix : str     ``.bin`` or ``.bit``.
    synth_opts : str           extra options of Yosys' ``synth_<family>``.
    """

    name: str
    description: str
    family: str
    device: str
    platform_class: str
    clock_hz: int
    luts: int
    dsps: int
    dsp_width: int
    bram_blocks: int
    bram_block_bits: int
    programmer: str
    programmer_env: str
    programmer_package: str
    bitstream_suffix: str
    lutram_bits: int = 0
    synth_opts: str = ""

    @property
    def bram_bits(self):
        return self.bram_blocks * self.bram_block_bits

    def platform(self):
        """A fresh amaranth-boards platform instance (a platform builds one design only).

        The ECP5 boards' platforms list ``openFPGALoader`` among the tools a *build* needs;
        pchw checks for the programmer only in ``pchw flash``, so building never depends on it.

        Raises
        ------
        PchwError
            If amaranth-boards is not installed.
        """
        module_name, class_name = self.platform_class.split(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except ImportError as missing:
            raise PchwError(f"board {self.name} needs amaranth-boards ({missing}); "
                            "pip install 'pchw[boards]'") from None
        programmer = self.programmer

        class BuildWithoutProgrammer(cls):
            @property
            def required_tools(self):
                return [tool for tool in super().required_tools if tool != programmer]

        BuildWithoutProgrammer.__name__ = BuildWithoutProgrammer.__qualname__ = cls.__name__
        return BuildWithoutProgrammer()

    def describe(self):
        """One line: device, clock and budget."""
        return (f"{self.name}: {self.description}, {self.device}, {self.clock_hz / 1e6:g} MHz; "
                f"{self.luts} LUTs, {self.dsps} multipliers ({self.dsp_width}x{self.dsp_width}), "
                f"{self.bram_blocks} x {self.bram_block_bits // 1024} kbit block RAM")


def _ulx3s(size, luts, dsps, brams):
    return Board(
        name=f"ulx3s-{size}f", description=f"Radiona ULX3S with an ECP5 {size}F",
        family="ecp5", device=f"LFE5U-{size}F",
        platform_class=f"amaranth_boards.ulx3s:ULX3S_{size}F_Platform", clock_hz=25_000_000,
        luts=luts, dsps=dsps, dsp_width=18, bram_blocks=brams, bram_block_bits=18 * 1024,
        programmer="openFPGALoader", programmer_env="OPENFPGALOADER",
        programmer_package="openfpgaloader", bitstream_suffix=".bit", lutram_bits=8 * luts)


#: The boards by ``--board`` name. ECP5 budgets are the data sheet's (DS1044) LUT4s, sysDSP
#: 18x18 multipliers and 18 kbit EBRs; the iCE40UP5K's its 5280 logic cells, 8 SB_MAC16 and 30
#: 4 kbit EBRs (its 4 SPRAMs are not used: synthesis does not infer them).
BOARDS = {b.name: b for b in [
    Board(name="icebreaker", description="1BitSquared iCEBreaker", family="ice40",
          device="iCE40UP5K", platform_class="amaranth_boards.icebreaker:ICEBreakerPlatform",
          clock_hz=12_000_000, luts=5280, dsps=8, dsp_width=16, bram_blocks=30,
          bram_block_bits=4096, programmer="iceprog", programmer_env="ICEPROG",
          programmer_package="fpga-icestorm", bitstream_suffix=".bin",
          # Amaranth's iCE40 flow does not map multipliers to SB_MAC16 unless asked.
          synth_opts="-dsp"),
    _ulx3s(12, luts=12_288, dsps=28, brams=32),
    _ulx3s(25, luts=24_288, dsps=28, brams=56),
    _ulx3s(45, luts=43_848, dsps=72, brams=108),
    _ulx3s(85, luts=83_640, dsps=156, brams=208),
]}


def board(name):
    """The :class:`Board` called ``name``; a :class:`PchwError` listing the known ones if none."""
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise PchwError(f"unknown board {name!r} (known: {', '.join(BOARDS)})") from None


@dataclass(frozen=True)
class Estimate:
    """What a network needs on a board, before synthesis (see the module docstring).

    ``multipliers`` products, taking ``dsps`` blocks of the board; ``memory_bits`` of
    parameters and payload buffer (a lower bound of block RAM use); ``state_bits`` of state
    registers; ``luts`` logic cells (rough).
    """

    multipliers: int
    dsps: int
    parameter_bits: int
    buffer_bits: int
    state_bits: int
    lane_bits: int
    luts: int

    @property
    def memory_bits(self):
        return self.parameter_bits + self.buffer_bits

    def as_dict(self):
        return {"multipliers": self.multipliers, "dsps": self.dsps,
                "parameter_bits": self.parameter_bits, "buffer_bits": self.buffer_bits,
                "memory_bits": self.memory_bits, "state_bits": self.state_bits,
                "lane_bits": self.lane_bits, "luts": self.luts}


def _blocks(width_a, width_b, block):
    """Multiplier blocks of one ``width_a x width_b`` signed product."""
    return math.ceil(width_a / block) * math.ceil(width_b / block)


def estimate(network, target):
    """The :class:`Estimate` of ``network`` on the board ``target``."""
    L = network.L
    multipliers = dsps = 1                            # the parameter walker's group x lanes
    state_bits = network.layers[0] * network.value_format(0).width          # x_0
    lane_bits = 0
    for l in range(1, L + 1):
        lanes = network.lanes[l - 1]
        w, v, v_in = (network.weight_format(l).width, network.value_format(l).width,
                      network.value_format(l - 1).width)
        products = [(w, v_in), (v, v_in)]             # W x phi, eps x phi (weight update)
        if l >= 2:
            products.append((w, v))                   # W^T eps, the message down
        multipliers += lanes * len(products)
        dsps += lanes * sum(_blocks(a, b, target.dsp_width) for a, b in products)
        registers = 4 if l == L else 3                # x, mu, eps (and y at the output)
        state_bits += registers * network.layers[l] * v
        lane_bits += lanes * w
    luts = round(LUT_BASE + LUT_PER_STATE_BIT * state_bits + LUT_PER_LANE_BIT * lane_bits)
    return Estimate(multipliers=multipliers, dsps=dsps,
                    parameter_bits=network.memory_bits()["parameters"],
                    buffer_bits=8 * protocol.max_payload(network), state_bits=state_bits,
                    lane_bits=lane_bits, luts=luts)


def check_fit(network, target):
    """Refuse ``network`` on the board ``target`` if it clearly cannot fit; return the estimate.

    Raises
    ------
    PchwError
        One line: what does not fit, by how much, and what to change.
    """
    e = estimate(network, target)
    where = f"{network.source}: does not fit {target.name} ({target.device})"
    lanes = "/".join(map(str, network.lanes))
    bigger = [b.name for b in BOARDS.values() if b is not target and b.dsps >= e.dsps
              and b.bram_bits + b.lutram_bits >= e.memory_bits
              and b.luts * LUT_MARGIN >= e.luts]
    elsewhere = f", or a bigger device ({', '.join(bigger)})" if bigger else \
        ", or a bigger device"
    if e.dsps > target.dsps:
        raise PchwError(
            f"{where}: {e.multipliers} multipliers need {e.dsps} multiplier blocks, the device "
            f"has {target.dsps}; use fewer lanes (hardware.lanes = {lanes}; each lane of layer 1 "
            f"needs 2, of later layers 3){elsewhere}")
    if e.memory_bits > target.bram_bits + target.lutram_bits:
        ram = f"{target.bram_bits} bits of block RAM" + (
            f" and {target.lutram_bits} of distributed RAM" if target.lutram_bits else "")
        raise PchwError(
            f"{where}: {e.parameter_bits} parameter bits and a {e.buffer_bits // 8}-byte payload "
            f"buffer need at least {e.memory_bits} bits of RAM, the device has {ram}; use "
            f"narrower weight formats or smaller layers{elsewhere}")
    if e.luts > LUT_MARGIN * target.luts:
        raise PchwError(
            f"{where}: about {e.luts} LUTs estimated ({e.state_bits} bits of state registers, "
            f"{e.lane_bits} lane bits), the device has {target.luts}; use smaller layers, "
            f"narrower value formats or fewer lanes{elsewhere} (the estimate is rough: "
            f"--force builds anyway)")
    return e
