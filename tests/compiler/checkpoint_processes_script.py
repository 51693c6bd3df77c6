"""Run by test_checkpointing.py: ``checkpoint_processes_script.py PORT PROCESS_ID COUNT FOLDER
MODE``, with COUNT processes of 8 / COUNT CPU devices each (COUNT 1: one process alone).

MODE ``save``: a model sharded over all 8 devices (a ``data`` axis) and its Adam state, one
training step, then ``fj.Checkpoint(FOLDER/ckpt).save(1)``; each process writes the report
FOLDER/save-<id>.json: the bytes in its own orbax shard folder, and the checksum of the values
it saved (all processes' shards).

MODE ``restore-<devices>-<axes>``: one process with <devices> devices restores the checkpoint
into a mesh of that many devices laid out as <axes> ("data" or "model": which dimension is
split), and writes FOLDER/restore.json with the checksums of what it read."""

from __future__ import annotations

import json
import os
import sys

port, process_id, count, folder, mode = sys.argv[1:6]
process_id, count = int(process_id), int(count)

import numpy as np  # noqa: E402

import flowjit as fj  # noqa: E402
from flowjit.backends.xla.jaxshim import jax  # noqa: E402
from flowjit.runtime.sharding import host_value  # noqa: E402

if mode == "save":
    devices = 8 // count
else:
    devices = int(mode.split("-")[1])
jax.config.update("jax_num_cpu_devices", devices)
if count > 1:
    fj.distributed.initialize(
        f"127.0.0.1:{port}",
        count,
        process_id,
        coordinator_bind_address=f"127.0.0.1:{port}",
        initialization_timeout=30,
        heartbeat_timeout_seconds=10,
        shutdown_timeout_seconds=10,
        collective_timeout=60,
    )

SHAPES = {"w": (512, 256), "v": (256, 128)}
rng = np.random.default_rng(0)
INITIAL = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}


def checksums(variables: dict) -> dict:
    return {
        k: float(np.asarray(host_value(v.value), np.float64).sum()) for k, v in variables.items()
    }


if mode == "save":
    mesh = fj.Mesh(np.array(fj.devices()), ("data",))
    with mesh:
        params = {
            k: fj.Variable(v, name=k, sharding=fj.P("data", None)) for k, v in INITIAL.items()
        }
    opt = fj.optim.Adam(0.1)
    opt.state(list(params.values()))

    @fj.compile(mesh=mesh)
    def step():
        loss = ((params["w"] @ params["v"]) ** 2).mean()
        opt.apply(fj.gradients(loss, list(params.values())), list(params.values()))
        return loss

    float(step())
    ckpt = fj.Checkpoint(os.path.join(folder, "ckpt"), model=params, optimizer=opt)
    ckpt.save(1)
    ckpt.close()
    own = os.path.join(folder, "ckpt", "1", "state", f"ocdbt.process_{process_id}")
    written = sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(own) for f in files
    )
    slots = {f"optimizer/{v.name}": v for v in opt.variables()}
    # each process's iterator yields its own slice: rows 4 * id .. 4 * id + 3 of the batch
    local = np.arange(32, dtype=np.float32).reshape(8, 4)[4 * process_id : 4 * process_id + 4]
    batch = next(fj.data.prefetch([local], sharding=fj.NamedSharding(mesh.jax, fj.P("data"))))
    report = {
        "prefetch_global_shape": list(batch.shape),
        "prefetch_whole": host_value(batch).tolist(),
        "process": fj.distributed.process_index(),
        "local_devices": len(jax.local_devices()),
        "bytes_in_own_shard_folder": written,
        "shard_folders": sorted(
            n for n in os.listdir(os.path.join(folder, "ckpt", "1", "state")) if "process" in n
        ),
        "checksums": checksums({f"model/{k}": v for k, v in params.items()} | slots),
    }
    with open(os.path.join(folder, f"save-{process_id}.json"), "w") as f:
        json.dump(report, f)
else:
    axis = mode.split("-")[2]
    mesh = fj.Mesh(np.array(fj.devices()), (axis,))
    spec = fj.P(axis, None) if axis == "data" else fj.P(None, axis)
    with mesh:
        params = {
            k: fj.Variable(np.zeros(s, np.float32), name=k, sharding=spec)
            for k, s in SHAPES.items()
        }
    opt = fj.optim.Adam(0.1)
    opt.state(list(params.values()))
    ckpt = fj.Checkpoint(os.path.join(folder, "ckpt"), model=params, optimizer=opt)
    step = ckpt.restore()
    slots = {f"optimizer/{v.name}": v for v in opt.variables()}
    report = {
        "step": step,
        "devices": len(fj.devices()),
        "w_sharding": str(params["w"].value.sharding.spec),
        "w_shards": len(params["w"].value.addressable_shards),
        "checksums": checksums({f"model/{k}": v for k, v in params.items()} | slots),
    }
    with open(os.path.join(folder, "restore.json"), "w") as f:
        json.dump(report, f)
