"""The generated Verilog of whole networks, on Icarus Verilog and Verilator, against the golden
device model: every reply byte, every latency, and the weights after on-chip learning."""

import json
import re

import numpy as np
import pytest
from amaranth.hdl import Array, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

import pchw
from pchw import Format, Formats, Network, PCSettings, protocol, verilog
from pchw.datasets import load_dataset
from pchw.sim import network_tb
from pchw.latency import command_latency
from pchw.sim.network import TESTBENCH, dataset_commands, run

from .harness import (
    AMARANTH_WAIVERS, SIMULATORS, SimulationFailed, Waiver, build_dir_for, lint,
    require_simulator, simulate as simulate_design, tools_or_skip, verilog_of,
)

CUSTOM = {
    "single-4-6": dict(layers=[4, 6], activations=[{"name": "leaky_relu", "slope": 0.5}],
                       lanes=[4], pc=PCSettings(mode="incremental", inference_steps=2,
                                                inference_rate=0.5, learning_rate=2.0 ** -2,
                                                weight_rounding="stochastic")),
    # odd sizes, every activation, every mode, stochastic rounding, several formats
    "odd-5-7-3": dict(layers=[5, 7, 3], activations=["identity", "hardtanh"], lanes=[3, 2],
                      pc=PCSettings(mode="incremental", inference_steps=3, inference_rate=0.5,
                                    learning_rate=2.0 ** -3, weight_rounding="stochastic")),
    "deep-3-1-4-2": dict(layers=[3, 1, 4, 2], activations=["relu", "leaky_relu", "relu"],
                         lanes=[1, 3, 2],
                         pc=PCSettings(mode="standard", inference_steps=4, inference_rate=0.5,
                                       learning_rate=2.0 ** -2)),
    "narrow-4-6-3": dict(layers=[4, 6, 3], activations=["identity", "relu"], lanes=[2, 3],
                         formats=Formats(Format(8, 4), Format(8, 6)),
                         pc=PCSettings(mode="fixed_prediction", inference_steps=2,
                                       inference_rate=0.5, learning_rate=2.0 ** -3,
                                       weight_rounding="stochastic")),
    "mixed-2-3-3-3-2": dict(layers=[2, 3, 3, 3, 2],
                            activations=["identity", "hardtanh", "leaky_relu", "relu"],
                            lanes=[1, 2, 3, 1],
                            formats=Formats(Format(12, 7), Format(10, 8), {0: Format(8, 7)},
                                            {2: Format(20, 13)}),
                            pc=PCSettings(mode="standard", inference_steps=2,
                                          inference_rate=0.25, learning_rate=2.0 ** -2)),
}


def custom_model(name, tmp_path_factory):
    path = tmp_path_factory.mktemp(name)
    Network(init_seed=7, name=name, **CUSTOM[name]).save(path)
    return path


def random_commands(network, rng, count):
    """IDENTIFY, INFER/LEARN pairs on random inputs, WRITE_PARAMS, and READ_PARAMS of all."""
    L = network.L
    f0, fL = network.value_format(0), network.value_format(L)
    commands = [protocol.identify_command()]
    for _ in range(count):
        x = f0.quantise(rng.uniform(-2, 2, network.layers[0]))
        y = fL.quantise(rng.uniform(-2, 2, network.layers[L]))
        commands += [protocol.infer_command(network, x), protocol.learn_command(network, x, y)]
    wf = network.weight_format(L)
    W = wf.quantise(rng.uniform(-1, 1, (network.layers[L], network.layers[L - 1])))
    commands.append(protocol.write_params_command(network, L, W, wf.quantise(
        rng.uniform(-1, 1, network.layers[L]))))
    commands += [protocol.learn_command(network, f0.quantise(rng.uniform(-1, 1, network.layers[0])),
                                        fL.quantise(rng.uniform(-1, 1, network.layers[L])))]
    return commands + [protocol.read_params_command(l) for l in range(1, L + 1)]


