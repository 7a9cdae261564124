"""The network top against the golden device model, byte for byte and cycle for cycle."""

import numpy as np
import pytest
from amaranth.sim import Simulator

import pchw
from pchw import Format, Formats, Network, PCSettings, protocol
from pchw.gateware.top import NetworkTop
from pchw.latency import command_latency
from pchw.protocol import Opcode


def run_top(network, commands, gaps=0.0, backpressure=0.0, seed=0, timeout=200_000,
            faults=False, dataset=0):
    """Send ``commands`` (bytes) to a NetworkTop, one after the other, each as soon as the
    previous reply is complete. Returns [(reply bytes, latency)]; latency counts cycles from
    the last byte accepted (for a too-long frame, its high length byte: the device answers
    before the rest arrives) to the first reply byte valid."""
    top = NetworkTop(network, faults=faults, dataset=dataset)
    rng = np.random.default_rng(seed)
    results = []

    async def bench(ctx):
        cycle = 0

        async def tick():
            nonlocal cycle
            await ctx.tick()
            cycle += 1

        for command in commands:
            # Drive the command; sample the output while doing so (a too-long frame is
            # answered before the rest of its bytes are sent).
            reply, first, accepted_at = bytearray(), None, []
            expected = None

            def sample():
                nonlocal first
                ready = rng.random() >= backpressure
                ctx.set(top.o_stream.ready, ready)
                if ready and ctx.get(top.o_stream.valid):
                    if first is None:
                        first = cycle
                    reply.append(ctx.get(top.o_stream.payload))

            for byte in command:
                while gaps and rng.random() < gaps:
                    ctx.set(top.i_stream.valid, 0)
                    sample()
                    await tick()
                ctx.set(top.i_stream.valid, 1)
                ctx.set(top.i_stream.payload, byte)
                while True:
                    accepted = ctx.get(top.i_stream.ready)
                    sample()
                    if accepted:
                        accepted_at.append(cycle)
                    await tick()
                    if accepted:
                        break
            ctx.set(top.i_stream.valid, 0)
            start = cycle
            while cycle - start < timeout:
                if len(reply) >= protocol.HEADER_SIZE:
                    expected = protocol.frame_size(bytes(reply[:protocol.HEADER_SIZE]))
                    if len(reply) >= expected:
                        break
                sample()
                await tick()
            header = protocol.HEADER_SIZE
            too_long = len(command) >= header and command[0] == protocol.SYNC_COMMAND and \
                int.from_bytes(command[header - 2:header], "little") > \
                protocol.max_payload(network)
            last_in = accepted_at[header - 1 if too_long else -1]
            results.append((bytes(reply), None if first is None else first - last_in))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def check_against_model(network, commands, faults=False, dataset=0, **kwargs):
    device = protocol.DeviceModel(network, faults=faults, dataset=dataset)
    results = run_top(network, commands, faults=faults, dataset=dataset, **kwargs)
    for command, (reply, _) in zip(commands, results):
        assert [reply] == device.feed(command), f"reply to {command[:8].hex()}..."
        if command[:1] == bytes([protocol.SYNC_COMMAND]):
            assert protocol.frame_tag(reply) == protocol.frame_tag(command)
    return device, results


def good_commands(network, rng, count):
    L = network.L
    f0, fL = network.value_format(0), network.value_format(L)
    tags = iter(rng.permutation(256).tolist())          # the replies must echo them
    commands = [protocol.identify_command(tag=next(tags))]
    for _ in range(count):
        x = f0.quantise(rng.uniform(-1.5, 1.5, network.layers[0]))
        y = fL.quantise(rng.uniform(-1.5, 1.5, network.layers[L]))
        commands += [protocol.infer_command(network, x, tag=next(tags)),
                     protocol.learn_command(network, x, y, tag=next(tags))]
    commands += [protocol.read_params_command(l, tag=next(tags)) for l in range(1, L + 1)]
    return commands


