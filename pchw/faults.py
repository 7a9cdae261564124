"""Fault injection: dead units, stuck-at weights and single-event upsets, and the recovery
experiment (``pchw faults``). The one statement of the fault model (``docs/faults.md``).

A :class:`FaultSpec` says what is broken (a TOML table, or CLI flags); :meth:`FaultSpec.resolve`
turns it into concrete :class:`Faults` of one network (which units, which weights, from the
seed); :func:`damage` applies them to a golden model (float or fixed point), so every later
inference and learning step runs on the damaged substrate:

- a **dead unit** (layer ``l``, index ``i``) has its value, its error and its outgoing
  prediction stuck at zero: ``x_l[i] = mu_l[i] = eps_l[i] = phi_l[i] = 0`` at every step, so it
  neither predicts the layer above nor is predicted, and learning never moves it;
- a **stuck weight** holds a fixed value (quantised to the weight format) whatever learning
  writes to it;
- **single-event upsets** flip bits of the weight memory (fixed point only): after LEARN command
  ``k`` (counted from 0), ``floor(rate)`` bits, plus one more when ``h(k, 0) / 2**32`` is below
  the fraction of ``rate``, at positions ``(h(k, 2j + 1) * 2**32 + h(k, 2j + 2)) mod B`` for
  ``j = 0, 1, ...``, where ``h(k, j) = srhash32(seed, k, UPSET_TAG, j, 0)`` is the stochastic
  rounding hash (:func:`pchw.fixedpoint.srhash32`) and ``B`` the bits of all parameters, in the
  order layer 1..L, ``W_l`` row by row, then ``b_l``, each word from bit 0 (its lsb) up. Stuck
  weights win over upsets. Positions depend on nothing but the seed and the command count, so
  any lane order or batching of the memory gives the same bits.

The experiment (:func:`recovery`): accuracy intact, just after the damage, and along on-chip PC
learning with the damage in place, against a network of the surviving size trained from scratch
and float backprop fine-tuning of the damaged network.
"""

import math
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import backprop
from .errors import PchwError
from .fixedpoint import srhash32

__all__ = ["FaultSpec", "DeadUnits", "StuckWeights", "Faults", "FaultyArith", "damage",
           "apply_upsets", "upset_positions", "surviving_network", "recovery", "upset_run",
           "on_chip_segment", "grid_task", "plot_recovery", "recovery_figure", "UPSET_TAG"]

#: The ``layer`` field of the hash that places upsets (stochastic rounding uses 1..L).
UPSET_TAG = 0
#: The seed is a field of the hash: 24 bits.
MAX_SEED = (1 << 24) - 1
#: ``--faults`` of the commands that build or serve a circuit.
BUILD_OPTION_HELP = ("a fault-injection build: the FAULT command sets dead units, stuck weights "
                     "and upsets at run time (docs/faults.md, Device.set_faults); a normal build "
                     "has none of its logic")


def _fail(where, message):
    raise PchwError(f"{where}: {message}")


@dataclass(frozen=True)
class DeadUnits:
    """Units of ``layer`` (0..L) that are dead: the ``indices``, or a ``fraction`` of the layer
    chosen from the spec's seed."""
    layer: int
    indices: tuple = None
    fraction: float = None

    def to_dict(self):
        d = {"layer": self.layer}
        if self.indices is not None:
            d["indices"] = list(self.indices)
        else:
            d["fraction"] = self.fraction
        return d


@dataclass(frozen=True)
class StuckWeights:
    """A ``fraction`` of ``W_layer``'s weights, chosen from the spec's seed, stuck at ``value``."""
    layer: int
    fraction: float
    value: float = 0.0

    def to_dict(self):
        return {"layer": self.layer, "fraction": self.fraction, "value": self.value}


def _number(value, where, low, high, integer=False):
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high or \
            (not integer and not math.isfinite(value)):
        _fail(where, f"{value!r} is not {'an integer' if integer else 'a number'} in "
                     f"[{low}, {high}]")
    return value


