"""Plain backpropagation in float64: the reference PC is compared with.

Loss: ``1/2 * sum ||target - x_L||^2`` over the batch, with the same topology and activations
(``f_l`` applied to ``x_l`` before ``W_{l+1}``; the output ``x_L`` has no activation).
"""

import numpy as np

from .golden.arith import FloatArith

__all__ = ["forward", "gradients", "sgd_step", "graph_gradients"]


def forward(network, weights, biases, inputs, arith=None):
    """Layer values ``[x_0, ..., x_L]`` for a batch of inputs. ``arith``: the float arithmetic
    to use (default ``FloatArith(network)``; e.g. a damaged one, :mod:`pchw.faults`)."""
    a = arith or FloatArith(network)
    x = [a.input(np.atleast_2d(np.asarray(inputs, dtype=np.float64)))]
    for l in range(1, network.L + 1):
        x.append(a.mu(l, weights[l - 1], biases[l - 1], a.act(l - 1, x[l - 1])))
    return x


def gradients(network, weights, biases, inputs, targets, arith=None):
    """``(dLoss/dW_l, dLoss/db_l)`` for ``l = 1..L``, summed over the batch, and the loss."""
    a = arith or FloatArith(network)
    x = forward(network, weights, biases, inputs, a)
    L = network.L
    delta = x[L] - a.target(np.atleast_2d(targets))  # dLoss/dx_L
    loss = 0.5 * float(np.sum(delta ** 2))
    grads_w, grads_b = [None] * L, [None] * L
    for l in range(L, 0, -1):
        grads_w[l - 1] = delta.T @ a.act(l - 1, x[l - 1])
        grads_b[l - 1] = delta.sum(axis=0)
        if l > 1:
            delta = a.gate(l - 1, x[l - 1], delta @ weights[l - 1])
    return grads_w, grads_b, loss


def sgd_step(network, weights, biases, inputs, targets, learning_rate, arith=None):
    """One SGD step in place; returns the loss before the step."""
    gw, gb, loss = gradients(network, weights, biases, inputs, targets, arith)
    for l in range(network.L):
        weights[l] -= learning_rate * gw[l]
        biases[l] -= learning_rate * gb[l]
    return loss


def graph_gradients(graph, params, inputs, targets):
    """Backprop on a :class:`~pchw.graph.Graph` with parameters ``params`` (``{"W<node>": ...,
    "b<node>": ...}``): ``(gradients, loss)``, the gradients a dict like ``params`` summed over
    the batch. The forward pass and the vector-Jacobian products of the ops are the float64
    golden model's (:mod:`pchw.golden.graph`); ``delta_v = f_v'(x_v) sum_c J_c^T delta_c`` in
    reverse topological order, no relaxation."""
    from .golden.graph import FloatGraphModel
    model = FloatGraphModel(graph.with_params(params).with_settings(learning_rate=1.0))
    a = model.arith
    x, phi = model._feedforward(model._input(inputs))
    out = model.N - 1
    delta = [None] * model.N
    delta[out] = x[out] - a.target(np.atleast_2d(targets))
    loss = 0.5 * float(np.sum(delta[out] ** 2))
    received = [[] for _ in range(model.N)]
    for v in range(out, 0, -1):
        if v != out:
            delta[v] = a.gate(v, x[v], a.message_sum(v, received[v]))
        for p, m in model._messages(v, delta[v], phi):
            received[p].append(m)
    grads = {}
    for i in graph.weighted:
        name = graph.nodes[i].name
        _, _, dw, db = model._update(i, delta[i], phi)     # eta = 1: delta phi^T, sum delta
        grads[f"W{name}"], grads[f"b{name}"] = dw, db
    return grads, loss
