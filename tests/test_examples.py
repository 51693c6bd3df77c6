"""Each example runs to completion, small, in its own process."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
# small arguments, and a line each example prints only when its result is right
SMALL_ARGS = {
    "quickstart.py": (["--batch", "16", "--show-ir"], "graph @predict("),
    "linear_regression.py": (["--steps", "150"], "restored step 150 bit-exactly"),
    "digits_mlp.py": (["--epochs", "8"], "test accuracy"),
    "digits_cnn.py": (["--epochs", "4"], "test accuracy"),
    "char_lstm.py": (["--quick"], "sample: "),
    "data_parallel.py": (["--epochs", "8"], "data-parallel training matches one device"),
    "tensor_parallel.py": (["--epochs", "8"], "tensor-parallel training matches one device"),
    "flax_port.py": (["--quick"], "the flax port matches jax.jit"),
    "gpt.py": (["--quick", "--scan"], "sample: def "),
    "resumable_training.py": (
        ["--compare", "--steps", "20", "--save-every", "5"],
        "equals the uninterrupted run's, bit for bit: True",
    ),
}
MIN_SMALL_RUN_ACCURACY = 0.85  # the full runs' accuracies are in the issue's closing note


def test_every_example_has_small_args():
    examples = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert examples == set(SMALL_ARGS)  # (_*.py are helpers the examples share)


@pytest.mark.parametrize("name", sorted(SMALL_ARGS))
def test_example_runs(name):
    args, expected = SMALL_ARGS[name]
    env = dict(os.environ)
    env.pop("JAX_ENABLE_X64", None)  # (as a user runs them: jax's default, x64 off)
    if name.endswith("_parallel.py"):
        # without a device count in XLA_FLAGS these examples ask for 8 CPU devices themselves
        flags = env.get("XLA_FLAGS", "").split()
        env["XLA_FLAGS"] = " ".join(f for f in flags if "host_platform_device_count" not in f)
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert expected in result.stdout
    if name.startswith("digits") or name.endswith("_parallel.py"):
        accuracy = float(result.stdout.split("test accuracy ")[1].split()[0])
        assert accuracy >= MIN_SMALL_RUN_ACCURACY, result.stdout
    if name.endswith("_parallel.py"):
        # the expected line: the run matched one device's; these: it was spread over several
        devices = int(result.stdout.split(" device(s)")[0])
        if name == "data_parallel.py" and devices > 1:
            assert "holds an all-reduce: True" in result.stdout, result.stdout
        if name == "tensor_parallel.py" and devices % 2 == 0:
            assert "w1 (64, 128): shards (64, 64) on devices" in result.stdout, result.stdout
    elif name == "char_lstm.py":
        perplexities = [
            float(line.split("perplexity ")[1].split()[0])
            for line in result.stdout.splitlines()
            if line.startswith("step ")
        ]
        bigram = float(result.stdout.split("bigram counts: perplexity ")[1].split()[0])
        # from about the alphabet's size (untrained) to below next-character counts
        assert perplexities[0] > 80 and perplexities[-1] < bigram, result.stdout
        sample = result.stdout.split("sample: ", 1)[1]
        assert len(sample.strip()) > 50, result.stdout
    elif name == "gpt.py":
        held_out = [
            float(line.split("held-out loss ")[1].split()[0])
            for line in result.stdout.splitlines()
            if line.startswith("step ")
        ]
        # from about ln(256) = 5.5 (untrained) to well under it; the restore loses nothing
        assert held_out[0] > 5.0 and held_out[-1] < 3.0, result.stdout
        assert "restored held-out loss" in result.stdout and " equals " in result.stdout
    elif name == "flax_port.py":
        # the losses are printed side by side; training brings them down
        rows = [line.split() for line in result.stdout.splitlines() if line[:4].strip().isdigit()]
        assert float(rows[-1][2]) < float(rows[0][2]), rows
    elif name == "resumable_training.py":
        # the second piece began from a saved step, and the run learned
        resumed = int(result.stdout.split("resumed from step ")[1].split(",")[0])
        assert resumed in (5, 10), result.stdout  # (saved every 5 steps, killed at 12)
        rows = [line.split("|") for line in result.stdout.splitlines() if line[:3] == "| 1"]
        assert float(rows[-1][2]) < float(rows[0][2]) - 0.3, rows
    elif not name.startswith("digits"):
        assert "matches numpy" in result.stdout