def _table(d, where, keys):
    if not isinstance(d, dict):
        _fail(where, "must be a table")
    unknown = set(d) - set(keys)
    if unknown:
        _fail(where, f"unexpected key(s) {', '.join(sorted(unknown))}; expected "
                     f"{', '.join(keys)}")


@dataclass(frozen=True)
class FaultSpec:
    """What is broken, independent of a network's weights (see the module docstring).

    ``dead``: :class:`DeadUnits` entries; ``stuck``: :class:`StuckWeights` entries;
    ``upset_rate``: expected bit flips in the weight memory per LEARN command; ``seed``: chooses
    the dead units and stuck weights given as fractions, and places the upsets.
    """
    dead: tuple = ()
    stuck: tuple = ()
    upset_rate: float = 0.0
    seed: int = 0

    @classmethod
    def from_dict(cls, d, where="faults"):
        """From a table (a parsed TOML file): keys ``seed``, ``dead`` (array of tables with
        ``layer`` and ``indices`` or ``fraction``), ``stuck`` (``layer``, ``fraction``,
        ``value``), ``upsets`` (a table with ``rate``)."""
        _table(d, where, ("seed", "dead", "stuck", "upsets"))
        seed = _number(d.get("seed", 0), f"{where}: seed", 0, MAX_SEED, integer=True)
        dead = []
        for i, entry in enumerate(d.get("dead", [])):
            at = f"{where}: dead[{i}]"
            _table(entry, at, ("layer", "indices", "fraction"))
            if "layer" not in entry:
                _fail(at, "missing 'layer'")
            if ("indices" in entry) == ("fraction" in entry):
                _fail(at, "give either 'indices' or 'fraction'")
            layer = _number(entry["layer"], f"{at}.layer", 0, 255, integer=True)
            if "indices" in entry:
                if not isinstance(entry["indices"], list):
                    _fail(f"{at}.indices", "must be a list of unit indices")
                indices = tuple(_number(v, f"{at}.indices", 0, 65535, integer=True)
                                for v in entry["indices"])
                dead.append(DeadUnits(layer, indices=indices))
            else:
                dead.append(DeadUnits(layer, fraction=float(
                    _number(entry["fraction"], f"{at}.fraction", 0, 1))))
        stuck = []
        for i, entry in enumerate(d.get("stuck", [])):
            at = f"{where}: stuck[{i}]"
            _table(entry, at, ("layer", "fraction", "value"))
            for key in ("layer", "fraction"):
                if key not in entry:
                    _fail(at, f"missing '{key}'")
            stuck.append(StuckWeights(
                _number(entry["layer"], f"{at}.layer", 1, 255, integer=True),
                float(_number(entry["fraction"], f"{at}.fraction", 0, 1)),
                float(_number(entry.get("value", 0.0), f"{at}.value", -1e9, 1e9))))
        upsets = d.get("upsets", {})
        _table(upsets, f"{where}: upsets", ("rate",))
        rate = float(_number(upsets.get("rate", 0.0), f"{where}: upsets.rate", 0, 1e6))
        return cls(tuple(dead), tuple(stuck), rate, seed)

    @classmethod
    def load(cls, path):
        """From a TOML file; one-line errors name the file and the field."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PchwError(f"{path}: no such fault specification") from None
        except (OSError, UnicodeDecodeError) as error:
            raise PchwError(f"{path}: cannot read: {error}") from None
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise PchwError(f"{path}: not valid TOML: {error}") from None
        return cls.from_dict(table, str(path))

    def to_dict(self):
        d = {"seed": self.seed}
        if self.dead:
            d["dead"] = [u.to_dict() for u in self.dead]
        if self.stuck:
            d["stuck"] = [s.to_dict() for s in self.stuck]
        if self.upset_rate:
            d["upsets"] = {"rate": self.upset_rate}
        return d

    def combined(self, other):
        """This spec and ``other``'s entries together (``other``'s seed and rate if set)."""
        return FaultSpec(self.dead + other.dead, self.stuck + other.stuck,
                         other.upset_rate or self.upset_rate, other.seed or self.seed)

    def describe(self):
        parts = []
        for u in self.dead:
            what = f"{len(u.indices)} unit(s)" if u.indices is not None else f"{u.fraction:.0%}"
            parts.append(f"{what} of layer {u.layer} dead")
        for s in self.stuck:
            parts.append(f"{s.fraction:.0%} of W_{s.layer} stuck at {s.value:g}")
        if self.upset_rate:
            parts.append(f"{self.upset_rate:g} upsets per LEARN command")
        return ", ".join(parts) or "no faults"

    @staticmethod
    def kill_hidden(network, fraction):
        """Dead units: ``fraction`` of every hidden layer."""
        return tuple(DeadUnits(l, fraction=fraction) for l in range(1, network.L))

    def resolve(self, network):
        """The concrete :class:`Faults` of this spec on ``network``.

        Raises
        ------
        PchwError
            A layer or unit index the network does not have, or a layer left with no unit.
        """
        L = network.L
        dead = [np.zeros(n, dtype=bool) for n in network.layers]
        for i, u in enumerate(self.dead):
            where = f"faults: dead[{i}]"
            if u.layer > L:
                _fail(where, f"layer {u.layer}: the network has layers 0..{L}")
            n = network.layers[u.layer]
            if u.indices is not None:
                bad = [v for v in u.indices if v >= n]
                if bad:
                    _fail(where, f"unit {bad[0]} of layer {u.layer}, which has {n} units")
                dead[u.layer][list(u.indices)] = True
            else:
                count = round(u.fraction * n)
                rng = np.random.default_rng([self.seed, 1, u.layer])
                dead[u.layer][rng.permutation(n)[:count]] = True
        for l in range(L + 1):
            if dead[l].all():
                _fail("faults", f"every unit of layer {l} is dead: nothing is left to learn")
        stuck_mask = [np.zeros((network.layers[l], network.layers[l - 1]), dtype=bool)
                      for l in range(1, L + 1)]
        stuck_value = [np.zeros(m.shape) for m in stuck_mask]
        for i, s in enumerate(self.stuck):
            if s.layer > L:
                _fail(f"faults: stuck[{i}]", f"layer {s.layer}: the network has weight layers "
                                             f"1..{L}")
            mask = stuck_mask[s.layer - 1]
            count = round(s.fraction * mask.size)
            rng = np.random.default_rng([self.seed, 2, s.layer, i])
            chosen = np.zeros(mask.size, dtype=bool)
            chosen[rng.permutation(mask.size)[:count]] = True
            chosen = chosen.reshape(mask.shape)
            mask |= chosen
            stuck_value[s.layer - 1][chosen] = s.value
        return Faults(self, network.layers, dead, stuck_mask, stuck_value)


@dataclass
class Faults:
    """A :class:`FaultSpec` resolved on one network: ``dead[l]`` (bool, ``n_l``) for l = 0..L,
    ``stuck_mask[l-1]`` / ``stuck_value[l-1]`` (``n_l x n_{l-1}``, values as floats) for
    l = 1..L."""
    spec: FaultSpec
    layers: list
    dead: list
    stuck_mask: list
    stuck_value: list
    commands: int = field(default=0)    # LEARN commands so far (keys the upsets)
    last_upsets: int = field(default=0)  # bits the last LEARN command's upsets flipped

    @property
    def any_dead(self):
        return any(d.any() for d in self.dead)

    def surviving_layers(self):
        return [int(n - d.sum()) for n, d in zip(self.layers, self.dead)]


class FaultyArith:
    """An arithmetic (:class:`~pchw.golden.arith.FixedArith` or ``FloatArith``) on a damaged
    substrate: every operation of the base, with dead units' results forced to zero and stuck
    weights held. The PC schedule (:mod:`pchw.golden.model`) runs on it unchanged."""

    def __init__(self, base, faults, fixed):
        self.base, self.faults, self.fixed = base, faults, fixed
        net = base.network
        self.stuck = []
        for l in range(1, len(faults.layers)):
            value = faults.stuck_value[l - 1]
            if fixed:
                value = net.weight_format(l).quantise(value)
            self.stuck.append(value)

    def __getattr__(self, name):
        return getattr(self.base, name)

    def _kill(self, l, v):
        dead = self.faults.dead[l]
        return np.where(dead, 0, v).astype(v.dtype, copy=False) if dead.any() else v

    def hold(self, l, w):
        """``W_l`` with its stuck weights at their stuck values."""
        mask = self.faults.stuck_mask[l - 1]
        return np.where(mask, self.stuck[l - 1], w).astype(w.dtype, copy=False) \
            if mask.any() else w

    def params(self):
        W, b = self.base.params()
        return [self.hold(l, w) for l, w in enumerate(W, start=1)], b

    def input(self, x):
        return self._kill(0, self.base.input(x))

    def target(self, y):
        return self._kill(len(self.faults.layers) - 1, self.base.target(y))

    def act(self, l, x):
        return self._kill(l, self.base.act(l, x))

    def gate(self, l, x, message):
        return self._kill(l, self.base.gate(l, x, message))

    def mu(self, l, w, b, phi):
        return self._kill(l, self.base.mu(l, w, b, phi))

    def eps(self, l, x, mu):
        return self._kill(l, self.base.eps(l, x, mu))

    def value_update(self, l, x, eps, gated):
        return self._kill(l, self.base.value_update(l, x, eps, gated))

    def weight_update(self, l, w, b, eps, phi, step):
        w2, b2, dw, db = self.base.weight_update(l, w, b, eps, phi, step)
        mask = self.faults.stuck_mask[l - 1]
        if mask.any():
            w2 = self.hold(l, w2)
            dw = np.where(mask, 0, dw).astype(dw.dtype, copy=False)
        return w2, b2, dw, db


def damage(model, faults):
    """Put ``model`` (a golden model, float or fixed) on the damaged substrate, in place: its
    arithmetic becomes a :class:`FaultyArith` and its stuck weights take their values now.
    Returns the model."""
    from .golden import FixedModel
    if isinstance(model.arith, FaultyArith):
        raise PchwError("the model is already damaged")
    fixed = isinstance(model, FixedModel)
    if faults.spec.upset_rate and not fixed:
        raise PchwError("upsets flip bits of the fixed-point weight memory: use the fixed-point "
                        "model")
    model.arith = FaultyArith(model.arith, faults, fixed)
    model.W = [model.arith.hold(l, w) for l, w in enumerate(model.W, start=1)]
    model.faults = faults
    return model


def _word_widths(network):
    return [network.weight_format(l).width for l in range(1, network.L + 1)]


def parameter_bits(network):
    """``B``: bits of the weight memory (all ``W_l`` and ``b_l``)."""
    return sum(network.layers[l] * (network.layers[l - 1] + 1) * w
               for l, w in zip(range(1, network.L + 1), _word_widths(network)))


def upset_positions(spec, command, total_bits):
    """The bit positions (in ``0..total_bits-1``) flipped after LEARN command ``command``."""
    rate = spec.upset_rate
    count = int(rate)
    if rate - count and int(srhash32(spec.seed, command, UPSET_TAG, 0, 0)) < \
            (rate - count) * 2.0 ** 32:
        count += 1
    j = np.arange(count, dtype=np.int64)
    hi = srhash32(spec.seed, command, UPSET_TAG, 2 * j + 1, 0).astype(object)
    lo = srhash32(spec.seed, command, UPSET_TAG, 2 * j + 2, 0).astype(object)
    return [int(p) for p in (hi * (1 << 32) + lo) % total_bits]


def apply_upsets(model, command):
    """Flip the bits :func:`upset_positions` gives for LEARN command ``command`` in the weight
    memory of a damaged fixed-point ``model``; stuck weights stay stuck. Returns the number of
    bits flipped."""
    faults, network = model.faults, model.network
    positions = upset_positions(faults.spec, command, parameter_bits(network))
    for p in positions:
        for l in range(1, network.L + 1):
            width = network.weight_format(l).width
            n_out, n_in = network.layers[l], network.layers[l - 1]
            size = n_out * (n_in + 1) * width
            if p >= size:
                p -= size
                continue
            word, bit = divmod(p, width)
            target = model.W[l - 1].reshape(-1) if word < n_out * n_in else model.b[l - 1]
            index = word if word < n_out * n_in else word - n_out * n_in
            raw = int(target[index]) & ((1 << width) - 1)
            raw ^= 1 << bit
            target[index] = raw - (1 << width) if raw >> (width - 1) else raw
            break
    model.W = [model.arith.hold(l, w) for l, w in enumerate(model.W, start=1)]
    return len(positions)


def learn_command(model, x, y, learn=True):
    """One LEARN command slot on a damaged model: the PC learning step (unless ``learn`` is
    False: on-chip learning off, time passes), then the command's upsets."""
    result = model.learn(x, y) if learn else None
    model.faults.last_upsets = apply_upsets(model, model.faults.commands) \
        if model.faults.spec.upset_rate else 0
    model.faults.commands += 1
    return result


