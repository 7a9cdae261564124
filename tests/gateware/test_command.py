# amaranth: UnusedElaboratable=no
"""The command decoder against the golden device model's checks, and its latency."""

import random

import pytest
from amaranth.sim import Simulator

from pchw import Network, PCSettings, protocol
from pchw.gateware.command import Action, CommandDecoder, Rule, command_rules
from pchw.protocol import FrameCheck, Opcode, ReceivedFrame, Status


def frames(network, rng, count):
    """Frames near every rule's edges: each opcode (and unknown ones), lengths right and off
    by one, layers in and out of range, every receiver verdict."""
    out = []
    for _ in range(count):
        opcode = rng.choice(list(Opcode) + [0x00, 0x07, 0xFF])
        layer = rng.randrange(network.L + 2)
        try:
            need = protocol.payload_length(network, opcode, layer)
        except ValueError:
            need = None
        length = max(0, (need if need is not None else rng.randrange(4))
                     + rng.choice([0, 0, 0, -1, 1]))
        check = rng.choice([FrameCheck.OK] * 5 + list(FrameCheck))
        payload = bytes([layer] + [0] * (length - 1)) if length else b""
        if check in (FrameCheck.TOO_LONG, FrameCheck.OVERRUN):
            payload, length = b"", 0 if check is FrameCheck.OVERRUN else length
        out.append(ReceivedFrame(opcode, rng.randrange(256), length, payload, check))
    return out


@pytest.mark.parametrize("faults", [False, True])
def test_decisions_match_the_device_model(faults):
    network = Network([3, 4, 2], ["identity", "relu"], init_seed=1, lanes=[2, 1],
                      pc=PCSettings(inference_steps=1))
    device = protocol.DeviceModel(network, faults=faults)
    cases = frames(network, random.Random(5), 120)
    rules = command_rules(network, faults)
    actions = {rule.opcode: rule.action for rule in rules}
    dut = CommandDecoder(rules)

    async def bench(ctx):
        for frame in cases:
            ctx.set(dut.i_frame.p, {"opcode": frame.opcode, "tag": frame.tag,
                                    "length": frame.length, "check": frame.check.value,
                                    "first": frame.payload[0] if frame.payload else 0})
            ctx.set(dut.i_frame.valid, 1)
            for _ in range(dut.latency):
                assert not ctx.get(dut.o_command.valid)
                await ctx.tick()
            assert ctx.get(dut.o_command.valid)
            got = ctx.get(dut.o_command.p)
            status, _, _ = protocol.parse_reply(device._execute(frame))
            assert (got.status.value, got.opcode, got.tag) == (status, frame.opcode, frame.tag)
            assert got.action == (actions[frame.opcode] if status is Status.OK
                                  else Action.ERROR), frame
            if frame.payload:
                assert got.layer == frame.payload[0]
            ctx.set(dut.o_command.ready, 1)
            assert ctx.get(dut.i_frame.ready)       # the frame is taken with its command
            await ctx.tick()
            ctx.set(dut.o_command.ready, 0)
            ctx.set(dut.i_frame.valid, 0)
            assert not ctx.get(dut.o_command.valid)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_one_rule_per_opcode():
    with pytest.raises(ValueError, match="two rules"):
        CommandDecoder([Rule(Opcode.INFER, Action.INFER), Rule(Opcode.INFER, Action.LEARN)])
