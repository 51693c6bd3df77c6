"""Shared by data_parallel.py and tensor_parallel.py: options, the digits and the MLP's first
weights, the training loop, and the comparison with one device.

Import it before flowjit: on a CPU it makes XLA simulate 8 devices (on GPU/TPU machines the
real devices are used). XLA reads the flag when jax starts."""

from __future__ import annotations

import argparse
import math
import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    os.environ["XLA_FLAGS"] = flags.strip()

import numpy as np  # noqa: E402
from _digits import Progress, batches, load  # noqa: E402

import flowjit as fj  # noqa: E402


def options(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    return parser


def round_batch(opts: argparse.Namespace, parts: int, what: str) -> None:
    """Round ``opts.batch`` up to a multiple of ``parts``, so that each gets an equal slice."""
    batch = math.ceil(opts.batch / parts) * parts
    if batch != opts.batch:
        print(f"batch {opts.batch} rounded up to {batch}, a multiple of {parts} {what}")
        opts.batch = batch


def digits_and_weights(hidden: int) -> tuple[tuple, dict[str, np.ndarray]]:
    """(train_x, train_y, test_x, test_y) with flat images, and the MLP's first weights."""
    train_x, train_y, test_x, test_y = load()
    data = (train_x.reshape(len(train_x), -1), train_y, test_x.reshape(len(test_x), -1), test_y)
    init = fj.random.Generator(0)
    initial = {
        "w1": np.asarray(init.normal((64, hidden)) * math.sqrt(2 / 64)),
        "b1": np.zeros(hidden, np.float32),
        "w2": np.asarray(init.normal((hidden, 10)) * math.sqrt(1 / hidden)),
        "b2": np.zeros(10, np.float32),
    }
    return data, initial


def train_loop(train_step, data: tuple, opts: argparse.Namespace) -> np.ndarray:
    """Run ``train_step(x, y)`` over opts.epochs of shuffled batches (the same for every run);
    returns the losses."""
    train_x, train_y = data[0], data[1]
    rng = np.random.default_rng(1)
    losses = []
    progress = Progress(opts.epochs)
    for epoch in range(opts.epochs):
        for x, y in batches(train_x, train_y, opts.batch, rng):
            losses.append(train_step(x, y))
        progress.update(epoch + 1, f"loss {float(losses[-1]):.4f}")
    return np.array(losses, np.float64)


def compare_with_one_device(what: str, run: tuple, one: tuple) -> None:
    """Print how the (losses, weights, test accuracy) of ``run`` over the mesh differ from
    ``one``'s on one device, and "<what> training matches one device" when they agree."""
    (losses, weights, _), (one_losses, one_weights, one_accuracy) = run, one
    difference = max(np.abs(weights[k] - one_weights[k]).max() for k in weights)
    print(
        f"one device: test accuracy {one_accuracy:.4f}; max loss difference "
        f"{np.abs(losses - one_losses).max():.2e}, max weight difference {difference:.2e}"
    )
    if np.allclose(losses, one_losses, rtol=1e-5, atol=1e-6) and difference <= 1e-5:
        print(f"{what} training matches one device")
