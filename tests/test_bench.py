"""The benchmark scripts' arithmetic (bench/): fast checks, not the measurements themselves."""

import importlib.util
import sys
from pathlib import Path

import pytest

from pchw.latency import core_infer_cycles, core_learn_cycles

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _bench(name):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def depth():
    return _bench("depth_scaling")


@pytest.mark.parametrize("mode", ["standard", "fixed_prediction", "incremental"])
def test_learning_cycles_are_linear_in_T(depth, mode):
    """The bench takes one relaxation step as core_learn_cycles(T=2) - core_learn_cycles(T=1)."""
    net = depth.network(3, mode, 1)
    step = depth.parallel_step_cycles(net)
    base = core_learn_cycles(net.with_settings(inference_steps=1))
    for T in range(1, 6):
        assert core_learn_cycles(net.with_settings(inference_steps=T)) == base + (T - 1) * step


def test_depth_scaling_follows_the_latency_formulas(depth):
    rows = depth.rows()
    assert [r["depth"] for r in rows] == list(depth.DEPTHS) * 2
    for r in rows:
        net = depth.network(r["depth"], r["mode"], r["T"])
        assert r["parallel_sample"] == core_infer_cycles(net) + core_learn_cycles(net)
        assert r["sequential_sample"] == (r["parallel_sample"]
                                          + r["T"] * (r["sequential_step"] - r["parallel_step"]))
    for mode in ("standard", "fixed_prediction"):
        by_depth = {r["depth"]: r for r in rows if r["mode"] == mode}
        one = by_depth[1]
        # One hidden layer: nothing to take turns, both schedules are the circuit's.
        assert one["sequential_step"] == one["parallel_step"]
        for d, r in by_depth.items():
            assert r["parallel_step"] == one["parallel_step"]       # equal widths: flat
            assert r["sequential_step"] == d * one["parallel_step"]  # one layer at a time


def test_depth_scaling_markdown_states_the_formula(depth):
    text = depth.markdown(depth.rows())
    assert "sequential step   = sum_{l=1..L-1}" in text
    assert text.count("\n| standard |") == len(depth.DEPTHS)


def test_width_table_columns_follow_the_modes_run():
    train_models = _bench("train_models")
    point = {"width": 8, "rounding": "nearest", "mode": "fixed_prediction", "accuracy": 0.5,
             "saturated": 3}
    sweep = [point, {**point, "rounding": "stochastic", "accuracy": 0.75, "saturated": 0},
             {**point, "width": 0, "accuracy": 1.0, "saturated": 0}]
    lines = train_models.width_table(sweep)
    assert lines[0] == "| width | fixed_prediction, nearest | fixed_prediction, stochastic |"
    assert lines[2] == "| 8 | 50.00%* | 75.00% |"
    assert lines[3] == "| float64 | 100.00% | 100.00% |"


def test_learning_quality_row_and_table():
    quality = _bench("learning_quality")
    row = quality.quality_row("xor")
    assert set(row["accuracy"]) == {"backprop float64", "PC standard fixed point"} | {
        f"PC {m} float64" for m in quality.MODES}
    result = {"date": "today", "machine": "here", "quality": [row], "on_chip": [],
              "agreement_steps": [0, 1], "agreement": [
                  {"setting": "s", "mode": "standard", "cosines": [0.5, 0.75]}],
              "width_sweep": []}
    text = quality.markdown(result)
    assert "| xor | 2-8-2 | 400 |" in text and "| s | standard | 0.5000 | 0.7500 |" in text
    assert "make bench FULL=1" in text


def test_pc_defaults_table_judges_against_the_bounds():
    """bench/pc_defaults.py: the runs use pchw init's settings, and the table marks each run
    within or outside issue 17's bound from the numbers it was given."""
    bench = _bench("pc_defaults")
    net = bench.initial_network([64, 16, 10])
    from pchw.defaults import default_settings
    assert bench.settings(net, "default") == default_settings(net)
    assert bench.settings(net, "standard") == default_settings(net, "standard")

    wine = bench.initial_network(bench.NETWORKS["wine-13-16-3"][1])

    def run(name, acc):
        return {"network": "wine-13-16-3", "run": name, **bench.run_key(wine, name),
                "history": [acc], "warnings": [], "date": "today"}
    result = {"date": "today", "machine": "m", "epochs": 1, "diagnosis": [],
              "runs": [{"network": "wine-13-16-3", "run": "backprop float64",
                        "history": [0.95]}, run("default", 0.945), run("standard", 0.92)]}
    text = bench.markdown(result)
    assert "| -0.50 (within) | 1.0 | quiet |" in text
    assert "| -3.00 (**outside**) | 2.0 | quiet |" in text
    assert "kept from" not in text                    # every PC run is of the table's date


