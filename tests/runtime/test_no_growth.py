"""Compiled functions leave nothing behind once dropped (issue 21): a cluster is a value
bound as the primitive's parameter, with no process-wide table of graphs, and a host call's
function is held by its op; what jax caches by a cluster is what keeps it alive, so after
jax's caches are cleared no cluster, graph or host function of a dropped function stays.
(Before, a CLUSTERS dictionary kept every cluster graph, and CALLBACKS every host function,
for good.)"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).with_name("growth_script.py")


def test_dropped_compiled_functions_leave_no_cluster_graph_or_host_function():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "1000"], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["after"] == report["before"], report
    held = report["held_by_jax"]  # (they ran, and jax held them until its caches were cleared)
    assert held["clusters"] > report["before"]["clusters"], report
    assert held["host_functions"] > report["before"]["host_functions"], report
