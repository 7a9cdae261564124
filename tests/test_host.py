"""The host runtime against the golden device model: the API mirrors the golden model."""

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import pchw
from pchw import PchwError, protocol
from pchw.golden import FixedModel
from pchw.host import Device, GoldenTransport, Transport


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
    with pytest.raises(PchwError, match=r"no reply to IDENTIFY within .*Device\.resync\(\)"):
        Device(Silent(network), network, timeout=0.01).identify()


class DelayingTransport(Transport):
    """The golden device model whose replies arrive late: reply ``k`` is ready ``delays[k]``
    seconds (of a clock that reads advance) after the command that caused it, and never before
    the reply ahead of it (the device answers in order). Records the tags of replies read."""

    def __init__(self, network, delays=()):
        self.device = protocol.DeviceModel(network)
        self.delays, self.now = list(delays), 0.0
        self.queue, self._received = deque(), bytearray()

    def write(self, data):
        for reply in self.device.feed(bytes(data)):
            delay = self.delays.pop(0) if self.delays else 0.0
            ready = max(self.now + delay, self.queue[-1][0] if self.queue else 0.0)
            self.queue.append((ready, reply))

    def read(self, count, timeout):
        deadline = self.now + timeout
        while len(self._received) < count and self.queue and self.queue[0][0] <= deadline:
            ready, reply = self.queue.popleft()
            self.now = max(self.now, ready)
            self._received += reply
        if len(self._received) < count:
            self.now = deadline
        data = bytes(self._received[:count])
        del self._received[:count]
        return data


def test_a_late_reply_is_never_taken_for_a_fresh_one(network):
    """The reply to a command the host gave up on (a timeout) arrives before the next one's:
    the host discards it by its tag and returns the right result."""
    golden = FixedModel(network)
    x1, x2 = np.full(4, 0.5), np.full(4, -0.25)
    transport = DelayingTransport(network, delays=[0.0, 0.03])
    device = Device(transport, network, timeout=0.02)
    device.identify()
    with pytest.raises(PchwError, match=r"no reply to INFER within 0.02 s.*Device\.resync\(\)"):
        device.infer(x1)
    assert np.array_equal(device.infer(x2), golden.infer(x2[None])[0])
    assert device.stale_replies == 1
    assert not np.array_equal(golden.infer(x1[None]), golden.infer(x2[None]))


def test_a_left_over_reply_is_discarded(network):
    """Replies nobody read (another host's, or one with a tag this host is not awaiting) wait
    in the stream: the next exchange skips them."""
    transport = GoldenTransport(network)
    device = Device(transport, network)
    golden = FixedModel(network)
    x1, x2 = np.full(4, 0.75), np.full(4, -1.0)
    f0 = network.value_format(0)
    tags = [t for t in range(1, 256) if t != device._tag % 255 + 1][:3]    # not the next one
    for tag in tags:
        transport.write(protocol.infer_command(network, f0.quantise(x1), tag=tag))
    transport.write(protocol.read_params_command(9, tag=tags[0]))          # an error reply
    assert np.array_equal(device.infer(x2), golden.infer(x2[None])[0])
    assert device.stale_replies == 4


def test_overrun_of_the_awaited_command_is_an_error(network):
    class Overrun(GoldenTransport):
        """Loses the bytes of every command after its first 7 (a full receive buffer)."""
        def write(self, data):
            for reply in self.device.feed(bytes(data)[:7]) + self.device.overrun():
                self._received += reply
    device = Device(Overrun(network), network, timeout=0.01)
    device.window = protocol.STREAM_WINDOW
    with pytest.raises(PchwError, match="lost input bytes before the reply to LEARN .*resync"):
        device.learn(np.zeros(4), np.zeros(3))
    assert device.overruns == 1


