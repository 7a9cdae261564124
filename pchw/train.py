"""Training loops: PC learning in the golden models, and backprop for comparison."""

import numpy as np

from . import backprop
from .golden import make_model

__all__ = ["accuracy", "train_pc", "train_backprop", "epoch_order"]


def accuracy(predict, x, labels):
    """Fraction of samples whose predicted class (argmax of the output) is the label."""
    return float(np.mean(predict(x) == labels))


def epoch_order(n, epoch, seed):
    """The sample order of one epoch: a permutation fixed by ``(seed, epoch)``."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def _batches(n, epoch, seed, batch_size):
    order = epoch_order(n, epoch, seed)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def train_pc(network, data, epochs, batch_size=1, fixed=True, seed=0, progress=None):
    """Train ``network`` with PC learning on ``data``; returns ``(model, history)``.

    ``history`` holds the test accuracy after each epoch. ``progress(epoch, accuracy)`` is
    called after each epoch if given.
    """
    model = make_model(network, fixed)
    targets = data.one_hot(data.y_train)
    history = []
    for epoch in range(epochs):
        for idx in _batches(len(data.x_train), epoch, seed, batch_size):
            model.learn(data.x_train[idx], targets[idx])
        history.append(accuracy(model.predict, data.x_test, data.y_test))
        if progress:
            progress(epoch, history[-1])
    return model, history


def train_backprop(network, data, epochs, batch_size=1, seed=0, progress=None):
    """Train with float64 SGD backprop, same initialisation, order and learning rate as PC.

    Returns ``(network with the trained parameters, history)``.
    """
    weights = [w.copy() for w in network.weights]
    biases = [b.copy() for b in network.biases]
    targets = data.one_hot(data.y_train)
    eta = network.pc.learning_rate

    def predict(x):
        return np.argmax(backprop.forward(network, weights, biases, x)[-1], axis=1)

    history = []
    for epoch in range(epochs):
        for idx in _batches(len(data.x_train), epoch, seed, batch_size):
            backprop.sgd_step(network, weights, biases, data.x_train[idx], targets[idx], eta)
        history.append(accuracy(predict, data.x_test, data.y_test))
        if progress:
            progress(epoch, history[-1])
    return network.with_params(weights, biases), history
