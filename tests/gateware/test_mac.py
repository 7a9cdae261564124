"""The MAC lane array against exact integer dot products."""

import numpy as np
from amaranth.hdl import signed
from amaranth.sim import Simulator

from pchw.gateware.mac import MacLanes
from pchw.latency import MULTIPLIER_STAGES


def test_row_and_column_passes_are_exact():
    P, n = 3, 7
    dut = MacLanes(P, signed(16), signed(12), signed(10), signed(20), terms=n,
                   col_init=5)
    rng = np.random.default_rng(0)
    W = rng.integers(-2 ** 15, 2 ** 15, (P, n))
    v = rng.integers(-2 ** 11, 2 ** 11, n)
    init = rng.integers(-2 ** 19, 2 ** 19, P)
    E = rng.integers(-2 ** 9, 2 ** 9, (P, n))
    rows, cols = [], []

    async def bench(ctx):
        # Operands in cycle t, the accumulation controls of their products in t + stages.
        S = MULTIPLIER_STAGES
        rows_pass = [dict(first=j == 0, v=int(v[j]), w=[int(W[p, j]) for p in range(P)],
                          e=[0] * P, column=0) for j in range(n)]
        cols_pass = [dict(first=j == 0, v=0, w=[int(W[p, j]) for p in range(P)],
                          e=[int(E[p, j]) for p in range(P)], column=1) for j in range(n)]
        steps = [("row", c) for c in rows_pass] + [("col", c) for c in cols_pass]
        for t in range(len(steps) + S):
            if t < len(steps):
                _, op = steps[t]
                ctx.set(dut.column, op["column"])
                ctx.set(dut.v, op["v"])
                for p in range(P):
                    ctx.set(dut.w[p], op["w"][p])
                    ctx.set(dut.e[p], op["e"][p])
            ctx.set(dut.row_en, 0)
            ctx.set(dut.col_en, 0)
            if t >= S:
                kind, op = steps[t - S]
                ctx.set(dut.first, op["first"])
                ctx.set(dut.row_en if kind == "row" else dut.col_en, 1)
                for p in range(P):
                    ctx.set(dut.init[p], int(init[p]))
            if t == S + n:       # the cycle after the row's last accumulation
                rows.extend(ctx.get(dut.row_sum[p]) for p in range(P))
            await ctx.tick()
        cols.append(ctx.get(dut.col_sum))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert rows == [int(init[p] + W[p] @ v) for p in range(P)]
    assert cols == [5 + int((W * E).sum())]
