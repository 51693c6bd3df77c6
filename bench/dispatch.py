"""Per-call dispatch time of a compiled ``x + 1`` on a float32 scalar: flowjit against jax.jit,
measured side by side in one run (interleaved rounds, median of per-round means).

    python bench/dispatch.py [--calls N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import flowjit as fj


def _per_call_us(fn, x, calls: int) -> float:
    out = fn(x)
    out.block_until_ready()
    start = time.perf_counter()
    for _ in range(calls):
        out = fn(x)
    out.block_until_ready()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=15)
    opts = parser.parse_args()

    flowjit_fn = fj.compile(lambda x: x + 1)
    jax_fn = jax.jit(lambda x: x + 1)
    x = jnp.float32(1.0)
    assert float(flowjit_fn(x)) == float(jax_fn(x)) == 2.0
    ours, theirs = [], []
    for _ in range(opts.rounds):  # interleave so machine noise hits both alike
        ours.append(_per_call_us(flowjit_fn, x, opts.calls))
        theirs.append(_per_call_us(jax_fn, x, opts.calls))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"flowjit  median {a:7.2f} us/call  (min {min(ours):.2f}, max {max(ours):.2f})")
    print(f"jax.jit  median {b:7.2f} us/call  (min {min(theirs):.2f}, max {max(theirs):.2f})")
    print(f"ratio flowjit/jax.jit = {a / b:.3f}  (goal <= 1.3)")


if __name__ == "__main__":
    main()