def bad_commands(network):
    """Malformed or unknown commands, each of which must get an error reply."""
    good = protocol.identify_command()
    corrupt = bytearray(protocol.read_params_command(1))
    corrupt[-1] ^= 0xFF
    return [bytes(corrupt), protocol.command_frame(0x99, b"?"),
            protocol.command_frame(protocol.Opcode.INFER, b"\x01"),
            protocol.command_frame(protocol.Opcode.READ_PARAMS, bytes([network.L + 1])),
            protocol.command_frame(protocol.Opcode.LEARN,
                                   bytes(protocol.max_payload(network) + 1)),
            b"\xff\x00noise" + good]


def simulate(model_path, simulator, commands, **kwargs):
    network = pchw.load(model_path)
    with tools_or_skip():
        summary = run(network, simulator, commands, **kwargs)
    assert summary["mismatches"] == 0 and summary["replies"] >= len(commands)
    return network, summary


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_fault_injection_build(simulator, tmp_path_factory):
    """A fault-injection build (docs/faults.md): FAULT commands kill input, hidden and output
    units, stick weights of both layers (two values in one) and set 1.5 upsets per LEARN; every
    reply (learning, inference, the weights read back) and every latency (a LEARN's with its
    upsets) stays bit- and cycle-exact with the device model with fault injection (which
    tests/gateware/test_top.py holds to the damaged golden model); reviving every unit, freeing
    the stuck weights and stopping the upsets restores the intact behaviour."""
    from pchw.faults import FaultSpec
    path = custom_model("odd-5-7-3", tmp_path_factory)
    network = pchw.load(path)
    spec = FaultSpec.from_dict({"seed": 11, "dead": [{"layer": 0, "indices": [4]},
                                                     {"layer": 1, "indices": [0, 2, 5]},
                                                     {"layer": 2, "indices": [1]}],
                                "stuck": [{"layer": 1, "fraction": 0.2, "value": 0.75},
                                          {"layer": 1, "fraction": 0.2, "value": -0.5},
                                          {"layer": 2, "fraction": 0.3, "value": 0.0}],
                                "upsets": {"rate": 1.5}})
    setup = protocol.fault_commands(network, spec.resolve(network))
    rng = np.random.default_rng(17)
    commands = random_commands(network, rng, 3)
    commands[1:1] = setup
    commands += [protocol.fault_command(network, [[], [], []])]
    commands += [protocol.stuck_command(network, l, np.zeros((network.layers[l],
                                                               network.layers[l - 1]), int))
                 for l in (1, 2)]
    commands += random_commands(network, rng, 1)
    with tools_or_skip():
        summary = run(network, simulator, commands, faults=True)
    assert summary["mismatches"] == 0 and summary["replies"] == len(commands)
    assert summary["latency_cycles"]["FAULT"] == sorted(
        {command_latency(network, protocol.Opcode.FAULT, target) for target in (0, 1, 2)})
    assert len(summary["latency_cycles"]["LEARN"]) >= 3     # no upsets, 1 and 2 of them


def test_pchw_faults_on_chip_segment(capsys):
    """`pchw faults --on-chip N`: the first N LEARN commands of the recovery run on the
    simulated fault-injection build, every reply equal to the golden model's: dead units, and
    stuck weights with upsets."""
    from pchw.cli import main
    require_simulator("verilator")
    pattern = re.compile(r"(\d+) FAULT and 12 LEARN commands of the recovery \((\d+) upset "
                         r"flips\), then READ_PARAMS: (\d+) replies, 0 differ from the golden")
    assert main(["faults", "models/xor", "--kill", "0.5", "--epochs", "1",
                 "--reference-epochs", "1", "--on-chip", "12"]) == 0
    chip = pattern.search(capsys.readouterr().out)
    # the network-wide FAULT, then one per weight layer (no stuck weights)
    assert chip and chip.groups() == ("3", "0", str(1 + 3 + 12 + 2))
    assert main(["faults", "models/xor", "--stuck", "0.25", "--upset-rate", "0.5", "--epochs",
                 "1", "--reference-epochs", "1", "--on-chip", "12"]) == 0
    chip = pattern.search(capsys.readouterr().out)
    assert chip and int(chip.group(1)) >= 3 and int(chip.group(2)) >= 1
    assert int(chip.group(3)) == 1 + int(chip.group(1)) + 12 + 2


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", sorted(CUSTOM))
def test_custom_networks(name, simulator, tmp_path_factory):
    path = custom_model(name, tmp_path_factory)
    network = pchw.load(path)
    rng = np.random.default_rng(len(name))
    commands = random_commands(network, rng, 3)
    mixed = []
    for good, bad in zip(commands, bad_commands(network) + [b""] * len(commands)):
        mixed += [good] + ([bad] if bad else [])
    _, summary = simulate(path, simulator, mixed)
    assert set(summary["latency_cycles"]) >= {"INFER", "LEARN", "WRITE_PARAMS", "READ_PARAMS"}
    # The same build, with gaps on the input and back-pressure on the output.
    simulate(path, simulator, commands, gaps=0.3, backpressure=0.4)


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", ["xor", "iris", "digits"])
def test_committed_models(name, simulator):
    network = pchw.load(f"models/{name}")
    data = load_dataset(network.dataset)
    samples = 2 if simulator == "icarus" and name == "digits" else 6
    _, summary = simulate(f"models/{name}", simulator,
                          dataset_commands(network, data, samples, learn=True))
    assert set(summary["latency_cycles"]) == {"IDENTIFY", "INFER", "LEARN", "READ_PARAMS"}


