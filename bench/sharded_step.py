"""MLP training step (784-512-512-10, batch 128, SGD, softmax cross-entropy) run SPMD on 8
virtual CPU devices: flowjit against the same step written the natural way in jax
(``jax.jit`` with the same in/out shardings + ``donate_argnums``), side by side in one run.

Two layouts:
  data-parallel  mesh ("data",) of 8; batch P("data"), weights replicated
  2d             mesh 4 x 2 ("data", "model"); W1 P(None, "model"), b1 P("model"),
                 W2 P("model", None), b2/W3/b3 replicated; batch P("data")

Each layout is timed with the batch put on the mesh once before timing (the steps alone) and,
as a variant, with numpy batches fed at every step (host transfers included, both peers
alike). Reports steps/s (interleaved rounds, medians) and the ratio flowjit/jax; checks that
both peers start from the same weights and that their losses agree over 10 steps, and that
flowjit's compiled step has an all-reduce. Also prints, per layout, the collectives and
copies in both compiled HLOs and how many bytes each aliases (donated state updated in place).

    python bench/sharded_step.py [--steps N] [--rounds R] [--quick]
"""

from __future__ import annotations

import os

# 8 virtual CPU devices; must be set before jax is imported
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import argparse
import re
import statistics
import time

import jax
import numpy as np
from jax.sharding import NamedSharding

import flowjit as fj
from mlp_train import BATCH, SIZES, flowjit_step, init_params, jax_sgd_step

CHECK_STEPS = 10
P = fj.P

# name -> (mesh shape, axis names, per-parameter specs W1 b1 W2 b2 W3 b3)
LAYOUTS = {
    "data-parallel": ((8,), ("data",), (P(), P(), P(), P(), P(), P())),
    "2d": (
        (4, 2),
        ("data", "model"),
        (P(None, "model"), P("model"), P("model", None), P(), P(), P()),
    ),
}
BATCH_SPEC = P("data")
HLO_OPS = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all", "copy")


def make_mesh(layout: str) -> fj.Mesh:
    shape, names, _ = LAYOUTS[layout]
    return fj.Mesh(np.array(fj.devices()[: int(np.prod(shape))]).reshape(shape), names)


def flowjit_step_fn(mesh: fj.Mesh, specs: tuple):
    with mesh:
        variables = [fj.Variable(p, sharding=s) for p, s in zip(init_params(), specs)]
    shardings = dict(mesh=mesh, in_shardings=(BATCH_SPEC, BATCH_SPEC), out_shardings=P())
    return flowjit_step(variables, **shardings), variables


def jax_step_fn(mesh: fj.Mesh, specs: tuple):
    param_shardings = [NamedSharding(mesh.jax, s) for s in specs]
    batch = NamedSharding(mesh.jax, BATCH_SPEC)
    step = jax.jit(
        jax_sgd_step,
        in_shardings=(param_shardings, batch, batch),
        out_shardings=(param_shardings, NamedSharding(mesh.jax, P())),
        donate_argnums=0,
    )
    params = [jax.device_put(p, s) for p, s in zip(init_params(), param_shardings)]
    return step, params


def hlo_counts(hlo: str) -> dict[str, int]:
    """How many instructions of each of HLO_OPS the (optimized) HLO text has (async pairs,
    e.g. all-reduce-start/-done, count once)."""
    return {op: len(re.findall(rf"\s{op}(?:-start)?\(", hlo)) for op in HLO_OPS}


def describe(name: str, compiled) -> str:
    counts = hlo_counts(compiled.as_text() if hasattr(compiled, "as_text") else compiled.hlo())
    mem = compiled.memory_analysis()
    ops = " ".join(f"{op}={n}" for op, n in counts.items())
    return (
        f"  {name:8s} HLO: {ops}; bytes aliased {mem.alias_size_in_bytes}, "
        f"args {mem.argument_size_in_bytes}, outputs {mem.output_size_in_bytes}, "
        f"temp {mem.temp_size_in_bytes}"
    )


