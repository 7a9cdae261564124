"""The arithmetic of one predictive-coding network, in float64 and in bit-exact fixed point.

Both classes offer the same operations; :mod:`pchw.golden.model` runs the PC schedule of a
chain on either, :mod:`pchw.golden.graph` that of a graph. Arrays are batched: a layer's vector
is an array of shape ``(batch, n_l)``. Parameters are indexed by weight layer ``l`` = 1..L (a
graph: by weighted node) and passed in as ``W`` (``n_l x n_in``) and ``b``; the input of ``l``
is layer (node) ``network.sources[l]``, ``l - 1`` in a chain. A graph's convolution is this
dense arithmetic on its patches (one exact sum of products per output, one narrowing).
The fixed-point rules are those of ``docs/fixed-point.md``; every narrowing goes through
:mod:`pchw.fixedpoint`.
"""

import numpy as np

from ..fixedpoint import (TABLE_FUNCTIONS, LayerShifts, Saturations, exact_dtype, exact_matmul,
                          product_sum_bits, requantise, round_shift, saturate, stochastic_noise,
                          sum_bits, table_activation, table_gate)

__all__ = ["FloatArith", "FixedArith"]


class FloatArith:
    """float64 predictive coding: the reference the fixed-point model approximates."""

    def __init__(self, network):
        self.network = network
        self.activations = network.activations
        self.src = network.sources
        self.gamma = network.pc.inference_rate
        self.eta = network.pc.learning_rate
        self.saturations = Saturations()     # always empty: floats do not saturate

    def param(self, l, p, kind):
        """A parameter array (``kind`` ``"W"`` or ``"b"``) of layer ``l`` in this arithmetic."""
        return np.array(p, dtype=np.float64)

    def params(self):
        return ([np.array(w, dtype=np.float64) for w in self.network.weights],
                [np.array(b, dtype=np.float64) for b in self.network.biases])

    def value_to_float(self, l, x):
        return np.array(x, dtype=np.float64)

    def param_to_float(self, l, p):
        return np.array(p, dtype=np.float64)

    def input(self, x):
        return np.asarray(x, dtype=np.float64)

    target = input

    def act(self, l, x):
        f = self.activations[l]
        if f.name == "relu":
            return np.maximum(x, 0.0)
        if f.name == "leaky_relu":
            return np.where(x >= 0, x, np.ldexp(x, -f.shift))
        if f.name == "hardtanh":
            return np.clip(x, -1.0, 1.0)
        if f.name in TABLE_FUNCTIONS:
            return TABLE_FUNCTIONS[f.name](x)
        return x

    def gate(self, l, x, message):
        """``f_l'(x) * message``."""
        f = self.activations[l]
        if f.name == "relu":
            return np.where(x > 0, message, 0.0)
        if f.name == "leaky_relu":
            return np.where(x > 0, message, np.ldexp(message, -f.shift))
        if f.name == "hardtanh":
            return np.where((x > -1.0) & (x < 1.0), message, 0.0)
        if f.name == "tanh":
            return (1.0 - np.tanh(x) ** 2) * message
        if f.name == "sigmoid":
            s = TABLE_FUNCTIONS["sigmoid"](x)
            return s * (1.0 - s) * message
        return message

    def mu(self, l, w, b, phi):
        return phi @ w.T + b

    def eps(self, l, x, mu):
        return x - mu

    def message(self, c, w, eps, fold=None, terms=None):
        """``W_c^T eps_c``, the message layer ``c`` sends down to its input (layer ``c - 1`` of a
        chain). ``fold`` (a convolution's) sums the products' rows into the input's shape
        before the narrowing; ``terms`` bounds the products a folded element sums."""
        acc = eps @ w
        return fold(acc) if fold else acc

    def scaled(self, dst, src, acc, log2_scale, quantity, bits=None):
        """``acc * 2**-log2_scale`` from values of ``src`` into ``dst``: a fixed linear map (a
        pool, a flatten, their messages) after its exact sum ``acc``."""
        return np.ldexp(acc, -log2_scale)

    def add(self, v, parents, phis):
        """``sum_p phi_p``: the prediction of an add node ``v``."""
        return sum(phis)

    def message_sum(self, v, messages):
        """The messages node ``v`` receives from its children, summed."""
        return sum(messages)

    def value_update(self, l, x, eps, gated):
        return x + self.gamma * (gated - eps)

    def weight_update(self, l, w, b, eps, phi, step):
        """Hebbian update summed over the batch; returns ``(W', b', dW, db)``."""
        dw = self.eta * (eps.T @ phi)
        db = self.eta * eps.sum(axis=0)
        return w + dw, b + db, dw, db


