"""The flax GPT of examples/flax_port.py (flax.linen modules, optax AdamW with a warmup-cosine
schedule and global-norm clipping) trained by the same code under flowjit (fj.from_jax, one
fj.compile) and under jax.jit, side by side in one run: the step time (interleaved rounds,
medians) and the first call (trace + compile + run), each as a flowjit/jax.jit ratio. Each
first call is timed in a fresh process, as a user's first step is.

    python bench/flax_gpt.py [--steps N] [--rounds R] [--layers L]
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

import flowjit as fj

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "examples"))
import flax_port as port

# First calls compile: no persistent compilation cache (it would serve earlier runs' programs)
fj.config.update("cache_dir", None)
jax.config.update("jax_compilation_cache_dir", None)


def steps(impl: str, layers: int, count: int):
    """The step function of ``impl`` ("flowjit" or "jax"), and the batches."""
    model, data = port.GPT(layers), port.batches(count)
    params = model.init(jax.random.key(0), data[0][0])["params"]
    if impl == "flowjit":
        _, _, step = port.flowjit_trainer(model, params, count)
        return lambda x, y: step(x, y), data
    tx = port.optimizer(count)
    state = [params, tx.init(params)]

    @jax.jit
    def jax_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: port.loss_fn(model, p, x, y))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return port.optax.apply_updates(params, updates), opt_state, loss

    def run(x, y):
        state[0], state[1], loss = jax_step(state[0], state[1], x, y)
        return loss

    return run, data


def first_call(impl: str, layers: int) -> float:
    """Seconds of the first step in a fresh process (the model built beforehand)."""
    here = str(pathlib.Path(__file__).parent)
    code = (
        f"import sys, time; sys.path.insert(0, {here!r}); import flax_gpt as b; "
        f"run, data = b.steps({impl!r}, {layers}, 2); x, y = data[0]; t = time.perf_counter(); "
        "float(run(x, y)); print(time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--first-calls", type=int, default=3, help="fresh processes per peer")
    opts = parser.parse_args()

    runs = {impl: steps(impl, opts.layers, opts.steps) for impl in ("flowjit", "jax")}
    for run, data in runs.values():  # compile and warm up
        for x, y in data[:3]:
            float(run(x, y))
    times: dict[str, list[float]] = {impl: [] for impl in runs}
    for _ in range(opts.rounds):
        for impl, (run, data) in runs.items():
            start = time.perf_counter()
            for x, y in data:
                loss = run(x, y)
            float(loss)
            times[impl].append((time.perf_counter() - start) / len(data))
    first = {
        impl: statistics.median(first_call(impl, opts.layers) for _ in range(opts.first_calls))
        for impl in runs
    }
    step = {impl: statistics.median(t) for impl, t in times.items()}
    for impl in runs:
        print(f"{impl:8s} step {step[impl] * 1e3:7.2f} ms   first call {first[impl]:6.2f} s")
    report = {
        "step_ratio": step["flowjit"] / step["jax"],
        "first_call_ratio": first["flowjit"] / first["jax"],
    }
    print(f"step time ratio flowjit/jax = {report['step_ratio']:.3f}  (goal <= 1.05)")
    print(f"first-call ratio flowjit/jax = {report['first_call_ratio']:.3f}  (goal <= 1.1)")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
