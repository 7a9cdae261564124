"""The predictive-coding schedule: inference and local learning, on float or fixed arithmetic.

This is the contract every circuit is checked against (``docs/pc-math.md``). The schedule is
written once; :class:`FloatModel` and :class:`FixedModel` only choose the arithmetic.
"""

from dataclasses import dataclass

import numpy as np

from ..schedule import Op, schedule
from .arith import FixedArith, FloatArith

__all__ = ["FloatModel", "FixedModel", "Snapshot", "LearnResult", "energy_rises"]


@dataclass
class Snapshot:
    """The state of every layer when a set of errors is computed.

    ``x[l]``, ``mu[l]``, ``eps[l]`` for ``l = 0..L`` (``mu[0]`` and ``eps[0]`` are None), each of
    shape ``(batch, n_l)``: raw integers for the fixed-point model, floats for the float model.
    """
    x: list
    mu: list
    eps: list


@dataclass
class LearnResult:
    """What one call of :meth:`Model.learn` returns.

    ``output``: the feedforward prediction before the update (floats, ``(batch, n_L)``).
    ``dW``, ``db``: the parameter changes, summed over all updates of the call (floats).
    ``trace``: list of :class:`Snapshot` (empty unless asked for). In ``standard`` and
    ``fixed_prediction`` mode it has ``T + 1`` entries: the errors of each relaxation step,
    then the final errors the weight update uses. In ``incremental`` mode, ``T`` entries (one
    if ``T = 0``). One entry per ``ERRORS`` step of the schedule (:mod:`pchw.schedule`).
    ``energy``: (if asked for, else None) the PC energy ``F = 1/2 sum_l ||eps_l||^2`` of each
    sample (floats, shape ``(batch,)``) at the same points as ``trace``: an array of shape
    ``(len(trace), batch)``. Relaxation that works lowers it step by step
    (:func:`energy_rises` measures by how much it does not).
    """
    output: np.ndarray
    dW: list
    db: list
    trace: list
    energy: np.ndarray = None


def energy_rises(energy, relaxation_steps=None):
    """How much relaxation raised the energy instead of lowering it, per sample.

    ``energy``: :attr:`LearnResult.energy` (shape ``(points, batch)``). ``relaxation_steps``
    (default: all points) limits the measure to the first ``relaxation_steps + 1`` points
    (in ``standard`` and ``fixed_prediction`` mode all ``T + 1`` points are relaxation; in
    ``incremental`` mode the weights change between points too). Returns, per sample, the
    largest rise from one point to the next as a fraction of the energy before relaxation
    (``max_t (F_{t+1} - F_t) / F_0``; 0 if the energy never rises or ``F_0 = 0``). Stable
    relaxation gives 0 in float64 (up to an activation's kinks: a few percent at most) and
    rounding-sized rises in fixed point; a relaxation past its stability bound gives rises
    that grow with every step.
    """
    e = np.asarray(energy, dtype=np.float64)
    if relaxation_steps is not None:
        e = e[:relaxation_steps + 1]
    if len(e) < 2:
        return np.zeros(e.shape[1] if e.ndim == 2 else 0)
    rise = np.max(np.diff(e, axis=0), axis=0)
    return np.where(e[0] > 0, np.maximum(rise, 0.0) / np.where(e[0] > 0, e[0], 1.0), 0.0)