def test_digits_epoch_on_chip_matches_golden_weights():
    """A full epoch of on-chip learning on digits (Verilator): every LEARN reply and, through
    READ_PARAMS at the end, every final weight bit for bit equal to the golden model's."""
    network = pchw.load("models/digits")
    data = load_dataset("digits")
    commands = dataset_commands(network, data, len(data.x_train), learn=True)
    _, summary = simulate("models/digits", "verilator", commands)
    assert summary["replies"] == len(commands) == len(data.x_train) + 2 + network.L


class ReplayTop(wiring.Component):
    """A stand-in for the network top, to test the testbench: after ``frame_length`` command
    bytes it sends the bytes ``reply`` (which may be wrong, short or long), then nothing."""

    def __init__(self, frame_length, reply):
        self._frame_length, self._reply = frame_length, bytes(reply)
        super().__init__({"i_stream": In(stream.Signature(8)),
                          "o_stream": Out(stream.Signature(8)), "frame_abort": In(1),
                          "overrun": In(1)})

    def elaborate(self, platform):
        m = Module()
        n, reply = self._frame_length, self._reply
        received = Signal(range(n + 1))
        sent = Signal(range(len(reply) + 1))
        m.d.comb += self.i_stream.ready.eq(1)
        with m.If(self.i_stream.valid & (received < n)):
            m.d.sync += received.eq(received + 1)
        if reply:
            with m.If((received == n) & (sent < len(reply))):
                m.d.comb += [self.o_stream.valid.eq(1),
                             self.o_stream.payload.eq(Array(Const(b, 8) for b in reply)[sent])]
                with m.If(self.o_stream.ready):
                    m.d.sync += sent.eq(sent + 1)
        return m


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("case", ["exact", "silent", "short", "surplus"])
def test_testbench_fails_fast(case, simulator, tmp_path):
    """The network testbench fails, within the latency model's budget of simulated cycles, on a
    design that does not answer or answers short, and on one byte after the last reply."""
    network = pchw.load("models/xor")
    command = protocol.identify_command()
    want = protocol.DeviceModel(network).feed(command)[0]
    reply = {"exact": want, "silent": b"", "short": want[:-1], "surplus": want + b"\x00"}[case]
    network.save(tmp_path / "model")
    summary = tmp_path / "summary.json"
    data = {"model": str(tmp_path / "model"), "commands": [command.hex()], "gaps": 0.0,
            "backpressure": 0.25, "summary": str(summary)}
    args = (verilog_of(ReplayTop(len(command), reply), "replay"), "replay", TESTBENCH,
            simulator, build_dir_for(f"replay-{case}", simulator))
    if case == "exact":
        simulate_design(*args, test_data=data)
    else:
        with pytest.raises(SimulationFailed, match="no reply 1 of 1 by cycle" if case in
                           ("silent", "short") else "surplus_bytes"):
            simulate_design(*args, test_data=data)
    result = json.loads(summary.read_text())
    budget = network_tb.reply_budget(network, command, [want], 0.0, 0.25)
    assert result["simulated_cycles"] <= budget + network_tb.drain_cycles(network) + 10
    assert result["mismatches"] == (case != "exact")


