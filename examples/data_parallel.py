"""Train the digits MLP data-parallel over all devices: each device takes a slice of every
batch, the weights are replicated, and XLA sums the gradients across devices (an all-reduce).
Then train it again on one device from the same weights and batches, and compare.

python examples/data_parallel.py [--epochs N] [--hidden H] [--batch B] [--lr LR] [--distributed]

With --distributed, every process of a multi-process run (each host of a Cloud TPU pod slice,
docs/tpu.md) runs this same command; the mesh then spans all their devices.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
from _digits import Progress, batches, load

# On a laptop's CPU this simulates 8 devices; on GPU/TPU machines the real devices are used.
# XLA reads the flag when jax starts, so it is set before flowjit imports jax.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    os.environ["XLA_FLAGS"] = flags.strip()

import flowjit as fj  # noqa: E402
import flowjit.numpy as fnp  # noqa: E402


def train(initial, data, opts, mesh=None):
    """Train the MLP from the ``initial`` weights with Adam, SPMD over ``mesh`` (batches split
    on its "data" axis) or on one device: the per-step losses, the final weights, the test
    accuracy and the compiled training step."""
    train_x, train_y, test_x, test_y = data
    params = [fj.Variable(value, name=name) for name, value in initial.items()]
    w1, b1, w2, b2 = params  # no sharding: a mesh function replicates them at its first call
    optimizer = fj.optim.Adam(opts.lr)

    def logits(x):
        return fj.nn.relu(x @ w1 + b1) @ w2 + b2

    over_mesh = {}
    if mesh is not None:
        batch_split = (fj.P("data"), fj.P("data"))  # x and y: rows split over the devices
        over_mesh = dict(mesh=mesh, in_shardings=batch_split, out_shardings=fj.P())

    @fj.compile(**over_mesh)
    def train_step(x, y):
        loss = fj.nn.softmax_cross_entropy(logits(x), y).mean()
        optimizer.apply(fj.gradients(loss, params), params)
        return loss

    @fj.compile(mesh=mesh)  # the test set (359 digits) does not split evenly: replicated
    def accuracy(x, y):
        return (fnp.argmax(logits(x), axis=-1) == y).astype(fnp.float32).mean()

    rng = np.random.default_rng(1)  # the same batches for every run
    losses = []
    progress = Progress(opts.epochs)
    for epoch in range(opts.epochs):
        for x, y in batches(train_x, train_y, opts.batch, rng):
            losses.append(train_step(x, y))
        progress.update(epoch + 1, f"loss {float(losses[-1]):.4f}")
    weights = {p.name: np.asarray(p.value) for p in params}
    return np.array(losses, np.float64), weights, float(accuracy(test_x, test_y)), train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--distributed", action="store_true", help="join a multi-process run")
    opts = parser.parse_args()
    start = time.perf_counter()
    if opts.distributed:
        fj.distributed.initialize()  # before anything touches the devices

    devices = fj.devices()
    mesh = fj.Mesh(np.array(devices), ("data",))
    print(f"{len(devices)} device(s) ({devices[0].platform}), mesh {mesh}")
    batch = math.ceil(opts.batch / len(devices)) * len(devices)
    if batch != opts.batch:  # every device gets an equal slice of the batch
        print(f"batch {opts.batch} rounded up to {batch}, a multiple of {len(devices)} devices")
        opts.batch = batch

    train_x, train_y, test_x, test_y = load()
    data = (train_x.reshape(len(train_x), -1), train_y, test_x.reshape(len(test_x), -1), test_y)
    init = fj.random.Generator(0)
    initial = {
        "w1": np.asarray(init.normal((64, opts.hidden)) * math.sqrt(2 / 64)),
        "b1": np.zeros(opts.hidden, np.float32),
        "w2": np.asarray(init.normal((opts.hidden, 10)) * math.sqrt(1 / opts.hidden)),
        "b2": np.zeros(10, np.float32),
    }

    losses, weights, test_accuracy, train_step = train(initial, data, opts, mesh)
    print(
        f"test accuracy {test_accuracy:.4f} on {len(test_y)} digits "
        f"({opts.epochs} epochs, {len(losses)} steps of {opts.batch // len(devices)} digits "
        f"per device, {time.perf_counter() - start:.1f}s)"
    )
    hlo = train_step.lower(data[0][: opts.batch], data[1][: opts.batch]).compile().hlo()
    print(f"compiled step holds an all-reduce: {'all-reduce' in hlo}")

    one_losses, one_weights, one_accuracy, _ = train(initial, data, opts)  # no mesh
    difference = max(np.abs(weights[k] - one_weights[k]).max() for k in weights)
    print(
        f"one device: test accuracy {one_accuracy:.4f}; max loss difference "
        f"{np.abs(losses - one_losses).max():.2e}, max weight difference {difference:.2e}"
    )
    if np.allclose(losses, one_losses, rtol=1e-5, atol=1e-6) and difference <= 1e-5:
        print("data-parallel training matches one device")


if __name__ == "__main__":
    main()
