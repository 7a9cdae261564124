"""The host runtime against the golden device model: the API mirrors the golden model."""

import numpy as np
import pytest

import pchw
from pchw import PchwError, protocol
from pchw.golden import FixedModel
from pchw.host import Device, GoldenTransport


@pytest.fixture
def network():
    return pchw.Network([4, 6, 3], ["identity", "relu"], init_seed=3, lanes=[2, 3],
                        pc=pchw.PCSettings(inference_steps=3, inference_rate=0.5,
                                           learning_rate=2.0 ** -3))


def test_device_mirrors_golden_model(network):
    device, golden = Device(GoldenTransport(network), network), FixedModel(network)
    device.identify()
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.uniform(-1, 1, 4), rng.uniform(-1, 1, 3)
        assert np.array_equal(device.infer(x), golden.infer(x[None])[0])
        assert np.array_equal(device.learn(x, y), golden.learn(x[None], y[None]).output[0])
    W, b = golden.float_params()
    for l in (1, 2):
        got_W, got_b = device.read_params(l)
        assert np.array_equal(got_W, W[l - 1]) and np.array_equal(got_b, b[l - 1])
    device.write_params(2, np.full((3, 6), 0.25), np.zeros(3))
    assert np.all(device.read_params(2)[0] == 0.25)


def test_wrong_bitstream_is_refused(network):
    other = network.with_settings(inference_steps=4)
    with pytest.raises(PchwError, match="runs another network"):
        Device(GoldenTransport(other), network).identify()


def test_error_status_and_timeout_are_one_line_errors(network):
    device = Device(GoldenTransport(network), network, timeout=0.01)
    with pytest.raises(PchwError, match="answered READ_PARAMS with ERR_ARGUMENT"):
        device._exchange(protocol.Opcode.READ_PARAMS, protocol.read_params_command(9))

    class Silent(GoldenTransport):
        def write(self, data):
            pass
    with pytest.raises(PchwError, match="no reply to IDENTIFY within"):
        Device(Silent(network), network, timeout=0.01).identify()


def test_resync_after_a_host_left_mid_frame(network):
    transport = GoldenTransport(network)
    device = Device(transport, network, timeout=0.01)
    before = device.read_params(1)
    transport.write(protocol.learn_command(network, np.zeros(4, dtype=int),
                                           np.zeros(3, dtype=int))[:7])   # cut off
    device.resync()
    device.identify()
    assert all(np.array_equal(a, b) for a, b in zip(device.read_params(1), before))


def test_host_through_simulated_uart_to_board_top():
    """End to end: Device -> UART pins of the simulated board top -> the network, on real iris
    samples, bit for bit with the golden model; garbage on the line and a host that left in the
    middle of a frame leave the weights intact."""
    from pchw.datasets import load_dataset
    from pchw.gateware.board import BoardTop
    from pchw.host import SimulationTransport
    network = pchw.load("models/iris")
    top = BoardTop(network, clock_hz=1_000_000, baud=250_000)
    transport = SimulationTransport(top, 1_000_000, top.divisor)
    device, golden = Device(transport, network, timeout=0.05), FixedModel(network)
    device.identify()
    data = load_dataset("iris")
    targets = data.one_hot(data.y_train)
    for i in range(3):
        assert np.array_equal(device.learn(data.x_train[i], targets[i]),
                              golden.learn(data.x_train[i][None], targets[i][None]).output[0])
        assert np.array_equal(device.infer(data.x_test[i]), golden.infer(data.x_test[i][None])[0])
    transport.write(b"\x13\x37 line noise \xa5\x02")       # garbage, then a frame cut short
    device.resync()
    W, b = golden.float_params()
    for l in (1, 2):
        got_W, got_b = device.read_params(l)
        assert np.array_equal(got_W, W[l - 1]) and np.array_equal(got_b, b[l - 1])
