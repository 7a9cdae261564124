"""An independent, deliberately naive implementation of the fixed-point PC spec.

Written straight from the issue text / docs/pc-math.md with Python integers, Fractions and
loops over neurons, sharing no arithmetic code with pchw.golden (only the stochastic-rounding
hash, which is itself the spec of the noise). Slow: use it on small networks.
"""

import math
from fractions import Fraction

from pchw.fixedpoint import srhash32


def sat(v, fmt):
    lo, hi = -(2 ** (fmt.width - 1)), 2 ** (fmt.width - 1) - 1
    return min(max(v, lo), hi)


def rq(acc, s, fmt, noise=None):
    if s > 0:
        if noise is None:
            v = math.floor(Fraction(acc, 2 ** s) + Fraction(1, 2))
        else:
            v = math.floor(Fraction(acc + noise, 2 ** s))
    else:
        v = acc * 2 ** (-s)
    return sat(v, fmt)


def quant(x, fmt):
    return sat(math.floor(Fraction(x) * 2 ** fmt.frac + Fraction(1, 2)), fmt)


def _table(name):
    """The docs' table: f at -8 + k/16, k = 0..256, times 2^16, rounded half up."""
    f = math.tanh if name == "tanh" else (lambda v: 0.5 * (1.0 + math.tanh(0.5 * v)))
    return [math.floor(Fraction(f(-8 + Fraction(k, 16).__float__())) * 2 ** 16 + Fraction(1, 2))
            for k in range(257)]


def _segment(x, fmt):
    """(k, offset within the segment as a Fraction of it) of raw x, x clamped to [-8, 8]."""
    real = min(max(Fraction(x, 2 ** fmt.frac), Fraction(-8)), Fraction(8))
    k = min(math.floor((real + 8) * 16), 256)
    return k, (real + 8) * 16 - k


def table_act(name, x, fmt):
    t = _table(name)
    k, offset = _segment(x, fmt)
    value = Fraction(t[k]) + ((t[k + 1] - t[k]) * offset if k < 256 else 0)
    return sat(math.floor(value * Fraction(2 ** fmt.frac, 2 ** 16) + Fraction(1, 2)), fmt)


def table_gate(name, x, m, fmt):
    if not -8 * 2 ** fmt.frac <= x < 8 * 2 ** fmt.frac:
        return 0
    t = _table(name)
    k, _ = _segment(x, fmt)
    slope = Fraction(t[k + 1] - t[k], 2 ** 12)          # per unit of x: (dT / 2^16) / (1/16)
    return sat(math.floor(slope * m + Fraction(1, 2)), fmt)


def act(a, x, fmt):
    if a.name in ("tanh", "sigmoid"):
        return table_act(a.name, x, fmt)
    if a.name == "relu":
        return x if x > 0 else 0
    if a.name == "leaky_relu":
        return x if x >= 0 else rq(x, a.shift, fmt)
    if a.name == "hardtanh":
        one = 2 ** fmt.frac
        return min(max(x, -one), min(one, 2 ** (fmt.width - 1) - 1))
    return x


def gate(a, x, m, fmt):
    if a.name in ("tanh", "sigmoid"):
        return table_gate(a.name, x, m, fmt)
    if a.name == "relu":
        return m if x > 0 else 0
    if a.name == "leaky_relu":
        return m if x > 0 else rq(m, a.shift, fmt)
    if a.name == "hardtanh":
        one = 2 ** fmt.frac
        return m if -one < x < one else 0
    return m


def noise_of(shift, seed, step, layer, row, col):
    h = int(srhash32(seed, step, layer, row, col))
    return h % (2 ** shift) if shift <= 32 else h * 2 ** (shift - 32)


