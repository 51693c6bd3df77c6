"""Per-example gradients (issue 23): ``fj.vmap(fj.grad(loss), in_axes=(None, 0, 0))`` in one
fj.compile against ``jax.jit(jax.vmap(jax.grad(loss), ...))`` on the same MLP and small conv
net, side by side in one run: the step time (interleaved rounds, medians) as a flowjit/jax
ratio, and the largest difference between the two gradients.

    python bench/per_example.py [--rounds R] [--batch B]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import flowjit as fj
import flowjit.numpy as fnp


def mlp(np_, sizes=(784, 256, 256, 10)):
    rng = np.random.default_rng(0)
    params = [
        (rng.standard_normal((a, b)).astype(np.float32) / np.sqrt(a), np.zeros(b, np.float32))
        for a, b in zip(sizes[:-1], sizes[1:])
    ]

    def loss(ps, x, y):
        h = x
        for i, (w, b) in enumerate(ps):
            h = h @ w + b
            h = np_.tanh(h) if i < len(ps) - 1 else h
        return -(y * (h - np_.log(np_.exp(h).sum()))).sum()

    return params, loss, (sizes[0],), sizes[-1]


def cnn(np_):
    rng = np.random.default_rng(0)
    params = [
        rng.standard_normal((3, 3, 1, 8)).astype(np.float32) / 3,
        rng.standard_normal((3, 3, 8, 16)).astype(np.float32) / 8,
        rng.standard_normal((7 * 7 * 16, 10)).astype(np.float32) / 28,
    ]
    conv = fj.nn.conv2d if np_ is fnp else None

    def loss(ps, x, y):
        h = x[None]  # (one example: a batch of one image, NHWC)
        for k in ps[:2]:
            if np_ is fnp:
                h = conv(h, k, padding="SAME")
            else:
                h = jax.lax.conv_general_dilated(
                    h, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
                )
            h = np_.maximum(h, 0)
            n, hh, ww, c = h.shape
            h = h.reshape(n, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))
        logits = h.reshape(1, -1) @ ps[2]
        return -(y * (logits - np_.log(np_.exp(logits).sum()))).sum()

    return params, loss, (28, 28, 1), 10


def build(model: str, batch: int):
    params, fj_loss, shape, classes = (mlp if model == "mlp" else cnn)(fnp)
    _, jax_loss, _, _ = (mlp if model == "mlp" else cnn)(jnp)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, batch)]
    flowjit_step = fj.compile(fj.vmap(fj.grad(fj_loss), in_axes=(None, 0, 0)))
    jax_step = jax.jit(jax.vmap(jax.grad(jax_loss), in_axes=(None, 0, 0)))
    return params, x, y, flowjit_step, jax_step


def timed(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / repeats


def run(model: str, batch: int, rounds: int, repeats: int) -> dict:
    params, x, y, flowjit_step, jax_step = build(model, batch)
    got, want = flowjit_step(params, x, y), jax_step(params, x, y)
    diff = max(
        float(np.max(np.abs(np.asarray(g) - np.asarray(w))))
        for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want))
    )
    times = {"flowjit": [], "jax.jit": []}
    for _ in range(rounds):  # (interleaved: both see the same machine load)
        times["flowjit"].append(timed(flowjit_step, params, x, y, repeats=repeats))
        times["jax.jit"].append(timed(jax_step, params, x, y, repeats=repeats))
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": model,
        "batch": batch,
        "step_ms": {k: round(v * 1e3, 3) for k, v in medians.items()},
        "ratio": round(medians["flowjit"] / medians["jax.jit"], 3),
        "max_grad_difference": diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    for model in ("mlp", "cnn"):
        print(json.dumps(run(model, args.batch, args.rounds, args.repeats)))


if __name__ == "__main__":
    main()
