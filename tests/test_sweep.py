"""``pchw sweep``: grid validation, the sweep on a LocalCluster and on a separately started dask
scheduler with a worker killed mid-sweep, the result cache, and a sweep with real builds.

Times on the 2-core machine, shared with other jobs: the accuracy-only xor sweep 11 to 15 s
(8 trainings of 300 epochs, 24 tasks), the scheduler test 14 to 22 s, the build test (one xor
bitstream on ulx3s-85f) 37 to 75 s; it is marked ``slow`` (``pytest -m "not slow"`` leaves it
out).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import pchw
from pchw import boards, sweep
from pchw.cli import main
from pchw.datasets import load_dataset
from pchw.errors import PchwError
from pchw.golden import FixedModel
from pchw.train import accuracy

from . import extras

ROOT = Path(__file__).resolve().parent.parent
XOR = ROOT / "models" / "xor"
SWEEP_TIMEOUT_S = 240           # a sweep that takes longer fails the test (and is cancelled)


def require(module):
    return extras.require(module, "sweep")


@pytest.fixture(scope="module")
def xor():
    return pchw.load(XOR)


# -- the grid file --------------------------------------------------------------------------------

GOOD = """
[train]
epochs = 3

[[grid]]
value = [{ width = 12, frac = 8 }, { width = 8, frac = 5 }]
mode = ["standard", "fixed_prediction"]
lanes = [1, [2, 1]]
boards = ["icebreaker", "ulx3s-85f"]

