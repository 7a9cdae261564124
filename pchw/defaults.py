"""PC settings derived from the network: what ``pchw init`` (and a model import) writes.

:func:`default_settings` and :func:`default_formats` state the rule of ``docs/pc-math.md``
("Defaults"); :func:`with_defaults` applies both:

- ``fixed_prediction`` (the default mode): ``T = L - 1`` and ``gamma = 1``, where the update
  *is* backprop's gradient step (float64; fixed point rounds it).
- ``standard`` and ``incremental``: the relaxation is gradient descent on the energy
  ``F = 1/2 sum ||eps_l||^2`` with step ``gamma``; it diverges once ``gamma`` exceeds
  ``2 / lambda_max`` of the energy's Hessian in the hidden values. :func:`relaxation_bound`
  bounds ``lambda_max`` from the weights; ``gamma`` is the largest power of two with
  ``gamma * bound <= 1/2`` (a factor 4 below divergence: the weights grow while the network
  learns, and the Hessian with them).
- ``T`` (standard): ``L - 2`` steps carry the output error down to the first hidden layer,
  then ``1 / (gamma lambda_min)`` relax the slowest mode by one time constant
  (:func:`slowest_relaxation`; ``lambda_min >= 1`` with one hidden layer, so ``T = 1/gamma +
  L - 2`` there; 0.11-0.25 with two or three). Incremental: ``T = 1/gamma + L - 2``.
- ``eta = 2^-5`` (what backprop learns with at batch 1 on the bundled datasets); standard PC
  with more than one hidden layer: ``4 * 2^-5``, as the relaxed errors give each layer about a
  quarter of backprop's update; in ``incremental`` mode every one of the ``T`` steps updates
  the weights, so ``eta`` is divided by ``T / 2`` (rounded to a power of two): measured, the
  ``T`` updates of a sample add up to about ``T / 2`` backprop steps, as the errors shrink
  while the state relaxes.
- Formats (:func:`default_formats`): Q16.10 values and Q16.12 weights, but Q16.12 values for
  standard PC with more than one hidden layer, whose small relaxation steps (``gamma = 2^-4``
  drops 4 bits of every value update) stop its lower layers at Q16.10. All 16 bits wide: one
  SB_MAC16 operand each.
"""

import math

import numpy as np

from .errors import PchwError
from .fixedpoint import Format
from .network import MAX_INFERENCE_STEPS, MAX_SHIFT, MODES, Formats, PCSettings

__all__ = ["DEFAULT_MODE", "LEARNING_RATE", "relaxation_bound", "slowest_relaxation",
           "default_settings",
           "default_formats", "with_defaults"]

#: The mode ``pchw init`` writes unless told otherwise.
DEFAULT_MODE = "fixed_prediction"
#: The learning rate of one update per sample (backprop's, at batch 1).
LEARNING_RATE = 2.0 ** -5
#: Values of standard PC with more than one hidden layer: 16 bits (one SB_MAC16
#: operand, as the other formats), 12 fraction bits (range -8 .. 8; inputs of the bundled
#: datasets are within -4 .. 4). Everything else: :class:`~pchw.network.Formats`'s Q16.10
#: values and Q16.12 weights.
DEEP_VALUE_FORMAT = Format(16, 12)
#: Standard PC with more than one hidden layer learns at 4 times the rate: relaxed to its
#: slowest mode, each layer's update is about a quarter of backprop's (docs/pc-math.md).
DEEP_STANDARD_ETA_FACTOR = 4


def relaxation_bound(network):
    """An upper bound of the largest eigenvalue of the Hessian of the PC energy with respect to
    the hidden values ``x_1 .. x_{L-1}`` (standard mode, any activation with ``|f'| <= 1``).

    The Hessian is ``J^T J`` (Gauss-Newton; exact between the activations' kinks), ``J`` the
    Jacobian of the errors: ``d eps_l / d x_l = I``, ``d eps_{l+1} / d x_l = -W_{l+1} D_l``.
    Its block row ``l`` has the diagonal block ``I + D_l W_{l+1}^T W_{l+1} D_l`` and off-diagonal
    blocks ``-D_l W_{l+1}^T`` (if layer ``l+1`` is hidden) and ``-W_l D_{l-1}`` (if ``l-1`` is);
    the block Gershgorin bound is the largest row sum of the blocks' spectral norms ``s``:
    ``max_l 1 + s_{l+1}^2 + s_{l+1} [l+1 < L] + s_l [l > 1]``. Returns 1.0 for ``L = 1``.
    """
    s = [None] + [float(np.linalg.norm(np.asarray(w, dtype=np.float64), 2))
                  for w in network.weights]              # s[l] = ||W_l||_2
    L = network.L
    bound = 1.0
    for l in range(1, L):
        row = 1.0 + s[l + 1] ** 2 + (s[l + 1] if l + 1 < L else 0.0) + (s[l] if l > 1 else 0.0)
        bound = max(bound, row)
    return bound


