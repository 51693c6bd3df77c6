"""Running a script in a fresh process with 8 virtual CPU devices (XLA_FLAGS must be set
before jax starts, so such tests run in a subprocess) and reading the JSON it prints last."""

from __future__ import annotations

import json
import os
import subprocess
import sys

EIGHT = "--xla_force_host_platform_device_count=8"


def run_on_eight_devices(args: list[str], timeout: int = 600) -> dict:
    """``python *args`` with 8 CPU devices; asserts it succeeded and returns the JSON object
    of its last line of output."""
    env = dict(os.environ, XLA_FLAGS=EIGHT)
    done = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