[[grid]]
value = [{ width = 12, frac = 8 }]
mode = ["standard"]
lanes = [[1, 1]]
boards = ["icebreaker"]
build = false
"""


def grid_from(tmp_path, text, network):
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return sweep.load_grid(path, network)


def test_grid_cross_product_defaults_and_duplicates(tmp_path, xor):
    grid = grid_from(tmp_path, GOOD, xor)
    assert grid.train == sweep.TrainSettings(epochs=3, dataset="xor")
    # 2 value formats x 2 modes x 2 lanes x 2 boards, then one estimate-only point: a built
    # twin of it exists, but an estimate is another point.
    assert len(grid.points) == 2 * 2 * 2 * 2 + 1
    assert len(grid.train_points) == 4
    first = grid.points[0]
    assert first.train == sweep.TrainPoint(pchw.Format(12, 8), xor.formats.weight, "nearest",
                                           "standard", xor.pc.inference_steps,
                                           xor.pc.learning_rate)
    assert (first.lanes, first.board, first.build) == ((1, 1), "icebreaker", True)
    assert grid.points[2].lanes == (2, 1)
    assert grid.points[-1].build is False
    no_build = grid.without_builds()
    assert all(not p.build for p in no_build.points) and len(no_build.points) == 16
    # One [grid] table is a grid too, and what it leaves out is the model's own setting.
    grid = grid_from(tmp_path, '[grid]\nboards = ["ulx3s-85f"]\n', xor)
    (only,) = grid.points
    net = sweep.variant(xor, only.train, only.lanes)
    assert net.description_hash() == xor.description_hash()
    # The lanes left out are the ones the model builds with on each board.
    digits = pchw.load(ROOT / "models" / "digits")
    grid = grid_from(tmp_path, '[[grid]]\nboards = ["icebreaker", "ulx3s-85f"]\n', digits)
    assert [(p.board, p.lanes) for p in grid.points] == [
        ("icebreaker", boards.lanes_for(digits, boards.board("icebreaker"))),
        ("ulx3s-85f", digits.lanes)]
    assert grid.points[0].lanes != digits.lanes


BAD = [
    ("[[grid]]\nboards = []\n", r"sweep.toml: grid.boards: is empty"),
    ("[[grid]]\nlanes = [1]\n", r"grid.boards: missing: name at least one board"),
    ('[[grid]]\nboards = ["nexys"]\n',
     r"grid.boards\[0\]: unknown board 'nexys'; known: icebreaker"),
    ('[[grid]]\nboards = "icebreaker"\n', r"grid.boards: must be a list of values"),
    ('[[grid]]\nboards = ["icebreaker"]\nvalue = { width = 8, frac = 4 }\n',
     r"grid.value: must be a list of values, e.g. value = \[\{ width = 12, frac = 8 \}\]"),
    ('[[grid]]\nboards = ["icebreaker"]\nvalue = [{ width = 8, frac = 8 }]\n',
     r"grid.value\[0\]: fraction bits 8 must be in 0..7 for width 8"),
    ('[[grid]]\nboards = ["icebreaker"]\nweight = [{ width = 40, frac = 8 }]\n',
     r"grid.weight\[0\]: width 40 is outside 2..32"),
    ('[[grid]]\nboards = ["icebreaker"]\nweight = [{ width = 12 }]\n',
     r"grid.weight\[0\]: \{'width': 12\} is not a format table like \{ width = 12, frac = 8 \}"),
    ('[[grid]]\nboards = ["icebreaker"]\nvalue = [{ width = 12, frac = 8.5 }]\n',
     r"grid.value\[0\].frac: 8.5 is not an integer"),
    ('[[grid]]\nboards = ["icebreaker"]\nweight_rounding = ["up"]\n',
     r"grid.weight_rounding\[0\]: unknown value 'up'; known: nearest, stochastic"),
    ('[[grid]]\nboards = ["icebreaker"]\nmode = ["standard", "hybrid"]\n',
     r"grid.mode\[1\]: unknown value 'hybrid'; known: standard, fixed_prediction, incremental"),
    ('[[grid]]\nboards = ["icebreaker"]\ninference_steps = [-1]\n',
     r"grid.inference_steps\[0\]: -1 must be >= 0"),
    ('[[grid]]\nboards = ["icebreaker"]\ninference_steps = [1000000000]\n',
     r"grid.inference_steps\[0\]: 1000000000 must be <= 65535"),
    ('[[grid]]\nboards = ["icebreaker"]\nlearning_rate = [0.1]\n',
     r"grid.learning_rate\[0\]: 0.1 is not a power of two"),
    ('[[grid]]\nboards = ["icebreaker"]\nlanes = [[1, 1, 1]]\n',
     r"grid.lanes\[0\]: \[1, 1, 1\] is neither a lane count for every layer nor 2 counts"),
    ('[[grid]]\nboards = ["icebreaker"]\nlanes = [[1, 0]]\n',
     r"grid.lanes\[0\]\[1\]: 0 must be >= 1"),
    ('[[grid]]\nboards = ["icebreaker"]\nlanes = [[9, 1]]\n',
     r"grid.lanes\[0\]\[0\]: 9 lanes for layer 1 of 8 rows; at most one lane a row"),
    ('[[grid]]\nboards = ["icebreaker"]\nbuild = "yes"\n',
     r"grid.build: 'yes' is not true or false"),
    ('[[grid]]\nboards = ["icebreaker"]\nwidth = [8]\n', r"grid: unknown key\(s\) width; allowed:"),
    ('[[grid]]\nboards = ["icebreaker"]\n[[grid]]\nboards = ["icebreaker"]\nmode = [1]\n',
     r"sweep.toml: grid\[1\].mode\[0\]: unknown value 1"),
    ("[train]\nepochs = 3\n", r"sweep.toml: no \[\[grid\]\] table"),
    ('[sweep]\n[[grid]]\nboards = ["icebreaker"]\n', r"sweep.toml: unknown key\(s\) sweep"),
    ('[train]\nepochs = -1\n[[grid]]\nboards = ["icebreaker"]\n', r"train.epochs: -1 must be >= 0"),
    ('[train]\nbatch_size = 0\n[[grid]]\nboards = ["icebreaker"]\n',
     r"train.batch_size: 0 must be >= 1"),
    ('[train]\ninit = "random"\n[[grid]]\nboards = ["icebreaker"]\n',
     r"train.init: 'random' is not an integer"),
    ('[train]\ndataset = "mnist"\n[[grid]]\nboards = ["icebreaker"]\n',
     r"train.dataset: unknown value 'mnist'; known: xor, iris"),
    ('[train]\nrate = 1\n[[grid]]\nboards = ["icebreaker"]\n',
     r"train: unknown key\(s\) rate; allowed: batch_size, dataset, epochs"),
    ("[[grid]\n", r"sweep.toml: not valid TOML"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_grid_errors_name_the_field(tmp_path, xor, text, message):
    with pytest.raises(PchwError, match=message) as error:
        grid_from(tmp_path, text, xor)
    assert "\n" not in str(error.value)


def test_grid_errors_of_the_model_and_the_command_line(tmp_path, xor, capsys):
    layered = pchw.Network(xor.layers, xor.activations, xor.weights, xor.biases, pc=xor.pc,
                           formats=pchw.Formats(value_overrides={1: pchw.Format(10, 6)}),
                           lanes=xor.lanes, dataset="xor", source="layered.toml")
    with pytest.raises(PchwError, match=r"grid.value: the model has per-layer value formats"):
        grid_from(tmp_path, '[[grid]]\nboards = ["icebreaker"]\nvalue = [{ width = 8, '
                            'frac = 4 }]\n', layered)
    nameless = pchw.Network([2, 2], ["identity"], source="nameless")
    with pytest.raises(PchwError, match=r"train.dataset: missing, and the model names none"):
        grid_from(tmp_path, '[[grid]]\nboards = ["icebreaker"]\n', nameless)
    with pytest.raises(PchwError, match=r"missing.toml: no such grid file"):
        sweep.load_grid(tmp_path / "missing.toml", xor)
    # The command line: one line and exit status 1, before any cluster starts.
    (tmp_path / "bad.toml").write_text('[[grid]]\nboards = ["nexys"]\n')
    (tmp_path / "good.toml").write_text('[[grid]]\nboards = ["icebreaker"]\n')
    for argv, message in [
            (["--grid", str(tmp_path / "bad.toml")], "grid.boards[0]: unknown board 'nexys'"),
            (["--grid", str(tmp_path / "good.toml"), "--workers", "0"],
             "--workers must be at least 1"),
            (["--grid", str(tmp_path / "good.toml"), "--workers", "2", "--scheduler",
              "tcp://127.0.0.1:1"], "--workers sizes the embedded LocalCluster")]:
        assert main(["sweep", str(XOR), "-o", str(tmp_path / "out"), *argv]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("pchw: error: ") and message in err, err
    assert not (tmp_path / "out").exists()


def test_a_dataset_that_does_not_suit_the_network_is_refused(tmp_path, xor):
    grid = grid_from(tmp_path, '[train]\ndataset = "iris"\n[[grid]]\nboards = ["icebreaker"]\n',
                     xor)
    with pytest.raises(PchwError, match=r"train.dataset: iris has 4 inputs and 3 classes, the "
                                        r"network is 2 -> 2"):
        sweep.run_sweep(xor, grid, tmp_path / "out", progress=lambda line: None)


def test_help():
    run = subprocess.run([sys.executable, "-m", "pchw.cli", "sweep", "--help"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0 and "usage: pchw sweep" in run.stdout
    assert "--scheduler" in run.stdout and "--no-build" in run.stdout


# -- tasks: a failure is a result -----------------------------------------------------------------

def test_a_crash_is_a_result_that_is_not_cached(xor):
    tp = sweep.TrainPoint(pchw.Format(12, 8), pchw.Format(12, 9), "nearest", "standard", 2,
                          0.0625)
    # iris has 4 features: training the 2-input xor on it fails inside NumPy.
    crashed = sweep.train_point(xor, sweep.TrainSettings(epochs=1, dataset="iris"), tp)
    assert crashed["status"] == "error" and crashed["cacheable"] is False
    assert crashed["reason"].startswith("ValueError: ") and "\n" not in crashed["reason"]
    point = sweep.Point(tp, (1, 1), "icebreaker", False)
    after = sweep.evaluate_point(xor, sweep.TrainSettings(), point, crashed, "unused")
    assert after["status"] == "error" and after["cacheable"] is False
    assert after["reason"] == f"training: {crashed['reason']}"
    trained = sweep.train_point(xor, sweep.TrainSettings(epochs=1, dataset="xor"), tp)
    assert trained["status"] == "ok" and trained["cacheable"] is True
    assert trained["tools"] == sweep.fingerprint("train")
    row = sweep.evaluate_point(xor, sweep.TrainSettings(), point, trained, "unused")
    assert row["status"] == "ok" and row["cacheable"] is True
    # A worker whose tools differ from the client's cannot fill the client's cache.
    stale = dict(row, tools=dict(row["tools"], **{"pchw sources": "0123"}), host="w9")
    reason = sweep._tools_differ(stale, "estimate")
    assert reason.startswith("worker w9 has other tool versions than this client (pchw sources "
                             "0123 vs ")
    assert sweep._tools_differ(row, "estimate") is None


# -- the Pareto front -----------------------------------------------------------------------------

def _r(name, acc, lut, dsp, rate, status="ok"):
    return {"point": name, "accuracy": acc, "lut": lut, "dsp": dsp, "learn_per_s": rate,
            "status": status}


def test_pareto_front_and_best_point():
    # b: a is as good with fewer LUTs; a: e is as good and faster; g: c is better everywhere.
    rows = [_r("a", 0.9, 1000, 4, 100), _r("b", 0.9, 1200, 4, 100),
            _r("c", 0.8, 800, 4, 100), _r("d", 0.95, 3000, 8, 50),
            _r("e", 0.9, 1000, 4, 200), _r("f", 1.0, 100, 1, 10 ** 6, "does not fit"),
            _r("g", 0.7, 900, 4, 90)]
    front = sweep.pareto_front(rows)
    assert [r["point"] for r in front] == ["d", "e", "c"]
    assert sweep.best_point(rows)["point"] == "d"
    assert sweep.best_point([_r("x", 0.5, 1, 1, 1, "timing failed")]) is None
    tie = [_r("slow", 0.9, 1000, 4, 100), _r("small", 0.9, 900, 6, 10)]
    assert sweep.best_point(tie)["point"] == "small"
    # A point measured after place and route beats a more accurate estimate.
    built = dict(_r("built", 0.8, 5000, 8, 100), resources="place and route")
    assert sweep.best_point(rows + [built])["point"] == "built"


# -- sweeps ---------------------------------------------------------------------------------------

#: 8 training points (value x weight format x mode) with one lane per layer and with one lane a
#: row (8/2) on the iCEBreaker: the one-lane points fit; 8/2 needs about 20 multipliers, the
#: device has 8, and the fit check refuses them. Estimate-only: no synthesis.
ACCURACY_GRID = """
[train]
epochs = 300