#: Dense eigenvalues up to this many hidden units (a fraction of a second); beyond, a bound.
_DENSE_HIDDEN = 2048


def slowest_relaxation(network):
    """The smallest eigenvalue ``lambda_min`` of the Hessian ``J^T J`` of the PC energy in the
    hidden values (:func:`relaxation_bound`), with every unit active (``D_l = I``): the slowest
    mode of the relaxation decays as ``(1 - gamma lambda_min)^t``. It is at least 1 with one
    hidden layer (``I + W_2^T W_2``); deeper, the chain of hidden layers makes it smaller
    (0.25 for digits 64-32-16-10, 0.11 for breast_cancer 30-16-16-16-2 at initialisation).

    Exact up to :data:`_DENSE_HIDDEN` hidden units; beyond, the lower bound ``1 / ||M||_2^2``
    with ``M`` the matrix of the spectral norms of the blocks of ``J``'s square part's inverse
    (``M_ij = s_{j+1} ... s_i`` for ``i >= j``). Returns 1.0 for ``L <= 1``.
    """
    layers, L = network.layers, network.L
    hidden = layers[1:-1]
    if L <= 1:
        return 1.0
    if L == 2:
        return 1.0 + (0.0 if layers[1] > layers[2] else float(
            np.linalg.svd(np.asarray(network.weights[1], dtype=np.float64),
                          compute_uv=False)[-1]) ** 2)
    if sum(hidden) <= _DENSE_HIDDEN:
        offsets = np.concatenate([[0], np.cumsum(layers[1:])])
        J = np.zeros((sum(layers[1:]), sum(hidden)))      # d(eps_1..eps_L)/d(x_1..x_{L-1})
        for l in range(1, L):
            J[offsets[l - 1]:offsets[l], offsets[l - 1]:offsets[l]] = np.eye(layers[l])
            J[offsets[l]:offsets[l + 1], offsets[l - 1]:offsets[l]] = -np.asarray(
                network.weights[l], dtype=np.float64)
        return float(np.linalg.eigvalsh(J.T @ J)[0])
    s = [float(np.linalg.norm(np.asarray(w, dtype=np.float64), 2)) for w in network.weights]
    H = L - 1
    M = np.array([[np.prod(s[j + 1:i + 1]) if i >= j else 0.0 for j in range(H)]
                  for i in range(H)])                  # s[k] = ||W_{k+1}||_2
    return 1.0 / float(np.linalg.norm(M, 2)) ** 2


def default_settings(network, mode=DEFAULT_MODE):
    """The :class:`~pchw.network.PCSettings` that learn on ``network`` (its layers and its
    current, usually freshly initialised, weights) in ``mode``; see the module docstring."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    L = network.L                   # a graph's: its longest path
    if mode != "fixed_prediction" and not hasattr(network, "layers"):
        raise PchwError(f"{network.source}: the {mode} settings are derived for chains only "
                        "(the bound of the relaxation); set pc.inference_steps and "
                        "pc.inference_rate of the graph in its network.toml")
    if mode == "fixed_prediction":
        return PCSettings(mode=mode, inference_steps=L - 1, inference_rate=1.0,
                          learning_rate=LEARNING_RATE)
    g = min(max(1, math.ceil(math.log2(2.0 * relaxation_bound(network)))), MAX_SHIFT)
    if L <= 1:
        steps = 0
    elif mode == "standard":
        # One time constant of the slowest mode (1/gamma with one hidden layer).
        steps = L - 2 + math.ceil((1 << g) / min(1.0, slowest_relaxation(network)) - 1e-9)
    else:
        steps = (1 << g) + L - 2
    steps = min(steps, MAX_INFERENCE_STEPS)
    eta = LEARNING_RATE
    if mode == "standard" and L > 2:
        eta = LEARNING_RATE * DEEP_STANDARD_ETA_FACTOR
    if mode == "incremental":
        eta = LEARNING_RATE * 2.0 ** -max(0, round(math.log2(steps / 2)))
    return PCSettings(mode=mode, inference_steps=steps, inference_rate=2.0 ** -g,
                      learning_rate=eta)


def default_formats(network, mode=DEFAULT_MODE):
    """The :class:`~pchw.network.Formats` that learn on ``network`` in ``mode``: Q16.12 values
    (:data:`DEEP_VALUE_FORMAT`) for standard PC with more than one hidden layer, else Q16.10
    values; Q16.12 weights (``docs/pc-math.md``, Defaults)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    if mode == "standard" and network.L > 2:
        return Formats(value=DEEP_VALUE_FORMAT)
    return Formats()


def with_defaults(network, mode=DEFAULT_MODE):
    """``network`` with :func:`default_settings` and :func:`default_formats` for ``mode``: what
    ``pchw init`` writes."""
    return network.with_settings(**vars(default_settings(network, mode))).with_formats(
        default_formats(network, mode))