class Reference:
    """Fixed-point PC on lists of Python ints (exact at any width: no NumPy integers)."""

    def __init__(self, net):
        self.net = net
        self.L = net.L
        self.vf = [net.value_format(l) for l in range(self.L + 1)]
        self.wf = [None] + [net.weight_format(l) for l in range(1, self.L + 1)]
        self.W = [None] + [[[quant(v, self.wf[l]) for v in row] for row in net.weights[l - 1]]
                           for l in range(1, self.L + 1)]
        self.b = [None] + [[quant(v, self.wf[l]) for v in net.biases[l - 1]]
                           for l in range(1, self.L + 1)]
        self.updates = 0

    def mu(self, l, phi):
        vin, vout, wf = self.vf[l - 1], self.vf[l], self.wf[l]
        return [rq(sum(w * p for w, p in zip(self.W[l][i], phi)) + self.b[l][i] * 2 ** vin.frac,
                   wf.frac + vin.frac - vout.frac, vout) for i in range(len(self.W[l]))]

    def phi(self, l, x):
        return [act(self.net.activations[l], v, self.vf[l]) for v in x]

    def feedforward(self, inputs):
        x = [[quant(v, self.vf[0]) for v in inputs]]
        for l in range(1, self.L + 1):
            x.append(self.mu(l, self.phi(l - 1, x[l - 1])))
        return x

    def infer(self, inputs):
        return self.feedforward(inputs)[self.L]

    def update(self, phis, epss):
        """One weight update from a batch: ``phis[s][l]``, ``epss[s][l]`` of each sample ``s``.
        The products (and errors) are summed over the batch before the one narrowing."""
        pc = self.net.pc
        k = int(round(-math.log2(pc.learning_rate)))
        for l in range(1, self.L + 1):
            vout, vin, wf = self.vf[l], self.vf[l - 1], self.wf[l]
            sw = vout.frac + vin.frac - wf.frac + k
            sb = vout.frac - wf.frac + k
            stoch = pc.weight_rounding == "stochastic"
            for i in range(len(self.W[l])):
                for j in range(len(self.W[l][i])):
                    n = noise_of(sw, pc.seed, self.updates, l, i, j) if stoch and sw > 0 else None
                    acc = sum(eps[l][i] * phi[l - 1][j] for phi, eps in zip(phis, epss))
                    self.W[l][i][j] = sat(self.W[l][i][j] + rq(acc, sw, wf, n), wf)
                n = noise_of(sb, pc.seed, self.updates, l, i, len(self.W[l][i])) \
                    if stoch and sb > 0 else None
                acc = sum(eps[l][i] for eps in epss)
                self.b[l][i] = sat(self.b[l][i] + rq(acc, sb, wf, n), wf)
        self.updates += 1

    def learn(self, inputs, target):
        """One sample. Returns (prediction, trace of (x, mu, eps) snapshots)."""
        predictions, traces = self.learn_batch([inputs], [target])
        return predictions[0], traces[0]

    def learn_batch(self, inputs, targets):
        """One learning step on a batch: each sample relaxes on its own (all with the same
        weights), and each weight update sums over the batch. Returns (predictions, traces),
        one per sample."""
        pc, L = self.net.pc, self.L
        g = int(round(-math.log2(pc.inference_rate)))
        xs = [self.feedforward(v) for v in inputs]
        predictions = [list(x[L]) for x in xs]
        x_ffs = [[list(v) for v in x] for x in xs]
        for x, target in zip(xs, targets):
            x[L] = [quant(v, self.vf[L]) for v in target]
        traces = [[] for _ in xs]

        def errors(x, x_ff, trace):
            if pc.mode == "fixed_prediction":
                phi = [self.phi(l, x_ff[l]) for l in range(L)]
                mu = [None] + [x_ff[l] for l in range(1, L + 1)]
            else:
                phi = [self.phi(l, x[l]) for l in range(L)]
                mu = [None] + [self.mu(l, phi[l - 1]) for l in range(1, L + 1)]
            eps = [None] + [[sat(a - b, self.vf[l]) for a, b in zip(x[l], mu[l])]
                            for l in range(1, L + 1)]
            trace.append(([list(v) for v in x], mu, eps))
            return phi, eps

        def relax(x, x_ff, eps):
            new = [list(v) for v in x]
            for l in range(1, L):
                above, wa = self.vf[l + 1], self.wf[l + 1]
                for j in range(len(x[l])):
                    m = rq(sum(self.W[l + 1][i][j] * eps[l + 1][i] for i in range(len(eps[l + 1]))),
                           above.frac + wa.frac - self.vf[l].frac, self.vf[l])
                    xg = x_ff[l][j] if pc.mode == "fixed_prediction" else x[l][j]
                    gm = gate(self.net.activations[l], xg, m, self.vf[l])
                    new[l][j] = sat(x[l][j] + rq(gm - eps[l][j], g, self.vf[l]), self.vf[l])
            return new

        for _ in range(pc.inference_steps):
            found = [errors(*state) for state in zip(xs, x_ffs, traces)]
            xs = [relax(x, x_ff, eps) for x, x_ff, (_, eps) in zip(xs, x_ffs, found)]
            if pc.mode == "incremental":
                self.update([phi for phi, _ in found], [eps for _, eps in found])
        if pc.mode != "incremental":
            found = [errors(*state) for state in zip(xs, x_ffs, traces)]
            self.update([phi for phi, _ in found], [eps for _, eps in found])
        elif pc.inference_steps == 0:       # the clamped state's errors, which nothing uses
            for state in zip(xs, x_ffs, traces):
                errors(*state)
        return predictions, traces