def small_network(**pc):
    return Network([5, 7, 3], ["identity", "relu"], init_seed=2, lanes=[3, 2],
                   pc=PCSettings(**{"inference_steps": 2, "inference_rate": 0.5,
                                    "learning_rate": 2.0 ** -3, **pc}))


@pytest.mark.parametrize("mode", ["standard", "fixed_prediction", "incremental"])
def test_commands_and_latency(mode):
    network = small_network(mode=mode, weight_rounding="stochastic")
    rng = np.random.default_rng(1)
    commands = good_commands(network, rng, 3)
    W = network.weight_format(2).quantise(rng.uniform(-1, 1, (3, 7)))
    b = network.weight_format(2).quantise(rng.uniform(-1, 1, 3))
    commands += [protocol.write_params_command(network, 2, W, b),
                 protocol.read_params_command(2)] + good_commands(network, rng, 1)
    _, results = check_against_model(network, commands)
    for command, (_, latency) in zip(commands, results):
        opcode, payload, _ = protocol.parse_command(command)
        layer = payload[0] if opcode == Opcode.WRITE_PARAMS else None
        assert latency == command_latency(network, opcode, layer), Opcode(opcode).name


def test_bad_commands_between_good_ones():
    network = small_network(mode="standard")
    rng = np.random.default_rng(2)
    good = good_commands(network, rng, 2)
    corrupt = bytearray(good[1])
    corrupt[6] ^= 0x10                                   # payload bit flip: crc fails
    wrong_length = protocol.command_frame(Opcode.INFER, bytes(3), tag=0x99)
    bad = [bytes(corrupt), protocol.command_frame(0x42, b"xy", tag=0xEE), wrong_length,
           protocol.command_frame(Opcode.INFER, bytes(300)),            # too long
           protocol.command_frame(Opcode.READ_PARAMS, bytes([7])),      # no such layer
           protocol.command_frame(Opcode.WRITE_PARAMS, bytes([0, 1, 2])),
           protocol.command_frame(Opcode.WRITE_PARAMS, b""),
           protocol.command_frame(Opcode.READ_PARAMS, bytes([1, 1])),
           b"\x00\x13garbage" + good[0]]                 # garbage, then a good IDENTIFY
    commands = []
    for i, command in enumerate(bad):
        commands += [command, good[(i + 1) % len(good)]]
    commands += [protocol.read_params_command(l) for l in (1, 2)]
    device, results = check_against_model(network, commands)
    statuses = [protocol.parse_reply(r)[0] for r, _ in results]
    assert {protocol.Status.ERR_CHECKSUM, protocol.Status.ERR_OPCODE, protocol.Status.ERR_LENGTH,
            protocol.Status.ERR_ARGUMENT} <= set(statuses)
    for (reply, latency), command in zip(results, commands):
        if protocol.parse_reply(reply)[0] != protocol.Status.OK:
            assert latency == command_latency(network, Opcode.IDENTIFY)   # errors: at once


def test_gaps_and_backpressure():
    network = small_network(mode="incremental")
    commands = good_commands(network, np.random.default_rng(3), 3)
    check_against_model(network, commands, gaps=0.4, backpressure=0.5, seed=4)


@pytest.mark.parametrize("layers, activations, lanes, formats", [
    ([3, 1, 4, 2], ["identity", "leaky_relu", "hardtanh"], [1, 1, 2], None),
    ([4, 6], ["hardtanh"], [4], Formats(Format(8, 4), Format(8, 6))),
    ([3, 5, 2], ["identity", "relu"], [2, 2],         # lanes = neurons: one row each
     Formats(Format(12, 7), Format(10, 8), {0: Format(8, 7), 2: Format(20, 9)},
             {1: Format(24, 13)})),
])
def test_shapes_and_formats(layers, activations, lanes, formats):
    network = Network(layers, activations, init_seed=3, lanes=lanes, formats=formats,
                      pc=PCSettings(inference_steps=3, inference_rate=0.5,
                                    learning_rate=2.0 ** -2))
    check_against_model(network, good_commands(network, np.random.default_rng(5), 2))


