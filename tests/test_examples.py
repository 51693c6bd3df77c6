"""Each example runs to completion, small, in its own process."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
# small arguments, and a line each example prints only when its result is right
SMALL_ARGS = {
    "quickstart.py": (["--batch", "16", "--show-ir"], "graph @predict("),
    "linear_regression.py": (["--steps", "150"], "restored step 150 bit-exactly"),
}


def test_every_example_has_small_args():
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(SMALL_ARGS)


@pytest.mark.parametrize("name", sorted(SMALL_ARGS))
def test_example_runs(name):
    args, expected = SMALL_ARGS[name]
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "matches numpy" in result.stdout
    assert expected in result.stdout