def surviving_network(network, faults, init_seed=0):
    """A fresh network of the surviving size (the dead units removed), with the same
    activations, formats and PC settings, randomly initialised from ``init_seed``."""
    from .network import Formats, Network
    layers = faults.surviving_layers()
    formats = network.formats
    return Network(layers, network.activations, pc=network.pc, formats=Formats(
        formats.value, formats.weight, dict(formats.value_overrides),
        dict(formats.weight_overrides)), name=f"{network.name or 'network'}-surviving",
        dataset=network.dataset, init_seed=init_seed)


def _accuracy(predict, data):
    from .train import accuracy
    return accuracy(predict, data.x_test, data.y_test)


def _orders(n, epochs, seed):
    from .train import epoch_order
    return [epoch_order(n, epoch, seed) for epoch in range(epochs)]


def _curve(model, data, epochs, points_per_epoch, seed, learn=True, end_epoch=None):
    """Online LEARN command slots on the damaged ``model`` over ``epochs`` of the training split
    (``pchw train``'s order), test accuracy ``points_per_epoch`` times an epoch: the curve
    ``[(epochs, accuracy), ...]`` from the accuracy before the first command.
    ``end_epoch(epoch, accuracy)`` is called at the end of each epoch if given."""
    targets = data.one_hot(data.y_train)
    n = len(data.x_train)
    marks = {round(n * k / points_per_epoch) for k in range(1, points_per_epoch + 1)}
    curve = [(0.0, _accuracy(model.predict, data))]
    for epoch, order in enumerate(_orders(n, epochs, seed)):
        for i, idx in enumerate(order, start=1):
            learn_command(model, data.x_train[idx:idx + 1], targets[idx:idx + 1], learn)
            if i in marks:
                curve.append((epoch + i / n, _accuracy(model.predict, data)))
        if end_epoch:
            end_epoch(epoch, curve[-1][1])
    return curve