class Model:
    """A predictive-coding network with its parameters as the model's state.

    Parameters live in the arithmetic's representation (raw integers for fixed point) and change
    with every :meth:`learn`. ``updates`` counts weight updates so far (it keys stochastic
    rounding, so it is part of the state that must match the hardware).
    """

    def __init__(self, network, arith):
        self.network = network
        self.arith = arith
        self.L = network.L
        self.W, self.b = arith.params()
        self.updates = 0
        self.schedule = schedule(network)

    @property
    def saturations(self):
        return self.arith.saturations

    # -- inference ----------------------------------------------------------------------------

    def _feedforward(self, x0):
        """``x_0 = input``, then ``x_l = mu_l`` for ``l = 1..L`` in order (the INFER steps)."""
        a = self.arith
        x = [x0]
        for step in self.schedule.steps(learn=False):
            for l in step.layers:
                x.append(a.mu(l, self.W[l - 1], self.b[l - 1], a.act(l - 1, x[l - 1])))
        return x

    def infer(self, inputs):
        """Outputs ``x_L`` (floats, ``(batch, n_L)``) for inputs of shape ``(batch, n_0)``."""
        x = self._feedforward(self.arith.input(np.atleast_2d(inputs)))
        return self.arith.value_to_float(self.L, x[self.L])

    def predict(self, inputs):
        """Class predictions: the index of the largest output."""
        return np.argmax(self.infer(inputs), axis=1)

    # -- learning -----------------------------------------------------------------------------

    def learn(self, inputs, targets, trace=False, energy=False):
        """One PC learning step on a batch (all samples relax together; the weight update is the
        sum over the batch). Returns a :class:`LearnResult`; ``trace`` and ``energy`` ask it to
        record the state and the energy at each relaxation step (no cost when off)."""
        a, L = self.arith, self.L
        fixed = self.network.pc.mode == "fixed_prediction"
        x = self._feedforward(a.input(np.atleast_2d(inputs)))
        output = a.value_to_float(L, x[L])
        # The feedforward set x_l = mu_l: the first errors use that mu (and its phi); with
        # fixed_prediction they stay so (the schedule has no PREDICT step then).
        mu = [None] + x[1:]
        phi = [a.act(l, x[l]) for l in range(L)]
        x_ff = list(x)
        x[L] = a.target(np.atleast_2d(targets))
        eps = None
        snapshots, energies = [], []
        dW = [np.zeros_like(w, dtype=np.float64) for w in self.W]
        db = [np.zeros_like(b, dtype=np.float64) for b in self.b]

        def update_weights():
            for l in range(1, L + 1):
                w, b, dw, dbias = a.weight_update(l, self.W[l - 1], self.b[l - 1], eps[l],
                                                  phi[l - 1], self.updates)
                self.W[l - 1], self.b[l - 1] = w, b
                dW[l - 1] += a.param_to_float(l, dw)
                db[l - 1] += a.param_to_float(l, dbias)
            self.updates += 1

        for step in self.schedule.steps(learn=True):     # pchw.schedule: as the core runs
            if step.op is Op.PREDICT:
                phi = [a.act(l, x[l]) for l in range(L)]
                mu = [None] + [a.mu(l, self.W[l - 1], self.b[l - 1], phi[l - 1])
                               for l in range(1, L + 1)]
            elif step.op is Op.ERRORS:
                eps = [None] + [a.eps(l, x[l], mu[l]) for l in range(1, L + 1)]
                if trace:
                    snapshots.append(Snapshot([v.copy() for v in x], mu, eps))
                if energy:
                    energies.append(0.5 * sum(np.sum(a.value_to_float(l, eps[l]) ** 2, axis=1)
                                              for l in range(1, L + 1)))
            elif step.op is Op.RELAX:
                # All hidden layers update at once, each from its own error and the message
                # from the layer above (computed with the weights before this step's update).
                x = [x[0]] + [a.value_update(l, x[l], eps[l],
                                             a.gate(l, x_ff[l] if fixed else x[l],
                                                    a.message(l + 1, self.W[l], eps[l + 1])))
                              for l in range(1, L)] + [x[L]]
                if step.updates_weights:        # incremental: from this step's errors and phi
                    update_weights()
            elif step.op is Op.UPDATE:
                update_weights()
        return LearnResult(output, dW, db, snapshots,
                           np.array(energies).reshape(-1, len(output)) if energy else None)

    # -- parameters ---------------------------------------------------------------------------

    def float_params(self):
        """Current parameters as floats: ``(weights, biases)``."""
        a = self.arith
        return ([a.param_to_float(l, w) for l, w in enumerate(self.W, start=1)],
                [a.param_to_float(l, b) for l, b in enumerate(self.b, start=1)])

    def to_network(self):
        """A :class:`~pchw.network.Network` carrying the current parameters."""
        return self.network.with_params(*self.float_params())


class FloatModel(Model):
    """The float64 golden model."""

    def __init__(self, network):
        super().__init__(network, FloatArith(network))


class FixedModel(Model):
    """The bit-exact fixed-point golden model (the hardware's contract)."""

    def __init__(self, network):
        super().__init__(network, FixedArith(network))
