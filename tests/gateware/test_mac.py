"""The MAC lane array against exact integer dot products."""

import numpy as np
from amaranth.hdl import signed
from amaranth.sim import Simulator

from pchw.gateware.mac import MacLanes


def test_row_and_column_passes_are_exact():
    P, n = 3, 7
    dut = MacLanes(P, signed(16), signed(12), signed(10), signed(20), terms=n)
    rng = np.random.default_rng(0)
    W = rng.integers(-2 ** 15, 2 ** 15, (P, n))
    v = rng.integers(-2 ** 11, 2 ** 11, n)
    init = rng.integers(-2 ** 19, 2 ** 19, P)
    E = rng.integers(-2 ** 9, 2 ** 9, (P, n))
    rows, cols = [], []

    async def bench(ctx):
        # Row pass: lane p accumulates init_p + sum_j W[p, j] v[j].
        ctx.set(dut.row_en, 1)
        for j in range(n):
            ctx.set(dut.first, j == 0)
            ctx.set(dut.v, int(v[j]))
            for p in range(P):
                ctx.set(dut.w[p], int(W[p, j]))
                ctx.set(dut.init[p], int(init[p]))
            if j == n - 1:
                rows.extend(ctx.get(dut.row_sum[p]) for p in range(P))
            await ctx.tick()
        ctx.set(dut.row_en, 0)
        # Column pass: sum over lanes and cycles of W[p, j] E[p, j].
        ctx.set(dut.col_en, 1)
        ctx.set(dut.column, 1)
        for j in range(n):
            ctx.set(dut.first, j == 0)
            for p in range(P):
                ctx.set(dut.w[p], int(W[p, j]))
                ctx.set(dut.e[p], int(E[p, j]))
            if j == n - 1:
                cols.append(ctx.get(dut.col_sum))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert rows == [int(init[p] + W[p] @ v) for p in range(P)]
    assert cols == [int((W * E).sum())]
