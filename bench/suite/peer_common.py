"""What the suite's jax-based peers (flowjit_peer.py, jax_peer.py) share: the command line,
the device batches, the timed loop, peak RSS and the ``RESULT`` line the suite reads (the
protocol is described in suite.py). A peer supplies only how to build a step; the measuring
is done here, the same way for both."""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
import workloads

# workload -> the model it trains (the compile_* workloads stop after the checked steps)
MODELS = {"mlp": "mlp", "cnn": "cnn", "lstm": "lstm", "compile_mlp": "mlp", "compile_lstm": "lstm"}
GPTS = ("gpt_small", "gpt_small_bf16", "gpt_medium", "gpt_medium_bf16")
ADAMS = ("adam_1", "adam_10", "adam_100", "adam_400")
MODELS |= {name: name for name in GPTS + ADAMS}
MODELS |= {f"compile_{name}": name for name in GPTS + ADAMS}
WORKLOADS = ("dispatch", *MODELS)
TIMED_BATCHES = 4  # the timed loop cycles through this many prepared batches

# A step takes a batch's arrays and returns the loss (a device scalar), updating its own
# parameters and optimizer state.
Step = Callable[..., jax.Array]


def arg_parser(doc: str, workloads_: Sequence[str] = WORKLOADS) -> argparse.ArgumentParser:
    """The command line every peer takes: ``WORKLOAD [--steps N] [--rounds R] [--warmup W]``."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workload", choices=workloads_)
    parser.add_argument("--steps", type=int, default=20, help="steps (calls) per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before the rounds")
    parser.add_argument(
        "--started",
        action="store_true",
        help="start the runtime (start_runtime) before the first call is timed",
    )
    return parser


def peak_rss_mb() -> float:
    """The process's peak resident set so far, in MiB: Linux's VmHWM (ru_maxrss would count
    the parent's peak, which a process keeps across fork and exec), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(peer: str, workload: str, version: str, **figures) -> None:
    """Print the one line the suite reads."""
    result = {
        "peer": peer,
        "workload": workload,
        "version": version,
        "round_seconds": [],
        "per_step_seconds": [],
        "first_call_seconds": None,
        "losses": [],
        **figures,
        "peak_rss_mb": peak_rss_mb(),
    }
    print("RESULT " + json.dumps(result), flush=True)


def timed_rounds(run: Callable[[int], None], steps: int, rounds: int) -> list[float]:
    """Seconds of each of ``rounds`` calls ``run(steps)`` (which must block on the device at
    its end)."""
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        run(steps)
        seconds.append(time.perf_counter() - start)
    return seconds


def start_runtime() -> float:
    """Seconds to start what jax does once per process, whatever it compiles, and no
    compilation cache saves: its first lowering (it imports its MLIR dialects then) and
    XLA:CPU's first matrix product (oneDNN generates its kernels then). A tiny program with
    nothing of the workload does it, so that a first call timed after it is the function's
    own trace, compile (or cache read) and run."""
    start = time.perf_counter()
    a = np.ones((8, 8), np.float32)
    jax.block_until_ready(jax.jit(lambda a, b: a.T @ b)(a, a))
    return time.perf_counter() - start


def device_batches(model: str, count: int) -> list[tuple[jax.Array, ...]]:
    """``workloads.batches(model, count)``, put on the device once."""
    return [tuple(jax.device_put(a) for a in batch) for batch in workloads.batches(model, count)]


def loop(step: Step, batches: Sequence[tuple]) -> Callable[[int], None]:
    """``run(n)``: ``n`` steps cycling through ``batches``, blocking on the last loss."""

    def run(n: int) -> None:
        loss = None
        for i in range(n):
            loss = step(*batches[i % len(batches)])
        jax.block_until_ready(loss)

    return run


def run_training(
    peer: str, version: str, opts: argparse.Namespace, make_step: Callable[[str], Step]
) -> None:
    """Build the step of the workload's model (``make_step(model)``), time its first call
    (trace + compile + run), record the losses of the first workloads.CHECKED_STEPS steps,
    then (unless it is a compile_* workload) time ``rounds`` rounds of ``steps`` steps.
    With ``--started``, the runtime is started first (start_runtime)."""
    startup = start_runtime() if opts.started else None
    batches = device_batches(MODELS[opts.workload], workloads.CHECKED_STEPS)
    step = make_step(MODELS[opts.workload])
    start = time.perf_counter()
    loss = jax.block_until_ready(step(*batches[0]))
    first_call = time.perf_counter() - start
    losses = [float(loss)] + [float(step(*batch)) for batch in batches[1:]]
    rounds = []
    if not opts.workload.startswith("compile_"):
        run = loop(step, batches[:TIMED_BATCHES])
        run(opts.warmup)
        rounds = timed_rounds(run, opts.steps, opts.rounds)
    emit(
        peer,
        opts.workload,
        version,
        round_seconds=rounds,
        per_step_seconds=[s / opts.steps for s in rounds],
        first_call_seconds=first_call,
        startup_seconds=startup,
        losses=losses,
    )


def run_dispatch(peer: str, version: str, opts: argparse.Namespace, fn: Step) -> None:
    """Per-call time of ``fn`` (compiled ``x + 1``) on a float32 scalar on the device. Its
    "losses" are ten chained calls from 0 (1, 2, ..., 10): the peers must agree on them too."""
    x = jax.device_put(np.float32(0.0))
    start = time.perf_counter()
    y = jax.block_until_ready(fn(x))
    first_call = time.perf_counter() - start
    values = [float(y)]
    for _ in range(workloads.CHECKED_STEPS - 1):
        y = fn(y)
        values.append(float(y))

    def run(n: int) -> None:
        out = None
        for _ in range(n):
            out = fn(x)
        jax.block_until_ready(out)

    run(opts.warmup)
    rounds = timed_rounds(run, opts.steps, opts.rounds)
    emit(
        peer,
        "dispatch",
        version,
        round_seconds=rounds,
        per_step_seconds=[s / opts.steps for s in rounds],
        first_call_seconds=first_call,
        losses=values,
    )
