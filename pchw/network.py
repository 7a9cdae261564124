"""The network description: ``network.toml`` + ``weights.npz``, validated on load.

The file format is documented in ``docs/network-format.md``. Everything a user can get wrong
raises :class:`~pchw.errors.PchwError` with a one-line message naming the file and field.
"""

import difflib
import hashlib
import json
import math
import tomllib
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import PchwError
from .fixedpoint import Format

__all__ = ["Activation", "PCSettings", "Formats", "Network", "load", "MODES", "ACTIVATIONS",
           "CIRCUIT_ACTIVATIONS",
           "MAX_LAYER_SIZE", "MAX_WEIGHT_LAYERS", "MAX_SHIFT", "MAX_INFERENCE_STEPS",
           "MAX_PARAMETERS", "MAX_LANES", "MULTIPLIERS", "lane_limit"]

MODES = ("standard", "fixed_prediction", "incremental")
ACTIVATIONS = ("identity", "relu", "leaky_relu", "hardtanh", "tanh", "sigmoid")
#: The activations the circuits implement (tanh and sigmoid run in the golden model only).
CIRCUIT_ACTIVATIONS = ("identity", "relu", "leaky_relu", "hardtanh")
ROUNDINGS = ("nearest", "stochastic")
MAX_LAYER_SIZE = 65535      # row and column indices of the stochastic-rounding hash are 16 bits
MAX_WEIGHT_LAYERS = 255     # the layer index of the hash is 8 bits
MAX_SHIFT = 30              # rates are 2**-k with 0 <= k <= MAX_SHIFT
#: T (``pc.inference_steps``) is at most this: the sequencer's step counter
#: (:class:`pchw.gateware.core.PCCore`) is then at most 16 bits, and a learn command of the
#: example models stays under a second at 12 MHz (the golden model takes seconds a sample).
MAX_INFERENCE_STEPS = 65535
#: Parameters (weights and biases, all layers) are at most this many, checked before anything
#: is allocated: 128 MiB of float64 for the golden model, far above what the block RAM of any
#: supported board holds (the largest, the ULX3S-85F, has 3.7 Mbit).
MAX_PARAMETERS = 1 << 24
#: MAC lanes of a layer are at most this many: the parameter walker's lane index is 8 bits.
MAX_LANES = 256
#: Multipliers a lane may have (``hardware.multipliers``): 1, or 2 (the pool, the default).
MULTIPLIERS = (1, 2)


def lane_limit(n):
    """The most MAC lanes a weight layer of ``n`` neurons can have: every lane owns at least one
    row (lane ``p`` owns rows ``p, p + P, ...``), and at most :data:`MAX_LANES`."""
    return min(n, MAX_LANES)


def _fail(where, message):
    raise PchwError(f"{where}: {message}")


def check_layers(layers, where):
    """``layers`` as a tuple of ints, validated (sizes, depth, :data:`MAX_PARAMETERS`)."""
    if not isinstance(layers, (list, tuple)) or len(layers) < 2:
        _fail(where, f"needs at least two sizes [n_0, ..., n_L], got {layers!r}")
    for i, n in enumerate(layers):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            _fail(where, f"size of layer {i} is {n!r}, not an integer")
        if not 1 <= n <= MAX_LAYER_SIZE:
            _fail(where, f"size of layer {i} is {n}; sizes must be in 1..{MAX_LAYER_SIZE}")
    if len(layers) - 1 > MAX_WEIGHT_LAYERS:
        _fail(where, f"{len(layers) - 1} weight layers; at most {MAX_WEIGHT_LAYERS}")
    layers = tuple(int(n) for n in layers)
    count = parameter_count(layers)
    if count > MAX_PARAMETERS:
        _fail(where, f"{count} parameters (weights and biases); at most {MAX_PARAMETERS}")
    return layers


def parameter_count(layers):
    """Weights and biases of a network with layer sizes ``layers``."""
    return sum(layers[l] * (layers[l - 1] + 1) for l in range(1, len(layers)))


