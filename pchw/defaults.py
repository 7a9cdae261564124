"""PC settings derived from the network: what ``pchw init`` (and a model import) writes.

One function, :func:`default_settings`, states the rule of ``docs/pc-math.md`` ("Defaults"):

- ``fixed_prediction`` (the default mode): ``T = L - 1`` and ``gamma = 1``, where the update
  *is* backprop's gradient step (float64; fixed point rounds it).
- ``standard`` and ``incremental``: the relaxation is gradient descent on the energy
  ``F = 1/2 sum ||eps_l||^2`` with step ``gamma``; it diverges once ``gamma`` exceeds
  ``2 / lambda_max`` of the energy's Hessian in the hidden values. :func:`relaxation_bound`
  bounds ``lambda_max`` from the weights; ``gamma`` is the largest power of two with
  ``gamma * bound <= 1/2`` (a factor 4 below divergence: the weights grow while the network
  learns, and the Hessian with them). ``T = 1/gamma + L - 2``: ``L - 1`` steps carry the output
  error down to the first hidden layer, and about ``1/gamma`` more relax it by one time
  constant.
- ``eta = 2^-5`` (what backprop learns with at batch 1 on the bundled datasets); in
  ``incremental`` mode every one of the ``T`` steps updates the weights, so ``eta`` is divided
  by ``T / 2`` (rounded to a power of two): measured, the ``T`` updates of a sample add up to
  about ``T / 2`` backprop steps, as the errors shrink while the state relaxes.
"""

import math

import numpy as np

from .errors import PchwError
from .network import MAX_SHIFT, MODES, PCSettings

__all__ = ["DEFAULT_MODE", "LEARNING_RATE", "relaxation_bound", "default_settings"]

#: The mode ``pchw init`` writes unless told otherwise.
DEFAULT_MODE = "fixed_prediction"
#: The learning rate of one update per sample (backprop's, at batch 1).
LEARNING_RATE = 2.0 ** -5


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
    steps = (1 << g) + L - 2 if L > 1 else 0
    eta = LEARNING_RATE
    if mode == "incremental":
        eta = LEARNING_RATE * 2.0 ** -max(0, round(math.log2(steps / 2)))
    return PCSettings(mode=mode, inference_steps=steps, inference_rate=2.0 ** -g,
                      learning_rate=eta)