def test_pc_defaults_reruns_only_changed_runs():
    """`--changed` reruns a stored run only if its settings or formats differ from what
    pchw.defaults gives now; runs stored before formats were recorded ran with Q16.10/Q16.12
    and round-to-nearest."""
    bench = _bench("pc_defaults")
    net = bench.initial_network(bench.NETWORKS["digits-64-32-16-10"][1])
    now = bench.run_key(net, "standard")
    assert now["values"] == str(bench.configured(net, "standard").formats.value)
    row = dict(now)
    assert not bench.stale(row, "digits-64-32-16-10", "standard")
    assert bench.stale({**row, "T": row["T"] + 1}, "digits-64-32-16-10", "standard")
    legacy = {k: v for k, v in bench.run_key(net, "old").items()
              if k not in ("rounding", "values", "weights")}
    assert not bench.stale(legacy, "digits-64-32-16-10", "old")
    assert bench.stale({**legacy, "values": "Q16.12"}, "digits-64-32-16-10", "old")
    old_row = {"network": "digits-64-32-16-10", "run": "standard", **legacy, "T": 17,
               "history": [0.5], "warnings": [], "date": "today"}
    result = {"date": "today", "machine": "m", "epochs": 1, "diagnosis": [], "runs": [
        {"network": "digits-64-32-16-10", "run": "backprop float64", "history": [0.9]},
        old_row, {**old_row, **now, "run": "standard", "history": [0.89]}]}
    assert bench.markdown(result).count("**not rerun**") == 1
    assert "89.00% |" in bench.summary(result["runs"])[-1]           # the rerun replaces it
    assert "**50.00%** (previous rule, not rerun)" in bench.summary(result["runs"][:2])[-1]
    runs = [{"network": "n", "run": "standard", "date": "2026-12-01"},
            {"network": "n", "run": "default", "date": "2026-12-03"}]
    assert "1 PC runs whose settings and formats did not change were kept from 2026-12-01" \
        in bench._carried(runs, "2026-12-03")


def test_board_throughput_ratios_count_necessary_macs(monkeypatch):
    """xor (2-8-2, standard, T = 8) on the iCEBreaker without a build: 32 MACs to infer, 320 of
    the 448 a learning sample performs are necessary (not the 8 re-predictions of layer 1, 16
    MACs each); of the device's 8 multipliers 6 are instantiated (the estimate: layer 1's two
    lanes have 4 rows each, two multipliers apiece; layer 2's have one row, one multiplier)."""
    bench = _bench("board_throughput")
    monkeypatch.setattr(bench, "current_report", lambda *args: None)
    r = bench.row("xor", "icebreaker", allow_build=False)
    infer, learn = r["core_cycles_infer"], r["core_cycles_learn"]
    assert (r["macs_learn"], r["necessary_macs_infer"], r["necessary_macs_learn"]) == \
        (448, 32, 448 - 8 * 16)
    assert (r["device_multipliers"], r["multipliers_instantiated"], r["multipliers_source"]) == \
        (8, 6, "estimate")
    assert (r["ratio_to_limit_infer"], r["utilisation_infer"]) == (32 / (8 * infer),
                                                                   32 / (6 * infer))
    assert (r["ratio_to_limit_learn"], r["utilisation_learn"]) == (320 / (8 * learn),
                                                                   320 / (6 * learn))
    assert sum(p["cycles"] for p in r["phases_learn"].values()) == learn
    assert r["phases_learn"]["predict"]["macs"] == 2 * r["phases_learn"]["predict"][
        "necessary_macs"]
    assert "| xor | icebreaker | 2/2 |" in bench.markdown([r])


def test_board_throughput_results_keep_their_keys():
    """The committed results: one record per committed model and board, with the keys issue 11
    names, the ratios on necessary MACs."""
    import json
    bench = _bench("board_throughput")
    rows = json.loads((BENCH / "results" / "board_throughput.json").read_text())
    assert sorted((r["model"], r["board"]) for r in rows) == \
        sorted((m, b) for m in bench.MODELS for b in bench.BOARDS)
    for r in rows:
        assert {"model", "board", "fmax_mhz", "timing_met", "ratio_to_limit_infer",
                "ratio_to_limit_learn", "utilisation_infer", "utilisation_learn"} <= set(r)
        assert r["ratio_to_limit_learn"] == pytest.approx(
            r["necessary_macs_learn"] / (r["device_multipliers"] * r["core_cycles_learn"]))
        assert r["utilisation_learn"] == pytest.approx(
            r["necessary_macs_learn"] / (r["multipliers_instantiated"] * r["core_cycles_learn"]))


def test_end_to_end_results_keep_their_keys():
    """The committed end-to-end records (issue 13): per board the three learning rates, the
    epoch's end-to-end time over the core's compute, consistent with the cycles measured and
    with pchw.latency (to within the UART sampling of the last reply byte), and the weights read
    back after TRAIN bit-exact."""
    import json
    from pchw.latency import DEFAULT_BAUD
    bench = _bench("end_to_end")
    records = json.loads((BENCH / "results" / "end_to_end.json").read_text())
    assert records["boards"] and set(records["boards"]) <= set(bench.BOARDS)
    for name, r in records["boards"].items():
        rates = {"samples_per_s_core_compute", f"samples_per_s_learn_command_{DEFAULT_BAUD}",
                 f"samples_per_s_learn_command_{r['fast_baud']}", "samples_per_s_train"}
        assert rates <= set(r) and "epoch_end_to_end_over_compute" in r
        assert r["weights_bit_exact"]
        assert r["epoch_end_to_end_over_compute"] == pytest.approx(
            r["train_cycles"] / (r["samples"] * r["core_cycles_per_sample"]), abs=1e-4)
        assert r["samples_per_s_train"] == pytest.approx(
            r["samples"] * r["clock_hz"] / r["train_cycles"], abs=0.1)
        assert r["samples_per_s_core_compute"] == pytest.approx(
            r["clock_hz"] / r["core_cycles_per_sample"], abs=0.1)
        assert abs(r["train_cycles"] - r["train_cycles_formula"]) <= 2
        assert r["samples_per_s_learn_command_" + str(DEFAULT_BAUD)] < \
            r[f"samples_per_s_learn_command_{r['fast_baud']}"] < r["samples_per_s_train"] < \
            r["samples_per_s_core_compute"]
