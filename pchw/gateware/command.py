"""The command decoder: a received frame -> what the device does with it, in registers.

Checks a frame in the order of :class:`pchw.protocol.DeviceModel` (the receiver's verdict, the
opcode, then each opcode's own checks: lengths, the layer) and names the action, or the error
status, in a :class:`Command`. The opcodes and their checks are a table,
:func:`command_rules`: a new command is one :class:`Action` member, one :class:`Rule`, and its
case in the network top.
"""

from dataclasses import dataclass

from amaranth.hdl import Module, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import protocol
from ..protocol import Opcode
from .framing import FrameCheck, FrameInfo

__all__ = ["Action", "ReplyStatus", "Command", "Rule", "command_rules", "CommandDecoder"]


class Action(enum.Enum, shape=4):
    """What the network top does with a command."""
    ERROR = 0           # reply with the status and the opcode byte; nothing else changes
    IDENTIFY = 1
    INFER = 2
    LEARN = 3
    READ_PARAMS = 4
    WRITE_PARAMS = 5
    FAULT = 6
    DATASET = 7         # LOAD_DATA, TRAIN, EVAL: the dataset unit checks and runs them


class ReplyStatus(enum.Enum, shape=8):
    """Reply statuses (the values of :class:`pchw.protocol.Status`)."""
    OK = protocol.Status.OK.value
    ERR_CHECKSUM = protocol.Status.ERR_CHECKSUM.value
    ERR_OPCODE = protocol.Status.ERR_OPCODE.value
    ERR_LENGTH = protocol.Status.ERR_LENGTH.value
    ERR_ARGUMENT = protocol.Status.ERR_ARGUMENT.value
    ERR_OVERRUN = protocol.Status.ERR_OVERRUN.value
    ERR_NO_DATA = protocol.Status.ERR_NO_DATA.value


class Command(data.Struct):
    """A decoded command: the action (``ERROR`` with ``status`` not ``OK`` for a refused one),
    the frame's opcode and tag bytes, and the layer (the first payload byte; meaningful for
    the parameter commands only)."""
    action: Action
    status: ReplyStatus
    opcode: 8
    tag: 8
    layer: 8


@dataclass(frozen=True)
class Rule:
    """An accepted opcode: the :class:`Action` it starts and its checks, in order, each a
    function of the frame (a :class:`~pchw.gateware.framing.FrameInfo` view) giving a 1-bit
    expression that is 1 when the check passes, and the status when it fails."""
    opcode: Opcode
    action: Action
    checks: tuple = ()


def command_rules(network, faults=False, dataset=False):
    """The opcodes a build of ``network`` accepts, with their checks (those of
    :meth:`pchw.protocol.DeviceModel._execute`, lengths from :func:`pchw.protocol.payload_length`).
    FAULT only with ``faults``, LOAD_DATA / TRAIN / EVAL only with a ``dataset`` memory (else
    they are unknown opcodes); the dataset unit checks those itself (their lengths and
    arguments are in the payload)."""
    L = network.L
    length = protocol.payload_length

    def exactly(n):
        return lambda f: f.length == n, ReplyStatus.ERR_LENGTH

    def layer_ok(f):
        return (f.first >= 1) & (f.first <= L)

    def params_length(f):               # the WRITE_PARAMS length of layer f.first
        ok = 0
        for l in range(1, L + 1):
            ok = ok | ((f.first == l) & (f.length == length(network, Opcode.WRITE_PARAMS, l)))
        return ok

    rules = [
        Rule(Opcode.IDENTIFY, Action.IDENTIFY, (exactly(0),)),
        Rule(Opcode.INFER, Action.INFER, (exactly(length(network, Opcode.INFER)),)),
        Rule(Opcode.LEARN, Action.LEARN, (exactly(length(network, Opcode.LEARN)),)),
        Rule(Opcode.READ_PARAMS, Action.READ_PARAMS,
             (exactly(1), (layer_ok, ReplyStatus.ERR_ARGUMENT))),
        Rule(Opcode.WRITE_PARAMS, Action.WRITE_PARAMS,
             ((lambda f: f.length != 0, ReplyStatus.ERR_LENGTH),
              (layer_ok, ReplyStatus.ERR_ARGUMENT),
              (params_length, ReplyStatus.ERR_LENGTH))),
    ]
    if faults:          # the target: FAULT_NETWORK, or a layer (its stuck weights)
        def fault_length(f):
            ok = 0
            for target in range(L + 1):
                ok = ok | ((f.first == target) &
                           (f.length == length(network, Opcode.FAULT, target)))
            return ok
        rules.append(Rule(Opcode.FAULT, Action.FAULT,
                          ((lambda f: f.length != 0, ReplyStatus.ERR_LENGTH),
                           (lambda f: f.first <= L, ReplyStatus.ERR_ARGUMENT),
                           (fault_length, ReplyStatus.ERR_LENGTH))))
    if dataset:
        rules += [Rule(opcode, Action.DATASET) for opcode in protocol.DATASET_OPCODES]
    return rules


