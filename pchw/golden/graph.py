"""The golden models of predictive coding on a computation graph (:class:`pchw.graph.Graph`).

The math is ``docs/pc-math.md`` ("Graphs"): every node ``v`` but the input is predicted from its
parents, ``mu_v = op_v(phi_parents) (+ b_v)``, ``eps_v = x_v - mu_v``; a relaxation moves every
hidden node by ``gamma (-eps_v + f_v'(x_v) sum_c J_c^T eps_c)``, the vector-Jacobian products of
its children's ops; the update of a weighted node is the correlation of its errors with its
input's ``phi``. The op order is :func:`pchw.schedule.learn_phases`, the chain's; the arithmetic
is :mod:`pchw.golden.arith`, the chain's (a dense node *is* a chain's layer, a convolution is the
dense arithmetic on its patches), so a chain described as a graph gives bit-identical results.
"""

import math

import numpy as np

from ..schedule import Op, learn_phases
from .arith import FixedArith, FloatArith
from .model import LearnResult, Snapshot

__all__ = ["GraphModel", "FloatGraphModel", "FixedGraphModel"]


def _span(start, count, stride):
    return slice(start, start + stride * (count - 1) + 1, stride)


def im2col(x, kh, kw, stride, pad):
    """The patches of ``x`` (``B x C x H x W``), zero-padded by ``pad``: an array of shape
    ``(B * H' * W', C * kh * kw)``, rows in ``(b, h', w')`` order, columns in ``(c, i, j)``
    order (a conv weight ``K x C x kh x kw`` reshaped to ``K x (C kh kw)`` multiplies it)."""
    B, C, H, W = x.shape
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = (H + 2 * pad - kh) // stride + 1, (W + 2 * pad - kw) // stride + 1
    cols = np.empty((B, C, kh, kw, Ho, Wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, _span(i, Ho, stride), _span(j, Wo, stride)]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(B * Ho * Wo, C * kh * kw)


def col2im(cols, shape, kh, kw, stride, pad):
    """The transpose of :func:`im2col`: each row's entries added (exactly) back to the input
    positions they came from; an array ``B x C x H x W`` (``shape`` is ``(C, H, W)``)."""
    C, H, W = shape
    Ho, Wo = (H + 2 * pad - kh) // stride + 1, (W + 2 * pad - kw) // stride + 1
    B = cols.shape[0] // (Ho * Wo)
    c = cols.reshape(B, Ho, Wo, C, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    out = np.zeros((B, C, H + 2 * pad, W + 2 * pad), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, _span(i, Ho, stride), _span(j, Wo, stride)] += c[:, :, i, j]
    return out[:, :, pad:pad + H, pad:pad + W]


def _windows(x, node):
    """The pooling windows of ``x``: ``B x C x H' x W' x (kh kw)``."""
    kh, kw = node.kernel
    _, Ho, Wo = node.shape
    return np.stack([x[:, :, _span(i, Ho, node.stride), _span(j, Wo, node.stride)]
                     for i in range(kh) for j in range(kw)], axis=-1)


def _unwindow(parts, shape, node, dtype):
    """The transpose of :func:`_windows`: ``parts[k]`` (``B x C x H' x W'``) added back to the
    positions of window element ``k``."""
    kh, kw = node.kernel
    _, Ho, Wo = node.shape
    out = np.zeros((parts[0].shape[0], *shape), dtype=dtype)
    for k, part in enumerate(parts):
        i, j = divmod(k, kw)
        out[:, :, _span(i, Ho, node.stride), _span(j, Wo, node.stride)] += part
    return out


class GraphModel:
    """A predictive-coding graph with its parameters as the model's state: the interface of
    :class:`pchw.golden.model.Model` (``infer``, ``predict``, ``learn``, ``float_params``,
    ``to_network``, ``updates``, ``saturations``). Values are lists indexed by node (the
    input is node 0, the output the last), each ``(batch, *shape)``; parameters ``W[i]``,
    ``b[i]`` of weighted node ``i`` (None elsewhere)."""

    def __init__(self, graph, arith):
        self.network = self.graph = graph
        self.arith = arith
        arith.saturations.names = {i: n.name for i, n in enumerate(graph.nodes)}
        self.nodes = graph.nodes
        self.N = len(self.nodes)
        self.W, self.b = [None] * self.N, [None] * self.N
        for i in graph.weighted:
            w, b = graph.weight_arrays(i)
            self.W[i], self.b[i] = arith.param(i, w, "W"), arith.param(i, b, "b")
        self.updates = 0

    @property
    def saturations(self):
        return self.arith.saturations

    # -- the ops ------------------------------------------------------------------------------

    def _mu(self, i, phi):
        """``mu_i = op_i(phi of its parents) (+ b_i)``."""
        a, node, parents = self.arith, self.nodes[i], self.graph.parents[i]
        p = parents[0]
        x = phi[p]
        if node.op == "dense":
            return a.mu(i, self.W[i], self.b[i], x)
        if node.op == "conv2d":
            K, Ho, Wo = node.shape
            patches = im2col(x, *node.kernel, node.stride, node.padding)
            out = a.mu(i, self.W[i].reshape(K, -1), self.b[i], patches)
            return out.reshape(-1, Ho, Wo, K).transpose(0, 3, 1, 2)
        width = self.arith.vf[p].width if hasattr(self.arith, "vf") else None
        if node.op == "avgpool":
            window = node.kernel[0] * node.kernel[1]
            acc = _windows(x, node).sum(axis=-1)
            return a.scaled(i, p, acc, window.bit_length() - 1, "mu",
                            bits=width and width + window.bit_length())
        if node.op == "maxpool":
            return a.scaled(i, p, _windows(x, node).max(axis=-1), 0, "mu", bits=width)
        if node.op == "flatten":
            return a.scaled(i, p, x.reshape(len(x), -1), 0, "mu", bits=width)
        return a.add(i, parents, [phi[q] for q in parents])

    def _messages(self, c, eps, phi):
        """``[(p, J_c^T eps_c with respect to phi_p)]`` for the hidden parents ``p`` of node
        ``c`` (the input is clamped: nothing is sent to it), at the ``phi`` its ``mu`` was
        computed from (a max pool's argmax)."""
        a, node, parents = self.arith, self.nodes[c], self.graph.parents[c]
        hidden = [p for p in parents if p != 0]
        if not hidden:
            return []
        p = parents[0]
        width = self.arith.vf[c].width if hasattr(self.arith, "vf") else None
        if node.op == "dense":
            return [(p, a.message(c, self.W[c], eps))]
        if node.op == "conv2d":
            K, kh, kw = node.units, *node.kernel
            shape = self.nodes[p].shape

            def fold(acc):
                return col2im(acc, shape, kh, kw, node.stride, node.padding)
            rows = eps.transpose(0, 2, 3, 1).reshape(-1, K)
            return [(p, a.message(c, self.W[c].reshape(K, -1), rows, fold, K * kh * kw))]
        shape = self.nodes[p].shape
        if node.op in ("avgpool", "maxpool"):
            window = node.kernel[0] * node.kernel[1]
            if node.op == "avgpool":
                parts = [eps] * window
                log2 = window.bit_length() - 1
            else:
                choice = _windows(phi[p], node).argmax(axis=-1)    # the first largest
                parts = [np.where(choice == k, eps, 0) for k in range(window)]
                log2 = 0
            acc = _unwindow(parts, shape, node, eps.dtype)
            overlap = math.ceil(node.kernel[0] / node.stride) * math.ceil(node.kernel[1] /
                                                                          node.stride)
            return [(p, a.scaled(p, c, acc, log2, "message",
                                 bits=width and width + overlap.bit_length()))]
        if node.op == "flatten":
            return [(p, a.scaled(p, c, eps.reshape(len(eps), *shape), 0, "message",
                                 bits=width))]
        return [(q, a.scaled(q, c, eps, 0, "message", bits=width)) for q in hidden]

    def _update(self, i, eps, phi):
        """The weight update of weighted node ``i``: ``(W', b', dW, db)``."""
        a, node = self.arith, self.nodes[i]
        x = phi[self.graph.sources[i]]
        if node.op == "dense":
            return a.weight_update(i, self.W[i], self.b[i], eps, x, self.updates)
        K = node.units
        patches = im2col(x, *node.kernel, node.stride, node.padding)
        rows = eps.transpose(0, 2, 3, 1).reshape(-1, K)
        w, b, dw, db = a.weight_update(i, self.W[i].reshape(K, -1), self.b[i], rows, patches,
                                       self.updates)
        return w.reshape(self.W[i].shape), b, dw.reshape(self.W[i].shape), db

    # -- inference ----------------------------------------------------------------------------

    def _input(self, inputs):
        x = self.arith.input(np.atleast_2d(inputs))
        return x.reshape(len(x), *self.graph.input_shape)

    def _feedforward(self, x0):
        """``x_0 = input``, then ``x_i = mu_i`` in topological order: ``(x, phi)``."""
        a = self.arith
        x, phi = [x0], [a.act(0, x0)]
        for i in range(1, self.N):
            x.append(self._mu(i, phi))
            phi.append(a.act(i, x[i]))
        return x, phi

    def infer(self, inputs):
        """Outputs (floats, ``(batch, n_out)``) for inputs of shape ``(batch, n_in)`` (flat)."""
        x, _ = self._feedforward(self._input(inputs))
        return self.arith.value_to_float(self.N - 1, x[-1])

    def predict(self, inputs):
        return np.argmax(self.infer(inputs), axis=1)

    # -- learning -----------------------------------------------------------------------------

    def learn(self, inputs, targets, trace=False, energy=False):
        """One PC learning step on a batch; a :class:`~pchw.golden.model.LearnResult` whose
        ``dW``, ``db`` list the weighted nodes in order. The ops are those of the chain
        (:func:`pchw.schedule.learn_phases`)."""
        a, N, pc = self.arith, self.N, self.network.pc
        out = N - 1
        fixed = pc.mode == "fixed_prediction"
        x, phi = self._feedforward(self._input(inputs))
        output = a.value_to_float(out, x[out])
        mu = [None] + x[1:]
        x_ff = list(x)
        x[out] = a.target(np.atleast_2d(targets))
        eps = None
        snapshots, energies = [], []
        weighted = self.graph.weighted
        dW = [np.zeros(self.W[i].shape) for i in weighted]
        db = [np.zeros(self.b[i].shape) for i in weighted]

        def update_weights():
            for k, i in enumerate(weighted):
                self.W[i], self.b[i], dw, dbias = self._update(i, eps[i], phi)
                dW[k] += a.param_to_float(i, dw)
                db[k] += a.param_to_float(i, dbias)
            self.updates += 1

        for ops, repeat in learn_phases(pc.mode, pc.inference_steps):
            for _ in range(repeat):
                for op in ops:
                    if op is Op.PREDICT:
                        phi = [a.act(i, x[i]) for i in range(N)]
                        mu = [None] + [self._mu(i, phi) for i in range(1, N)]
                    elif op is Op.ERRORS:
                        eps = [None] + [a.eps(i, x[i], mu[i]) for i in range(1, N)]
                        if trace:
                            snapshots.append(Snapshot([v.copy() for v in x], mu, eps))
                        if energy:
                            energies.append(0.5 * sum(
                                np.sum(a.value_to_float(i, eps[i]).reshape(len(eps[i]), -1)
                                       ** 2, axis=1) for i in range(1, N)))
                    else:
                        if op is Op.RELAX:
                            received = [[] for _ in range(N)]
                            for c in range(1, N):
                                for p, m in self._messages(c, eps[c], phi):
                                    received[p].append(m)
                            x = [x[0]] + [
                                a.value_update(i, x[i], eps[i], a.gate(
                                    i, x_ff[i] if fixed else x[i],
                                    a.message_sum(i, received[i])))
                                for i in range(1, out)] + [x[out]]
                        if op is Op.UPDATE or pc.mode == "incremental":
                            update_weights()
        return LearnResult(output, dW, db, snapshots,
                           np.array(energies).reshape(-1, len(output)) if energy else None)

    # -- parameters ---------------------------------------------------------------------------

    def float_params(self):
        """Current parameters as floats: ``{"W<node>": array, "b<node>": array}``."""
        params = {}
        for i in self.graph.weighted:
            name = self.nodes[i].name
            params[f"W{name}"] = self.arith.param_to_float(i, self.W[i])
            params[f"b{name}"] = self.arith.param_to_float(i, self.b[i])
        return params

    def to_network(self):
        """A :class:`~pchw.graph.Graph` carrying the current parameters."""
        return self.graph.with_params(self.float_params())


class FloatGraphModel(GraphModel):
    """The float64 golden model of a graph."""

    def __init__(self, graph):
        super().__init__(graph, FloatArith(graph))


class FixedGraphModel(GraphModel):
    """The bit-exact fixed-point golden model of a graph."""

    def __init__(self, graph):
        super().__init__(graph, FixedArith(graph))