class FixedArith:
    """Bit-exact fixed-point predictive coding on raw integers. Every narrowing computes in NumPy
    int64 where the formats prove that its accumulator and the shift that follows fit, else in
    Python integers (:func:`~pchw.fixedpoint.exact_dtype`). Saturations are counted in
    ``saturations``."""

    def __init__(self, network):
        self.network = network
        self.activations = network.activations
        self.src = network.sources
        self.vf = [network.value_format(l) for l in range(len(self.src))]
        self.wf = [None if s is None else network.weight_format(l)
                   for l, s in enumerate(self.src)]
        self.g = network.pc.gamma_shift
        self.shifts = [None if s is None else LayerShifts.of(network, l)
                       for l, s in enumerate(self.src)]
        self.stochastic = network.pc.weight_rounding == "stochastic"
        self.seed = network.pc.seed
        self.saturations = Saturations()

    def _count(self, quantity, layer):
        return self.saturations.counter(quantity, layer)

    def params(self):
        """The network's float parameters quantised to the weight formats (saturations counted)."""
        ws = [self.param(l, w, "W") for l, w in enumerate(self.network.weights, start=1)]
        bs = [self.param(l, b, "b") for l, b in enumerate(self.network.biases, start=1)]
        return ws, bs

    def param(self, l, p, kind):
        """A float parameter array (``kind`` ``"W"`` or ``"b"``) of layer ``l`` quantised to its
        weight format (saturations counted)."""
        return self.wf[l].quantise(p, self._count(kind, l))

    def value_to_float(self, l, x):
        return self.vf[l].dequantise(x)

    def param_to_float(self, l, p):
        return self.wf[l].dequantise(p)

    def input(self, x):
        return self.vf[0].quantise(x, self._count("input", 0))

    def target(self, y):
        L = len(self.vf) - 1                 # the output: layer L, a graph's last node
        return self.vf[L].quantise(y, self._count("target", L))

    def act(self, l, x):
        f = self.activations[l]
        if f.name == "relu":
            return np.maximum(x, 0)
        if f.name == "leaky_relu":
            return np.where(x >= 0, x, round_shift(x, f.shift, bits=self.vf[l].width))
        if f.name == "hardtanh":
            return np.clip(x, -(1 << self.vf[l].frac), self.vf[l].one)
        if f.name in TABLE_FUNCTIONS:
            return table_activation(f.name, x, self.vf[l])
        return x

    def gate(self, l, x, message):
        """``f_l'(x) * message``: a select, or a shift for leaky_relu; a multiply by the table's
        slope for tanh and sigmoid."""
        f = self.activations[l]
        if f.name == "relu":
            return np.where(x > 0, message, 0)
        if f.name == "leaky_relu":
            return np.where(x > 0, message, round_shift(message, f.shift,
                                                        bits=self.vf[l].width))
        if f.name == "hardtanh":
            one = 1 << self.vf[l].frac
            return np.where((x > -one) & (x < one), message, 0)
        if f.name in TABLE_FUNCTIONS:
            return table_gate(f.name, x, message, self.vf[l])
        return message

    def mu(self, l, w, b, phi):
        vin, vout, wf = self.vf[self.src[l]], self.vf[l], self.wf[l]
        shift = self.shifts[l].mu
        # The products' sum plus the bias aligned to it (b << v_{l-1}), then the narrowing.
        bits = max(product_sum_bits(vin.width, wf.width, phi.shape[-1]),
                   wf.width + vin.frac) + 1
        dtype = exact_dtype(bits, shift)
        acc = exact_matmul(phi, w.T, vin.width, wf.width, dtype=dtype)
        acc = acc + (np.asarray(b).astype(dtype) << vin.frac)
        return requantise(acc, shift, vout, self._count("mu", l), bits=bits)

    def eps(self, l, x, mu):
        return saturate(x - mu, self.vf[l], self._count("eps", l))

    def message(self, c, w, eps, fold=None, terms=None):
        """``W_c^T eps_c`` into the values of ``c``'s input: one exact sum (``fold``, a
        convolution's, adds up the rows' products into the input's shape first; ``terms``
        bounds the products an element then sums), one narrowing."""
        above, wf, dst = self.vf[c], self.wf[c], self.src[c]
        shift = self.shifts[c].message
        bits = product_sum_bits(above.width, wf.width, terms or eps.shape[-1])
        acc = exact_matmul(eps, w, above.width, wf.width, dtype=exact_dtype(bits, shift))
        if fold:
            acc = fold(acc)
        return requantise(acc, shift, self.vf[dst], self._count("message", dst), bits=bits)

    def scaled(self, dst, src, acc, log2_scale, quantity, bits=None):
        """``acc * 2**-log2_scale``, ``acc`` an exact sum of values of ``src``, narrowed into
        ``dst``'s values: ``requantise(acc, log2_scale + v_src - v_dst)`` (a pool, a flatten,
        their messages). ``bits`` bounds ``acc``."""
        shift = log2_scale + self.vf[src].frac - self.vf[dst].frac
        return requantise(acc, shift, self.vf[dst], self._count(quantity, dst), bits=bits)

    def add(self, v, parents, phis):
        """``sum_p phi_p`` of an add node ``v``: each ``phi_p`` aligned to the finest parent's
        fraction bits ``F`` (exact), the sum narrowed once into ``v``'s values."""
        F = max(self.vf[p].frac for p in parents)
        bits = sum_bits(max(self.vf[p].width + F - self.vf[p].frac for p in parents),
                        len(parents))
        dtype = exact_dtype(bits, F - self.vf[v].frac)
        acc = sum(np.asarray(phi).astype(dtype) << (F - self.vf[p].frac)
                  for p, phi in zip(parents, phis))
        return requantise(acc, F - self.vf[v].frac, self.vf[v], self._count("mu", v), bits=bits)

    def message_sum(self, v, messages):
        """The messages ``v`` receives (each already narrowed into ``v``'s values), summed and
        saturated (one message: itself)."""
        if len(messages) == 1:
            return messages[0]
        return saturate(sum(np.asarray(m, dtype=np.int64) for m in messages), self.vf[v],
                        self._count("message", v))

    def value_update(self, l, x, eps, gated):
        dx = requantise(gated - eps, self.g, self.vf[l], self._count("dx", l),
                        bits=self.vf[l].width + 1)
        return saturate(x + dx, self.vf[l], self._count("x", l))

    def weight_update(self, l, w, b, eps, phi, step):
        """Hebbian update from the batch's summed products; returns ``(W', b', dW, db)``.

        ``step`` (the network's count of weight updates so far) keys the stochastic rounding.
        """
        vout, vin, wf = self.vf[l], self.vf[self.src[l]], self.wf[l]
        n_out, n_in = w.shape
        shift_w, shift_b = self.shifts[l].weight, self.shifts[l].bias
        # Sums over the batch of the products eps_i phi_j and of eps_i.
        bits_w = product_sum_bits(vout.width, vin.width, eps.shape[0])
        bits_b = sum_bits(vout.width, eps.shape[0])
        acc_w = exact_matmul(eps.T, phi, vout.width, vin.width, shift_w)
        acc_b = np.asarray(eps).astype(exact_dtype(bits_b, shift_b)).sum(axis=0)
        noise_w = noise_b = None
        if self.stochastic:
            rows = np.arange(n_out)
            if shift_w > 0:
                noise_w = stochastic_noise(shift_w, self.seed, step, l, rows[:, None],
                                           np.arange(n_in)[None, :])
            if shift_b > 0:
                noise_b = stochastic_noise(shift_b, self.seed, step, l, rows, n_in)
        dw = requantise(acc_w, shift_w, wf, self._count("dW", l), noise_w, bits_w)
        db = requantise(acc_b, shift_b, wf, self._count("db", l), noise_b, bits_b)
        self._count("dW_zero", l)(int(np.count_nonzero((acc_w != 0) & (dw == 0))))
        self._count("db_zero", l)(int(np.count_nonzero((acc_b != 0) & (db == 0))))
        return (saturate(w + dw, wf, self._count("W", l)),
                saturate(b + db, wf, self._count("b", l)), dw, db)