@pytest.mark.parametrize("name", ["xor", "iris", "digits"])
def test_committed_models(name):
    network = pchw.load(f"models/{name}")
    commands = good_commands(network, np.random.default_rng(6), 1)
    _, results = check_against_model(network, commands)
    assert results[1][1] == command_latency(network, Opcode.INFER)
    assert results[2][1] == command_latency(network, Opcode.LEARN)


def test_overrun_mark():
    """A loss mark on ``overrun`` (instead of a byte) ends the partial command and is answered
    with ERR_OVERRUN (its opcode and tag), or with opcode and tag 0 between frames, at the
    latency of an error reply; the next command is answered as usual."""
    network = small_network(mode="standard")
    infer = protocol.infer_command(network, [1, 2, 3, 4, 5], tag=0x6C)
    device = protocol.DeviceModel(network)
    replies = []

    async def bench(ctx):
        ctx.set(top.o_stream.ready, 1)
        for part in (infer[:7], None, infer, None, infer[:2], None):
            if part is None:
                assert ctx.get(top.i_stream.ready)
                ctx.set(top.overrun, 1)
                await ctx.tick()
                ctx.set(top.overrun, 0)
                expected = device.overrun()
            else:
                for byte in part:
                    ctx.set(top.i_stream.valid, 1)
                    ctx.set(top.i_stream.payload, byte)
                    await ctx.tick().until(top.i_stream.ready)
                ctx.set(top.i_stream.valid, 0)
                expected = device.feed(part)
            reply, first = bytearray(), None
            for cycle in range(1, 20_000):
                if ctx.get(top.o_stream.valid):
                    first = cycle if first is None else first
                    reply.append(ctx.get(top.o_stream.payload))
                await ctx.tick()
                if len(reply) >= protocol.HEADER_SIZE and \
                        len(reply) == protocol.frame_size(reply) or not expected and cycle > 200:
                    break
            replies.append((bytes(reply), expected, first))

    top = NetworkTop(network)
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for got, expected, first in replies:
        assert [got] == expected if expected else got == b""
    S = protocol.Status
    assert [protocol.parse_reply(r)[0] for r, e, _ in replies if e] == \
        [S.ERR_OVERRUN, S.OK, S.ERR_OVERRUN, S.ERR_OVERRUN]
    assert replies[1][0] == protocol.reply_frame(S.ERR_OVERRUN, bytes([Opcode.INFER]), tag=0x6C)
    assert replies[3][0] == protocol.reply_frame(S.ERR_OVERRUN, b"\x00", tag=0)
    assert replies[5][0] == protocol.reply_frame(S.ERR_OVERRUN, bytes([Opcode.INFER]), tag=0)
    # The mark is taken at the edge before cycle 1: an error reply's latency.
    assert replies[1][2] == command_latency(network, Opcode.IDENTIFY)


