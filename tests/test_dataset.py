"""The dataset on the chip: the sample order (pchw.order), LOAD_DATA / TRAIN / EVAL in the golden
device model, and the host's Device.load_data / train / evaluate (issue 13)."""

import numpy as np
import pytest

from pchw import Network, PchwError
from pchw import protocol as p
from pchw.golden import FixedModel
from pchw.host import Device, GoldenTransport
from pchw.order import ROUNDS, epoch_order, order_bits

from .test_protocol import narrow, read_all, reply, small

NETWORKS = [small, narrow]


# -- the order ----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 100, 1437, 4096, 65535])
def test_order_is_a_permutation(n):
    for seed, epoch in ((0, 0), (7, 3), (65535, 65535)):
        order = epoch_order(n, seed, epoch)
        assert np.array_equal(np.sort(order), np.arange(n))
    assert (1 << order_bits(n)) >= n and (n <= 2 or (1 << order_bits(n)) < 2 * n)


def test_order_depends_on_seed_and_epoch():
    orders = {tuple(epoch_order(100, seed, epoch)) for seed in range(3) for epoch in range(3)}
    assert len(orders) == 9
    # Shuffled, not a rotation: consecutive samples rarely stay neighbours.
    order = epoch_order(1000, 1, 0)
    assert np.mean(np.abs(np.diff(order)) == 1) < 0.02
    assert ROUNDS >= 4


# -- the golden device ---------------------------------------------------------------------------

def dataset(net, rng, count):
    f0 = net.value_format(0)
    x = rng.integers(f0.min, f0.max + 1, size=(count, net.layers[0]))
    return x, rng.integers(0, net.layers[-1], size=count)


def load(device, x, labels, first=0):
    net = device.network
    chunk = p.load_chunk(net)
    for at in range(0, len(x), chunk):
        status, payload = reply(device, p.load_data_command(net, first + at, x[at:at + chunk],
                                                            labels[at:at + chunk]))
        assert (status, payload) == (p.Status.OK, b"")


@pytest.mark.parametrize("make", NETWORKS)
def test_train_is_online_learning_in_the_documented_order(make):
    net = make()
    rng = np.random.default_rng(1)
    x, labels = dataset(net, rng, 11)
    device = p.DeviceModel(net, dataset=16)
    load(device, x, labels)
    assert device.stored == 11
    status, _ = reply(device, p.train_command(2, seed=9, first_epoch=5, start=2, count=8))
    assert status is p.Status.OK
    model = FixedModel(net)
    f0, fL = net.value_format(0), net.value_format(net.L)
    target = fL.dequantise(fL.quantise(np.eye(net.layers[-1])))
    for epoch in (5, 6):
        for i in epoch_order(8, 9, epoch) + 2:
            model.learn(f0.dequantise(x[i])[None], target[labels[i]][None])
    assert all(np.array_equal(a, b) for got, want in zip(read_all(device), zip(model.W, model.b))
               for a, b in zip(got, want))
    # EVAL: INFER of every sample, argmax against the label.
    status, payload = reply(device, p.eval_command(0, 11))
    assert status is p.Status.OK
    correct, confusion = p.decode_eval(net, payload)
    predicted = np.argmax(model.infer(f0.dequantise(x)), axis=1)
    assert correct == np.sum(predicted == labels) == np.trace(confusion)
    assert confusion.sum() == 11
    for label, guess in zip(labels, predicted):
        assert confusion[label, guess] > 0


def test_load_data_in_chunks_and_cut():
    net = small()
    rng = np.random.default_rng(2)
    device = p.DeviceModel(net, dataset=40)
    x, labels = dataset(net, rng, 40)
    load(device, x, labels)
    assert device.stored == 40 and np.array_equal(device.data_x, x)
    assert np.array_equal(device.data_labels, labels)
    assert reply(device, p.load_data_command(net, 10, x[:0], labels[:0]))[0] is p.Status.OK
    assert device.stored == 10                                   # cut to 10


def error_cases(net):
    """(frame, status) of every error of the dataset commands on a device holding 4 samples
    of a capacity of 5."""
    rng = np.random.default_rng(3)
    x, labels = dataset(net, rng, 3)
    good = p.load_data_command(net, 4, x[:1], labels[:1])
    S = p.sample_bytes(net)
    _, payload, _ = p.parse_command(good)
    bad_label = bytearray(payload)
    bad_label[p.LOAD_HEADER + S - 1] = net.layers[-1]
    op = p.Opcode
    return [
        (p.command_frame(op.LOAD_DATA, payload[:2]), p.Status.ERR_LENGTH),      # no count
        (p.command_frame(op.LOAD_DATA, payload[:-1]), p.Status.ERR_LENGTH),     # short sample
        (p.command_frame(op.LOAD_DATA, payload + b"\0"), p.Status.ERR_LENGTH),  # long
        (p.load_data_command(net, 5, x[:1], labels[:1]), p.Status.ERR_ARGUMENT),  # a gap
        (p.load_data_command(net, 4, x[:2], labels[:2]), p.Status.ERR_ARGUMENT),  # over 5
        (p.command_frame(op.LOAD_DATA, bytes(bad_label)), p.Status.ERR_ARGUMENT),  # label
        (p.command_frame(op.TRAIN, bytes(9)), p.Status.ERR_LENGTH),
        (p.command_frame(op.TRAIN, bytes(11)), p.Status.ERR_LENGTH),
        (p.train_command(0, count=4), p.Status.ERR_ARGUMENT),                   # no epochs
        (p.train_command(1, count=0), p.Status.ERR_ARGUMENT),                   # no samples
        (p.train_command(1, start=1, count=4), p.Status.ERR_ARGUMENT),          # past stored
        (p.command_frame(op.EVAL, bytes(3)), p.Status.ERR_LENGTH),
        (p.eval_command(0, 0), p.Status.ERR_ARGUMENT),
        (p.eval_command(4, 1), p.Status.ERR_ARGUMENT),
    ]


