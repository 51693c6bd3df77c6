"""Ops in two fj.device scopes run on those devices, with explicit transfers, and give the
one-device results (8 virtual CPU devices, in a fresh process: XLA reads the device count
when jax starts)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).with_name("placement_script.py")


def test_ops_run_on_their_scopes_devices_and_equal_the_one_device_run():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # h was computed in the cpu:3 scope, y in the cpu:5 scope, the loss outside any scope
    assert report["devices"] == [[3], [5], [0]]
    assert all(report["equal"]), report  # h, y, loss and the updated variable
    assert {"cpu:3", "cpu:5", None} <= set(report["cluster_devices"])
    assert {"cpu:3", "cpu:5", "default"} <= set(report["transfers"])
    assert "host_call" in report["ops"]
