"""Run by test_sharding.py:
``distributed_script.py PORT PROCESS_ID NUM_PROCESSES FOLDER [hang]``.
With 2 processes it joins a localhost run through fj.distributed.initialize (4 CPU devices
each, 8 in all); with 1 it runs alone on 8 devices. Either way it trains the same
data-parallel MLP (weights sharded on a 2D mesh) for 10 steps, saves a checkpoint of a
sharded variable and writes a JSON report, FOLDER/report-<process id>.json: the losses, the
device counts, the restored shards' checksum and the compilation cache settings.
With ``hang``, process 1 never calls the step: process 0's first step waits in a collective
for it, and fj.distributed's watchdog (collective_timeout=5) ends process 0."""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

port, process_id, num_processes, folder = (
    sys.argv[1],
    int(sys.argv[2]),
    int(sys.argv[3]),
    sys.argv[4],
)
hang = sys.argv[5:] == ["hang"]

import flowjit as fj  # noqa: E402
from flowjit.backends.xla.jaxshim import jax  # noqa: E402

if num_processes > 1:
    jax.config.update("jax_num_cpu_devices", 8 // num_processes)
    fj.distributed.initialize(
        f"127.0.0.1:{port}",
        num_processes,
        process_id,
        coordinator_bind_address=f"127.0.0.1:{port}",
        initialization_timeout=30,
        heartbeat_timeout_seconds=10,
        shutdown_timeout_seconds=10,
        collective_timeout=5 if hang else 60,
    )
else:
    jax.config.update("jax_num_cpu_devices", 8)

rng = np.random.default_rng(0)
X = rng.standard_normal((32, 16)).astype(np.float32)
Y = rng.integers(0, 4, 32).astype(np.int32)
mesh = fj.Mesh(np.array(fj.devices()).reshape(4, 2), ("data", "model"))
with mesh:
    w1 = fj.Variable(
        (rng.standard_normal((16, 32)) / 4).astype(np.float32),
        name="w1",
        sharding=fj.P(None, "model"),
    )
    w2 = fj.Variable(
        (rng.standard_normal((32, 4)) / 6).astype(np.float32),
        name="w2",
        sharding=fj.P("model", None),
    )
b2 = fj.Variable(np.zeros(4, np.float32), name="b2")  # replicated at the first call
opt = fj.optim.Adam(0.05)


@fj.compile(mesh=mesh, in_shardings=(fj.P("data"), fj.P("data")), out_shardings=fj.P())
def step(x, y):
    logits = fj.nn.relu(x @ w1) @ w2 + b2
    loss = fj.nn.softmax_cross_entropy(logits, y).mean()
    opt.apply(fj.gradients(loss, [w1, w2, b2]), [w1, w2, b2])
    return loss


if hang and process_id == 1:
    time.sleep(600)  # (alive, heartbeating, never joining; the test kills it)
losses = [float(step(X, Y)) for _ in range(10)]
path = os.path.join(folder, "w1.safetensors")
fj.save(path, [w1])  # every process gathers; process 0 writes
with mesh:
    back = fj.Variable(np.zeros((16, 32), np.float32), name="w1", sharding=fj.P(None, "model"))
fj.restore(path, [back])
local = [np.asarray(s.data) for s in back.value.addressable_shards]
report = json.dumps(
    {
        "process": fj.distributed.process_index(),
        "processes": fj.distributed.process_count(),
        "devices": len(fj.devices()),
        "local_devices": len(jax.local_devices()),
        "cache_dir": fj.config.cache_dir,
        "jax_cache_dir": jax.config.jax_compilation_cache_dir,
        "losses": losses,
        "restored_local_shards": len(local),
        "restored_sum": float(sum(float(a.sum()) for a in local)),
        "w1_local_sum": float(
            sum(float(np.asarray(s.data).sum()) for s in w1.value.addressable_shards)
        ),
    }
)
# (a file, not stdout: gloo prints there at any moment, even inside a line of ours)
with open(os.path.join(folder, f"report-{process_id}.json"), "w") as f:
    f.write(report)
