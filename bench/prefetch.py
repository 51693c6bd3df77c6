"""Input prefetching (issue 25): a training loop whose batches take about 2 ms of host work
each (augmentation in numpy: random crops, flips and noise), timed three ways side by side
in one run (interleaved rounds, medians):

- compute alone: the same steps on batches made and placed beforehand;
- no prefetch: each batch made, then the step called on it (the host work on the critical
  path);
- prefetch: the loop reads ``fj.data.prefetch(batches, size=2)``.

Goal: prefetch within 5% of compute alone.

On a CPU-only machine XLA's step uses every core, so the host work has no free core to run on
beside it, and no prefetching can hide it: on 2 cores, 16 ms of compute on both and 3.5 ms of
host work make at least (2 * 16 + 3.5) / 2 = 17.75 ms, 1.09x. ``--pin`` lays the process out as
an accelerator host is: the step (XLA's threads and the loop) on core 0, standing for the
device, and the input pipeline's thread on the other cores, which the device leaves free.

    python bench/prefetch.py [--rounds R] [--steps S] [--quick] [--pin] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time

import jax
import numpy as np

import flowjit as fj

BATCH, SIDE, CROP, CLASSES, HIDDEN = 64, 36, 32, 10, 1024


def raw_images(count: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((count, BATCH, SIDE, SIDE, 3), dtype=np.float32)


def augment(images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One batch's host work: a random crop and flip per image, noise, normalization."""
    out = np.empty((BATCH, CROP, CROP, 3), np.float32)
    offsets = rng.integers(0, SIDE - CROP + 1, (BATCH, 2))
    flips = rng.random(BATCH) < 0.5
    for i in range(BATCH):
        top, left = offsets[i]
        crop = images[i, top : top + CROP, left : left + CROP]
        out[i] = crop[:, ::-1] if flips[i] else crop
    out += rng.normal(0, 0.05, out.shape).astype(np.float32)
    out = (out - out.mean(axis=(1, 2, 3), keepdims=True)) / (
        out.std(axis=(1, 2, 3), keepdims=True) + 1e-5
    )
    labels = rng.integers(0, CLASSES, BATCH).astype(np.int32)
    return out.reshape(BATCH, -1), labels


_PIN_PIPELINE: set[int] = set()  # (--pin) the cores of the input pipeline's thread


def batches(images: np.ndarray, seed: int):
    if _PIN_PIPELINE and threading.current_thread() is not threading.main_thread():
        os.sched_setaffinity(0, _PIN_PIPELINE)  # (this thread only: the prefetcher's)
    rng = np.random.default_rng(seed)
    for raw in images:
        yield augment(raw, rng)


def make_step():
    rng = np.random.default_rng(1)
    dims = (CROP * CROP * 3, HIDDEN, HIDDEN, CLASSES)
    params = []
    for a, b in zip(dims[:-1], dims[1:]):
        params.append(fj.Variable((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)))
        params.append(fj.Variable(np.zeros(b, np.float32)))
    opt = fj.optim.Adam(1e-3)
    opt.state(params)

    @fj.compile
    def step(x, y):
        h = x
        for i in range(0, len(params) - 2, 2):
            h = fj.nn.relu(h @ params[i] + params[i + 1])
        loss = fj.nn.softmax_cross_entropy(h @ params[-2] + params[-1], y).mean()
        opt.apply(fj.gradients(loss, params), params)
        return loss

    return step


def measure(rounds: int, steps: int) -> dict:
    images = raw_images(steps)
    step = make_step()
    placed = [tuple(jax.device_put(a) for a in b) for b in batches(images, 0)]
    float(step(*placed[0]))  # compile

    def compute_alone() -> None:
        for x, y in placed:
            loss = step(x, y)
        float(loss)

    def no_prefetch() -> None:
        for x, y in batches(images, 0):
            loss = step(x, y)
        float(loss)

    def prefetched() -> None:
        with fj.data.prefetch(batches(images, 0), size=2) as loop:
            for x, y in loop:
                loss = step(x, y)
        float(loss)

    def host_only() -> None:
        for _ in batches(images, 0):
            pass

    ways = {
        "compute alone": compute_alone,
        "no prefetch": no_prefetch,
        "prefetch": prefetched,
        "host work alone": host_only,
    }
    times: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(rounds):
        for name, run in ways.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / steps)
    compute = times["compute alone"]
    return {
        "ms_per_step": {k: round(statistics.median(v) * 1e3, 3) for k, v in times.items()},
        # the median of each round's ratio to compute alone (a round's ways saw the same load)
        "ratio_to_compute": {
            k: round(statistics.median(a / b for a, b in zip(v, compute)), 3)
            for k, v in times.items()
            if k in ("no prefetch", "prefetch")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--steps", type=int, default=50, help="batches per round")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 5 batches")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the step on core 0, the input pipeline's thread on the other cores",
    )
    parser.add_argument("--json", help="write the figures here")
    opts = parser.parse_args()
    if opts.quick:
        opts.rounds, opts.steps = 2, 5
    layout = "every core shared"
    if opts.pin:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            parser.error("--pin needs at least 2 cores")
        # before XLA starts its threads (they take the affinity of the thread starting them)
        os.sched_setaffinity(0, {cores[0]})
        _PIN_PIPELINE.update(cores[1:])
        layout = f"step on core {cores[0]}, input pipeline on cores {cores[1:]}"
    result = measure(opts.rounds, opts.steps)
    result["layout"] = layout
    device = jax.devices()[0]
    print(
        f"A {BATCH}-image MLP training step with numpy augmentation per batch on "
        f"{device.platform} ({device.device_kind}), {layout}; medians of {opts.rounds} "
        f"interleaved rounds of {opts.steps} steps\n"
    )
    print("| loop | ms per step | / compute alone |\n|---|---:|---:|")
    for name, ms in result["ms_per_step"].items():
        ratio = result["ratio_to_compute"].get(name)
        print(f"| {name} | {ms:.2f} | {'' if ratio is None else f'{ratio:.3f}'} |")
    print("goal: prefetch <= 1.05x compute alone")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
