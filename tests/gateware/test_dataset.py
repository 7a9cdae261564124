"""The dataset unit in the network top (LOAD_DATA, TRAIN, EVAL) against the golden device model,
byte for byte and cycle for cycle (issue 13)."""

import numpy as np
import pytest

from pchw import Format, Formats, Network, PCSettings, protocol
from pchw.latency import command_latency
from pchw.protocol import Opcode, Status

from ..test_dataset import error_cases
from .test_top import check_against_model


def small_network(**pc):
    return Network([5, 7, 3], ["identity", "relu"], init_seed=2, lanes=[3, 2],
                   pc=PCSettings(**{"inference_steps": 2, "inference_rate": 0.5,
                                    "learning_rate": 2.0 ** -3, **pc}))


def narrow_network():
    """3-byte inputs, 1-byte outputs, a one-hot target that saturates below 1.0."""
    return Network([4, 6, 2], ["hardtanh", "leaky_relu"], init_seed=2, lanes=[2, 1],
                   formats=Formats(Format(12, 6), Format(8, 6),
                                   value_overrides={0: Format(20, 10), 2: Format(5, 4)}),
                   pc=PCSettings(inference_steps=1, inference_rate=0.5, learning_rate=0.25))


def samples(network, rng, count):
    f0 = network.value_format(0)
    return (f0.quantise(rng.uniform(-1.5, 1.5, (count, network.layers[0]))),
            rng.integers(0, network.layers[-1], count))


def loads(network, x, labels, tags, first=0):
    chunk = protocol.load_chunk(network)
    return [protocol.load_data_command(network, first + at, x[at:at + chunk],
                                       labels[at:at + chunk], tag=next(tags))
            for at in range(0, len(x), chunk)]


def expected_latency(network, command):
    opcode, payload, _ = protocol.parse_command(command)
    if opcode == Opcode.LOAD_DATA:
        return command_latency(network, opcode, samples=payload[2])
    fields = [int.from_bytes(payload[i:i + 2], "little") for i in range(0, len(payload), 2)]
    if opcode == Opcode.TRAIN:
        return command_latency(network, opcode, samples=fields[4], epochs=fields[2])
    if opcode == Opcode.EVAL:
        return command_latency(network, opcode, samples=fields[1])
    return command_latency(network, opcode, payload[0] if opcode == Opcode.WRITE_PARAMS
                           else None)


@pytest.mark.parametrize("make", [
    lambda: small_network(mode="standard", weight_rounding="stochastic"),
    lambda: small_network(mode="incremental"),
    narrow_network,
])
def test_load_train_eval_bit_and_cycle_exact(make):
    network = make()
    rng = np.random.default_rng(3)
    tags = iter(rng.permutation(np.arange(1, 256)).tolist())
    x, labels = samples(network, rng, 9)
    commands = [protocol.identify_command(tag=next(tags))] + loads(network, x, labels, tags)
    commands += [protocol.eval_command(0, 9, tag=next(tags)),
                 protocol.train_command(2, seed=77, first_epoch=3, start=1, count=7,
                                        tag=next(tags)),
                 protocol.eval_command(2, 7, tag=next(tags)),
                 protocol.learn_command(network, x[0], network.value_format(network.L).quantise(
                     np.eye(network.layers[-1])[labels[0]]), tag=next(tags)),
                 protocol.train_command(1, seed=1, count=1, tag=next(tags)),     # one sample
                 protocol.train_command(1, seed=2, count=9, tag=next(tags))]
    commands += [protocol.read_params_command(l, tag=next(tags))
                 for l in range(1, network.L + 1)]
    device, results = check_against_model(network, commands, dataset=12, timeout=1_000_000)
    assert device.stored == 9
    for command, (reply, latency) in zip(commands, results):
        assert protocol.parse_reply(reply)[0] is Status.OK
        assert latency == expected_latency(network, command), Opcode(command[1]).name


def test_errors_and_empty_memory():
    """Every error of the dataset commands, on an empty memory and on one holding 4 samples of
    5: the golden model's reply, and nothing changes (the commands after them agree)."""
    network = small_network()
    rng = np.random.default_rng(4)
    x, labels = samples(network, rng, 4)
    tags = iter(range(1, 256))
    commands = [protocol.train_command(1, count=1, tag=next(tags)),
                protocol.eval_command(0, 1, tag=next(tags)),
                protocol.command_frame(Opcode.EVAL, b"", tag=next(tags))]
    commands += loads(network, x, labels, tags)
    commands += [frame for frame, _ in error_cases(network)]
    commands += [protocol.eval_command(0, 4, tag=next(tags)),
                 protocol.load_data_command(network, 2, x[:0], labels[:0], tag=next(tags)),
                 protocol.eval_command(0, 3, tag=next(tags)),         # cut to 2: ERR_ARGUMENT
                 protocol.train_command(1, count=2, tag=next(tags))]
    statuses = [protocol.parse_reply(reply)[0] for reply, _ in
                check_against_model(network, commands, dataset=5, timeout=400_000)[1]]
    assert statuses[:3] == [Status.ERR_NO_DATA, Status.ERR_NO_DATA, Status.ERR_LENGTH]
    assert statuses[-3:] == [Status.OK, Status.ERR_ARGUMENT, Status.OK]


def test_a_build_without_dataset_memory():
    network = small_network()
    commands = [protocol.load_data_command(network, 0, np.zeros((1, 5), int), [0]),
                protocol.train_command(1, count=1), protocol.eval_command(0, 1)]
    for reply, _ in check_against_model(network, commands)[1]:
        assert protocol.parse_reply(reply)[0] is Status.ERR_OPCODE
