"""bench/prefetch.py, bench/checkpoint.py and bench/profile.py run small in fresh processes and
write their figures (times are not checked: benchmarks measure, tests do not time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_prefetch_bench_runs_small(tmp_path):
    out = tmp_path / "prefetch.json"
    pin = ("--pin",) if len(os.sched_getaffinity(0)) >= 2 else ()
    done = run("prefetch.py", "--quick", *pin, "--json", str(out))
    assert "| prefetch |" in done.stdout
    result = json.loads(out.read_text())
    assert ("input pipeline on cores" in result["layout"]) == bool(pin)
    assert set(result["ms_per_step"]) == {
        "compute alone", "no prefetch", "prefetch", "host work alone"
    }  # fmt: skip
    assert all(v > 0 for v in result["ratio_to_compute"].values())


def test_checkpoint_bench_runs_small(tmp_path):
    out = tmp_path / "checkpoint.json"
    done = run("checkpoint.py", "--gib", "0.07", "--rounds", "1", "--json", str(out))
    assert "flowjit restore / orbax restore" in done.stdout
    result = json.loads(out.read_text())
    assert result["devices"] == 8 and result["variables"] == 1
    assert result["blocked_over_sync"] > 0 and result["restore_over_orbax"] > 0


def test_profile_bench_runs_small(tmp_path):
    out = tmp_path / "profile.json"
    done = run("profile.py", "--steps", "5", "--json", str(out))
    assert "lines / profiled step" in done.stdout
    result = json.loads(out.read_text())
    assert len(result) == 2
    for row in result.values():
        assert row["lines_ms"] > 0 and "| line |" in row["table"]
