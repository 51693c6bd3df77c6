"""fj.profile (issue 26): how much of a training step's time its per-line table accounts for.

For each MLP training step (Adam; two matmul lines), ``steps`` steps run under
``fj.profile``: the table's lines add up to each execution's span in the trace (its first
op's start to its last op's end), which is compared with the step time the loop measured
around the same steps (perf_counter, blocked at the end) and with the step time of the same
loop without the profile. Also: the share of the span the ops' own times cover.

    python bench/profile.py [--steps N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np

import flowjit as fj

MODELS = {  # name: (inputs, hidden, classes, batch)
    "digits MLP 64-128-10, batch 64": (64, 128, 10, 64),
    "MLP 784-1024-10, batch 256": (784, 1024, 10, 256),
}


def make(inputs: int, hidden: int, classes: int, batch: int):
    rng = np.random.default_rng(0)
    w1 = fj.Variable(rng.standard_normal((inputs, hidden)).astype(np.float32) * 0.05, name="w1")
    b1 = fj.Variable(np.zeros(hidden, np.float32), name="b1")
    w2 = fj.Variable(rng.standard_normal((hidden, classes)).astype(np.float32) * 0.05, name="w2")
    params = [w1, b1, w2]
    opt = fj.optim.Adam(1e-3)

    @fj.compile
    def train_step(x, y):
        h = fj.nn.relu(x @ w1 + b1)
        logits = h @ w2
        loss = fj.nn.softmax_cross_entropy(logits, y).mean()
        opt.apply(fj.gradients(loss, params), params)
        return loss

    x = rng.standard_normal((batch, inputs)).astype(np.float32)
    y = rng.integers(0, classes, batch).astype(np.int32)
    return train_step, x, y


def loop(step, x, y, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(x, y)
    float(loss)
    return (time.perf_counter() - start) / steps


def measure(steps: int) -> dict:
    out = {}
    for name, dims in MODELS.items():
        step, x, y = make(*dims)
        loop(step, x, y, 5)  # (compiled, warm)
        plain = min(loop(step, x, y, steps) for _ in range(3))
        with tempfile.TemporaryDirectory() as logdir:
            with fj.profile(logdir) as prof:
                profiled = loop(step, x, y, steps)
            rows = prof.top_lines(n=100)
            table = prof.table()
        lines = sum(r.seconds_per_step for r in rows)
        out[name] = {
            "lines_ms": lines * 1e3,
            "profiled_step_ms": profiled * 1e3,
            "plain_step_ms": plain * 1e3,
            "lines_over_profiled_step": lines / profiled,
            "lines_over_plain_step": lines / plain,
            "ops_cover_span": prof.busy["jit_train_step"],
            "table": table,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--json", help="write the figures here")
    opts = parser.parse_args()
    result = measure(opts.steps)
    print(f"{opts.steps} steps each\n")
    print(
        "| model | lines' total (ms) | profiled step (ms) | lines / profiled step "
        "| step without the profile (ms) | ops' own time / span |\n|---|---:|---:|---:|---:|---:|"
    )
    for name, r in result.items():
        print(
            f"| {name} | {r['lines_ms']:.3f} | {r['profiled_step_ms']:.3f} | "
            f"{r['lines_over_profiled_step']:.3f} | {r['plain_step_ms']:.3f} | "
            f"{r['ops_cover_span']:.3f} |"
        )
    for name, r in result.items():
        print(f"\n{name}:\n{r['table']}")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
