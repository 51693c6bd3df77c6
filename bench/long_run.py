"""A long run: many training steps of the digits MLP (examples/digits_mlp.py's model and data,
Adam, shuffled mini-batches epoch after epoch) doing what a real training loop does besides
stepping: reading the loss as a Python float every K steps, an eval pass (a second compiled
function) every M steps and a checkpoint save (fj.save) every N steps. From the end of
warm-up on it samples, every ``--every`` steps: the process's current RSS (/proc/self/statm,
not the peak), ``len(jax.live_arrays())`` and how many of those flowjit's in-flight queue holds,
and the number of objects the garbage collector tracks (the queued arrays left out). The same
loop runs with the model written in jax (``jax.jit`` with donation, checkpoints as .npz files);
each implementation runs in a process of its own, so that each RSS is its own.

Verdict: the live arrays outside the in-flight queue stay exactly constant (the queue holds
between max_steps_in_flight // 2 and max_steps_in_flight + 1 steps' results, so the raw count
moves with the step number), tracked objects grow from the first sample to the last by at most
OBJECTS_TOLERANCE, and RSS by at most RSS_TOLERANCE_MB from the median of the first half of
the samples to the last. (A one-off allocation just after warm-up, seen once as +1.2 MiB
between the first two samples and flat after, is not a leak; a steady one shows over half the
run.) flowjit's verdict is the exit
status (1: failed); jax.jit's is printed for comparison.

    python bench/long_run.py [--steps 10000] [--warmup 500] [--every 500] [--json out]
        [--impl both|flowjit|jax] [--read-every K] [--eval-every M] [--checkpoint-every N]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flowjit.runtime import plan

import flowjit as fj

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "examples"))
from _digits import batches, compiled_steps, load  # noqa: E402

HIDDEN, BATCH, LR = 128, 64, 3e-3  # examples/digits_mlp.py's defaults
B1, B2, EPS = 0.9, 0.999, 1e-8  # fj.optim.Adam's (optax's) defaults
KEEP = 3  # checkpoints kept (fj.Checkpoint's default max_to_keep)

# RSS may grow by this much from the first sample to the last. Measured on a 2-core CPU host
# over 16 runs (2,500, 10,000 and 20,000 steps of each implementation, and the 500 steps of
# tests/runtime/test_long_run.py): flowjit moved by -0.17 to +0.44 MiB, jax.jit by 0.00 to
# +0.20 MiB. A fixed amount, not a fraction of RSS: most of the ~305 MiB are the libraries,
# whose size says nothing about what a step may leak. Leaking one 64x64 float32 batch per step
# (16 KiB) exceeds it within 64 steps (the 500-step test then saw +6.27 MiB).
RSS_TOLERANCE_MB = 1.0
# Tracked objects may grow by this many: over the same runs they moved by -10 to 0 (the first
# sample holds a few objects of its own). One object leaked per eval pass (every 250 steps)
# exceeds it over 10,000 steps; one per step within ten steps.
OBJECTS_TOLERANCE = 10

# No persistent compilation cache: both peers compile in their process, and nothing is written
# to the user's cache folder.
fj.config.update("cache_dir", None)


def _glibc() -> ctypes.CDLL | None:
    """The C library, if it is glibc (which has malloc_trim)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def rss_mb() -> float:
    """The process's resident set size now (not its peak), in MiB, after handing the heap's
    free pages back to the system (glibc's malloc_trim): else memory that compiling freed is
    reused by a leak without any growth of RSS (6 MiB leaked over 400 steps went unseen)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def initial_params() -> list[np.ndarray]:
    """w1, b1, w2, b2, drawn as examples/digits_mlp.py draws them."""
    init = fj.random.Generator(0)
    return [
        np.asarray(init.normal((64, HIDDEN)) * math.sqrt(2 / 64)),
        np.zeros(HIDDEN, np.float32),
        np.asarray(init.normal((HIDDEN, 10)) * math.sqrt(1 / HIDDEN)),
        np.zeros(10, np.float32),
    ]


@dataclass
class Trainer:
    """One implementation of the run: ``step(x, y)`` trains on a batch and returns the loss (a
    device scalar), ``accuracy(x, y)`` the accuracy (a device scalar), ``save(step)`` writes a
    checkpoint, ``queued()`` lists the arrays of the in-flight queue (none for jax.jit),
    ``close()`` waits for the checkpoint writes (flowjit's are asynchronous)."""

    step: Callable[[np.ndarray, np.ndarray], Any]
    accuracy: Callable[[np.ndarray, np.ndarray], Any]
    save: Callable[[int], Any]
    queued: Callable[[], list]
    close: Callable[[], None] = lambda: None


def flowjit_trainer(folder: str) -> Trainer:
    """examples/digits_mlp.py's model and train_step (examples/_digits.py), and its accuracy
    as the eval pass; checkpoints hold the parameters and Adam's slots."""
    names = ("w1", "b1", "w2", "b2")
    params = [fj.Variable(p, name=n) for p, n in zip(initial_params(), names)]
    w1, b1, w2, b2 = params
    optimizer = fj.optim.Adam(LR)

    def logits(x):
        return fj.nn.relu(x @ w1 + b1) @ w2 + b2

    train_step, accuracy = compiled_steps(logits, params, optimizer)

    # (the optimizer's state for params, as train_step's apply gets them: made once, here)
    slots = jax.tree_util.tree_leaves(optimizer.state(params))

    def save(step: int) -> None:
        # fj.save's single file, the jax peer's .npz: fj.Checkpoint (orbax-checkpoint 0.12.8)
        # keeps ~25 Python objects per saved item per save, as a plain orbax loop does, which
        # this run would count as flowjit's (docs/checkpoints.md)
        fj.save(os.path.join(folder, f"ckpt-{step % KEEP}.safetensors"), params + slots)

    # the queue is not public API: read only to tell the arrays it holds from the others
    return Trainer(train_step, accuracy, save, lambda: [token for token, _ in plan._in_flight])


def jax_trainer(folder: str) -> Trainer:
    """The same model, loss and Adam update in jax; the parameters and Adam's state are
    donated to each step, as users of jax.jit write it."""

    def logits(params, x):
        w1, b1, w2, b2 = params
        return jax.nn.relu(x @ w1 + b1) @ w2 + b2

    def loss_fn(params, x, y):
        logp = jax.nn.log_softmax(logits(params, x))
        return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()

    def adam_step(state, x, y):
        params, m, v, count = state
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        count = count + 1
        t = count.astype(jnp.float32)
        m = [B1 * mi + (1 - B1) * g for mi, g in zip(m, grads)]
        v = [B2 * vi + (1 - B2) * g * g for vi, g in zip(v, grads)]
        params = [
            p - LR * (mi / (1 - B1**t)) / (jnp.sqrt(vi / (1 - B2**t)) + EPS)
            for p, mi, vi in zip(params, m, v)
        ]
        return (params, m, v, count), loss

    params = [jnp.array(p) for p in initial_params()]
    zeros = lambda: [jnp.zeros_like(p) for p in params]  # noqa: E731
    state = (params, zeros(), zeros(), jnp.zeros((), jnp.int32))
    jitted_step = jax.jit(adam_step, donate_argnums=0)

    @jax.jit
    def accuracy(params, x, y):
        return (jnp.argmax(logits(params, x), axis=-1) == y).astype(jnp.float32).mean()

    def step(x, y):
        nonlocal state
        state, loss = jitted_step(state, x, y)
        return loss

    def save(step: int) -> None:
        np.savez(os.path.join(folder, f"ckpt-{step}.npz"), *jax.tree_util.tree_leaves(state))
        saved = sorted(int(n[len("ckpt-") : -len(".npz")]) for n in os.listdir(folder))
        for old in saved[:-KEEP]:
            os.unlink(os.path.join(folder, f"ckpt-{old}.npz"))

    return Trainer(step, lambda x, y: accuracy(state[0], x, y), save, list)


def endless_batches(x: np.ndarray, y: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled full batches, epoch after epoch (examples/_digits.py's)."""
    rng = np.random.default_rng(1)
    while True:
        yield from batches(x, y, BATCH, rng)


def sample(step: int, trainer: Trainer) -> dict:
    """The figures of one sample, taken after a full collection (garbage waiting in a
    reference cycle is not live). RSS is read last, once the sample's own lists are freed."""
    gc.collect()
    queued = {id(a) for a in trainer.queued()}
    live = jax.live_arrays()
    figures = {
        "step": step,
        "live_arrays": len(live),
        "queued": sum(id(a) in queued for a in live),
        "outside_queue": sum(id(a) not in queued for a in live),
        "gc_objects": sum(id(o) not in queued for o in gc.get_objects()),
    }
    return {**figures, "rss_mb": rss_mb()}


def long_run(impl: str, opts: argparse.Namespace) -> dict:
    """Run ``opts.steps`` steps of ``impl`` ("flowjit" or "jax.jit") in this process; returns
    the samples and figures."""
    train_x, train_y, test_x, test_y = load()
    train_x, test_x = train_x.reshape(len(train_x), -1), test_x.reshape(len(test_x), -1)
    with tempfile.TemporaryDirectory(prefix="long_run_") as folder:
        trainer = (flowjit_trainer if impl == "flowjit" else jax_trainer)(folder)
        stream = endless_batches(train_x, train_y)
        samples, losses, accuracies = [], [], []
        sampling_seconds, measured_from = 0.0, 0.0
        for i in range(1, opts.steps + 1):
            loss = trainer.step(*next(stream))
            if i % opts.read_every == 0:
                losses.append((i, float(loss)))
            if i % opts.eval_every == 0:
                accuracies.append((i, float(trainer.accuracy(test_x, test_y))))
            if i % opts.checkpoint_every == 0:
                trainer.save(i)
            if i < opts.warmup or ((i - opts.warmup) % opts.every and i != opts.steps):
                continue
            loss.block_until_ready()
            before = time.perf_counter()
            samples.append(sample(i, trainer))
            after = time.perf_counter()
            if len(samples) == 1:
                measured_from = after
            else:
                sampling_seconds += after - before
        final_loss = float(loss)
        test_accuracy = float(trainer.accuracy(test_x, test_y))
        seconds = time.perf_counter() - measured_from - sampling_seconds
        trainer.close()
    return {
        "impl": impl,
        "steps": opts.steps,
        "samples": samples,
        "losses": losses,
        "accuracies": accuracies,
        "final_loss": final_loss,
        "test_accuracy": test_accuracy,
        "steps_per_s": (samples[-1]["step"] - samples[0]["step"]) / seconds,
    }


def verdict(run: dict) -> dict:
    """Growth over the run (see the module's docstring), and whether it is within the
    tolerances."""
    samples = run["samples"]
    first, last = samples[0], samples[-1]
    rss_growth = last["rss_mb"] - statistics.median(
        s["rss_mb"] for s in samples[: max(len(samples) // 2, 1)]
    )
    objects_growth = last["gc_objects"] - first["gc_objects"]
    arrays_constant = len({s["outside_queue"] for s in run["samples"]}) == 1
    return {
        "rss_growth_mb": rss_growth,
        "rss_growth_percent": 100 * rss_growth / first["rss_mb"],
        "rss_highest_growth_mb": max(s["rss_mb"] for s in run["samples"]) - first["rss_mb"],
        "live_arrays_growth": last["outside_queue"] - first["outside_queue"],
        "live_arrays_constant": arrays_constant,
        "gc_objects_growth": objects_growth,
        "passed": arrays_constant
        and rss_growth <= RSS_TOLERANCE_MB
        and objects_growth <= OBJECTS_TOLERANCE,
    }


def run_in_child(impl: str, opts: argparse.Namespace) -> dict:
    """``long_run(impl)`` in a fresh process (so that its RSS is its own); its figures."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "run.json")
        argv = [sys.executable, __file__, "--impl", impl, "--json", out]
        for name in ("steps", "warmup", "every", "read_every", "eval_every", "checkpoint_every"):
            argv += [f"--{name.replace('_', '-')}", str(getattr(opts, name))]
        done = subprocess.run(argv, check=False, stdout=subprocess.DEVNULL)
        if done.returncode not in (0, 1):  # (1: it ran, and its verdict failed)
            raise SystemExit(f"the {impl} run failed with exit status {done.returncode}")
        with open(out) as f:
            return json.load(f)["runs"][0]


def print_report(runs: list[dict]) -> None:
    """The samples side by side as a markdown table, then each run's verdict."""
    head, rule = "| step |", "|---:|"
    for run in runs:
        name = run["impl"]
        head += f" {name} RSS MiB | {name} live arrays (in queue) | {name} gc objects |"
        rule += "---:|---:|---:|"
    print(head)
    print(rule)
    for row in zip(*(run["samples"] for run in runs)):
        line = f"| {row[0]['step']} |"
        for s in row:
            line += f" {s['rss_mb']:.2f} | {s['live_arrays']} ({s['queued']}) | {s['gc_objects']} |"
        print(line)
    print()
    for run in runs:
        v = run["verdict"]
        first, last = run["samples"][0]["step"], run["samples"][-1]["step"]
        constant = "constant" if v["live_arrays_constant"] else "NOT constant"
        print(
            f"{run['impl']}, steps {first}..{last}: RSS {v['rss_growth_mb']:+.2f} MiB "
            f"({v['rss_growth_percent']:+.2f}%; highest {v['rss_highest_growth_mb']:+.2f} MiB; "
            f"allowed {RSS_TOLERANCE_MB} MiB), live arrays outside the queue "
            f"{v['live_arrays_growth']:+d} ({constant}), gc objects "
            f"{v['gc_objects_growth']:+d} (allowed {OBJECTS_TOLERANCE}); "
            f"{run['steps_per_s']:.0f} steps/s; final loss {run['final_loss']:.3e}, test "
            f"accuracy {run['test_accuracy']:.4f}: {'PASS' if v['passed'] else 'FAIL'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--every", type=int, default=500, help="steps between samples")
    parser.add_argument("--read-every", type=int, default=100, help="K: read the loss")
    parser.add_argument("--eval-every", type=int, default=250, help="M: an eval pass")
    parser.add_argument("--checkpoint-every", type=int, default=500, help="N: a checkpoint")
    parser.add_argument("--impl", choices=("both", "flowjit", "jax"), default="both")
    parser.add_argument("--json", help="write the samples and figures to this file")
    opts = parser.parse_args()
    if not opts.warmup < opts.steps:
        parser.error("--warmup must be below --steps")
    if opts.warmup < max(opts.read_every, opts.eval_every, opts.checkpoint_every):
        # (a first eval or save after the first sample would count its one-off costs)
        parser.error("warm-up must include a loss read, an eval pass and a checkpoint")
    if opts.impl == "both":
        runs = [run_in_child(impl, opts) for impl in ("flowjit", "jax")]
    else:
        runs = [long_run("jax.jit" if opts.impl == "jax" else "flowjit", opts)]
        runs[0]["verdict"] = verdict(runs[0])
    print_report(runs)
    if opts.json:
        with open(opts.json, "w") as f:
            tolerances = {"rss_mb": RSS_TOLERANCE_MB, "gc_objects": OBJECTS_TOLERANCE}
            json.dump({"tolerances": tolerances, "runs": runs}, f, indent=1)
    sys.exit(0 if runs[0]["verdict"]["passed"] else 1)  # (flowjit's, when both ran)


if __name__ == "__main__":
    main()
