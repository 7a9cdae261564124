"""Board targets, and the pre-synthesis check that a network fits one.

A :class:`Board` names an open FPGA board: its `amaranth-boards`_ platform class, the clock the
design runs on, the device's budget (logic cells, multiplier blocks, block RAM) and how it is
programmed. :func:`estimate` counts what a network needs before any tool runs, and
:func:`check_fit` refuses, with a one-line :class:`~pchw.errors.PchwError` naming what to
change, a network that clearly cannot fit; ``pchw build`` (:mod:`pchw.build`) calls it first.

What the estimate counts (see ``boards/README.md`` for the calibration):

* **Multipliers: exact.** Each lane of weight layer ``l`` has :func:`pchw.latency.halves` (two,
  or one for a lane of one row group or a layer of one column): the multiplier pool, each one
  taking ``W x phi`` (row pass), ``W x eps`` (the message down, ``l >= 2``) and the weight
  update ``eps x phi`` for its half of the lane's rows (``hardware.multipliers = 1``: one a
  lane). A product wider than the device's multiplier block (16 x 16 on iCE40, 18 x 18 on
  ECP5) takes several blocks. Multipliers are never moved into logic: if they are more than
  the blocks, place and route fails.
* **Block RAM: per memory.** Every memory of the design (:func:`memories`: per lane its weights,
  biases and state banks; ``x_0``; the command payload buffer; the UART FIFO) takes whole
  blocks of the device's best shape for it (:func:`ram_blocks`); memories shallower than the
  board's ``bram_min_depth`` stay in logic cells (iCE40) or distributed RAM (ECP5). On the
  iCE40UP5K the payload buffer goes to SPRAM instead (``Board.payload_ram``).
* **The dataset memory** (a build with ``--data-memory N``: :func:`dataset_memories`): the inputs
  of ``N`` samples (``n_0`` rounded up to a power of two words of layer 0's width each) go to
  SPRAM on the iCE40UP5K (16K x 16 bits each, beside the payload buffer's) and to block RAM on
  the ECP5; the labels and EVAL's confusion counts to block RAM. What does not fit is refused
  before the build, naming the sizes and the most samples that fit (:func:`max_dataset`).
* **Logic: rough.** ``LUT_BASE + LUT_PER_LANE_BIT x lane bits + LUT_PER_HASH x hash units``
  (lane bits: weight plus value width per multiplier): the UART, command decoder and sequencer are
  the constant; each lane adds wide accumulators, rounding and saturation, and with stochastic
  rounding up to two hash units. The coefficients are fitted to builds of the example
  models (``boards/README.md``); the figure after place and route (the build report) is the
  real one. Only a network whose estimate is above :data:`LUT_MARGIN` times the device's logic
  is refused on logic grounds.

:func:`auto_lanes` picks the fastest lanes the estimate lets fit (``--lanes auto``, or
``"auto"`` in a description's ``hardware.board_lanes``).

.. _amaranth-boards: https://github.com/amaranth-lang/amaranth-boards
"""

import importlib
import math
from dataclasses import dataclass

from . import protocol
from .errors import PchwError

__all__ = ["Board", "BOARDS", "board", "Estimate", "memories", "ram_blocks", "estimate",
           "dataset_memories", "max_dataset", "check_fit", "fits", "auto_lanes", "lanes_for", "LUT_BASE", "LUT_PER_LANE_BIT",
           "LUT_PER_HASH", "LUT_MARGIN"]

#: The logic estimate, fitted to whole board designs (UART, command decoder, core; see
#: ``boards/README.md``): a constant, and a cost per lane and (weight + value) bit.
LUT_BASE = 2650
LUT_PER_LANE_BIT = 18
#: Each stochastic-rounding hash unit (a 32-bit Speck-round hash; two per lane when both the
#: weight and the bias update round stochastically). Fitted to the digits builds with Q6.4
#: values, Q8.6 weights and stochastic rounding on the iCEBreaker (``pchw sweep``).
LUT_PER_HASH = 400
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
    bram_shapes : tuple        the ``(depth, width)`` shapes a block RAM can take.
    bram_min_depth : int       shallower memories stay in logic or distributed RAM.
    payload_ram : str          Yosys ``ram_style`` of the command payload buffer ("" for block
                               RAM; ``"huge"``: the iCE40UP5K's SPRAM, ``spram_bytes`` each).
    spram_blocks, spram_bytes : int
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
    bram_shapes: tuple = ()
    bram_min_depth: int = 1
    payload_ram: str = ""
    spram_blocks: int = 0
    spram_bytes: int = 0
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
        programmer_package="openfpgaloader", bitstream_suffix=".bit", lutram_bits=8 * luts,
        # DP16KD (a 1R1W memory uses one port each); shallow memories go to distributed RAM.
        bram_shapes=((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)),
        bram_min_depth=64)


