"""The multiplier pool against exact integer dot products."""

import numpy as np
from amaranth.hdl import signed
from amaranth.sim import Simulator

from pchw.gateware.mac import MacLanes
from pchw.latency import MULTIPLIER_STAGES


def test_row_and_column_passes_are_exact():
    """Each multiplier takes its own operands: a row pass gives a sum per multiplier, a column
    pass one sum over all of them."""
    M, n = 3, 7
    dut = MacLanes(M, signed(16), signed(12), signed(20), terms=n, col_init=5)
    rng = np.random.default_rng(0)
    W = rng.integers(-2 ** 15, 2 ** 15, (M, n))
    V = rng.integers(-2 ** 11, 2 ** 11, (M, n))
    init = rng.integers(-2 ** 19, 2 ** 19, M)
    E = rng.integers(-2 ** 11, 2 ** 11, (M, n))
    rows, cols = [], []

    async def bench(ctx):
        # Operands in cycle t, the accumulation controls of their products in t + stages.
        S = MULTIPLIER_STAGES
        steps = [("row", j, V) for j in range(n)] + [("col", j, E) for j in range(n)]
        for t in range(len(steps) + S):
            if t < len(steps):
                _, j, B = steps[t]
                for q in range(M):
                    ctx.set(dut.a[q], int(W[q, j]))
                    ctx.set(dut.b[q], int(B[q, j]))
            ctx.set(dut.row_en, 0)
            ctx.set(dut.col_en, 0)
            if t >= S:
                kind, j, _ = steps[t - S]
                ctx.set(dut.first, j == 0)
                ctx.set(dut.row_en if kind == "row" else dut.col_en, 1)
                for q in range(M):
                    ctx.set(dut.init[q], int(init[q]))
            if t == S + n:       # the cycle after the row's last accumulation
                rows.extend(ctx.get(dut.row_sum[q]) for q in range(M))
            await ctx.tick()
        cols.append(ctx.get(dut.col_sum))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert rows == [int(init[q] + W[q] @ V[q]) for q in range(M)]
    assert cols == [5 + int((W * E).sum())]
