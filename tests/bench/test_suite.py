"""The benchmark suite's own machinery (bench/suite/suite.py): rows, ratios, goals and the loss
check on made-up results, and one real run of the dispatch row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[2] / "bench" / "suite"
sys.path.insert(0, str(SUITE))
import suite  # noqa: E402

ALL_PEERS = suite.make_peers("/nonexistent/python")  # (TensorFlow marked missing)
PEERS = [p for p in ALL_PEERS if not p.missing]


def result(first_call: float, losses=(2.0, 1.5), **more) -> dict:
    return {"first_call_seconds": first_call, "losses": list(losses), **more}


def row(label: str) -> suite.Row:
    return next(r for r in suite.ROWS if r.label == label)


def test_tensorflow_is_reported_missing_not_run():
    names = {p.name: p.missing for p in suite.make_peers("/nonexistent/python")}
    assert names[suite.TF_PLAIN] and names[suite.TF_JIT]
    assert names["flowjit"] is None and names[suite.REFERENCE] is None


def test_warm_row_divides_each_peers_warm_median_by_its_cold_one():
    results = {
        "compile_mlp": {"flowjit": [result(1.0), result(2.0), result(3.0)]},
        "compile_mlp_warm": {"flowjit": [result(0.3)], "jax.jit": [result(0.5)]},
    }
    results["compile_mlp"]["jax.jit"] = [result(2.0)]
    built = suite.build_row(row("MLP first call, second process, warm cache (s)"), results, PEERS)
    assert built["warm_cold"] == {"flowjit": pytest.approx(0.15), "jax.jit": pytest.approx(0.25)}
    assert built["goal"] == "flowjit warm <= 0.2x cold: met"
    results["compile_mlp_warm"]["flowjit"] = [result(0.5)]
    built = suite.build_row(row("MLP first call, second process, warm cache (s)"), results, PEERS)
    assert built["goal"] == "flowjit warm <= 0.2x cold: MISSED by 25.0%"


def test_step_row_judges_throughput_against_jax():
    steps = lambda s: {"per_step_seconds": [s], "losses": [1.0]}  # noqa: E731
    results = {"mlp": {"flowjit": [steps(0.0103)], "jax.jit": [steps(0.0100)]}}
    built = suite.build_row(row("MLP step (ms)"), results, PEERS)
    assert built["ratio"] == pytest.approx(1.03)
    assert built["goal"].endswith("met") and "MISSED" not in built["goal"]
    results["mlp"]["flowjit"] = [steps(0.0104)]  # 0.962x the throughput
    assert "MISSED" in suite.build_row(row("MLP step (ms)"), results, PEERS)["goal"]


def test_cnn_row_judges_against_jax_and_tensorflow():
    steps = lambda s: {"per_step_seconds": [s], "losses": [1.0]}  # noqa: E731
    results = {
        "cnn": {
            "flowjit": [steps(0.015)],
            "jax.jit": [steps(0.060)],
            suite.TF_PLAIN: [steps(0.013)],
        }
    }
    built = suite.build_row(row("CNN step (ms)"), results, ALL_PEERS)
    assert built["goal"] == ("time <= 0.5x jax: met; <= 1x tf.function: 1.15x, MISSED by 15.4%")
    results["cnn"][suite.TF_PLAIN] = [steps(0.016)]
    built = suite.build_row(row("CNN step (ms)"), results, ALL_PEERS)
    assert built["goal"] == "time <= 0.5x jax: met; <= 1x tf.function: 0.94x, met"


def test_losses_that_disagree_are_reported_with_the_peer():
    results = {
        "compile_mlp": {
            "flowjit": [result(1.0, losses=(2.0, 1.5))],
            "jax.jit": [result(1.0, losses=(2.0, 1.6))],
        }
    }
    check = suite.losses_agree(results, ("compile_mlp",))
    assert check["agree"] is False and "flowjit" in check["text"]
    results["compile_mlp"]["flowjit"] = [result(1.0, losses=(2.0, 1.6 * (1 + 1e-6)))]
    assert suite.losses_agree(results, ("compile_mlp",))["agree"] is True


def test_a_peer_error_shows_in_its_cell():
    results = {"compile_lstm": {"flowjit": [{"error": "exit 1: boom"}], "jax.jit": [result(1.0)]}}
    built = suite.build_row(row("LSTM first call, fresh process (s)"), results, PEERS)
    assert built["ratio"] is None and built["goal"].endswith("n.a.")
    text, notes = suite.table([built], [], PEERS)
    assert "error [1]" in text and notes == ["flowjit: exit 1: boom"]


def test_dispatch_row_runs_both_peers_and_writes_json(tmp_path):
    out = tmp_path / "suite.json"
    done = subprocess.run(
        [sys.executable, str(SUITE / "suite.py"), "--quick", "--only", "dispatch"]
        + ["--tf-python", "/nonexistent/python", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| null-step dispatch `x + 1`, per call (µs) |" in done.stdout
    data = json.loads(out.read_text())
    (dispatch,) = data["rows"]
    assert dispatch["losses"]["agree"] is True
    for peer in ("flowjit", "jax.jit"):
        cell = dispatch["peers"][peer]
        assert len(cell["values"]) == suite.QUICK["dispatch"][1]
        assert 0 < cell["min"] <= cell["median"] < 1000  # µs per call
