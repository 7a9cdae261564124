"""The circuit fixed-point helpers against the golden model's functions, value for value."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from pchw import Activation, Format
from pchw.fixedpoint import requantise as golden_requantise
from pchw.golden.arith import FixedArith
from pchw.gateware import fixed
from pchw.network import Network


def run_comb(inputs, build, vectors, with_module=False):
    """Evaluate the combinational ``build(*signals)`` (``build(m, *signals)`` if
    ``with_module``) for each tuple in ``vectors``."""
    m = Module()
    out = Signal(signed(64))
    m.d.comb += out.eq(build(m, *inputs) if with_module else build(*inputs))
    results = []

    async def bench(ctx):
        for vector in vectors:
            for signal, value in zip(inputs, vector):
                ctx.set(signal, int(value))
            results.append(ctx.get(out))
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("shift", [-3, 0, 1, 5, 13])
@pytest.mark.parametrize("fmt", [Format(8, 4), Format(16, 10), Format(24, 0)])
def test_requantise(shift, fmt):
    acc = Signal(signed(40))
    rng = np.random.default_rng(shift + fmt.width)
    values = np.concatenate([rng.integers(-2 ** 39, 2 ** 39, 300) >> rng.integers(0, 39, 300),
                             [0, 1, -1, 2 ** 39 - 1, -2 ** 39]])
    if shift < 0:
        values >>= 10
    got = run_comb([acc], lambda a: fixed.requantise(a, shift, fmt), [(v,) for v in values])
    assert got == list(golden_requantise(values, shift, fmt))


def test_stochastic_round_shift():
    acc, noise = Signal(signed(30)), Signal(7)
    rng = np.random.default_rng(0)
    values, noises = rng.integers(-2 ** 29, 2 ** 29, 300), rng.integers(0, 2 ** 7, 300)
    got = run_comb([acc, noise], lambda a, n: fixed.requantise(a, 7, Format(20, 4), n),
                   list(zip(values, noises)))
    assert got == list(golden_requantise(values, 7, Format(20, 4), noise=noises))


@pytest.mark.parametrize("act", [Activation("identity"), Activation("relu"),
                                 Activation("leaky_relu", 3), Activation("hardtanh")])
@pytest.mark.parametrize("fmt", [Format(8, 7), Format(12, 6)])
def test_activation_and_gate(act, fmt):
    net = Network([2, 2], [act], formats=None)
    arith = FixedArith(net)
    arith.vf[0] = fmt
    x, msg = Signal(signed(fmt.width)), Signal(signed(fmt.width))
    xs = np.arange(fmt.min, fmt.max + 1, max(1, (fmt.max - fmt.min) // 500))
    msgs = np.random.default_rng(1).integers(fmt.min, fmt.max + 1, len(xs))
    got_f = run_comb([x], lambda v: fixed.activation(act, v, fmt), [(v,) for v in xs])
    got_g = run_comb([x, msg], lambda v, m: fixed.gate(act, v, m, fmt), list(zip(xs, msgs)))
    assert got_f == list(arith.act(0, xs))
    assert got_g == list(arith.gate(0, xs, msgs))


def test_srhash_circuit_matches_golden():
    from amaranth.hdl import Signal
    from pchw.fixedpoint import srhash32
    from pchw.gateware.srhash import srhash32 as srhash_circuit
    step, row, col = Signal(32), Signal(16), Signal(16)
    rng = np.random.default_rng(2)
    vectors = list(zip(rng.integers(0, 2 ** 32, 100), rng.integers(0, 2 ** 16, 100),
                       rng.integers(0, 2 ** 16, 100)))
    got = run_comb([step, row, col], lambda m, s, r, c: srhash_circuit(m, 77, s, 3, r, c),
                   vectors, with_module=True)
    assert got == [int(srhash32(77, s, 3, r, c)) for s, r, c in vectors]