# Verilator -Wall warnings of the network Verilog beyond AMARANTH_WAIVERS: each is a property
# of how Yosys writes Amaranth's netlist, not of pchw's logic. Anything else fails the test.
NETWORK_WAIVERS = AMARANTH_WAIVERS + (
    Waiver("DECLFILENAME", r"does not match MODULE name: '\w+\.",
           "Amaranth writes the top and its submodules (named `top.sub`) into one file"),
    Waiver("WIDTHEXPAND", r"expects \d+ bits on the [LR]HS, but [LR]HS's ",
           "Yosys writes Amaranth's operand extensions implicitly (of any operand: a variable, "
           "slice, concatenation or $signed() cast): a signed operand is wrapped in "
           "$signed() and sign-extended, an unsigned one zero-extended, exactly as Amaranth's "
           "arithmetic defines (the comparisons and sums of pchw/gateware/fixed.py rely on it)"),
    Waiver("WIDTHTRUNC", r"Logical operator LOGNOT expects 1 bit",
           "`!x` is Yosys's spelling of `x == 0` (Amaranth's `~x.bool()`); nothing is truncated"),
    Waiver("UNUSEDSIGNAL", r"Bits of signal are not used: '\$",
           "Yosys temporaries computed one bit wider than kept: sums and products are narrowed "
           "by requantise/saturate by design (docs/fixed-point.md)"),
    Waiver("UNUSEDSIGNAL", r"Signal is not used: '",
           "ports of the shared layer/framing blocks that a given instance does not use (e.g. "
           "x_addr of a hidden layer, which only layers 0 and L expose to the host), and "
           "intermediates Yosys inlined", expected=False),
    Waiver("CASEINCOMPLETE", r"Case values incompletely covered",
           "Yosys writes every Amaranth Switch/FSM as a default assignment followed by a casez; "
           "values without a case keep the default, as Amaranth defines"),
    # A layer with as many lanes as neurons has one row per state bank, and a bias memory of
    # one row group has one word: Amaranth gives a one-word memory a zero-width address, which
    # Yosys declares `wire [-1:0]` (Verilog cannot spell zero bits), and nothing drives or reads
    # it. Padding such memories to two words would cost a word of flip-flops per bank for a
    # 1-bit address that is always 0. lint_network() checks that every undriven, unused signal
    # waived here is such a declaration.
    Waiver("ASCRANGE", r"left < right of bit range: \[-1:0\]$",
           "the zero-width address of a one-word memory, declared `[-1:0]` by Yosys",
           expected=False),
    Waiver("UNUSEDSIGNAL", r"Signal is not driven, nor used: '",
           "the zero-width address of a one-word memory (lint_network checks each is a "
           "`[-1:0]` declaration)", expected=False),
)


def lint_network(network, path):
    """Lint ``network``'s Verilog (written to ``path``) against :data:`NETWORK_WAIVERS`; every
    waived "not driven, nor used" signal must be declared zero-width (``[-1:0]``)."""
    path.write_text(verilog.generate(network))
    with tools_or_skip():
        waived = lint(path, NETWORK_WAIVERS, top=verilog.module_name(network),
                      strict_waivers=False)
    assert all(m.severity == "Warning" for m in waived)
    lines = path.read_text().splitlines()
    for message in waived:
        if message.text.startswith("Signal is not driven, nor used"):
            line = lines[int(message.location.split(":")[-2]) - 1]
            assert "[-1:0]" in line, f"{message}: not a zero-width declaration: {line.strip()}"
    return waived