def recovery(network, data, spec, *, epochs=2, points_per_epoch=4, reference_epochs=None,
             seed=0, progress=None):
    """The recovery experiment; returns a JSON-ready record.

    ``accuracy_intact`` (the fixed-point model as given), ``accuracy_damaged`` (the faults
    applied, before any learning), the recovery ``curve`` over ``epochs`` of online on-chip PC
    learning with the faults in place (test accuracy ``points_per_epoch`` times an epoch;
    ``accuracy_recovered`` at the end, ``best_recovered`` the best point), and the references:
    ``accuracy_reference_scratch`` (a network of the surviving size trained from scratch with
    the same PC settings in fixed point for ``reference_epochs``, default ``max(30, epochs)``)
    and ``accuracy_reference_backprop`` (float64 backprop fine-tuning of the damaged network,
    same faults but the upsets, order and learning rate, for ``epochs``), each with its curve.
    """
    from .golden import FixedModel
    from .train import train_pc
    say = progress or (lambda text: None)
    faults = spec.resolve(network)
    targets = data.one_hot(data.y_train)
    n = len(data.x_train)
    intact = _accuracy(FixedModel(network).predict, data)
    model = damage(FixedModel(network), faults)
    damaged = _accuracy(model.predict, data)
    say(f"accuracy intact {intact:.2%}; damaged ({spec.describe()}) {damaged:.2%}")
    curve = _curve(model, data, epochs, points_per_epoch, seed, end_epoch=lambda epoch, acc: say(
        f"  on-chip PC learning, epoch {epoch + 1}/{epochs}: {acc:.2%}"))

    ref_epochs = reference_epochs or max(30, epochs)
    scratch_net = surviving_network(network, faults, init_seed=seed)
    _, scratch_history = train_pc(scratch_net, data, ref_epochs, fixed=True, seed=seed)
    say(f"  reference: {'-'.join(map(str, scratch_net.layers))} from scratch, {ref_epochs} "
        f"epochs of PC in fixed point: {scratch_history[-1]:.2%}")

    # float backprop fine-tuning of the damaged network (same faults, masks in the backward
    # pass; no upsets: they flip bits of the fixed-point weight memory)
    from .golden import FloatModel
    float_model = damage(FloatModel(network),
                         FaultSpec(spec.dead, spec.stuck, 0.0, spec.seed).resolve(network))
    arith = float_model.arith
    weights = [w.copy() for w in float_model.W]
    biases = [b.copy() for b in float_model.b]

    def bp_predict(x):
        return np.argmax(backprop.forward(network, weights, biases, x, arith=arith)[-1], axis=1)

    bp_curve = [(0.0, _accuracy(bp_predict, data))]
    for epoch, order in enumerate(_orders(n, epochs, seed)):
        for idx in order:
            backprop.sgd_step(network, weights, biases, data.x_train[idx:idx + 1],
                              targets[idx:idx + 1], network.pc.learning_rate, arith=arith)
            for l in range(1, network.L + 1):
                weights[l - 1] = arith.hold(l, weights[l - 1])
        bp_curve.append((epoch + 1.0, _accuracy(bp_predict, data)))
    say(f"  reference: float backprop fine-tuning of the damaged network, {epochs} epochs: "
        f"{bp_curve[-1][1]:.2%}")
    return {
        "fault": spec.to_dict(), "description": spec.describe(),
        "surviving_layers": faults.surviving_layers(), "epochs": epochs,
        "accuracy_intact": intact, "accuracy_damaged": damaged,
        "accuracy_recovered": curve[-1][1], "best_recovered": max(a for _, a in curve),
        "curve": curve,
        "reference_epochs": ref_epochs,
        "accuracy_reference_scratch": scratch_history[-1],
        "reference_scratch_curve": list(enumerate(scratch_history, start=1)),
        "accuracy_reference_backprop": bp_curve[-1][1],
        "reference_backprop_curve": bp_curve,
    }


