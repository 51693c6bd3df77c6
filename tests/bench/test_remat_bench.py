"""bench/remat.py runs small (--quick) in a fresh process: it checks its gradients itself,
prints its table and writes a row per model and variant, with remat's temp bytes at most half
of the same peer's without (memory analysis is deterministic; times are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "remat.py"
VARIANTS = ["flowjit", "flowjit + fj.checkpoint", "jax.jit", "jax.jit + jax.checkpoint"]


def test_remat_bench_runs_small_and_halves_temp_bytes(tmp_path):
    out = tmp_path / "remat.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| MLP (16 layers) | flowjit + fj.checkpoint |" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    models = sorted({r["model"] for r in rows})
    assert models == ["MLP (16 layers)", "transformer (4 blocks)"]
    for model in models:
        by_variant = {r["variant"]: r for r in rows if r["model"] == model}
        assert list(by_variant) == VARIANTS
        for remat in (VARIANTS[1], VARIANTS[3]):
            row = by_variant[remat]
            plain = by_variant[remat.split(" + ")[0]]
            assert row["temp_ratio"] == row["temp_bytes"] / plain["temp_bytes"] <= 0.5, row
            assert row["step_ms"] > 0 and row["time_ratio"] > 0
