"""A stateful step: ``w.assign_add(delta)`` on a 1M-element float32 variable, 1000 steps,
against ``jax.jit`` with ``donate_argnums`` doing the same, side by side in one run
(interleaved rounds, median time per 1000 steps).

    python bench/stateful.py [--steps N] [--rounds R] [--size S]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import flowjit as fj


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--size", type=int, default=1 << 20)
    opts = parser.parse_args()

    w = fj.Variable(np.zeros(opts.size, np.float32), name="w")

    @fj.compile
    def flowjit_step(delta):
        w.assign_add(delta)

    jax_step = jax.jit(lambda w, delta: w + delta, donate_argnums=0)
    jax_w = jnp.zeros(opts.size, jnp.float32)
    delta = jnp.float32(1.0)

    def run_flowjit() -> float:
        start = time.perf_counter()
        for _ in range(opts.steps):
            flowjit_step(delta)
        w.value.block_until_ready()
        return time.perf_counter() - start

    def run_jax() -> float:
        nonlocal jax_w
        start = time.perf_counter()
        for _ in range(opts.steps):
            jax_w = jax_step(jax_w, delta)
        jax_w.block_until_ready()
        return time.perf_counter() - start

    run_flowjit(), run_jax()  # compile and warm up
    ours, theirs = [], []
    for _ in range(opts.rounds):
        ours.append(run_flowjit())
        theirs.append(run_jax())
    total = opts.steps * (opts.rounds + 1)
    assert float(w.value[0]) == float(jax_w[0]) == total, (w.value[0], jax_w[0])
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{opts.steps} steps of assign_add on {opts.size} float32 elements")
    print(f"flowjit  median {a * 1e3:8.2f} ms  ({a / opts.steps * 1e6:.1f} us/step)")
    print(f"jax.jit  median {b * 1e3:8.2f} ms  ({b / opts.steps * 1e6:.1f} us/step, donated)")
    print(f"ratio flowjit/jax.jit = {a / b:.3f}  (goal <= 1.1)")


if __name__ == "__main__":
    main()