@pytest.mark.parametrize("make", NETWORKS)
def test_errors_reply_and_change_nothing(make):
    net = make()
    device = p.DeviceModel(net, dataset=5)
    rng = np.random.default_rng(4)
    x, labels = dataset(net, rng, 4)
    # TRAIN and EVAL before any LOAD_DATA: ERR_NO_DATA (after the length check).
    for frame in (p.train_command(1, count=1), p.eval_command(0, 1)):
        status, payload = reply(device, frame)
        assert status is p.Status.ERR_NO_DATA and payload == frame[1:2]
    assert reply(device, p.command_frame(p.Opcode.EVAL, b""))[0] is p.Status.ERR_LENGTH
    load(device, x, labels)
    before = (read_all(device), device.data_x.copy(), device.data_labels.copy(), device.stored)
    for frame, want in error_cases(net):
        status, payload = reply(device, frame)
        assert (status, payload) == (want, frame[1:2]), frame.hex()
    after = (read_all(device), device.data_x, device.data_labels, device.stored)
    assert all(np.array_equal(a, b) for pair in zip(before[0], after[0]) for a, b in zip(*pair))
    assert all(np.array_equal(a, b) for a, b in zip(before[1:], after[1:]))


def test_a_build_without_a_dataset_memory_knows_no_dataset_opcodes():
    net = small()
    device = p.DeviceModel(net)
    for frame in (p.load_data_command(net, 0, np.zeros((1, 5), int), [0]),
                  p.train_command(1, count=1), p.eval_command(0, 1)):
        assert reply(device, frame)[0] is p.Status.ERR_OPCODE
    assert p.decode_identify(reply(device, p.identify_command())[1])[3] == 0
    assert p.decode_identify(reply(p.DeviceModel(net, dataset=300),
                                   p.identify_command())[1])[3] == 300


def test_command_helpers_validate():
    net = small()
    x = np.zeros((p.load_chunk(net) + 1, 5), dtype=int)
    with pytest.raises(PchwError, match="at most"):
        p.load_data_command(net, 0, x, np.zeros(len(x), int))
    with pytest.raises(PchwError, match="classes 0..2"):
        p.load_data_command(net, 0, x[:1], [3])
    with pytest.raises(PchwError, match="16-bit field"):
        p.train_command(70000, count=1)
    with pytest.raises(PchwError, match="0..65535"):
        p.DeviceModel(net, dataset=70000)


# -- the host -----------------------------------------------------------------------------------

def test_device_load_train_evaluate_on_the_golden_device():
    net = Network([4, 6, 3], ["identity", "relu"], init_seed=3)
    rng = np.random.default_rng(5)
    X = rng.uniform(-1, 1, (30, 4))
    labels = rng.integers(0, 3, 30)
    device = Device(GoldenTransport(net, dataset=32), net)
    device.identify()
    assert device.capacity == 32
    assert device.load_data(X, labels) == 30
    device.train(2, count=24, seed=3)
    model = FixedModel(net)
    for epoch in range(2):
        for i in epoch_order(24, 3, epoch):
            model.learn(X[i][None], np.eye(3)[labels[i]][None])
    for l in range(1, net.L + 1):
        W, b = device.read_params(l)
        assert np.array_equal(W, model.float_params()[0][l - 1])
        assert np.array_equal(b, model.float_params()[1][l - 1])
    correct, confusion = device.evaluate(6, start=24)
    assert correct == np.sum(np.argmax(model.infer(X[24:]), axis=1) == labels[24:])
    assert confusion.sum() == 6
    with pytest.raises(PchwError, match="do not fit the device's dataset memory of 32"):
        device.load_data(np.zeros((33, 4)), np.zeros(33, int))
    with pytest.raises(PchwError, match="ERR_ARGUMENT"):
        device.train(1, count=31)


def test_device_without_dataset_memory():
    net = small()
    device = Device(GoldenTransport(net), net)
    with pytest.raises(PchwError, match="no dataset memory for TRAIN: build it with --data-memory"):
        device.train(1, count=1)