@pytest.mark.parametrize("mode", ["standard", "fixed_prediction", "incremental"])
def test_fault_command(mode):
    """A fault-injection build (docs/faults.md): FAULT kills units of the input, hidden and
    output layers, and INFER, LEARN and READ_PARAMS stay byte- and cycle-exact with the device
    model with fault injection; a FAULT with no dead unit brings the intact network back; a
    FAULT of the wrong length is refused."""
    network = small_network(mode=mode, weight_rounding="stochastic")
    rng = np.random.default_rng(3)
    faulty = good_commands(network, rng, 3)
    commands = ([protocol.fault_command(network, [[1, 4], [0, 3, 6], [2]], tag=9)] + faulty
                + [protocol.command_frame(Opcode.FAULT, b"\x00", tag=5),
                   protocol.fault_command(network, [[], [], []], tag=7)]
                + good_commands(network, rng, 1))
    device, results = check_against_model(network, commands, faults=True)
    statuses = [protocol.parse_reply(reply)[0] for reply, _ in results]
    assert statuses[0] == statuses[-5] == protocol.Status.OK
    assert statuses[len(faulty) + 1] == protocol.Status.ERR_LENGTH
    checked = 0
    for command, (reply, latency) in zip(commands, results):
        opcode, payload, _ = protocol.parse_command(command)
        if opcode == Opcode.FAULT and protocol.parse_reply(reply)[0] == protocol.Status.OK:
            assert latency == command_latency(network, opcode, payload[0])
            checked += 1
    assert checked == 2
    # the dead units mattered: an intact device answers the same commands otherwise
    intact = protocol.DeviceModel(network)
    assert [intact.feed(c) for c in faulty] != [[r] for r, _ in results[1:1 + len(faulty)]]


def fault_spec():
    """Every kind of fault: a dead hidden unit, stuck weights (two values in one layer) and
    2.5 upsets per LEARN command."""
    from pchw.faults import FaultSpec
    return FaultSpec.from_dict({"seed": 3, "dead": [{"layer": 1, "indices": [2]}],
                                "stuck": [{"layer": 1, "fraction": 0.3, "value": 0.5},
                                          {"layer": 1, "fraction": 0.2, "value": -0.25},
                                          {"layer": 2, "fraction": 0.3}],
                                "upsets": {"rate": 2.5}})


@pytest.mark.parametrize("mode", ["standard", "fixed_prediction", "incremental"])
def test_stuck_weights_and_upsets(mode):
    """FAULT commands set stuck weights and upsets (docs/faults.md): every reply, its latency
    (a LEARN's with its upsets) and the weights read back equal the device model's, which equals
    the damaged golden model (pchw.faults.damage, learn_command); learning changes no stuck
    weight, the upsets flip bits, and FAULT commands of a wrong size or target are refused and
    change nothing."""
    from pchw.faults import damage, learn_command
    from pchw.golden import FixedModel
    network = small_network(mode=mode, weight_rounding="stochastic")
    faults = fault_spec().resolve(network)
    rng = np.random.default_rng(3)
    setup = protocol.fault_commands(network, faults)
    stuck_1 = protocol.stuck_command(network, 1, np.zeros((7, 5), dtype=int))
    bad = [protocol.command_frame(Opcode.FAULT, b""),                       # no target
           protocol.command_frame(Opcode.FAULT, stuck_1[5:-2]),              # one byte short
           protocol.command_frame(Opcode.FAULT, setup[0][5:-1] + b"\x00"),   # one byte long
           protocol.command_frame(Opcode.FAULT, bytes([network.L + 1, 0]))]  # no such layer
    work = good_commands(network, rng, 4)
    commands = setup + work[:3] + bad + work[3:]
    device, results = check_against_model(network, commands, faults=True)
    statuses = [protocol.parse_reply(reply)[0] for reply, _ in results]
    S = protocol.Status
    assert statuses[len(setup) + 3:len(setup) + 7] == [S.ERR_LENGTH] * 3 + [S.ERR_ARGUMENT]
    assert statuses.count(S.OK) == len(commands) - len(bad)

    # cycle-exact, a LEARN's latency with its upsets, replayed on a fresh device model
    replay, flips = protocol.DeviceModel(network, faults=True), []
    for command, (reply, latency) in zip(commands, results):
        replay.feed(command)
        opcode, payload, _ = protocol.parse_command(command)
        if protocol.parse_reply(reply)[0] != S.OK:
            continue
        layered = opcode in (Opcode.WRITE_PARAMS, Opcode.FAULT)
        upsets = replay.last_upsets if opcode == Opcode.LEARN else None
        flips += [upsets] if upsets is not None else []
        assert latency == command_latency(network, opcode, payload[0] if layered else None,
                                          upsets)
    assert sum(flips) >= 2 * len(flips) and len(set(flips)) == 2      # 2 or 3 a command

    # the device model is the damaged golden model
    golden = damage(FixedModel(network), faults)
    f0, fL = network.value_format(0), network.value_format(network.L)
    for command in work:
        opcode, payload, _ = protocol.parse_command(command)
        if opcode == Opcode.LEARN:
            split = network.layers[0] * protocol.value_bytes(f0)
            x = f0.dequantise(protocol.decode_values(payload[:split], f0, network.layers[0]))
            y = fL.dequantise(protocol.decode_values(payload[split:], fL, network.layers[-1]))
            learn_command(golden, x[None], y[None])
    for l in range(1, network.L + 1):
        assert np.array_equal(golden.W[l - 1], device.model.W[l - 1])
        assert np.array_equal(golden.b[l - 1], device.model.b[l - 1])
        held = network.weight_format(l).quantise(faults.stuck_value[l - 1])
        mask = faults.stuck_mask[l - 1]
        assert mask.any() and np.array_equal(device.model.W[l - 1][mask], held[mask])
    intact = protocol.DeviceModel(network)
    for command in work:
        intact.feed(command)
    assert not np.array_equal(intact.model.W[0], device.model.W[0])