def on_chip_segment(network, data, spec, count, *, simulator="verilator", seed=0):
    """The first ``count`` LEARN commands of :func:`recovery` (same order) on the simulated
    circuit of a fault-injection build: IDENTIFY, the FAULT commands of ``spec``
    (:func:`pchw.protocol.fault_commands`: dead units, upsets, stuck weights), the LEARN
    commands, READ_PARAMS of every layer, each reply compared byte for byte (and each latency
    cycle for cycle) with the golden device model (:mod:`pchw.sim.network_tb`), whose state
    after the FAULT commands is the damaged golden model's (:func:`damage`). Returns the
    testbench's summary (``mismatches`` 0, or :class:`~pchw.sim.runner.SimulationFailed` is
    raised) with the ``upsets`` the commands flipped."""
    from . import protocol
    from .sim.network import run
    faults = spec.resolve(network)
    f0, fL = network.value_format(0), network.value_format(network.L)
    targets = data.one_hot(data.y_train)
    order = np.concatenate(_orders(len(data.x_train), -(-count // len(data.x_train)), seed))
    setup = protocol.fault_commands(network, faults)
    commands = [protocol.identify_command()] + setup
    commands += [protocol.learn_command(network, f0.quantise(data.x_train[i]),
                                        fL.quantise(targets[i])) for i in order[:count]]
    commands += [protocol.read_params_command(l) for l in range(1, network.L + 1)]
    upsets = sum(len(upset_positions(spec, k, parameter_bits(network))) for k in range(count)) \
        if spec.upset_rate else 0
    with tempfile.NamedTemporaryFile("w", prefix="pchw-faults-", suffix=".log",
                                     delete=False) as log:
        pass
    try:
        summary = run(network, simulator, commands, faults=True, log_file=log.name)
    except Exception as error:
        error.args = (f"{error.args[0] if error.args else error} (simulator log: {log.name})",)
        raise
    Path(log.name).unlink()
    return {"simulator": simulator, "fault_commands": len(setup), "learn_commands": int(count),
            "upsets": upsets, "replies": summary["replies"], "mismatches": summary["mismatches"],
            "simulated_cycles": summary["simulated_cycles"],
            "seconds": round(summary["seconds"], 1)}


def upset_run(network, data, spec, *, epochs=1, learn=True, points_per_epoch=8, seed=0):
    """Accuracy over time under ``spec``'s upsets (and other faults), with on-chip learning on
    (``learn``: a LEARN command per training sample, online) or off (the same command slots pass,
    the upsets hit, nothing learns). Returns the curve ``[(epochs, accuracy), ...]``."""
    from .golden import FixedModel
    model = damage(FixedModel(network), spec.resolve(network))
    return _curve(model, data, epochs, points_per_epoch, seed, learn)


def grid_task(task):
    """One task of a grid of fault experiments (``bench/faults.py`` runs them on the sweep's
    dask machinery, :func:`pchw.sweep.map_tasks`). ``task`` (a dict, JSON-able): ``model`` (a
    folder), ``spec`` (:meth:`FaultSpec.to_dict`), ``epochs``, and ``kind``: ``"recovery"``
    (:func:`recovery`, with ``reference_epochs``) or ``"upsets"`` (:func:`upset_run`, with
    ``learn``). Returns ``{"status": "ok", "record": ...}``: the recovery record, or
    ``{"curve": ...}``, as JSON gives it back (lists, not tuples)."""
    from . import load
    from .datasets import load_dataset
    network = load(task["model"])
    data = load_dataset(network.dataset)
    spec = FaultSpec.from_dict(task["spec"])
    if task["kind"] == "recovery":
        record = recovery(network, data, spec, epochs=task["epochs"],
                          reference_epochs=task["reference_epochs"])
    elif task["kind"] == "upsets":
        record = {"curve": upset_run(network, data, spec, epochs=task["epochs"],
                                     learn=task["learn"])}
    else:
        raise PchwError(f"a fault grid task of kind {task['kind']!r}: recovery or upsets")
    import json
    return {"status": "ok", "record": json.loads(json.dumps(record))}   # as cached: JSON


def plot_recovery(records, path):
    """One panel per :func:`recovery` record (:func:`recovery_figure`), written as a PNG to
    ``path``."""
    from .report import _pyplot
    fig = recovery_figure(records)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def recovery_figure(records):
    """A matplotlib figure, one panel per :func:`recovery` record: the recovery curve, both
    references' curves, and the intact accuracy, over epochs."""
    from .report import _pyplot
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(records), figsize=(5.2 * len(records), 3.8), squeeze=False)
    for ax, r in zip(axes[0], records):
        ax.axhline(100 * r["accuracy_intact"], color="0.5", ls=":", label="intact")
        e, a = zip(*r["curve"])
        ax.plot(e, [100 * v for v in a], "o-", ms=3, label="on-chip PC learning (damaged)")
        e, a = zip(*r["reference_backprop_curve"])
        ax.plot(e, [100 * v for v in a], "s--", ms=3, label="float backprop fine-tuning")
        e, a = zip(*r["reference_scratch_curve"])
        size = "-".join(map(str, r["surviving_layers"]))
        ax.plot(e, [100 * v for v in a], "-", color="0.3", lw=1,
                label=f"surviving size ({size}) from scratch")
        ax.axhline(100 * r["accuracy_reference_scratch"], color="0.3", ls="--", lw=0.8,
                   label=f"... after {r['reference_epochs']} epochs")
        ax.set_xlim(0, max(r["epochs"] * 1.5, 3))
        ax.set_xlabel("epochs after the damage")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(r["description"], fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
