"""Training loops: PC learning in the golden models, and backprop for comparison."""

import numpy as np

from . import backprop
from .defaults import default_settings
from .golden import energy_rises, make_model

__all__ = ["accuracy", "train_pc", "train_backprop", "epoch_order", "DivergenceGuard"]


def accuracy(predict, x, labels):
    """Fraction of samples whose predicted class (argmax of the output) is the label."""
    return float(np.mean(predict(x) == labels))


def epoch_order(n, epoch, seed):
    """The sample order of one epoch: a permutation fixed by ``(seed, epoch)``."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def _batches(n, epoch, seed, batch_size):
    order = epoch_order(n, epoch, seed)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


class DivergenceGuard:
    """Watches PC training for the two signs of settings that do not learn, and says which
    setting to change (``docs/pc-math.md``, "The divergence guard").

    - Relaxation that raises the energy (``standard`` and ``incremental`` mode; in
      ``fixed_prediction`` mode the relaxation cannot diverge at ``gamma <= 1``): one batch in
      :attr:`EVERY` is learnt with the energy monitor on; if in one epoch more than
      :attr:`FRACTION` of the monitored samples see the energy rise from one step to the next
      by more than :attr:`RISE` of its value before relaxation, gamma is past the stability
      bound of the relaxation.
    - Test accuracy that collapses: more than :attr:`COLLAPSE` below the best earlier epoch,
      and by more than :attr:`SAMPLES` test samples (small test sets move in big steps).

    ``warn(message)`` is called once for each kind of warning.
    """
    EVERY = 16
    RISE = 0.05
    FRACTION = 0.05
    COLLAPSE = 0.05
    SAMPLES = 3

    def __init__(self, network, warn):
        self.pc = network.pc
        self.warn = warn
        self.watch_energy = self.pc.mode != "fixed_prediction" and self.pc.inference_steps > 0
        self.rises = []
        self.unstable_epochs = 0
        self.best = None
        self.warned = set()

    def monitors(self, batch_index):
        """Whether batch number ``batch_index`` of an epoch should record its energy."""
        return self.watch_energy and batch_index % self.EVERY == 0

    def observe(self, energy):
        """Record a monitored batch's :attr:`~pchw.golden.LearnResult.energy`."""
        self.rises.extend(energy_rises(energy, self.pc.inference_steps))

    def _once(self, kind, message):
        if kind not in self.warned:
            self.warned.add(kind)
            self.warn(message)

    def end_epoch(self, epoch, acc, model, test_samples=0):
        """Check the epoch that just ended (``epoch`` counts from 0; ``acc``: test accuracy on
        ``test_samples`` samples; ``model``: the golden model being trained, whose weights the
        advice is derived from)."""
        pc = self.pc
        rises = np.array(self.rises)
        self.rises = []
        if len(rises) and np.mean(rises > self.RISE) > self.FRACTION:
            self.unstable_epochs += 1
            network = model.to_network()
            if hasattr(network, "layers"):      # the bound is derived for chains
                stable = default_settings(network, pc.mode)
                advice = (f"the bound of the current weights asks for pc.inference_rate = "
                          f"{stable.inference_rate:g} with pc.inference_steps = "
                          f"{stable.inference_steps} (docs/pc-math.md, Defaults)")
            else:
                advice = "lower it (and raise pc.inference_steps)"
            self._once("energy", (
                f"epoch {epoch + 1}: relaxation raised the PC energy in "
                f"{np.mean(rises > self.RISE):.0%} of the monitored samples (by up to "
                f"{rises.max():.0%} of its value before relaxation): pc.inference_rate (gamma) "
                f"= {pc.inference_rate:g} is past the stability bound of the relaxation; "
                + advice))
        drop = max(self.COLLAPSE, self.SAMPLES / test_samples if test_samples else 0.0)
        if self.best is not None and acc < self.best[1] - drop:
            if self.unstable_epochs:
                advice = f"lower pc.inference_rate (gamma = {pc.inference_rate:g}; see above)"
            else:
                advice = (f"lower pc.learning_rate (eta = {pc.learning_rate:g}) to "
                          f"{pc.learning_rate / 2:g}")
            self._once("collapse", (
                f"epoch {epoch + 1}: test accuracy fell to {acc:.2%} from {self.best[1]:.2%} "
                f"(epoch {self.best[0] + 1}): {advice}"))
        if self.best is None or acc > self.best[1]:
            self.best = (epoch, acc)


def train_pc(network, data, epochs, batch_size=1, fixed=True, seed=0, progress=None,
             warn=None, step=None):
    """Train ``network`` with PC learning on ``data``; returns ``(model, history)``.

    ``history`` holds the test accuracy after each epoch. ``progress(epoch, accuracy)`` is
    called after each epoch if given, ``step(done, total)`` after each batch of an epoch
    (samples so far of the epoch's; e.g. a :class:`pchw.progress.Progress`). ``warn(message)``,
    if given, turns on the :class:`DivergenceGuard` and receives its warnings.
    """
    model = make_model(network, fixed)
    targets = data.one_hot(data.y_train)
    guard = DivergenceGuard(network, warn) if warn else None
    history = []
    for epoch in range(epochs):
        for i, idx in enumerate(_batches(len(data.x_train), epoch, seed, batch_size)):
            monitor = guard is not None and guard.monitors(i)
            result = model.learn(data.x_train[idx], targets[idx], energy=monitor)
            if monitor:
                guard.observe(result.energy)
            if step:
                step(min((i + 1) * batch_size, len(data.x_train)), len(data.x_train))
        history.append(accuracy(model.predict, data.x_test, data.y_test))
        if progress:
            progress(epoch, history[-1])
        if guard:
            guard.end_epoch(epoch, history[-1], model, len(data.y_test))
    return model, history


def train_backprop(network, data, epochs, batch_size=1, seed=0, progress=None, step=None):
    """Train with float64 SGD backprop, same initialisation, order and learning rate as PC.

    Returns ``(network with the trained parameters, history)`` (a graph's gradients:
    :func:`pchw.backprop.graph_gradients`).
    """
    from .golden.graph import FloatGraphModel
    from .graph import Graph
    if isinstance(network, Graph):
        params = {k: v.copy() for k, v in network.params.items()}
        targets = data.one_hot(data.y_train)
        history = []
        for epoch in range(epochs):
            for i, idx in enumerate(_batches(len(data.x_train), epoch, seed, batch_size)):
                grads, _ = backprop.graph_gradients(network, params, data.x_train[idx],
                                                    targets[idx])
                for key in params:
                    params[key] -= network.pc.learning_rate * grads[key]
                if step:
                    step(min((i + 1) * batch_size, len(data.x_train)), len(data.x_train))
            model = FloatGraphModel(network.with_params(params))
            history.append(accuracy(model.predict, data.x_test, data.y_test))
            if progress:
                progress(epoch, history[-1])
        return network.with_params(params), history
    weights = [w.copy() for w in network.weights]
    biases = [b.copy() for b in network.biases]
    targets = data.one_hot(data.y_train)
    eta = network.pc.learning_rate

    def predict(x):
        return np.argmax(backprop.forward(network, weights, biases, x)[-1], axis=1)

    history = []
    for epoch in range(epochs):
        for i, idx in enumerate(_batches(len(data.x_train), epoch, seed, batch_size)):
            backprop.sgd_step(network, weights, biases, data.x_train[idx], targets[idx], eta)
            if step:
                step(min((i + 1) * batch_size, len(data.x_train)), len(data.x_train))
        history.append(accuracy(predict, data.x_test, data.y_test))
        if progress:
            progress(epoch, history[-1])
    return network.with_params(weights, biases), history
