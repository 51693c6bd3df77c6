"""bench/many_variables.py runs small (--quick) in a fresh process: both peers train the same
parameters and it writes a row per N with its step and first-call ratios (times are not
checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "many_variables.py"


def test_many_variables_bench_runs_small(tmp_path):
    out = tmp_path / "many_variables.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| 10 |" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [r["variables"] for r in rows] == [1, 10]
    for row in rows:
        assert row["max_param_difference"] < 1e-5, row
        assert row["step_ratio"] > 0 and row["first_call_ratio"] > 0