[[grid]]
build = false
value = [{ width = 12, frac = 8 }, { width = 8, frac = 5 }]
weight = [{ width = 12, frac = 9 }, { width = 6, frac = 4 }]
mode = ["standard", "fixed_prediction"]
lanes = [1, [8, 2]]
boards = ["icebreaker"]
"""
REFUSED = r"\d+ multipliers need \d+ multiplier blocks, the device has 8"
ACCURACY_TASKS = 8 + 16


def _run(network, grid, out, **options):
    lines = []
    start = time.monotonic()
    result = sweep.run_sweep(network, grid, out, progress=lines.append, heartbeat_s=5,
                             timeout=SWEEP_TIMEOUT_S, **options)
    return result, lines, time.monotonic() - start


def _untimed(rows):
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rows]


def _task_lines(lines):
    return [line for line in lines if line.startswith("[")]


@pytest.fixture(scope="module")
def accuracy_sweep(tmp_path_factory):
    require("distributed")
    tmp = tmp_path_factory.mktemp("sweep")
    (tmp / "sweep.toml").write_text(ACCURACY_GRID)
    network = pchw.load(XOR)
    grid = sweep.load_grid(tmp / "sweep.toml", network)
    result, lines, seconds = _run(network, grid, tmp / "out", workers=2)
    print(f"accuracy-only xor sweep on a LocalCluster of 2: {seconds:.1f} s")
    return network, grid, tmp / "out", result, lines


def test_sweep_on_a_local_cluster(accuracy_sweep):
    network, _, out, result, lines = accuracy_sweep
    assert (result.computed, result.cached) == (ACCURACY_TASKS, 0)
    assert "dask LocalCluster: 2 worker process(es)" in "\n".join(lines)
    tasks = _task_lines(lines)
    assert len(tasks) == ACCURACY_TASKS and tasks[-1].startswith(f"[{ACCURACY_TASKS}/")
    assert "done 24/24, running 0, queued 0, failed 8" in tasks[-1]
    rows = result.rows
    assert len(rows) == 16 and len({r["point"] for r in rows}) == 16
    fits = [r for r in rows if r["lanes"] == "1/1"]
    refused = [r for r in rows if r["lanes"] == "8/2"]
    assert {r["status"] for r in fits} == {"ok"}
    assert {r["status"] for r in refused} == {"does not fit"} and result.failed == 8
    assert all(re.search(REFUSED, r["reason"]) for r in refused)
    # Every accuracy is what the fixed-point model with the saved parameters gets, and the
    # samples/s are the board clock over the latency formula.
    data = load_dataset("xor")
    for row in fits:
        assert row["resources"] == "estimate" and row["clock_mhz"] == 12.0
        assert row["learn_per_s"] == round(12e6 / row["learn_cycles"], 1)
        assert row["accuracy"] is not None and 0 <= row["accuracy"] <= 1
    accuracies = {r["accuracy"] for r in fits}
    assert len(accuracies) > 1, "the narrow formats should cost accuracy on some points"
    # Outputs: CSV and JSON with every row, the front as a table and a plot, the best point.
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].split(",") == list(sweep.COLUMNS) and len(csv_lines) == 17
    saved = json.loads((out / "results.json").read_text())
    assert saved["rows"] == rows and saved["description_hash"] == network.description_hash()
    front = sweep.pareto_front(fits)
    assert saved["pareto"] == {"icebreaker (estimate)": [r["point"] for r in front]}
    md = (out / "pareto.md").read_text()
    assert "## icebreaker (estimate)" in md and "8 ok, 8 does not fit" in md
    assert md.count("| ~") == len(front)
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = sweep.best_point(fits)
    assert saved["best"] == {"icebreaker": str(out / "best" / "icebreaker")}
    model = pchw.load(out / "best" / "icebreaker")
    assert model.lanes == (1, 1) and str(model.formats.value) == best["value"]
    assert model.pc.mode == best["mode"]
    assert accuracy(FixedModel(model).predict, data.x_test, data.y_test) == best["accuracy"]
    assert json.loads((out / "best" / "icebreaker" / "sweep-point.json").read_text()) == best


def test_cache_resume_and_new_points(accuracy_sweep, tmp_path):
    network, grid, out, first, _ = accuracy_sweep
    out = shutil.copytree(out, tmp_path / "out")
    # Everything cached: nothing computed, no cluster started, the same rows.
    result, lines, _ = _run(network, grid, out, workers=1)
    assert (result.computed, result.cached) == (0, ACCURACY_TASKS)
    assert result.rows == first.rows and not any("dask" in line for line in lines)
    # A sweep interrupted before one point finished: only that point is computed.
    lost = first.rows[3]["point"]
    (out / "cache" / f"{lost}.json").unlink()
    result, lines, _ = _run(network, grid, out, workers=1)
    assert (result.computed, result.cached) == (1, ACCURACY_TASKS - 1)
    assert result.rows == first.rows and len(_task_lines(lines)) == 1
    # More epochs make other training points: every task is new; a changed point only its own.
    more = sweep.Grid(grid.source, sweep.TrainSettings(epochs=301, dataset="xor"),
                      grid.points[:2])
    result, _, _ = _run(network, more, out, workers=1)
    assert (result.computed, result.cached) == (3, 0)
    widened = sweep.Grid(grid.source, grid.train, grid.points[:2] + (
        sweep.Point(grid.points[0].train, (2, 1), "ulx3s-85f", False),))
    result, _, _ = _run(network, widened, out, workers=1)
    assert (result.computed, result.cached) == (1, 3)
    net = sweep.variant(network, grid.points[0].train, (2, 1))
    estimate = boards.estimate(net, boards.board("ulx3s-85f"))
    assert result.rows[2]["status"] == "ok" and result.rows[2]["dsp"] == estimate.dsps


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    """A ``dask scheduler`` and two ``dask worker`` processes (no nanny, one thread each) on
    127.0.0.1: ``(address, {name: process})``. All of them are stopped afterwards."""
    require("distributed")
    dask = str(Path(sys.executable).parent / "dask")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = {}

    def start(name, argv):
        with open(tmp_path / f"{name}.log", "w") as log:      # the process has its own copy
            processes[name] = subprocess.Popen([dask, *argv], stdout=log,
                                               stderr=subprocess.STDOUT, cwd=tmp_path)

    try:
        start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port),
                            "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                            "--idle-timeout", "600"])
        for name in ("w1", "w2"):
            start(name, ["worker", address, "--name", name, "--nthreads", "1", "--no-nanny",
                         "--host", "127.0.0.1", "--no-dashboard", "--death-timeout", "60",
                         "--local-directory", str(tmp_path / name)])
        yield address, processes
    finally:               # the workers first: a worker that loses its scheduler reconnects
        for process in reversed(processes.values()):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in reversed(processes.values()):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def test_sweep_on_a_scheduler_survives_a_killed_worker(accuracy_sweep, dask_cluster, tmp_path):
    from distributed import Client
    network, grid, _, local, _ = accuracy_sweep
    address, processes = dask_cluster
    killed = {}
    with Client(address, timeout=30, set_as_default=False) as monitor:
        monitor.wait_for_workers(2, timeout=60)

        def kill_a_busy_worker():
            """Once a task has finished, SIGKILL a worker that holds a task."""
            deadline = time.monotonic() + SWEEP_TIMEOUT_S
            while time.monotonic() < deadline and not killed:
                if any((tmp_path / "out" / "cache").glob("*.json")):
                    names = {a: w["name"] for a, w in monitor.scheduler_info()["workers"].items()}
                    for worker, keys in monitor.processing().items():
                        if keys and names.get(worker) in processes:
                            processes[names[worker]].kill()
                            killed.update(name=names[worker], keys=list(keys))
                            return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
        killer.start()
        result, lines, seconds = _run(network, grid, tmp_path / "out", scheduler=address)
        killer.join(timeout=10)
        print(f"xor sweep on a scheduler with 2 workers, {killed.get('name')} killed holding "
              f"{killed.get('keys')}: {seconds:.1f} s")
        assert killed, "no worker was killed: the sweep ended before any task was running"
        assert processes[killed["name"]].wait(timeout=10) == -signal.SIGKILL
        assert len(monitor.scheduler_info()["workers"]) == 1
    assert f"dask scheduler {address}: 2 worker(s)" in lines[1]
    # Complete, nothing lost, nothing twice: one progress line per task, each task once, and
    # the same rows as the LocalCluster's (the keys are content hashes: the same points).
    tasks = _task_lines(lines)
    assert result.computed == ACCURACY_TASKS == len(tasks)
    assert len({line.split("] ", 1)[1].split(":")[0] for line in tasks}) == ACCURACY_TASKS
    assert len(list((tmp_path / "out" / "cache").glob("*.json"))) == ACCURACY_TASKS
    assert _untimed(result.rows) == _untimed(local.rows)


# -- a sweep with real builds ---------------------------------------------------------------------

BUILD_GRID = """
[train]
epochs = 20

