"""Per-variable overhead of an optimizer step (issue 24, item 5): an Adam step over N
variables of 64 floats (N = 1, 10, 100, 400), flowjit (``fj.optim.Adam`` in one fj.compile,
its state in Variables) against jax (the parameters a list of arrays, optax.adam, one jax.jit
donating the parameters and optimizer state), side by side in one run: the step time
(interleaved rounds, medians) and the first call (trace + compile + run, each in a fresh
process, median of several), with their flowjit/jax ratios. Goal: step <= 1.05x and first
call <= 1.0x jax's at every N.

    python bench/many_variables.py [--rounds R] [--steps S] [--first-calls K]
                                   [--variables N ...] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import flowjit as fj

# First calls compile: no persistent compilation cache (it would serve earlier runs' programs)
fj.config.update("cache_dir", None)
jax.config.update("jax_compilation_cache_dir", None)

SIZE = 64
LR = 1e-3
FULL = (1, 10, 100, 400)
QUICK = (1, 10)


def initial_values(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(SIZE).astype(np.float32) for _ in range(n)]


def flowjit_step(n: int):
    """A function running one flowjit Adam step (``x`` -> the loss) over ``n`` variables."""
    variables = [fj.Variable(v, name=f"w{i}") for i, v in enumerate(initial_values(n))]
    opt = fj.optim.Adam(LR)
    opt.state(variables)  # (made now, as jax_step runs tx.init before its first call)

    @fj.compile
    def step(x):
        loss = sum(((v * x) ** 2).sum() for v in variables)
        opt.apply(fj.gradients(loss, variables), variables)
        return loss

    def run(x):
        return step(x)

    run.variables = variables  # (for the check that both peers compute the same)
    return run


def jax_step(n: int):
    """A function running one jax Adam step (``x`` -> the loss) over ``n`` parameters."""
    tx = optax.adam(LR)
    params = [jnp.asarray(v) for v in initial_values(n)]
    state = [params, tx.init(params)]

    def loss_fn(params, x):
        return sum(((p * x) ** 2).sum() for p in params)

    def step(params, opt_state, x):
        loss, grads = jax.value_and_grad(loss_fn)(params, x)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    jitted = jax.jit(step, donate_argnums=(0, 1))

    def run(x):
        state[0], state[1], loss = jitted(state[0], state[1], x)
        return loss

    run.state = state
    return run


MAKERS = {"flowjit": flowjit_step, "jax": jax_step}


def inputs(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [jnp.asarray(rng.standard_normal(SIZE).astype(np.float32)) for _ in range(count)]


def check_same(n: int) -> float:
    """The largest difference between the two peers' parameters after three steps."""
    fj_run, jax_run = flowjit_step(n), jax_step(n)
    for x in inputs(3):
        fj_run(x), jax_run(x)
    return max(
        float(np.max(np.abs(np.asarray(v) - np.asarray(p))))
        for v, p in zip(fj_run.variables, jax_run.state[0])
    )


def step_times(n: int, rounds: int, steps: int) -> tuple[dict[str, float], float]:
    """Seconds per step of each peer (the median of ``rounds`` interleaved rounds, each of
    ``steps`` steps waited for at the end), and the median of the rounds' flowjit/jax ratios
    (each round's pair saw the same machine load)."""
    runs = {impl: make(n) for impl, make in MAKERS.items()}
    xs = inputs(steps)
    for run in runs.values():  # compile and warm up
        for x in xs[:3]:
            float(run(x))
    times: dict[str, list[float]] = {impl: [] for impl in runs}
    for _ in range(rounds):  # (interleaved: both see the same machine load)
        for impl, run in runs.items():
            start = time.perf_counter()
            for x in xs:
                loss = run(x)
            jax.block_until_ready(loss)
            times[impl].append((time.perf_counter() - start) / steps)
    ratio = statistics.median(f / j for f, j in zip(times["flowjit"], times["jax"]))
    return {impl: statistics.median(t) for impl, t in times.items()}, ratio


def first_call(impl: str, n: int) -> float:
    """Seconds of the first step (trace, compile, run) in a fresh process, the variables and
    inputs made beforehand."""
    here = str(pathlib.Path(__file__).parent)
    code = (
        f"import sys, time; sys.path.insert(0, {here!r}); import many_variables as b; "
        f"run = b.MAKERS[{impl!r}]({n}); x = b.inputs(1)[0]; t = time.perf_counter(); "
        "float(run(x)); print(time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def measure(ns: tuple, rounds: int, steps: int, first_calls: int) -> list[dict]:
    rows = []
    for n in ns:
        step, step_ratio = step_times(n, rounds, steps)
        firsts: dict[str, list[float]] = {impl: [] for impl in MAKERS}
        for _ in range(first_calls):  # (interleaved, as the steps are)
            for impl in MAKERS:
                firsts[impl].append(first_call(impl, n))
        first = {impl: statistics.median(t) for impl, t in firsts.items()}
        rows.append(
            {
                "variables": n,
                "step_us": {k: round(v * 1e6, 1) for k, v in step.items()},
                "step_ratio": round(step_ratio, 3),
                "first_call_s": {k: round(v, 3) for k, v in first.items()},
                "first_call_ratio": round(first["flowjit"] / first["jax"], 3),
                "max_param_difference": check_same(n),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| variables | flowjit step (us) | jax step (us) | ratio | flowjit first call (s) "
        "| jax first call (s) | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s, f = r["step_us"], r["first_call_s"]
        lines.append(
            f"| {r['variables']} | {s['flowjit']:.1f} | {s['jax']:.1f} | {r['step_ratio']:.2f} "
            f"| {f['flowjit']:.3f} | {f['jax']:.3f} | {r['first_call_ratio']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=200, help="steps per timed round")
    parser.add_argument("--first-calls", type=int, default=7, help="fresh processes per peer")
    parser.add_argument("--variables", type=int, nargs="+", help=f"the Ns (default {FULL})")
    parser.add_argument("--quick", action="store_true", help="N = 1, 10 and few steps")
    parser.add_argument("--json", help="write the rows here")
    opts = parser.parse_args()
    ns = opts.variables or (QUICK if opts.quick else FULL)
    if opts.quick:
        opts.rounds, opts.steps, opts.first_calls = 1, 5, 1
    rows = measure(ns, opts.rounds, opts.steps, opts.first_calls)
    device = jax.devices()[0]
    print(
        f"Adam steps over N variables of {SIZE} float32 on {device.platform} "
        f"({device.device_kind}); step: median of {opts.rounds} interleaved rounds of "
        f"{opts.steps} steps (ratio: the median of the rounds' ratios); first call: median of "
        f"{opts.first_calls} fresh processes each\n"
    )
    print(table(rows))
    print("goal: step ratio <= 1.05, first-call ratio <= 1.0")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"size": SIZE, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
