"""Learning-quality measurements: learning curves and the agreement of PC with backprop.

One implementation of each figure, shared by ``pchw report``, the benchmarks (``bench/``) and the
tests: :func:`learning_curves` trains backprop, float PC and fixed-point PC side by side from one
initialisation; :func:`gradient_agreement` is the figure of Millidge, Tschantz & Buckley (2020),
the cosine between the PC weight update and backprop's gradient against the number of relaxation
steps ``T`` (``docs/pc-math.md``).
"""

from dataclasses import dataclass, field

import numpy as np

from .backprop import gradients, graph_gradients
from .golden import FloatModel, make_model
from .network import Network, PCSettings
from .train import train_backprop, train_pc

__all__ = ["cosine", "gradient_agreement", "millidge_setup", "AGREEMENT_STEPS",
           "Curves", "learning_curves"]

#: The relaxation step counts of the agreement figure.
AGREEMENT_STEPS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)


def cosine(a, b):
    """Cosine similarity of two lists of arrays, each list flattened into one vector."""
    a = np.concatenate([np.ravel(v) for v in a])
    b = np.concatenate([np.ravel(v) for v in b])
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def gradient_agreement(network, x, y, steps=AGREEMENT_STEPS):
    """``cosine(PC update, -dLoss/dtheta)`` of all parameters for each ``T`` in ``steps``.

    Float64 PC in ``network``'s mode and inference rate, one learning step on the batch ``x``,
    ``y`` (updates and gradients summed over it). The cosine does not depend on eta.
    """
    from .graph import Graph
    if isinstance(network, Graph):              # dW, db in node order, as the model's
        grads, _ = graph_gradients(network, network.params, x, y)
        names = [network.nodes[i].name for i in network.weighted]
        neg_grad = [-grads[f"W{n}"] for n in names] + [-grads[f"b{n}"] for n in names]
    else:
        grad_w, grad_b, _ = gradients(network, network.weights, network.biases, x, y)
        neg_grad = [-g for g in grad_w + grad_b]
    cosines = []
    for T in steps:
        result = make_model(network.with_settings(inference_steps=T), False).learn(x, y)
        cosines.append(cosine(result.dW + result.db, neg_grad))
    return cosines


def millidge_setup():
    """The synthetic setting of ``docs/pc-math.md``: an 8-16-16-4 relu network, gamma = 2^-3,
    one input and a target 0.1 (standard deviation) away from the prediction.

    Returns ``(network, x, y)``.
    """
    net = Network([8, 16, 16, 4], ["identity", "relu", "relu"], init_seed=5,
                  pc=PCSettings(inference_rate=2.0 ** -3, learning_rate=1.0))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 8))
    y = FloatModel(net).infer(x) + 0.1 * rng.normal(size=(1, 4))
    return net, x, y


@dataclass
class Curves:
    """Test accuracy after each epoch of each training run (``histories``: label -> list), and
    the fixed-point run's model (its saturation counts, its parameters)."""
    epochs: int
    histories: dict = field(default_factory=dict)
    fixed_model: object = None


def learning_curves(network, data, epochs, seed=0, float_settings=None, fixed=True,
                    backprop=True, progress=None, warn=None):
    """Train from ``network``'s parameters with online (batch-1) learning, all runs in the same
    sample order; returns :class:`Curves`.

    Runs: float64 backprop (at the network's eta); float64 PC for each entry ``mode: changes``
    of ``float_settings`` (``changes`` a dict for :meth:`Network.with_settings`; default: the
    network's own mode and settings); and, if ``fixed``, fixed-point PC with the network's
    settings (bit for bit what the chip learns). Labels: ``"backprop float64"``,
    ``"PC <mode> float64"``, ``"PC <mode> fixed point"``. ``progress(label)`` is called before
    each run. ``warn(message)``, if given, receives the PC runs' divergence-guard warnings
    (:class:`pchw.train.DivergenceGuard`), each prefixed with its run's label.
    """
    curves = Curves(epochs)
    say = progress or (lambda label: None)

    def guard(label):
        return (lambda message: warn(f"{label}: {message}")) if warn else None
    if backprop:
        say("backprop float64")
        curves.histories["backprop float64"] = train_backprop(network, data, epochs,
                                                              seed=seed)[1]
    for mode, changes in (float_settings or {network.pc.mode: {}}).items():
        label = f"PC {mode} float64"
        say(label)
        curves.histories[label] = train_pc(network.with_settings(**{"mode": mode, **changes}),
                                           data, epochs, fixed=False, seed=seed,
                                           warn=guard(label))[1]
    if fixed:
        label = f"PC {network.pc.mode} fixed point"
        say(label)
        curves.fixed_model, curves.histories[label] = train_pc(network, data, epochs,
                                                               fixed=True, seed=seed,
                                                               warn=guard(label))
    return curves
