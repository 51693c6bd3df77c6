"""A CI-sized long run (bench/long_run.py, flowjit only): 500 steps of the digits MLP with a
loss read every 10 steps, an eval pass every 25 and a checkpoint every 50, in a fresh
subprocess (its RSS its own). After 100 steps of warm-up, the live jax arrays outside the
in-flight queue stay exactly constant, and RSS and the tracked objects grow by no more than the
bench's tolerances (measured; see bench/long_run.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "long_run.py"

STEPS, WARMUP, EVERY = 500, 100, 50


def test_no_growth_of_live_arrays_rss_or_objects_over_500_training_steps(tmp_path):
    out = tmp_path / "run.json"
    argv = [sys.executable, str(BENCH), "--impl", "flowjit", "--json", str(out)]
    argv += ["--steps", str(STEPS), "--warmup", str(WARMUP), "--every", str(EVERY)]
    argv += ["--read-every", "10", "--eval-every", "25", "--checkpoint-every", "50"]
    env = {**os.environ, "FLOWJIT_CACHE_DIR": ""}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    print(result.stdout)
    assert result.returncode in (0, 1), result.stderr[-2000:]  # (1: the bench's verdict failed)
    report = json.loads(out.read_text())
    run, tolerances = report["runs"][0], report["tolerances"]
    samples = run["samples"]
    assert [s["step"] for s in samples] == list(range(WARMUP, STEPS + 1, EVERY))
    # the run trained: the loss read every 10 steps fell and the eval pass ran every 25 steps
    assert run["losses"][-1][1] < run["losses"][0][1] / 4
    assert len(run["accuracies"]) == STEPS // 25 and run["test_accuracy"] > 0.9

    first, last = samples[0], samples[-1]
    assert [s["outside_queue"] for s in samples] == [first["outside_queue"]] * len(samples)
    assert run["verdict"]["rss_growth_mb"] <= tolerances["rss_mb"]  # (from the first half's median)
    assert last["gc_objects"] - first["gc_objects"] <= tolerances["gc_objects"]
    assert result.returncode == 0  # the bench's own verdict agrees