def bench_layout(layout: str, opts: argparse.Namespace, rng: np.random.Generator) -> dict:
    mesh = make_mesh(layout)
    specs = LAYOUTS[layout][2]
    x = rng.standard_normal((BATCH, 784)).astype(np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int32)
    batch = NamedSharding(mesh.jax, BATCH_SPEC)
    xd, yd = jax.device_put(x, batch), jax.device_put(y, batch)  # on the mesh once

    flowjit_step, variables = flowjit_step_fn(mesh, specs)
    jax_step, params = jax_step_fn(mesh, specs)
    for v, p, s in zip(variables, params, specs):  # the same initial weights, laid out alike
        np.testing.assert_array_equal(np.asarray(v), np.asarray(p))
        assert v.value.sharding.is_equivalent_to(p.sharding, p.ndim), (v, s)

    start = time.perf_counter()
    ours_losses = [flowjit_step(xd, yd)]
    ours_losses[0].block_until_ready()
    flowjit_first = time.perf_counter() - start
    start = time.perf_counter()
    params, loss = jax_step(params, xd, yd)
    loss.block_until_ready()
    jax_first = time.perf_counter() - start
    theirs_losses = [loss]
    for _ in range(CHECK_STEPS - 1):
        ours_losses.append(flowjit_step(xd, yd))
        params, loss = jax_step(params, xd, yd)
        theirs_losses.append(loss)
    ours_losses = np.array([float(v) for v in ours_losses])
    theirs_losses = np.array([float(v) for v in theirs_losses])
    print(f"{layout}: losses over {CHECK_STEPS} steps")
    print("  flowjit " + " ".join(f"{v:.6f}" for v in ours_losses))
    print("  jax.jit " + " ".join(f"{v:.6f}" for v in theirs_losses))
    np.testing.assert_allclose(ours_losses, theirs_losses, rtol=1e-4)

    ours_hlo = flowjit_step.lower(xd, yd).compile()
    assert "all-reduce" in ours_hlo.hlo(), f"{layout}: no all-reduce in flowjit's compiled step"
    theirs_hlo = jax_step.lower(params, xd, yd).compile()
    print(describe("flowjit", ours_hlo))
    print(describe("jax.jit", theirs_hlo))
    print(f"  first call: flowjit {flowjit_first * 1e3:.0f} ms, jax.jit {jax_first * 1e3:.0f} ms")

    def run_flowjit(xs, ys) -> float:
        start = time.perf_counter()
        for _ in range(opts.steps):
            loss = flowjit_step(xs, ys)
        loss.block_until_ready()
        return opts.steps / (time.perf_counter() - start)

    def run_jax(xs, ys) -> float:
        nonlocal params
        start = time.perf_counter()
        for _ in range(opts.steps):
            params, loss = jax_step(params, xs, ys)
        loss.block_until_ready()
        return opts.steps / (time.perf_counter() - start)

    results = {}
    for feed, xs, ys in (("on mesh", xd, yd), ("numpy fed", x, y)):
        ours, theirs = [], []
        for _ in range(opts.rounds):  # interleave so machine noise hits both alike
            ours.append(run_flowjit(xs, ys))
            theirs.append(run_jax(xs, ys))
        results[feed] = (statistics.median(ours), statistics.median(theirs), ours, theirs)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20 steps, 3 rounds")
    opts = parser.parse_args()
    if opts.quick:
        opts.steps, opts.rounds = 20, 3
    assert len(fj.devices()) >= 8, f"need 8 devices, have {fj.devices()}"
    rng = np.random.default_rng(1)
    print(
        f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, SGD, 8 virtual CPU devices, "
        f"{opts.steps} steps x {opts.rounds} rounds"
    )
    results = {layout: bench_layout(layout, opts, rng) for layout in LAYOUTS}

    print()
    print("| layout | batch | flowjit steps/s | jax steps/s | ratio |")
    print("|---|---|---:|---:|---:|")
    for layout, by_feed in results.items():
        for feed, (a, b, _, _) in by_feed.items():
            print(f"| {layout} | {feed} | {a:.1f} | {b:.1f} | {a / b:.3f} |")
    print()
    for layout, by_feed in results.items():
        for feed, (_, _, ours, theirs) in by_feed.items():
            print(
                f"{layout} {feed} rounds: flowjit "
                + " ".join(f"{r:.1f}" for r in ours)
                + " | jax "
                + " ".join(f"{r:.1f}" for r in theirs)
            )
    print()
    for layout, by_feed in results.items():
        a, b, _, _ = by_feed["on mesh"]
        print(f"{layout}: ratio {a / b:.2f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
