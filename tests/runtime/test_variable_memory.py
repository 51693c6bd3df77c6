"""A large variable updated by many compiled steps stays in place: the process's peak RSS
stays under 3x the variable's size (measured in a fresh subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json
import numpy as np
import flowjit as fj

n = 64 * 1024 * 1024  # 256 MiB of float32
w = fj.Variable(np.zeros(n, np.float32), name="big")

@fj.compile
def step(delta):
    w.assign_add(delta)

pointers = {w.value.unsafe_buffer_pointer()}  # the buffer the variable started with
for _ in range(50):
    step(np.float32(1.0))
    pointers.add(w.value.unsafe_buffer_pointer())
w.value.block_until_ready()
# VmHWM, the peak RSS of this program's memory: unlike ru_maxrss it starts afresh at exec
# (ru_maxrss would start at the RSS of the process that forked us: pytest, with its suite)
status = open("/proc/self/status").read()
peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
print(json.dumps({"peak": peak, "size": n * 4, "value": float(w.value[123]),
                  "buffers": len(pointers)}))
"""


def test_peak_rss_of_a_256_mib_variable_updated_50_times():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(
        f"peak RSS {report['peak'] / 2**20:.0f} MiB for a {report['size'] / 2**20:.0f} MiB "
        f"variable ({report['peak'] / report['size']:.2f}x), {report['buffers']} buffer(s)"
    )
    assert report["value"] == 50.0
    assert report["peak"] < 3 * report["size"]
    assert report["buffers"] == 1  # every step updated the variable's first buffer in place