def power_of_two_shift(value, where):
    """``k`` such that ``value == 2**-k`` with ``0 <= k <= 30``; else a PchwError naming the nearest."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(where, f"{value!r} is not a number")
    if value <= 0:
        _fail(where, f"{value!r} must be positive (a power of two 2^-k, e.g. 0.5 or 0.0625)")
    mantissa, exponent = math.frexp(value)     # value = mantissa * 2**exponent, 0.5 <= m < 1
    k = 1 - exponent
    if mantissa == 0.5 and 0 <= k <= MAX_SHIFT:
        return k
    lower = 2.0 ** -min(max(k, 0), MAX_SHIFT)
    upper = 2.0 ** -min(max(k - 1, 0), MAX_SHIFT)
    nearest = sorted({lower, upper})
    _fail(where, f"{value!r} is not a power of two 2^-k with 0 <= k <= {MAX_SHIFT} (it becomes a "
                 f"shift in hardware); nearest allowed: {' or '.join(repr(v) for v in nearest)}")


@dataclass(frozen=True)
class Activation:
    """An activation function ``f``; ``leaky_relu`` has slope ``2**-shift`` for negative inputs."""
    name: str
    shift: int = 0

    @classmethod
    def parse(cls, spec, where):
        """From ``"relu"`` or ``{name = "leaky_relu", slope = 0.125}``."""
        if isinstance(spec, Activation):
            return spec
        if isinstance(spec, str):
            name, options = spec, {}
        elif isinstance(spec, dict):
            options = dict(spec)
            name = options.pop("name", None)
            if not isinstance(name, str):
                _fail(where, "an activation table needs a string 'name'")
        else:
            _fail(where, f"{spec!r} is not an activation name")
        if name not in ACTIVATIONS:
            _fail(where, f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
        if name == "leaky_relu":
            slope = options.pop("slope", 0.125)
            shift = power_of_two_shift(slope, f"{where}.slope")
            if shift == 0:
                _fail(f"{where}.slope", "a slope of 1 is 'identity'; use a slope below 1")
        else:
            shift = 0
        if options:
            _fail(where, f"unexpected option(s) {', '.join(sorted(options))} for {name}")
        return cls(name, shift)

    def to_toml(self):
        if self.name == "leaky_relu":
            return {"name": self.name, "slope": 2.0 ** -self.shift}
        return self.name

    def __str__(self):
        return f"leaky_relu(2^-{self.shift})" if self.name == "leaky_relu" else self.name


@dataclass(frozen=True)
class PCSettings:
    """Predictive-coding settings (see ``docs/pc-math.md``).

    ``inference_rate`` (gamma) and ``learning_rate`` (eta) are powers of two ``2**-k``.
    ``weight_rounding`` is how fixed-point weight updates round: ``nearest`` (half up) or
    ``stochastic`` (noise from a hash of ``seed``, the update count, layer, row and column).
    """
    mode: str = "standard"
    inference_steps: int = 8
    inference_rate: float = 0.5
    learning_rate: float = 2.0 ** -5
    weight_rounding: str = "nearest"
    seed: int = 0

    def validate(self, where="pc"):
        if self.mode not in MODES:
            _fail(f"{where}.mode", f"unknown mode {self.mode!r}; known: {', '.join(MODES)}")
        steps = self.inference_steps
        if isinstance(steps, bool) or not isinstance(steps, int):
            _fail(f"{where}.inference_steps", f"{steps!r} is not an integer")
        if not 0 <= steps <= MAX_INFERENCE_STEPS:
            _fail(f"{where}.inference_steps",
                  f"{steps} must be in 0..{MAX_INFERENCE_STEPS} (the hardware's step counter)")
        power_of_two_shift(self.inference_rate, f"{where}.inference_rate")
        power_of_two_shift(self.learning_rate, f"{where}.learning_rate")
        if self.weight_rounding not in ROUNDINGS:
            _fail(f"{where}.weight_rounding",
                  f"unknown rounding {self.weight_rounding!r}; known: {', '.join(ROUNDINGS)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) \
                or not 0 <= self.seed < 1 << 24:
            _fail(f"{where}.seed", f"{self.seed!r} must be an integer in 0..{(1 << 24) - 1}")

    @property
    def gamma_shift(self):
        """``g`` with ``inference_rate == 2**-g``."""
        return power_of_two_shift(self.inference_rate, "pc.inference_rate")

    @property
    def eta_shift(self):
        """``k`` with ``learning_rate == 2**-k``."""
        return power_of_two_shift(self.learning_rate, "pc.learning_rate")


@dataclass(frozen=True)
class Formats:
    """Fixed-point formats: one for values (x, mu, eps, phi, messages), one for weights (W, b).

    ``value_overrides`` maps a layer index ``l`` (0..L) to the format of ``x_l`` and everything
    of that layer; ``weight_overrides`` maps ``l`` (1..L) to the format of ``W_l`` and ``b_l``.
    """
    value: Format = Format(16, 10)
    weight: Format = Format(16, 12)
    value_overrides: dict = field(default_factory=dict)
    weight_overrides: dict = field(default_factory=dict)

    def value_at(self, layer):
        return self.value_overrides.get(layer, self.value)

    def weight_at(self, layer):
        return self.weight_overrides.get(layer, self.weight)


def _parse_format(spec, where):
    if isinstance(spec, Format):
        return spec
    if not isinstance(spec, dict):
        _fail(where, f"{spec!r} is not a format table like {{ width = 16, frac = 10 }}")
    unknown = set(spec) - {"width", "frac"}
    if unknown:
        _fail(where, f"unexpected key(s) {', '.join(sorted(unknown))}; a format has width, frac")
    for key in ("width", "frac"):
        if key not in spec:
            _fail(where, f"missing '{key}'")
    try:
        return Format(spec["width"], spec["frac"])
    except PchwError as error:
        _fail(where, str(error))


def _format_to_toml(fmt):
    return {"width": fmt.width, "frac": fmt.frac}


class Network:
    """A predictive-coding network: topology, parameters, PC settings, formats, hardware knobs.

    Parameters
    ----------
    layers : sequence of int
        ``[n_0, ..., n_L]``, ``L >= 1``; layer 0 is the input, layer L the output.
    activations : sequence
        ``f_0 .. f_{L-1}``: names (``"relu"``) or :class:`Activation`.
    weights, biases : sequences of arrays, optional
        ``W_l`` of shape ``(n_l, n_{l-1})`` and ``b_l`` of shape ``(n_l,)`` for ``l = 1..L``.
        If omitted, drawn with :meth:`init_params` from ``init_seed``.
    pc : PCSettings
    formats : Formats
    lanes : sequence of int or "auto", optional
        MAC lanes per weight layer (used by the gateware); default 1 each. ``"auto"``: chosen
        per board from its budget by ``pchw build`` (:func:`pchw.boards.auto_lanes`), one each
        where no board is involved (``pchw verilog``, ``pchw sim``).
    board_lanes : dict, optional
        Lanes for particular boards (``pchw build --board NAME``): board name -> a sequence
        like ``lanes``, or ``"auto"`` (the fastest that fits the board's budget).
    multipliers : int, optional
        Multipliers per lane, :data:`MULTIPLIERS`: 2 (default; the pool, each taking half of
        the lane's row groups, :func:`pchw.latency.halves`) or 1 (fewer logic cells).
    board_multipliers : dict, optional
        ``multipliers`` for particular boards (board name -> 1 or 2; :meth:`on_board`).
    name, dataset : str, optional
        A display name and the default dataset for ``pchw train/eval``.

    Raises
    ------
    PchwError
        On any invalid field; the message names ``source`` and the field.
    """

    def __init__(self, layers, activations, weights=None, biases=None, *, pc=None,
                 formats=None, lanes=None, board_lanes=None, multipliers=None,
                 board_multipliers=None, name=None, dataset=None, init_seed=0,
                 source="network", params_source=None):
        self.source = source
        self.layers = check_layers(layers, f"{source}: network.layers")
        L = len(self.layers) - 1
        if not isinstance(activations, (list, tuple)) or len(activations) != L:
            _fail(f"{source}: network.activations",
                  f"needs {L} entries (f_0..f_{L-1}, one per non-output layer), got "
                  f"{len(activations) if isinstance(activations, (list, tuple)) else activations!r}")
        self.activations = tuple(Activation.parse(a, f"{source}: network.activations[{i}]")
                                 for i, a in enumerate(activations))
        self.pc = pc if pc is not None else PCSettings()
        if not isinstance(self.pc, PCSettings):
            _fail(source, "pc must be a PCSettings")
        self.pc.validate(f"{source}: pc")
        self.formats = formats if formats is not None else Formats()
        self._check_formats()
        self.lanes_auto = isinstance(lanes, str) and lanes == "auto"
        self.lanes = self._check_lanes([1] * L if lanes is None or self.lanes_auto else lanes,
                                       "hardware.lanes", auto=True)
        if board_lanes is None:
            board_lanes = {}
        if not isinstance(board_lanes, dict):
            _fail(f"{source}: hardware.board_lanes", "must be a table of board = lanes")
        self.board_lanes = {}
        for board_name, value in board_lanes.items():
            self._check_board_name(board_name)
            where = f"hardware.board_lanes.{board_name}"
            self.board_lanes[board_name] = value if isinstance(value, str) and \
                value == "auto" else self._check_lanes(value, where, auto=True)
        self.multipliers = self._check_multipliers(
            MULTIPLIERS[-1] if multipliers is None else multipliers, "hardware.multipliers")
        if board_multipliers is None:
            board_multipliers = {}
        if not isinstance(board_multipliers, dict):
            _fail(f"{source}: hardware.board_multipliers", "must be a table of board = 1 or 2")
        self.board_multipliers = {}
        for board_name, value in board_multipliers.items():
            self._check_board_name(board_name, "hardware.board_multipliers")
            self.board_multipliers[board_name] = self._check_multipliers(
                value, f"hardware.board_multipliers.{board_name}")
        self.name = name
        self.dataset = dataset
        if weights is _READ_LATER:     # from_toml_dict reads them once the rest is valid
            self.weights = self.biases = None
            return
        if weights is None and biases is None:
            weights, biases = self.init_params(init_seed)
        elif weights is None or biases is None:
            _fail(source, "give both weights and biases, or neither (random initialisation)")
        self.weights, self.biases = self._check_params(weights, biases, params_source or source)

    # -- validation ---------------------------------------------------------------------------

    def _check_lanes(self, lanes, where, auto=False):
        L = len(self.layers) - 1
        if not isinstance(lanes, (list, tuple)) or len(lanes) != L or any(
                isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in lanes):
            also = ' or "auto"' if auto else ""
            _fail(f"{self.source}: {where}", f"needs {L} positive integers (one per weight "
                                             f"layer){also}, got {lanes!r}")
        for l, p in enumerate(lanes, start=1):
            n = self.layers[l]
            if p > lane_limit(n):
                _fail(f"{self.source}: {where}",
                      f"{p} lanes for weight layer {l} of {n} neurons; at most {lane_limit(n)} "
                      f"(every lane owns at least one neuron, and at most {MAX_LANES} lanes)")
        return tuple(lanes)

    def _check_multipliers(self, value, where):
        if isinstance(value, bool) or value not in MULTIPLIERS:
            _fail(f"{self.source}: {where}", f"multipliers per lane are 1 or 2, got {value!r}")
        return value

    def _check_board_name(self, name, where="hardware.board_lanes"):
        from .boards import BOARDS
        if name not in BOARDS:
            close = difflib.get_close_matches(str(name), BOARDS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            _fail(f"{self.source}: {where}",
                  f"unknown board {name!r}; {hint}known: {', '.join(BOARDS)}")

    def _check_formats(self):
        where = f"{self.source}: format"
        if not isinstance(self.formats, Formats):
            _fail(where, "formats must be a Formats")
        L = self.L
        for l in self.formats.value_overrides:
            if not isinstance(l, int) or not 0 <= l <= L:
                _fail(f"{where}.layer.{l}.value", f"layer {l} does not exist (0..{L})")
        for l in self.formats.weight_overrides:
            if not isinstance(l, int) or not 1 <= l <= L:
                _fail(f"{where}.layer.{l}.weight", f"weight layer {l} does not exist (1..{L})")

    def _check_params(self, weights, biases, where):
        L = self.L
        checked = []
        for kind, arrays in (("W", weights), ("b", biases)):
            if not isinstance(arrays, (list, tuple)) or len(arrays) != L:
                _fail(where, f"needs {L} arrays {kind}1..{kind}{L}")
            out = []
            for l, a in enumerate(arrays, start=1):
                shape = (self.layers[l], self.layers[l - 1]) if kind == "W" else (self.layers[l],)
                a = np.asarray(a)
                if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
                    _fail(f"{where}: {kind}{l}", f"has dtype {a.dtype}, expected numbers")
                if a.shape != shape:
                    _fail(f"{where}: {kind}{l}", f"has shape {a.shape}, expected {shape} "
                                                 f"(n_{l} x n_{l-1})" if kind == "W" else
                          f"has shape {a.shape}, expected {shape}")
                a = a.astype(np.float64)
                if not np.all(np.isfinite(a)):
                    _fail(f"{where}: {kind}{l}", "contains NaN or infinity")
                out.append(a)
            checked.append(tuple(out))
        return checked

    # -- derived facts ------------------------------------------------------------------------

    @property
    def L(self):
        """Number of weight layers."""
        return len(self.layers) - 1

    @property
    def n_inputs(self):
        return self.layers[0]

    @property
    def n_outputs(self):
        return self.layers[-1]

    @property
    def sources(self):
        """``sources[l]``: the layer whose ``phi`` the weights ``W_l`` multiply (``l - 1``;
        None for the input layer), as :attr:`pchw.graph.Graph.sources` for a graph's nodes."""
        return (None,) + tuple(range(self.L))

    def value_format(self, layer):
        return self.formats.value_at(layer)

    def weight_format(self, layer):
        return self.formats.weight_at(layer)

    @property
    def parameter_count(self):
        return parameter_count(self.layers)

    def memory_bits(self):
        """Bits of on-chip storage: parameters (W, b) and state vectors (x, mu, eps per layer)."""
        params = sum(self.layers[l] * (self.layers[l - 1] + 1) * self.weight_format(l).width
                     for l in range(1, self.L + 1))
        state = sum(3 * n * self.value_format(l).width for l, n in enumerate(self.layers))
        return {"parameters": params, "state": state, "total": params + state}

    def init_params(self, seed):
        """Uniform He/Glorot-style initialisation: ``U(-a, a)``, ``a = sqrt(6 / (n_in + n_out))``."""
        rng = np.random.default_rng(seed)
        weights, biases = [], []
        for l in range(1, self.L + 1):
            n_in, n_out = self.layers[l - 1], self.layers[l]
            a = math.sqrt(6.0 / (n_in + n_out))
            weights.append(rng.uniform(-a, a, size=(n_out, n_in)))
            biases.append(np.zeros(n_out))
        return weights, biases

    def with_params(self, weights, biases):
        """A copy of this network with other parameters."""
        return Network(self.layers, self.activations, weights, biases, pc=self.pc,
                       formats=self.formats, lanes=self._lanes_arg, board_lanes=self.board_lanes,
                       **self._hardware_args, name=self.name, dataset=self.dataset,
                       source=self.source)

    def with_settings(self, **changes):
        """A copy with PC settings changed (``mode=...``, ``inference_steps=...``, ...)."""
        return Network(self.layers, self.activations, self.weights, self.biases,
                       pc=replace(self.pc, **changes), formats=self.formats,
                       lanes=self._lanes_arg,
                       board_lanes=self.board_lanes, **self._hardware_args, name=self.name,
                       dataset=self.dataset, source=self.source)

    def with_formats(self, formats):
        return Network(self.layers, self.activations, self.weights, self.biases, pc=self.pc,
                       formats=formats, lanes=self._lanes_arg, board_lanes=self.board_lanes,
                       **self._hardware_args, name=self.name, dataset=self.dataset,
                       source=self.source)

    @property
    def _lanes_arg(self):
        return "auto" if self.lanes_auto else self.lanes

    @property
    def _hardware_args(self):
        return {"multipliers": self.multipliers, "board_multipliers": self.board_multipliers}

    def with_lanes(self, lanes, multipliers=None):
        """A copy with other lanes (and multipliers per lane): the arithmetic, and so every
        result, stays the same."""
        hardware = self._hardware_args
        if multipliers is not None:
            hardware["multipliers"] = multipliers
        return Network(self.layers, self.activations, self.weights, self.biases, pc=self.pc,
                       formats=self.formats, lanes=lanes, board_lanes=self.board_lanes,
                       **hardware, name=self.name, dataset=self.dataset, source=self.source)

    def on_board(self, board_name):
        """A copy with the multipliers per lane of ``board_name`` (``hardware.board_multipliers``,
        else ``hardware.multipliers``)."""
        return self.with_lanes(self._lanes_arg,
                               self.board_multipliers.get(board_name, self.multipliers))

    # -- files --------------------------------------------------------------------------------

    def to_toml_dict(self):
        network = {"layers": list(self.layers),
                   "activations": [a.to_toml() for a in self.activations]}
        if self.name:
            network["name"] = self.name
        if self.dataset:
            network["dataset"] = self.dataset
        fmt = {"value": _format_to_toml(self.formats.value),
               "weight": _format_to_toml(self.formats.weight)}
        overrides = {}
        for l, f in self.formats.value_overrides.items():
            overrides.setdefault(str(l), {})["value"] = _format_to_toml(f)
        for l, f in self.formats.weight_overrides.items():
            overrides.setdefault(str(l), {})["weight"] = _format_to_toml(f)
        if overrides:
            fmt["layer"] = overrides
        pc = {"mode": self.pc.mode, "inference_steps": self.pc.inference_steps,
              "inference_rate": self.pc.inference_rate, "learning_rate": self.pc.learning_rate,
              "weight_rounding": self.pc.weight_rounding, "seed": self.pc.seed}
        hardware = {"lanes": "auto" if self.lanes_auto else list(self.lanes)}
        if self.board_lanes:
            hardware["board_lanes"] = {k: v if v == "auto" else list(v)
                                       for k, v in sorted(self.board_lanes.items())}
        if self.multipliers != MULTIPLIERS[-1]:
            hardware["multipliers"] = self.multipliers
        if self.board_multipliers:
            hardware["board_multipliers"] = dict(sorted(self.board_multipliers.items()))
        return {"network": network, "pc": pc, "format": fmt, "hardware": hardware}

    def save(self, path):
        """Write ``network.toml`` and ``weights.npz`` into the folder ``path`` (created if needed)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "network.toml").write_text(
            "# pchw network description (format: docs/network-format.md)\n"
            + _dump_toml(self.to_toml_dict()))
        arrays = {f"W{l}": w for l, w in enumerate(self.weights, start=1)}
        arrays.update({f"b{l}": b for l, b in enumerate(self.biases, start=1)})
        np.savez(path / "weights.npz", **arrays)

    def description_hash(self):
        """SHA-256 (hex) of the canonical description and parameters: identifies a network."""
        digest = hashlib.sha256(json.dumps(self.to_toml_dict(), sort_keys=True).encode())
        for a in (*self.weights, *self.biases):
            digest.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
        return digest.hexdigest()

    def summary(self):
        """Multi-line human-readable description (``pchw info``)."""
        lines = [f"network    {self.name or '(unnamed)'}  ({self.source})",
                 f"layers     {' -> '.join(map(str, self.layers))}  (L = {self.L})",
                 f"activations {', '.join(f'f_{i}={a}' for i, a in enumerate(self.activations))}",
                 f"parameters {self.parameter_count}",
                 f"pc         mode={self.pc.mode} T={self.pc.inference_steps} "
                 f"gamma=2^-{self.pc.gamma_shift} eta=2^-{self.pc.eta_shift} "
                 f"weight_rounding={self.pc.weight_rounding}"]
        for l in range(self.L + 1):
            w = f"  W_{l},b_{l} {self.weight_format(l)}" if l else ""
            lanes = f"  lanes {'auto' if self.lanes_auto else self.lanes[l - 1]}" if l else ""
            lines.append(f"layer {l}    n={self.layers[l]}  values {self.value_format(l)}{w}{lanes}")
        for board_name, lanes in sorted(self.board_lanes.items()):
            shown = lanes if lanes == "auto" else "/".join(map(str, lanes))
            lines.append(f"lanes on   {board_name}: {shown}")
        lines.append(f"multipliers {self.multipliers} a lane" + "".join(
            f", {m} on {b}" for b, m in sorted(self.board_multipliers.items())))
        bits = self.memory_bits()
        lines.append(f"memory     {bits['parameters']} bits of parameters + {bits['state']} bits "
                     f"of state = {bits['total']} bits ({bits['total'] / 8192:.1f} KiB)")
        if self.dataset:
            lines.append(f"dataset    {self.dataset}")
        return "\n".join(lines)

    def __repr__(self):
        return f"Network({list(self.layers)}, mode={self.pc.mode!r}, source={self.source!r})"


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)        # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def _dump_toml(d, prefix=""):
    """TOML text for nested tables: the top level's tables become sections; below that, tables
    of scalars are written inline (``value = { width = 16, frac = 10 }``)."""
    def inline(v):
        return not isinstance(v, dict) or (prefix and all(
            not isinstance(x, (dict, list)) for x in v.values()))
    text = "".join(f"{k} = {_toml_value(v)}\n" for k, v in d.items() if inline(v))
    for k, v in d.items():
        if not inline(v):
            body = _dump_toml(v, f"{prefix}{k}.")
            header = "" if body.startswith("\n[") else f"\n[{prefix}{k}]\n"
            text += header + body
    return text


_TOP_KEYS = {"network", "pc", "format", "hardware"}


def _table(d, key, where, required=False):
    value = d.get(key, None)
    if value is None:
        if required:
            _fail(where, f"missing table [{key}]")
        return {}
    if not isinstance(value, dict):
        _fail(where, f"'{key}' must be a table")
    return value


def _reject_unknown(table, allowed, where):
    unknown = set(table) - set(allowed)
    if unknown:
        _fail(where, f"unknown key(s) {', '.join(sorted(unknown))}; allowed: "
                     f"{', '.join(sorted(allowed))}")


_READ_LATER = object()


def from_toml_dict(d, weights=None, biases=None, source="network.toml", params_source=None,
                   weights_path=None):
    """Build a :class:`Network` from a parsed ``network.toml``; see ``docs/network-format.md``.

    The parameters are ``weights`` and ``biases``, or read from the ``.npz`` file
    ``weights_path`` once the description is valid (the sizes it gives are checked before any
    array is read), or else drawn at random."""
    if "node" in d:                 # a graph of named nodes (pchw.graph)
        if "layers" in (d.get("network") or {}):
            _fail(f"{source}: network.layers", "give either network.layers (a chain) or "
                                               "[[node]] tables (a graph), not both")
        if "hardware" in d:
            _fail(f"{source}: [hardware]", "a graph has no hardware settings yet (its circuits "
                                           "are future work)")
        from .graph import graph_from_toml_dict
        if weights is not None or biases is not None:
            _fail(source, "a graph's parameters are a dict: use pchw.graph.Graph")
        return graph_from_toml_dict(d, source, weights_path=weights_path)
    _reject_unknown(d, _TOP_KEYS, source)
    net = _table(d, "network", source, required=True)
    _reject_unknown(net, {"layers", "activations", "name", "dataset"}, f"{source}: [network]")
    for key in ("layers", "activations"):
        if key not in net:
            _fail(f"{source}: network.{key}", "missing")
    pc_table = _table(d, "pc", source)
    pc_fields = {"mode", "inference_steps", "inference_rate", "learning_rate", "weight_rounding",
                 "seed"}
    _reject_unknown(pc_table, pc_fields, f"{source}: [pc]")
    pc = PCSettings(**pc_table)
    fmt = _table(d, "format", source)
    _reject_unknown(fmt, {"value", "weight", "layer"}, f"{source}: [format]")
    default = Formats()
    value = _parse_format(fmt.get("value", _format_to_toml(default.value)),
                          f"{source}: format.value")
    weight = _parse_format(fmt.get("weight", _format_to_toml(default.weight)),
                           f"{source}: format.weight")
    value_overrides, weight_overrides = {}, {}
    for key, table in _table(fmt, "layer", f"{source}: [format]").items():
        where = f"{source}: format.layer.{key}"
        try:
            l = int(key)
        except ValueError:
            _fail(where, f"{key!r} is not a layer number")
        if not isinstance(table, dict):
            _fail(where, "must be a table with 'value' and/or 'weight'")
        _reject_unknown(table, {"value", "weight"}, where)
        if "value" in table:
            value_overrides[l] = _parse_format(table["value"], f"{where}.value")
        if "weight" in table:
            weight_overrides[l] = _parse_format(table["weight"], f"{where}.weight")
    hardware = _table(d, "hardware", source)
    _reject_unknown(hardware, {"lanes", "board_lanes", "multipliers", "board_multipliers"},
                    f"{source}: [hardware]")
    name, dataset = net.get("name"), net.get("dataset")
    for key, value_ in (("name", name), ("dataset", dataset)):
        if value_ is not None and not isinstance(value_, str):
            _fail(f"{source}: network.{key}", "must be a string")
    given = weights is not None or biases is not None or weights_path is not None
    network = Network(net["layers"], net["activations"], _READ_LATER if given else None, None,
                      pc=pc, formats=Formats(value, weight, value_overrides, weight_overrides),
                      lanes=hardware.get("lanes"), board_lanes=hardware.get("board_lanes"),
                      multipliers=hardware.get("multipliers"),
                      board_multipliers=hardware.get("board_multipliers"), name=name,
                      dataset=dataset, source=source)
    if weights_path is not None:
        weights, biases = _read_weights(weights_path, network.layers)
        params_source = str(weights_path)
    if given:
        network.weights, network.biases = network._check_params(weights, biases,
                                                                params_source or source)
    return network


_NPZ_ADVICE = "write it with Network.save or numpy.savez(path, W1=..., ..., b1=..., ...)"


def _npz_kind(head):
    """What a file that is not a zip archive is, from its first bytes."""
    if not head:
        return "an empty file"
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array"
    if head[:1] == b"\x80":
        return "pickled Python data (refused: unpickling can run code)"
    if all(32 <= c < 127 or c in b"\t\r\n" for c in head):
        return "a text file"
    return "not a zip archive"


def _read_weights(path, layers):
    """The arrays ``W1..WL``, ``b1..bL`` of the ``.npz`` file ``path`` for a network of sizes
    ``layers`` (:func:`_read_arrays`)."""
    L = len(layers) - 1
    shapes = {**{f"W{l}": (layers[l], layers[l - 1]) for l in range(1, L + 1)},
              **{f"b{l}": (layers[l],) for l in range(1, L + 1)}}
    arrays = _read_arrays(path, shapes)
    return [arrays[f"W{l}"] for l in range(1, L + 1)], [arrays[f"b{l}"] for l in range(1, L + 1)]


def _read_arrays(path, shapes):
    """The arrays named by the keys of ``shapes`` (in that order) of the ``.npz`` file
    ``path``, a dict. Each array's shape and type are checked from its header before its data
    is read, and nothing is unpickled."""
    expected = list(shapes)
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as error:
        _fail(path, f"cannot read: {error.strerror or error}")
    if not head.startswith(b"PK"):
        _fail(path, f"is {_npz_kind(head)}, not a .npz archive; {_NPZ_ADVICE}")
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = {n[:-4]: n for n in archive.namelist() if n.endswith(".npy")}
            others = [n for n in archive.namelist() if not n.endswith(".npy")]
            missing = [k for k in expected if k not in members]
            if missing:
                _fail(path, f"missing array(s) {', '.join(missing)} "
                            f"(expected {', '.join(expected)})")
            extra = sorted(set(members) - set(expected)) + others
            if extra:
                _fail(path, f"unexpected array(s) {', '.join(extra)} "
                            f"(expected {', '.join(expected)})")
            for key in expected:
                with archive.open(members[key]) as f:
                    arrays[key] = _read_member(f, key, shapes[key], path)
    except PchwError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
        _fail(path, f"is not a complete .npz archive (truncated or damaged: {error}); "
                    f"{_NPZ_ADVICE}")
    return arrays


def _read_member(f, key, shape, path):
    """One array of an archive: its header checked (numbers, ``shape``), then its data."""
    version = np.lib.format.read_magic(f)
    if version in ((1, 0), (2, 0)):
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        found, fortran, dtype = read_header(f)
        if dtype.kind not in "fiu":
            _fail(f"{path}: {key}", f"has dtype {dtype}, expected numbers")
        if found != shape:
            _fail(f"{path}: {key}", f"has shape {found}, expected {shape}")
        count = math.prod(shape)
        data = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)
        if data.size != count:
            raise EOFError(f"{key} ends early")
        return data.reshape(shape, order="F" if fortran else "C")
    return np.lib.format.read_array(f, allow_pickle=False)     # other versions: whole array


def load(path):
    """Load and validate a model folder (``network.toml`` + ``weights.npz``).

    Raises
    ------
    PchwError
        Naming the file and field of the first problem found.
    """
    path = Path(path)
    if not path.is_dir():
        _fail(path, "no such model folder (expected a folder with network.toml and weights.npz)")
    toml_path, npz_path = path / "network.toml", path / "weights.npz"
    for p in (toml_path, npz_path):
        if not p.is_file():
            _fail(p, "missing file")
    try:
        d = tomllib.loads(toml_path.read_text())
    except tomllib.TOMLDecodeError as error:
        _fail(toml_path, f"not valid TOML: {error}")
    except UnicodeDecodeError:
        _fail(toml_path, "not a UTF-8 text file")
    return from_toml_dict(d, source=str(toml_path), weights_path=npz_path)