class WindowChecker(GoldenTransport):
    """The golden device, checking that the host keeps to the stream window: at every write,
    the bytes of the outstanding commands after the oldest, and the new ones, fit it."""

    def __init__(self, network):
        super().__init__(network)
        self.outstanding = deque()      # [command bytes, reply bytes] of commands in flight
        self.most_ahead = 0

    def write(self, data):
        ahead = sum(c for c, _ in list(self.outstanding)[1:])
        if self.outstanding:
            ahead += len(data)
            assert ahead <= protocol.STREAM_WINDOW, "the host streamed past the window"
        self.most_ahead = max(self.most_ahead, ahead)
        replies = self.device.feed(bytes(data))
        assert len(replies) == 1
        self.outstanding.append([len(data), len(replies[0])])
        self._received += replies[0]

    def read(self, count, timeout):
        data = super().read(count, timeout)
        left = len(data)
        while left:                     # replies are read in order
            taken = min(left, self.outstanding[0][1])
            self.outstanding[0][1] -= taken
            left -= taken
            if self.outstanding[0][1] == 0:
                self.outstanding.popleft()
        return data


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(1, 40))
def test_streaming_keeps_to_the_window_and_matches_the_golden_model(seed, samples):
    network = pchw.Network([2, 3, 1], ["identity", "relu"], init_seed=3, lanes=[1, 1],
                           pc=pchw.PCSettings(inference_steps=2, inference_rate=0.5,
                                              learning_rate=2.0 ** -3))
    transport = WindowChecker(network)
    device, golden = Device(transport, network), FixedModel(network)
    rng = np.random.default_rng(seed)
    X, Y = rng.uniform(-1, 1, (samples, 2)), rng.uniform(-1, 1, (samples, 1))
    assert np.array_equal(device.learn_many(X, Y), np.concatenate(
        [golden.learn(x[None], y[None]).output for x, y in zip(X, Y)]))
    assert np.array_equal(device.infer_many(X), golden.infer(X))
    assert device.window == protocol.STREAM_WINDOW and device.stale_replies == 0
    # 10-byte INFER, 12-byte LEARN frames: one may go ahead of the oldest, never two.
    assert transport.most_ahead == (12 if samples > 1 else 0)


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


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.005, 0.015, 0.03, 0.1]), min_size=5, max_size=40),
       st.integers(0, 2 ** 32 - 1))
def test_never_a_wrong_answer_whatever_the_delays(delays, seed):
    """Replies late by random amounts, some past the host's timeout: every call either times
    out or returns its own command's result, never another's; each late reply that arrives
    before the next awaited one is discarded and counted."""
    network = pchw.Network([2, 3, 2], ["identity", "identity"], init_seed=5, lanes=[1, 1])
    golden = FixedModel(network)            # (linear: different inputs, different outputs)
    transport = DelayingTransport(network, delays=[0.0] + delays)
    device = Device(transport, network, timeout=0.01)
    device.identify()
    X = np.random.default_rng(seed).uniform(-1, 1, (len(delays), 2))
    timeouts = 0
    for x in X:
        try:
            assert np.array_equal(device.infer(x), golden.infer(x[None])[0])
        except PchwError as error:
            assert "no reply to INFER within" in str(error)
            timeouts += 1
    assert device.stale_replies <= timeouts
    assert timeouts >= sum(d > 0.01 for d in delays[:1])            # the first late one


def test_set_faults_puts_the_golden_damage_on_the_device(network):
    """Device.set_faults: the FAULT commands of a spec (dead units, stuck weights with two
    values in a layer, upsets) make the device run as the damaged golden model, LEARN by LEARN
    and in the weights read back; a normal build refuses in one line."""
    from pchw.faults import FaultSpec, damage, learn_command
    spec = FaultSpec.from_dict({"seed": 5, "dead": [{"layer": 1, "indices": [1]}],
                                "stuck": [{"layer": 1, "fraction": 0.25, "value": 0.5},
                                          {"layer": 1, "fraction": 0.25, "value": -1.0},
                                          {"layer": 2, "fraction": 0.3}],
                                "upsets": {"rate": 1.5}})
    device = Device(GoldenTransport(network, faults=True), network)
    device.identify()
    device.learn(np.ones(4), np.zeros(3))           # the damage comes on top of learnt weights
    golden = FixedModel(network)
    golden.learn(np.ones((1, 4)), np.zeros((1, 3)))
    damage(golden, spec.resolve(network))
    device.set_faults(spec)
    rng = np.random.default_rng(4)
    for _ in range(6):
        x, y = rng.uniform(-1, 1, 4), rng.uniform(-1, 1, 3)
        assert np.array_equal(device.learn(x, y),
                              learn_command(golden, x[None], y[None]).output[0])
    assert golden.faults.commands == 6 and device.transport.device.last_upsets >= 1
    W, b = golden.float_params()
    for l in (1, 2):
        got_W, got_b = device.read_params(l)
        assert np.array_equal(got_W, W[l - 1]) and np.array_equal(got_b, b[l - 1])
    stuck = golden.faults.stuck_mask[0]
    assert set(np.unique(device.read_params(1)[0][stuck])) == {0.5, -1.0}
    with pytest.raises(PchwError, match="no fault injection: build it with --faults"):
        Device(GoldenTransport(network), network).set_faults(spec)