#: The boards by ``--board`` name. ECP5 budgets are the data sheet's (DS1044) LUT4s, sysDSP
#: 18x18 multipliers and 18 kbit EBRs; the iCE40UP5K's its 5280 logic cells, 8 SB_MAC16 and 30
#: 4 kbit EBRs (its 4 SPRAMs are not used: synthesis does not infer them).
BOARDS = {b.name: b for b in [
    Board(name="icebreaker", description="1BitSquared iCEBreaker", family="ice40",
          device="iCE40UP5K", platform_class="amaranth_boards.icebreaker:ICEBreakerPlatform",
          clock_hz=12_000_000, luts=5280, dsps=8, dsp_width=16, bram_blocks=30,
          bram_block_bits=4096, programmer="iceprog", programmer_env="ICEPROG",
          programmer_package="fpga-icestorm", bitstream_suffix=".bin",
          # SB_RAM40_4K; Yosys keeps memories of 4 words or fewer in logic cells.
          bram_shapes=((2048, 2), (1024, 4), (512, 8), (256, 16)), bram_min_depth=5,
          # The payload buffer goes to an SB_SPRAM256KA (16K x 16), sparing block RAM.
          payload_ram="huge", spram_blocks=4, spram_bytes=32 * 1024,
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

    ``multipliers`` products, taking ``dsps`` blocks of the board; ``bram_blocks`` block RAMs
    for the memories deep enough to go there (``memory_bits`` of them in all, parameters and
    payload buffer included); ``luts`` logic cells (rough).
    """

    multipliers: int
    dsps: int
    parameter_bits: int
    buffer_bits: int
    memory_bits: int
    spram_blocks: int
    bram_blocks: int
    lane_bits: int
    luts: int
    dataset: int = 0            # samples of the dataset memory
    dataset_bits: int = 0       # its bits (inputs, labels, confusion counts)

    def as_dict(self):
        return {"multipliers": self.multipliers, "dsps": self.dsps,
                "parameter_bits": self.parameter_bits, "buffer_bits": self.buffer_bits,
                "memory_bits": self.memory_bits, "bram_blocks": self.bram_blocks,
                "spram_blocks": self.spram_blocks, "dataset": self.dataset,
                "dataset_bits": self.dataset_bits,
                "lane_bits": self.lane_bits, "luts": self.luts}


def _blocks(width_a, width_b, block):
    """Multiplier blocks of one ``width_a x width_b`` signed product."""
    return math.ceil(width_a / block) * math.ceil(width_b / block)


def memories(network, target=None, faults=False):
    """``(depth, width)`` of every memory of the board design that goes to block RAM (or logic):
    per lane of each weight layer a bank each of ``x`` and ``mu``, and per multiplier of the lane
    (:func:`pchw.latency.halves`) its weights, biases and ``eps`` bank (and in a fault-injection
    build, ``faults``, its stuck bits); ``x_0``; the UART receive FIFO; and the command payload
    buffer, unless ``target`` puts it in SPRAM."""
    from .gateware.board import RX_FIFO_DEPTH, RxEntry
    from .latency import half_rows, halves, row_groups
    mems = [(network.layers[0], network.value_format(0).width)]
    for l in range(1, network.L + 1):
        lanes, n_in = network.lanes[l - 1], network.layers[l - 1]
        rows, half = row_groups(network, l), half_rows(network, l)
        w, v = network.weight_format(l).width, network.value_format(l).width
        pool = halves(network, l)
        mems += lanes * ([(rows, v), (rows, v)]
                         + pool * [(half * n_in, w), (half, w), (half, v)])
        if faults:
            mems += lanes * pool * [(half * n_in, 1)]
    if target is None or not target.payload_ram:
        mems.append((protocol.max_payload(network, faults), 8))
    mems.append((RX_FIFO_DEPTH, RxEntry.as_shape().size))     # a byte and a loss mark
    return mems


def dataset_memories(network, dataset):
    """``(depth, width)`` of the dataset memory's inputs, labels and confusion counts
    (:class:`pchw.gateware.dataset.DatasetUnit`) for ``dataset`` samples; none for 0."""
    from .latency import class_stride, input_stride
    if not dataset:
        return []
    n_L = network.layers[-1]
    return [(dataset * input_stride(network), network.value_format(0).width),
            (dataset, max(1, (n_L - 1).bit_length())), (n_L * class_stride(network), 16)]


def _spram_blocks(depth, width, target):
    words = target.spram_bytes // 2                 # SB_SPRAM256KA: 16K words of 16 bits
    return -(-depth // words) * -(-width // 16)


def ram_blocks(depth, width, target):
    """Block RAMs one ``depth x width`` memory takes on ``target`` (its best block shape), or 0
    if it is shallower than ``target.bram_min_depth`` (synthesis keeps it in logic)."""
    if depth < target.bram_min_depth:
        return 0
    return min(math.ceil(width / w) * math.ceil(depth / d) for d, w in target.bram_shapes)


def estimate(network, target, dataset=0, faults=False):
    """The :class:`Estimate` of ``network`` on the board ``target`` (with a dataset memory of
    ``dataset`` samples; ``faults``: a fault-injection build, with its stuck-bit memories, its
    payload buffer and the upset injector's hash unit)."""
    L = network.L
    from .fixedpoint import LayerShifts
    from .latency import halves
    multipliers = dsps = lane_bits = hashes = 0
    pc = network.pc
    for l in range(1, L + 1):
        lanes = network.lanes[l - 1]
        w, v, v_in = (network.weight_format(l).width, network.value_format(l).width,
                      network.value_format(l - 1).width)
        if pc.weight_rounding == "stochastic":     # as pchw.gateware.layer instantiates them
            shifts = LayerShifts.of(network, l)
            hashes += lanes * halves(network, l) * sum(shift > 0 for shift in (shifts.weight,
                                                                                shifts.bias))
        # The pool: each multiplier takes W x phi, eps x phi and (l >= 2) W x eps.
        pool = lanes * halves(network, l)
        multipliers += pool
        dsps += pool * _blocks(max(w, v), v_in if l == 1 else max(v, v_in), target.dsp_width)
        lane_bits += pool * (w + v)
    mems = memories(network, target, faults)
    hashes += bool(faults)                      # the upset injector's
    data = dataset_memories(network, dataset)
    spram = []
    if data and target.payload_ram:             # the inputs go where the payload buffer goes
        spram, data = data[:1], data[1:]
        hashes += 1                             # the order's hash unit
    elif data:
        hashes += 1
    mems += data
    buffer_bytes = protocol.max_payload(network, faults)
    luts = round(LUT_BASE + LUT_PER_LANE_BIT * lane_bits + LUT_PER_HASH * hashes)
    return Estimate(multipliers=multipliers, dsps=dsps,
                    parameter_bits=network.memory_bits()["parameters"],
                    buffer_bits=8 * buffer_bytes,
                    memory_bits=sum(d * w for d, w in mems + spram) + (8 * buffer_bytes
                                                                       if target.payload_ram
                                                                       else 0),
                    spram_blocks=(-(-buffer_bytes // target.spram_bytes)
                                  + sum(_spram_blocks(d, w, target) for d, w in spram))
                    if target.payload_ram else 0,
                    bram_blocks=sum(ram_blocks(d, w, target) for d, w in mems),
                    lane_bits=lane_bits, luts=luts, dataset=dataset,
                    dataset_bits=sum(d * w for d, w in dataset_memories(network, dataset)))


def fits(network, target, dataset=0):
    """Whether :func:`check_fit` accepts ``network`` on ``target`` (no message)."""
    try:
        check_fit(network, target, dataset)
    except PchwError:
        return False
    return True


def _comfortable(network, target):
    """Fits, with the rough logic estimate within the device (not :data:`LUT_MARGIN` above)."""
    return fits(network, target) and estimate(network, target).luts <= target.luts


def _lane_choices(n):
    """The useful lane counts of a layer of ``n`` neurons: the least for each row-group count
    (within :func:`~pchw.network.lane_limit`)."""
    from .network import lane_limit
    return sorted({p for p in (-(-n // rows) for rows in range(1, n + 1)) if p <= lane_limit(n)})


def auto_lanes(network, target):
    """The lanes that make ``network`` fastest on ``target`` within its budget.

    Greedy on the critical path: starting from one lane per layer, give the layer with the
    longest pass that can still grow its next useful lane count, while :func:`check_fit`
    accepts the network with the logic estimate within the device (layers relax in parallel,
    so the longest pass sets every phase; the feedforward pass gains from every layer).
    Returns a tuple.

    Raises
    ------
    PchwError
        If even one lane per layer does not fit (the message of :func:`check_fit`).
    """
    from .latency import pass_cycles
    lanes = [1] * network.L
    check_fit(network.with_lanes(lanes), target)
    while True:
        trial = network.with_lanes(lanes)
        for l in sorted(range(1, network.L + 1), key=lambda l: -pass_cycles(trial, l)):
            more = [p for p in _lane_choices(network.layers[l]) if p > lanes[l - 1]]
            candidate = lanes.copy()
            if more:
                candidate[l - 1] = more[0]
                if _comfortable(network.with_lanes(candidate), target):
                    lanes = candidate
                    break
        else:
            return tuple(lanes)


def lanes_for(network, target, override=None):
    """The lanes ``network`` is built with on ``target``: ``override`` (a sequence, or
    ``"auto"``), else the description's ``hardware.board_lanes`` entry for the board, else its
    ``hardware.lanes`` (which may be ``"auto"`` too)."""
    default = "auto" if network.lanes_auto else network.lanes
    choice = override if override is not None else network.board_lanes.get(target.name, default)
    if choice == "auto":
        return auto_lanes(network.on_board(target.name), target)
    return network.with_lanes(list(choice)).lanes


def max_dataset(network, target):
    """The most samples a dataset memory of ``network`` may hold on ``target`` (0 if none)."""
    low, high = 0, protocol.MAX_DATASET
    while low < high:
        mid = (low + high + 1) // 2
        if _shortfall(network, target, estimate(network, target, mid)) is None:
            low = mid
        else:
            high = mid - 1
    return low


def _dataset_size(network, e):
    return (f"a dataset memory of {e.dataset} samples ({network.layers[0]} inputs of "
            f"{network.value_format(0).width} bits and a label each: "
            f"{e.dataset_bits / 8192:.1f} KiB)")


def _shortfall(network, target, e):
    """What of ``target``'s budget the estimate ``e`` exceeds: None, or (kind, message)."""
    if e.dataset and e.spram_blocks > target.spram_blocks:
        return "dataset", (f"{_dataset_size(network, e)} and the payload buffer need "
                           f"{e.spram_blocks} SPRAMs of {target.spram_bytes // 1024} KiB, the "
                           f"device has {target.spram_blocks} "
                           f"({target.spram_blocks * target.spram_bytes // 1024} KiB)")
    if e.dataset and e.bram_blocks > target.bram_blocks:
        return "dataset", (f"its memories with {_dataset_size(network, e)} need "
                           f"{e.bram_blocks} block RAMs of {target.bram_block_bits // 1024} "
                           f"kbit, the device has {target.bram_blocks} "
                           f"({target.bram_bits // 8192} KiB)")
    if e.dsps > target.dsps:
        return "dsps", (f"{e.multipliers} multipliers need {e.dsps} multiplier blocks, the "
                        f"device has {target.dsps}")
    if e.bram_blocks > target.bram_blocks:
        return "bram", (f"its memories need {e.bram_blocks} block RAMs ({e.parameter_bits} "
                        f"parameter bits in a weight and a bias memory per lane, state banks "
                        f"per lane, a {e.buffer_bits // 8}-byte payload buffer), the device "
                        f"has {target.bram_blocks}")
    if e.spram_blocks > target.spram_blocks:
        return "bram", (f"its {e.buffer_bits // 8}-byte payload buffer needs {e.spram_blocks} "
                        f"SPRAMs, the device has {target.spram_blocks}")
    if e.luts > LUT_MARGIN * target.luts:
        return "luts", (f"about {e.luts} LUTs estimated ({e.lane_bits} lane bits), the device "
                        f"has {target.luts}")
    return None


def check_fit(network, target, dataset=0, faults=False):
    """Refuse ``network`` on the board ``target`` (with a dataset memory of ``dataset``
    samples; ``faults``: a fault-injection build) if it clearly cannot fit; return the
    estimate.

    Raises
    ------
    PchwError
        One line: what does not fit, by how much, and what to change.
    """
    e = estimate(network, target, dataset, faults)
    short = _shortfall(network, target, e)
    if short is None:
        return e
    kind, what = short
    if kind == "dataset":
        most = max_dataset(network, target)
        raise PchwError(f"{network.source}: does not fit {target.name} ({target.device}): "
                        f"{what}; at most {most} samples fit (--data-memory {most})")
    lanes = "/".join(map(str, network.lanes))
    fewer = f"use fewer lanes (now {lanes}; --lanes auto picks the fastest that fit)"
    advice = {
        "dsps": f"{fewer} or one multiplier a lane (hardware.multipliers = 1; now "
                f"{network.multipliers})",
        "bram": f"{fewer}, narrower weight formats or smaller layers",
        "luts": f"{fewer}, narrower formats or smaller layers (the estimate is rough: --force "
                f"builds anyway)",
    }[kind]
    bigger = [b.name for b in BOARDS.values() if b is not target
              and _shortfall(network, b, estimate(network, b)) is None]
    elsewhere = f", or a bigger device ({', '.join(bigger)})" if bigger else \
        ", or a bigger device"
    raise PchwError(f"{network.source}: does not fit {target.name} ({target.device}) with lanes "
                    f"{lanes}: {what}; {advice}{elsewhere}")
