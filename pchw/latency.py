"""Cycle counts of the pchw circuits: the single statement of every latency formula.

The gateware is held to these numbers by the tests (cycle-exact), and the manifest, the
simulator summary and the benchmarks report them. Notation: ``R_l = ceil(n_l / P_l)`` row
groups of layer ``l`` with ``P_l`` lanes; a matrix pass over ``W_l`` issues one address per
cycle (per multiplier of the lane) for ``H_l * n_{l-1}`` cycles (:func:`pass_cycles`).

Core (``pchw.gateware.core.PCCore``): its cycles are sums over the steps of
:func:`pchw.schedule.schedule` (which phases run, in which order, on which units). Each phase
is one start cycle, then the busy cycles of the slowest participating unit
(:func:`busy_cycles`), then one cycle in which the sequencer sees them all idle.

The multiplier pool: each lane of a layer has :func:`halves` multipliers (2, or 1 for a layer
with one row group per lane or one column), and each serves the op that is active: the lane's
``R_l`` row groups are split into halves of :func:`half_rows` ``H_l = ceil(R_l / 2)`` row
groups, one per multiplier, so a pass visits every weight in :func:`pass_cycles`
``H_l * n_{l-1}`` issue cycles: a row pass takes two products a cycle (two rows), a column pass
two messages or two updates. Only a relaxation that both sends the message and updates the
weights (incremental mode, ``l >= 2``) needs two products per weight: it visits each column
twice (:func:`column_slots`), first for the message, then for the update.

Busy cycles of a unit: a row pass (feedforward, prediction) ``pass + PASS_STAGES`` (the memory
read, the multiplier's operand and product registers, the result register) and one more when
the lane has two halves (the second half writes its row ends a cycle later: one write port);
a column pass ``column_slots x n_{l-1} + PASS_STAGES``, and with the message to the unit below
(relaxation, ``l >= 2``) the tail after its last message: ``MESSAGE_STAGES + VALUE_STAGES`` (the
message register, then the lower unit's registered value update), less the update visits of the
last column that follow that message; the error sweep ``eps = x - mu`` ``R_l + 1`` (a row
group per cycle, one stage).
"""

from dataclasses import dataclass

# pchw.protocol is imported where it is used: it imports the golden model, which imports
# pchw.schedule, which imports this module.

__all__ = ["input_stride", "class_stride", "candidate_cycles", "dataset_sample_cycles",
           "row_groups", "halves", "half_rows", "column_slots", "pass_cycles", "sweep_cycles",
           "busy_cycles", "core_infer_cycles", "core_learn_cycles", "macs_per_sample",
           "mac_utilisation", "division_bits", "upset_cycles", "command_latency",
           "HostLink", "throughput", "DEFAULT_BAUD", "MAX_BAUD"]

PHASE_OVERHEAD = 2          # the start cycle and the cycle that sees the units idle
MULTIPLIER_STAGES = 2       # every multiplier registers its operands, then its product
PASS_STAGES = 2 + MULTIPLIER_STAGES     # after a pass's last issue: memory read, multiplier,
                                        # result (accumulator, rounded update)
MESSAGE_STAGES = 1          # the message register
VALUE_STAGES = 2            # the lower unit's value update: difference, rounded step registers