def test_fault_command_needs_a_fault_injection_build():
    network = small_network(mode="standard")
    command = protocol.fault_command(network, [[0], [], []], tag=3)
    _, results = check_against_model(network, [command])
    assert protocol.parse_reply(results[0][0])[0] == protocol.Status.ERR_OPCODE


def test_upsets_and_stuck_weights_with_mixed_formats():
    """Upsets land in every layer of a network whose weight formats differ by layer (20-bit
    W_2: 3-byte words, the injector's per-layer widths and bases), and stuck weights hold in
    each: every reply and latency equals the device model's."""
    from pchw.faults import FaultSpec
    network = Network([2, 3, 3, 3, 2], ["identity", "hardtanh", "leaky_relu", "relu"],
                      init_seed=7, lanes=[1, 2, 3, 1],
                      formats=Formats(Format(12, 7), Format(10, 8), {0: Format(8, 7)},
                                      {2: Format(20, 13)}),
                      pc=PCSettings(mode="standard", inference_steps=2, inference_rate=0.25,
                                    learning_rate=2.0 ** -2))
    spec = FaultSpec.from_dict({"seed": 9, "upsets": {"rate": 6.5},
                                "stuck": [{"layer": l, "fraction": 0.3, "value": 0.5}
                                          for l in range(1, network.L + 1)]})
    commands = [protocol.identify_command(), *protocol.fault_commands(network, spec.resolve(
        network)), *good_commands(network, np.random.default_rng(1), 5)]
    replay, (_, results) = protocol.DeviceModel(network, faults=True), \
        check_against_model(network, commands, faults=True)
    flips = []
    for command, (_, latency) in zip(commands, results):
        replay.feed(command)
        opcode, payload, _ = protocol.parse_command(command)
        upsets = replay.last_upsets if opcode == Opcode.LEARN else None
        flips += [upsets] if upsets is not None else []
        layered = opcode in (Opcode.WRITE_PARAMS, Opcode.FAULT)
        assert latency == command_latency(network, opcode, payload[0] if layered else None,
                                          upsets)
    assert sum(flips) == 30           # 6 or 7 a command (the golden hash decides)
    from pchw.faults import parameter_bits, upset_positions
    ends = np.cumsum([network.layers[l] * (network.layers[l - 1] + 1)
                      * network.weight_format(l).width for l in range(1, network.L + 1)])
    hit = {int(np.searchsorted(ends, p, side="right")) + 1 for k in range(5)
           for p in upset_positions(spec, k, parameter_bits(network))}
    assert hit == set(range(1, network.L + 1))
