"""The network core against the golden model: every traced state, the parameters after each
learning step, the prediction, and the cycle counts of pchw.latency, in amaranth.sim."""

import numpy as np
import pytest
from amaranth.sim import Simulator

import pchw
from pchw import Format, Formats, Network, PCSettings
from pchw.gateware.core import CoreOp, PCCore
from pchw.golden import FixedModel
from pchw.latency import core_infer_cycles, core_learn_cycles


class CoreDriver:
    """Drives a PCCore from an amaranth.sim testbench context."""

    def __init__(self, ctx, core, network):
        self.ctx, self.core, self.net = ctx, core, network

    async def write_x(self, layer_select, raw):
        ctx, core = self.ctx, self.core
        ctx.set(core.x_layer, layer_select)
        ctx.set(core.x_we, 1)
        for j, v in enumerate(raw):
            ctx.set(core.x_addr, j)
            ctx.set(core.x_wdata, int(v))
            await ctx.tick()
        ctx.set(core.x_we, 0)

    def state(self):
        get = self.ctx.get
        units = self.core.layers
        return ([[get(s) for s in u.x] for u in units],
                [None] + [[get(s) for s in u.mu] for u in units[1:]],
                [None] + [[get(s) for s in u.eps] for u in units[1:]])

    async def run(self, op):
        """Start ``op``; returns (busy cycles, states at each errors_ready pulse)."""
        ctx, core = self.ctx, self.core
        ctx.set(core.op, op)
        ctx.set(core.start, 1)
        await ctx.tick()
        ctx.set(core.start, 0)
        cycles, snapshots = 0, []
        while ctx.get(core.busy):
            if ctx.get(core.errors_ready):
                snapshots.append(self.state())
            cycles += 1
            await ctx.tick()
        return cycles, snapshots

    def prediction(self):
        out = []
        for k in range(self.net.layers[-1]):
            self.ctx.set(self.core.y_addr, k)
            out.append(self.ctx.get(self.core.y_data))
        return out

    async def read_params(self, l):
        ctx, core = self.ctx, self.core
        lanes = self.net.lanes[l - 1]
        ctx.set(core.p_layer, l)
        values = []
        for i in range(self.net.layers[l]):
            row = []
            for j in range(self.net.layers[l - 1] + 1):
                ctx.set(core.p_lane, i % lanes)
                ctx.set(core.p_group, i // lanes)
                ctx.set(core.p_col, j)
                await ctx.tick()
                row.append(ctx.get(core.p_rdata))
            values.append(row)
        return values


def check_core(network, samples, steps_checked=None):
    """Run INFER + LEARN on each sample in the core and the golden model; compare everything."""
    core, golden = PCCore(network), FixedModel(network)
    vf0, vfL = network.value_format(0), network.value_format(network.L)
    failures = []

    async def bench(ctx):
        drv = CoreDriver(ctx, core, network)
        for x, y in samples:
            result = golden.learn(x[None], y[None], trace=True)
            await drv.write_x(0, vf0.quantise(x))
            cycles, _ = await drv.run(CoreOp.INFER)
            assert cycles == core_infer_cycles(network)
            assert drv.prediction() == list(vfL.quantise(result.output[0]))
            await drv.write_x(1, vfL.quantise(y))
            cycles, snapshots = await drv.run(CoreOp.LEARN)
            assert cycles == core_learn_cycles(network)
            assert len(snapshots) == len(result.trace)
            for step, (snap, gold) in enumerate(zip(snapshots, result.trace)):
                xs, mus, epss = snap
                for l in range(network.L + 1):
                    assert xs[l] == gold.x[l][0].tolist(), f"x_{l} after step {step}"
                    if l:
                        assert mus[l] == gold.mu[l][0].tolist(), f"mu_{l} after step {step}"
                        assert epss[l] == gold.eps[l][0].tolist(), f"eps_{l} after step {step}"
            for l in range(1, network.L + 1):
                expected = np.concatenate([golden.W[l - 1], golden.b[l - 1][:, None]], axis=1)
                assert await drv.read_params(l) == expected.tolist(), f"W_{l}, b_{l}"
        failures.append(None)     # reached the end

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert failures == [None]


def samples_for(network, count, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return [(rng.uniform(-scale, scale, network.layers[0]),
             rng.uniform(-scale, scale, network.layers[-1])) for _ in range(count)]


CASES = [
    # layers, activations, lanes, mode, T, rounding, formats
    ([3, 4, 2], ["identity", "relu"], [2, 1], "standard", 3, "nearest", None),
    ([5, 7, 3], ["identity", "hardtanh"], [3, 2], "fixed_prediction", 1, "nearest", None),
    ([5, 7, 3], ["relu", {"name": "leaky_relu", "slope": 0.25}], [7, 1], "incremental", 3,
     "stochastic", None),
    ([3, 1, 4, 2], ["identity", "leaky_relu", "relu"], [1, 3, 2], "standard", 4, "stochastic",
     None),
    ([4, 6], ["hardtanh"], [4], "standard", 0, "nearest", None),
    ([4, 6], ["identity"], [5], "incremental", 1, "stochastic", None),
    ([4, 6], ["relu"], [3], "incremental", 0, "nearest", None),      # only the errors
    ([2, 3, 3, 3, 2], ["identity", "relu", "hardtanh", "leaky_relu"], [1, 2, 3, 1],
     "fixed_prediction", 3, "stochastic", None),
    ([3, 5, 2], ["identity", "relu"], [2, 2], "standard", 2, "nearest",
     Formats(Format(8, 4), Format(8, 6))),                              # narrow: saturates
    ([3, 5, 2], ["identity", "hardtanh"], [1, 2], "incremental", 2, "nearest",
     Formats(Format(12, 7), Format(10, 8), {0: Format(8, 7), 2: Format(14, 9)},
             {1: Format(16, 13)})),                                     # per-layer formats
    ([3, 4, 2], ["identity", "relu"], [3, 2], "standard", 2, "stochastic",
     Formats(Format(24, 14), Format(24, 20))),                          # wide
]


@pytest.mark.parametrize("layers, activations, lanes, mode, T, rounding, formats", CASES)
def test_core_matches_golden(layers, activations, lanes, mode, T, rounding, formats):
    network = Network(layers, activations, init_seed=len(layers) + T, lanes=lanes,
                      formats=formats,
                      pc=PCSettings(mode=mode, inference_steps=T, inference_rate=0.5,
                                    learning_rate=2.0 ** -3, weight_rounding=rounding, seed=3))
    scale = 4.0 if formats is not None and formats.value.width == 8 else 1.0
    check_core(network, samples_for(network, 3, seed=T, scale=scale))


def test_narrow_case_really_saturates():
    """The narrow case above exercises saturation (else it would prove nothing about it)."""
    network = Network([3, 5, 2], ["identity", "relu"], init_seed=5, lanes=[2, 2],
                      formats=Formats(Format(8, 4), Format(8, 6)),
                      pc=PCSettings(inference_steps=2, inference_rate=0.5, learning_rate=2.0 ** -3))
    model = FixedModel(network)
    for x, y in samples_for(network, 3, seed=2, scale=4.0):
        model.learn(x[None], y[None])
    assert model.saturations.saturated() > 0


def test_committed_digits_model():
    network = pchw.load("models/digits")
    check_core(network, samples_for(network, 1, seed=0))


def test_core_refuses_more_steps_than_its_counter_holds():
    """The bound a description is validated against (network.MAX_INFERENCE_STEPS) is the one the
    core checks; a Network never holds more, so this bypasses its validation."""
    from dataclasses import replace
    from pchw.network import MAX_INFERENCE_STEPS
    net = Network([2, 2], ["identity"])
    with pytest.raises(pchw.PchwError, match="inference_steps"):
        net.with_settings(inference_steps=MAX_INFERENCE_STEPS + 1)
    net.pc = replace(net.pc, inference_steps=MAX_INFERENCE_STEPS + 1)
    with pytest.raises(ValueError, match="step counter"):
        PCCore(net)


@pytest.mark.parametrize("mode", ["standard", "incremental"])
def test_core_with_one_multiplier_a_lane(mode):
    """hardware.multipliers = 1: each lane's one multiplier serves every op (an incremental
    relaxation visits each column twice, message then update)."""
    network = Network([5, 7, 3], ["identity", "relu"], init_seed=4, lanes=[3, 1],
                      multipliers=1,
                      pc=PCSettings(mode=mode, inference_steps=2, inference_rate=0.5,
                                    learning_rate=2.0 ** -3, weight_rounding="stochastic",
                                    seed=3))
    check_core(network, samples_for(network, 2, seed=1))