[[grid]]                        # built: xor with one lane per layer, about 60 s
lanes = [1]
boards = ["ulx3s-85f"]

[[grid]]                        # refused before synthesis: ~20 multipliers, 8 on the iCE40UP5K
lanes = [[8, 2]]
boards = ["icebreaker"]
"""


@pytest.mark.slow
def test_sweep_with_builds_from_the_command_line(tmp_path, capsys):
    require("distributed")
    require("amaranth_boards")
    from pchw.build import toolchain_env
    try:
        toolchain_env(["yosys", "nextpnr-ecp5", "ecppack"])
    except PchwError as missing:
        if os.environ.get("CI"):
            pytest.fail(f"FPGA tools missing ({missing}); make test installs them")
        pytest.skip(f"FPGA tools missing ({missing}): pip install 'pchw[boards]'")
    (tmp_path / "sweep.toml").write_text(BUILD_GRID)
    out = tmp_path / "out"
    start = time.monotonic()
    assert main(["sweep", str(XOR), "--grid", str(tmp_path / "sweep.toml"), "--workers", "2",
                 "-o", str(out)]) == 0
    print(f"xor sweep with one build: {time.monotonic() - start:.0f} s")
    captured = capsys.readouterr()
    assert "2 point(s), 1 failed; computed 3 task(s), 0 from the cache" in captured.out
    assert "## ulx3s-85f (place and route)" in captured.out
    assert "[3/3]" in captured.err and "failed 1" in captured.err
    rows = {r["board"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    built, refused = rows["ulx3s-85f"], rows["icebreaker"]
    assert refused["status"] == "does not fit" and refused["lut"] is None
    assert re.search(REFUSED, refused["reason"])
    assert built["status"] == "ok", built["reason"]
    assert built["resources"] == "place and route"
    report = json.loads((Path(built["build_dir"]) / "report.json").read_text())
    assert built["lut"] == report["resources"]["LUT"]["used"] > 1000
    assert 0 < built["dsp"] == report["resources"]["DSP"]["used"] <= built["dsp_available"]
    assert built["bram"] == report["resources"]["BRAM"]["used"]
    assert built["fmax_mhz"] == report["fmax"]["achieved_mhz"] == built["clock_mhz"] >= 25
    assert built["learn_per_s"] == round(built["fmax_mhz"] * 1e6 / built["learn_cycles"], 1)
    # The bitstream was built from exactly the model folder written as the board's best point.
    best = pchw.load(out / "best" / "ulx3s-85f")
    assert report["description_hash"] == best.description_hash()
    assert not (out / "best" / "icebreaker").exists()
    assert np.isfinite(built["accuracy"])


def test_map_tasks_runs_a_fault_grid_and_caches_it(tmp_path):
    """pchw.sweep.map_tasks (bench/faults.py's grid runner) on a LocalCluster: the results in
    item order, an error is a result and not cached, and a re-run computes only what failed."""
    from pchw.faults import FaultSpec, grid_task
    from pchw.sweep import Cache, map_tasks, task_key
    network = pchw.load("models/xor")
    spec = FaultSpec.from_dict({"seed": 1, "dead": [{"layer": 1, "fraction": 0.25}]}).to_dict()
    tasks = [{"model": "models/xor", "kind": "recovery", "spec": spec, "epochs": 1,
              "reference_epochs": 1},
             {"model": "models/xor", "kind": "upsets", "spec": {"upsets": {"rate": 0.5}},
              "epochs": 1, "learn": True},
             {"model": "models/xor", "kind": "nonsense", "spec": spec, "epochs": 1}]
    keys = [task_key("faults", network, t) for t in tasks]
    cache, lines = Cache(tmp_path), []
    results = map_tasks(grid_task, tasks, cache, keys=keys, labels=["a", "b", "c"],
                        kind="faults", workers=1, progress=lines.append)
    assert [r["status"] for r in results] == ["ok", "ok", "error"]
    assert "kind 'nonsense'" in results[2]["reason"]
    curve = results[1]["record"]["curve"]
    assert results[0]["record"]["fault"] == spec and curve[0][0] == 0 and curve[-1][0] == 1
    assert lines[0] == "3 task(s): 0 cached, 3 to compute"
    assert any(line.startswith("[3/3] ") for line in lines)
    lines.clear()
    again = map_tasks(grid_task, tasks, cache, keys=keys, labels=["a", "b", "c"],
                      kind="faults", workers=1, progress=lines.append)
    assert lines[0] == "3 task(s): 2 cached, 1 to compute"
    assert again[0]["record"] == results[0]["record"]