_FRAME_ERRORS = ((FrameCheck.OVERRUN, ReplyStatus.ERR_OVERRUN),
                 (FrameCheck.TOO_LONG, ReplyStatus.ERR_LENGTH),
                 (FrameCheck.BAD_CRC, ReplyStatus.ERR_CHECKSUM))


def _first(m, cases, otherwise):
    """The first case whose condition holds runs (``m.If`` / ``m.Elif`` chain), else
    ``otherwise``; conditions are 1-bit values, actions functions adding statements."""
    for i, (condition, action) in enumerate(cases):
        with (m.Elif if i else m.If)(condition):
            action()
    if cases:
        with m.Else():
            otherwise()
    else:
        otherwise()


class CommandDecoder(wiring.Component):
    """Decodes each received frame into a :class:`Command`, through two register stages.

    Stage one registers the frame's fields, which rule's opcode it has and the result of each
    of that rule's checks; stage two registers the command (the first failing check's status,
    or the rule's action). No path runs from the receiver through the decode to the units.

    Parameters
    ----------
    rules : list of Rule
        The accepted opcodes (:func:`command_rules`); others are ``ERR_OPCODE``.

    Members
    -------
    i_frame : In(stream.Signature(FrameInfo))
        The receiver's frame. Taken (``ready``) in the cycle the command is taken, so the
        receiver holds its payload buffer while the command runs.
    o_command : Out(stream.Signature(Command))
        Valid :attr:`latency` cycles after ``i_frame`` becomes valid, until taken.
    """

    def __init__(self, rules):
        self._rules = list(rules)
        if len({rule.opcode for rule in self._rules}) != len(self._rules):
            raise ValueError("two rules for one opcode")
        super().__init__({
            "i_frame": In(stream.Signature(FrameInfo)),
            "o_command": Out(stream.Signature(Command)),
        })

    @property
    def latency(self):
        """Cycles from ``i_frame.valid`` to ``o_command.valid``: 2 (two register stages)."""
        return 2

    def elaborate(self, platform):
        m = Module()
        busy = Signal()             # a frame is being decoded or its command is not yet taken
        staged = Signal()           # stage one holds the frame
        frame = Signal(FrameInfo)
        hits = [Signal(name=f"hit_{rule.action.name.lower()}") for rule in self._rules]
        passes = [[Signal(name=f"pass_{rule.action.name.lower()}_{i}")
                   for i in range(len(rule.checks))] for rule in self._rules]
        command = Signal(Command)
        valid = Signal()

        with m.If(self.i_frame.valid & ~busy):
            f = self.i_frame.p
            m.d.sync += [busy.eq(1), staged.eq(1), frame.eq(f)]
            for rule, hit, bits in zip(self._rules, hits, passes):
                m.d.sync += hit.eq(f.opcode == rule.opcode.value)
                m.d.sync += [bit.eq(check(f)) for bit, (check, _) in zip(bits, rule.checks)]

        with m.If(staged):
            m.d.sync += [staged.eq(0), valid.eq(1), command.opcode.eq(frame.opcode),
                         command.tag.eq(frame.tag), command.layer.eq(frame.first)]

            def decide(action, status):
                def statements():
                    m.d.sync += [command.action.eq(action), command.status.eq(status)]
                return statements

            def refuse(status):
                return decide(Action.ERROR, status)

            def accept(action):
                return decide(action, ReplyStatus.OK)

            def run_rule(bits, rule):
                return lambda: _first(m, [(~bit, refuse(status))
                                          for bit, (_, status) in zip(bits, rule.checks)],
                                      accept(rule.action))

            _first(m, [(frame.check == check, refuse(status)) for check, status in _FRAME_ERRORS]
                   + [(hit, run_rule(bits, rule))
                      for rule, hit, bits in zip(self._rules, hits, passes)],
                   refuse(ReplyStatus.ERR_OPCODE))

        m.d.comb += [self.o_command.valid.eq(valid), self.o_command.p.eq(command)]
        with m.If(self.o_command.valid & self.o_command.ready):
            m.d.comb += self.i_frame.ready.eq(1)
            m.d.sync += [valid.eq(0), busy.eq(0)]
        return m
