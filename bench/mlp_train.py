"""MLP training step (784-512-512-10, batch 128, SGD, weights updated in place): flowjit
against the same model written the natural way in jax (``jax.jit`` + ``donate_argnums``),
side by side in one run. Reports steps/s (interleaved rounds, medians) and first-call
(trace + compile) time, each as a ratio.

    python bench/mlp_train.py [--steps N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import flowjit as fj

SIZES = (784, 512, 512, 10)
BATCH, LR = 128, 0.01

# First calls compile: no persistent compilation cache (it would serve flowjit's, and jax's,
# programs from earlier runs)
fj.config.update("cache_dir", None)


def init_params(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(SIZES, SIZES[1:]):
        params.append((rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32))
        params.append(np.zeros(fan_out, np.float32))
    return params


def flowjit_step(variables: list, **compile_options):
    """The SGD training step over ``variables`` (w1, b1, w2, b2, w3, b3), compiled with
    ``compile_options`` (bench/sharded_step.py adds a mesh and shardings)."""
    optimizer = fj.optim.SGD(LR)

    @fj.compile(**compile_options)
    def step(x, y):
        h = x
        for i in range(0, len(variables) - 2, 2):
            h = fj.nn.relu(h @ variables[i] + variables[i + 1])
        logits = h @ variables[-2] + variables[-1]
        loss = fj.nn.softmax_cross_entropy(logits, y).mean()
        optimizer.apply(fj.gradients(loss, variables), variables)
        return loss

    return step


def flowjit_step_fn():
    variables = [fj.Variable(p) for p in init_params()]
    return flowjit_step(variables), variables


def jax_loss(params, x, y):
    h = x
    for i in range(0, len(params) - 2, 2):
        h = jax.nn.relu(h @ params[i] + params[i + 1])
    logits = h @ params[-2] + params[-1]
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()


def jax_sgd_step(params, x, y):
    loss, grads = jax.value_and_grad(jax_loss)(params, x, y)
    return [p - LR * g for p, g in zip(params, grads)], loss


def jax_step_fn():
    step = jax.jit(jax_sgd_step, donate_argnums=0)
    return step, [jnp.asarray(p) for p in init_params()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((BATCH, 784)).astype(np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int32)
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    flowjit_step, variables = flowjit_step_fn()
    jax_step, params = jax_step_fn()
    start = time.perf_counter()
    flowjit_step(xj, yj).block_until_ready()
    flowjit_first = time.perf_counter() - start
    start = time.perf_counter()
    params, loss = jax_step(params, xj, yj)
    loss.block_until_ready()
    jax_first = time.perf_counter() - start
    np.testing.assert_allclose(
        np.asarray(variables[0]), np.asarray(params[0]), rtol=1e-4, atol=1e-6
    )  # the same update

    def run_flowjit() -> float:
        start = time.perf_counter()
        for _ in range(opts.steps):
            loss = flowjit_step(xj, yj)
        loss.block_until_ready()
        return opts.steps / (time.perf_counter() - start)

    def run_jax() -> float:
        nonlocal params
        start = time.perf_counter()
        for _ in range(opts.steps):
            params, loss = jax_step(params, xj, yj)
        loss.block_until_ready()
        return opts.steps / (time.perf_counter() - start)

    ours, theirs = [], []
    for _ in range(opts.rounds):
        ours.append(run_flowjit())
        theirs.append(run_jax())
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, SGD")
    print(f"flowjit  {a:8.1f} steps/s   first call {flowjit_first * 1e3:7.1f} ms")
    print(f"jax.jit  {b:8.1f} steps/s   first call {jax_first * 1e3:7.1f} ms")
    print(f"throughput ratio flowjit/jax = {a / b:.3f}  (goal >= 0.95)")
    print(f"compile-time ratio flowjit/jax = {flowjit_first / jax_first:.3f}  (goal <= 1.2)")


if __name__ == "__main__":
    main()