def random_network(seed):
    """A seeded random network: depth 1-3, sizes 1-7, every activation and mode, formats of 8 to
    24 bits, nearest or stochastic rounding, and lanes from 1 to the layer size (a layer size
    half the time, so one-row banks are common)."""
    rng = np.random.default_rng(seed)
    L = int(rng.integers(1, 4))
    layers = [int(n) for n in rng.integers(1, 8, L + 1)]
    activations = []
    for _ in range(L):
        name = str(rng.choice(pchw.network.CIRCUIT_ACTIVATIONS))
        activations.append({"name": name, "slope": 0.25} if name == "leaky_relu" else name)
    lanes = [n if rng.random() < 0.5 else int(rng.integers(1, n + 1)) for n in layers[1:]]

    def random_format():
        width = int(rng.integers(8, 25))
        return Format(width, int(rng.integers(width // 3, width - 1)))

    pc = PCSettings(mode=str(rng.choice(pchw.network.MODES)),
                    inference_steps=int(rng.integers(1, 4)), inference_rate=0.5,
                    learning_rate=2.0 ** -int(rng.integers(1, 6)),
                    weight_rounding=str(rng.choice(["nearest", "stochastic"])))
    return Network(layers, activations, lanes=lanes, formats=Formats(random_format(),
                   random_format()), pc=pc, name=f"random{seed}", init_seed=seed)


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("seed", range(4))
def test_random_networks_against_the_device_model(seed, simulator):
    """Differential: seeded random networks (depth 1-3, sizes 1-7, every activation and mode,
    8-24-bit formats, both roundings, lanes that need not divide the layer) through the
    simulated circuit, every reply and latency against the golden device model."""
    network = random_network(100 + seed)
    commands = random_commands(network, np.random.default_rng(seed), 2)
    with tools_or_skip():
        summary = run(network, simulator, commands, config=f"random{100 + seed}")
    assert summary["mismatches"] == 0 and summary["replies"] == len(commands)


@pytest.mark.parametrize("name", ["digits", "odd-5-7-3"])
def test_verilog_lints_clean(name, tmp_path_factory, tmp_path):
    """`verilator --lint-only -Wall`: no warning except the justified waivers above."""
    network = pchw.load(f"models/{name}") if name == "digits" else \
        pchw.load(custom_model(name, tmp_path_factory))
    lint_network(network, tmp_path / f"{verilog.module_name(network)}.v")


@pytest.mark.parametrize("seed", range(3))
def test_random_networks_lint_clean(seed, tmp_path):
    """The same on seeded random networks, including layers with as many lanes as neurons
    (one-row memory banks) and a 1-neuron layer, which the named networks above lack."""
    network = random_network(seed)
    waived = lint_network(network, tmp_path / f"{verilog.module_name(network)}.v")
    assert any(network.layers[l] == network.lanes[l - 1] for l in range(1, network.L + 1))
    assert any(m.code == "ASCRANGE" for m in waived)       # the one-row banks were linted


def test_pchw_sim_random_inputs(tmp_path, capfd):
    """`pchw sim --random` runs a model that has no dataset (3 inputs match none), and says so;
    quietly: the tools' output appears only with -v."""
    from pchw.cli import main
    model = tmp_path / "m"
    assert main(["init", str(model), "--layers", "3,4,2", "--activations", "identity,relu"]) == 0
    with tools_or_skip():
        assert main(["sim", str(model), "--random", "--seed", "3", "--learn",
                     "--samples", "2"]) == 0
    captured = capfd.readouterr()
    assert "2 LEARN command(s) from random inputs and targets (seed 3)" in captured.err
    assert "commands 6, replies 6, mismatches with the golden model 0" in captured.out
    assert "cocotb" not in captured.out + captured.err
    with tools_or_skip():
        assert main(["sim", str(model), "--random", "--samples", "1", "-v"]) == 0
    captured = capfd.readouterr()
    assert "cocotb" in captured.out + captured.err


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_pchw_sim_command(simulator, capsys):
    from pchw.cli import main
    with tools_or_skip():
        assert main(["sim", "models/xor", "--simulator", simulator, "--learn",
                     "--samples", "3"]) == 0
    out = capsys.readouterr().out
    assert "mismatches with the golden model 0" in out
    network = pchw.load("models/xor")
    from pchw.latency import command_latency
    assert f"{command_latency(network, protocol.Opcode.LEARN)} (formula " \
           f"{command_latency(network, protocol.Opcode.LEARN)})" in out