def row_groups(network, l):
    """``R_l = ceil(n_l / P_l)``: rows per lane of ``W_l``, and words per state bank."""
    return -(-network.layers[l] // network.lanes[l - 1])


def halves(network, l):
    """Multipliers per lane of layer ``l`` (the pool): the network's ``multipliers`` (2, each
    taking half of the lane's row groups, or 1), and 1 when the lane has a single row group or
    ``W_l`` a single column (the two halves' row ends would then need two writes in one
    cycle)."""
    if network.multipliers == 1:
        return 1
    return 2 if row_groups(network, l) >= 2 and network.layers[l - 1] >= 2 else 1


def half_rows(network, l):
    """``H_l = ceil(R_l / halves)``: row groups per multiplier (the second half may have one
    fewer)."""
    return -(-row_groups(network, l) // halves(network, l))


def column_slots(network, l, message, update):
    """Visits of a column pass per column: ``H_l``, or ``2 H_l`` when it both sends the message
    and updates the weights (each weight needs two products: message, then update)."""
    return half_rows(network, l) * (2 if message and update else 1)


def pass_cycles(network, l):
    """Issue cycles of one pass over ``W_l`` by the pool: ``H_l * n_{l-1}``."""
    return half_rows(network, l) * network.layers[l - 1]


def sweep_cycles(network, l):
    """Issue cycles of the error sweep of layer ``l``: ``R_l``."""
    return row_groups(network, l)


def busy_cycles(network, l, kind, message=False, update=False):
    """Busy cycles of unit ``l`` in a phase: a ``"row"`` pass, a ``"column"`` pass (with the
    ``message`` to the unit below and/or the weight ``update``), or the error ``"sweep"``."""
    if kind == "sweep":
        return sweep_cycles(network, l) + 1
    if kind == "row":
        return pass_cycles(network, l) + PASS_STAGES + halves(network, l) - 1
    slots = column_slots(network, l, message, update)
    cycles = slots * network.layers[l - 1] + PASS_STAGES
    if message:
        after = slots - half_rows(network, l)       # update visits after the last message
        cycles += max(MESSAGE_STAGES + VALUE_STAGES - after, 0)
    return cycles


def core_infer_cycles(network):
    """Cycles the core is busy for INFER: the feedforward wavefront, one layer after another
    (the sum over :func:`pchw.schedule.schedule`'s INFER steps)."""
    from .schedule import schedule
    return schedule(network).cycles(learn=False)


def core_learn_cycles(network):
    """Cycles the core is busy for LEARN (after the feedforward and the target load): the sum
    over :func:`pchw.schedule.schedule`'s LEARN steps."""
    from .schedule import schedule
    return schedule(network).cycles(learn=True)


def macs_per_sample(network, learn, necessary=False):
    """Multiply-accumulates of one sample: the feedforward, and for learning the relaxation,
    prediction and weight-update passes, as the schedule performs them (the sum over
    :func:`pchw.schedule.schedule`), or with ``necessary`` only those whose result is not
    known without them (:meth:`pchw.schedule.Schedule.necessary`: e.g. not standard mode's
    re-prediction of layer 1 in every relaxation step)."""
    from .schedule import schedule
    s = schedule(network)
    return s.necessary_macs(learn) if necessary else s.macs(learn)


def mac_utilisation(network, multipliers, learn):
    """Necessary multiply-accumulates of a sample over what ``multipliers`` multipliers do in
    its core cycles (:func:`macs_per_sample` with ``necessary``; a LEARN's cycles include its
    feedforward). With the multipliers instantiated it is how busy they are with necessary work;
    with the device's, the ratio to the device's limit (samples/s over device multipliers x
    clock / necessary MACs per sample): both independent of the clock."""
    cycles = core_infer_cycles(network) + (core_learn_cycles(network) if learn else 0)
    return macs_per_sample(network, learn, necessary=True) / (multipliers * cycles)


# Network top (``pchw.gateware.top.NetworkTop``): cycles from the cycle in which the last byte
# of a command (its crc, or for a too-long length its high length byte) is accepted to the
# cycle in which the first byte of its reply is valid, with the output stream always ready.
REPLY_OVERHEAD = 5          # frame valid (the decoder's first stage), the decoder's second
                            # stage, the command dispatched, header accepted, sync byte valid
LOAD_OVERHEAD = 2           # the payload buffer's read latency and the loader's byte register
AFTER_LOAD = 1              # the cycle after a load: starts the core (or readies the reply)
CORE_DONE = 1               # the cycle that sees the core idle
OUTPUT_SETUP = 1            # the cycle that points the reply at the prediction


def _load(payload_bytes):
    return payload_bytes + LOAD_OVERHEAD


# The dataset unit (``pchw.gateware.dataset.DatasetUnit``, a build with a dataset memory).
FIELD_READ = 1              # the buffer's read latency after the command's fields
DATA_READ = 1               # the dataset memory's read latency after a sample's inputs
DATASET_CHECK = 1           # the cycle that checks the fields
DATASET_DONE = 1            # the cycle in which the top sees the unit idle
LABEL_PASS_END = 1          # LOAD_DATA: the cycle after the last label read
LOAD_CHECK = 1              # LOAD_DATA: the length and argument check after the label pass
ORDER_SETUP = 1             # TRAIN: the permutation's widths and masks from the count
EPOCH_END = 1               # TRAIN: the cycle that ends an epoch
COUNT_UPDATE = 2            # EVAL: the confusion count's read and write


def _pow2(n):
    return 1 << max(0, (int(n) - 1).bit_length())


def input_stride(network):
    """Words of the dataset's input memory per sample: ``n_0`` rounded up to a power of two (a
    sample's address is its index beside the input's: no multiplier)."""
    return _pow2(network.layers[0])


def class_stride(network):
    """``n_L`` rounded up to a power of two: the row stride of EVAL's confusion memory."""
    return _pow2(network.layers[-1])


def candidate_cycles():
    """Cycles of one candidate of TRAIN's sample order (:mod:`pchw.order`): a Feistel round a
    cycle, then the test against the count."""
    from .order import ROUNDS
    return ROUNDS + 1


def dataset_sample_cycles(network, learn):
    """Cycles of one stored sample in TRAIN (``learn``) or EVAL: its ``n_0`` inputs from the
    dataset memory into ``x_0`` (a read a cycle), the core's INFER (start, busy, done), then for
    TRAIN the ``n_L`` targets (a cycle each) and the core's LEARN, exactly as a LEARN command
    runs the core; for EVAL the class (a cycle per output) and the confusion count's update."""
    n0, nL = network.layers[0], network.layers[-1]
    infer = n0 + DATA_READ + AFTER_LOAD + core_infer_cycles(network) + CORE_DONE + nL
    if learn:
        return infer + AFTER_LOAD + core_learn_cycles(network) + CORE_DONE
    return infer + COUNT_UPDATE


# Upsets (fault-injection builds, ``pchw.gateware.upsets.UpsetInjector``): after a LEARN
# command's core run, one cycle decides the number of flips (the hash h(k, 0)), each flip takes
# two hash cycles (h(k, 2j+1), h(k, 2j+2)), the 64-bit position modulo B bit by bit, three
# divisions of division_bits cycles each with a cycle before each (the layer and word, the row
# and column, the lane and row group), and the parameter port's read-modify-write (2); then one
# cycle counts the command. The network top waits one cycle more to see it idle.
UPSET_DECIDE = 1
UPSET_HASHES = 2
UPSET_POSITION_BITS = 64
UPSET_DIVISIONS = 3
UPSET_READ_MODIFY_WRITE = 2
UPSET_COUNT = 1


def division_bits(network):
    """Iterations of the upset injector's divisions: the bits of ``B - 1``, ``B`` the bits of
    all parameters (:func:`pchw.faults.parameter_bits`), which bounds every dividend."""
    from .faults import parameter_bits
    return max(1, (parameter_bits(network) - 1).bit_length())


def upset_cycles(network, flips):
    """Cycles a fault-injection build spends on a LEARN command's upsets (``flips`` bits)."""
    per_flip = (UPSET_HASHES + UPSET_POSITION_BITS
                + UPSET_DIVISIONS * (1 + division_bits(network)) + UPSET_READ_MODIFY_WRITE)
    return UPSET_DECIDE + flips * per_flip + UPSET_COUNT + CORE_DONE


def command_latency(network, opcode, layer=None, upsets=None, *, samples=None, epochs=1):
    """Reply latency of a well-formed command (``opcode`` a :class:`pchw.protocol.Opcode`).

    Errors, IDENTIFY and READ_PARAMS reply after :data:`REPLY_OVERHEAD` cycles; INFER, LEARN,
    WRITE_PARAMS and FAULT first load their payload (one byte per cycle; INFER and LEARN then
    run the core). ``layer``: the first payload byte of WRITE_PARAMS and FAULT (a stuck-weights
    FAULT loads its value, then its codes). ``upsets``: in a fault-injection build, the bits
    the LEARN command's upsets flip (:attr:`pchw.protocol.DeviceModel.last_upsets`); None: a
    normal build.

    The dataset commands (OK replies) depend on ``samples``: LOAD_DATA's count,
    TRAIN's and EVAL's ``count`` (TRAIN also on ``epochs``): the fields are read, checked, and

    - LOAD_DATA reads every label (a cycle each), checks, then stores the samples a byte a
      cycle;
    - TRAIN runs each epoch's ``2**k`` order candidates (:func:`candidate_cycles` each,
      ``k = pchw.order.order_bits(count)``) and its ``count`` samples
      (:func:`dataset_sample_cycles`, each a LEARN's core work), with no host link: so
      ``epochs x count x`` (a LEARN's core cycles + the sample's loads) + the order;
    - EVAL clears its confusion counts (``n_L x class_stride`` cycles), then runs the samples.
    """
    from .protocol import (DATASET_OPCODES, FAULT_NETWORK, Opcode, payload_length,
                           sample_bytes, value_bytes)
    opcode = Opcode(opcode)
    if opcode in DATASET_OPCODES:
        from .order import order_bits
        fields = payload_length(network, opcode, samples=0)
        head = REPLY_OVERHEAD + fields + FIELD_READ + DATASET_CHECK + DATASET_DONE
        if opcode is Opcode.LOAD_DATA:
            store = samples * sample_bytes(network) + FIELD_READ if samples else 0
            return head + samples + LABEL_PASS_END + LOAD_CHECK + store
        if opcode is Opcode.TRAIN:
            epoch = ((1 << order_bits(samples)) * candidate_cycles()
                     + samples * dataset_sample_cycles(network, True) + EPOCH_END)
            return head + ORDER_SETUP + epochs * epoch
        return (head + network.layers[-1] * class_stride(network)
                + samples * dataset_sample_cycles(network, False))
    L = network.L
    inputs = network.layers[0] * value_bytes(network.value_format(0))
    targets = network.layers[L] * value_bytes(network.value_format(L))
    if opcode is Opcode.INFER:
        return (REPLY_OVERHEAD + _load(inputs) + AFTER_LOAD + core_infer_cycles(network)
                + CORE_DONE + OUTPUT_SETUP)
    if opcode is Opcode.LEARN:
        return (REPLY_OVERHEAD + _load(inputs) + AFTER_LOAD + core_infer_cycles(network)
                + CORE_DONE + _load(targets) + AFTER_LOAD + core_learn_cycles(network)
                + CORE_DONE + OUTPUT_SETUP
                + (upset_cycles(network, upsets) if upsets is not None else 0))
    if opcode is Opcode.FAULT and layer not in (None, FAULT_NETWORK):
        # the stuck value, then a code per weight
        value = value_bytes(network.weight_format(layer))
        return (REPLY_OVERHEAD + _load(value) + AFTER_LOAD
                + _load(payload_length(network, opcode, layer) - 1 - value) + AFTER_LOAD)
    if opcode in (Opcode.WRITE_PARAMS, Opcode.FAULT):   # the payload loads; no core runs
        # the first byte, the layer (FAULT's target), is decoded before the load, not loaded.
        if opcode is Opcode.FAULT:
            layer = FAULT_NETWORK
        return REPLY_OVERHEAD + _load(payload_length(network, opcode, layer) - 1) + AFTER_LOAD
    return REPLY_OVERHEAD


# Throughput: the one formula every report, sweep and benchmark quotes.

#: The UART baud rate of a build, and of ``pchw run --port``, unless ``--baud`` says otherwise.
DEFAULT_BAUD = 115200
#: The fastest baud rate a build or a host may ask for: both boards' USB-serial bridges (the
#: iCEBreaker's FT2232H, the ULX3S's FT231X) make 3 Mbaud. A build's clock must still make it
#: within 2% (:func:`pchw.gateware.uart.divisor_for`, the one statement of that rule).
MAX_BAUD = 3_000_000

@dataclass(frozen=True)
class HostLink:
    """A serial host link: ``baud``, bits on the line per byte (start, 8 data, stop), and the
    cycles its receiver and transmitter add to :func:`command_latency` (the board top's
    ``reply_overhead``)."""
    baud: int
    overhead_cycles: int
    bits_per_byte: int = 10


def throughput(network, clock_hz, link=None):
    """Cycles and samples/s of INFER and LEARN at ``clock_hz``, one command at a time.

    Returns ``{"INFER": record, "LEARN": record}``. Without the host link every record has
    ``core_cycles`` (the core's: a LEARN runs the feedforward first) and
    ``samples_per_s_core`` (the clock over them: the core's rate, loads not counted),
    ``command_latency_cycles`` (:func:`command_latency`: the payload loads, the core, the
    reply's start) and ``samples_per_s_compute`` (the clock over the command latency: commands
    back to back, the host link not counted). With ``link`` (a :class:`HostLink`) it also has ``link_latency_cycles`` (the command
    latency and the link's overhead: last stop bit in to first start bit out),
    ``command_bytes``, ``reply_bytes`` and ``samples_per_s_uart``: one over the line time of
    both frames plus the link latency. Rates are rounded to 0.1 samples/s.
    """
    from . import protocol
    from .protocol import Opcode, value_bytes
    L = network.L
    outputs = network.layers[L] * value_bytes(network.value_format(L))
    infer = core_infer_cycles(network)
    core = {Opcode.INFER: infer, Opcode.LEARN: infer + core_learn_cycles(network)}
    rates = {}
    for op in (Opcode.INFER, Opcode.LEARN):
        cycles = command_latency(network, op)
        record = {"core_cycles": core[op], "samples_per_s_core": round(clock_hz / core[op], 1),
                  "command_latency_cycles": cycles,
                  "samples_per_s_compute": round(clock_hz / cycles, 1)}
        if link is not None:
            pins = cycles + link.overhead_cycles
            command = protocol.HEADER_SIZE + protocol.payload_length(network, op) \
                + protocol.CRC_SIZE
            reply = protocol.HEADER_SIZE + outputs + protocol.CRC_SIZE
            line_s = link.bits_per_byte * (command + reply) / link.baud
            record.update({"link_latency_cycles": pins, "command_bytes": command,
                           "reply_bytes": reply,
                           "samples_per_s_uart": round(1 / (line_s + pins / clock_hz), 1)})
        rates[op.name] = record
    return rates
