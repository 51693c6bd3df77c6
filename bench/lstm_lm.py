"""LSTM language-model training step (vocabulary 10000, embedding 256, hidden 256, 20 time
steps, batch 32, Adam, weights updated in place): flowjit (``fj.scan`` over the time steps,
``fj.Variable`` weights, ``fj.gradients`` + ``fj.optim.Adam``) against the same model
written the natural way in jax (``jax.lax.scan``, ``jax.jit`` donating the parameters and
the optimizer state), side by side in one run.

Both start from the same weights and see the same batches; the losses of the first 10 steps
and the weights after them must agree, or the run stops with FAILED. Reports steps/s (interleaved rounds, medians) and first-call (trace + compile)
time, each as a ratio, and the first-call time of a scan of 10 and of 1000 steps (it must
not grow with the trip count).

    python bench/lstm_lm.py [--steps N] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import flowjit as fj
import flowjit.numpy as fnp

# First calls compile: no persistent compilation cache (it would serve flowjit's, and jax's,
# programs from earlier runs)
fj.config.update("cache_dir", None)

VOCAB, EMBED, HIDDEN, SEQ, BATCH = 10000, 256, 256, 20, 32
LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-8
CHECKED_STEPS = 10  # the losses of this many steps, and the weights after them, must agree
LOSS_RTOL = 1e-4
WEIGHT_ATOL = 1e-4  # 1% of the most Adam moves a weight in CHECKED_STEPS steps (LR each)
SCAN_LENGTHS = (10, 1000)  # first-call time of a scan of each length
SMALL = {"batch": 4, "embed": 32, "hidden": 32}  # sizes of the scan compile-time model


def init_params(vocab: int, embed: int, hidden: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Embedding, one LSTM layer (gates i, f, g, o side by side) and the output layer."""
    rng = np.random.default_rng(seed)

    def normal(shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return {
        "embed": normal((vocab, embed), 0.1),
        "w_x": normal((embed, 4 * hidden), 1 / np.sqrt(embed)),
        "w_h": normal((hidden, 4 * hidden), 1 / np.sqrt(hidden)),
        "b": np.zeros(4 * hidden, np.float32),
        "w_out": normal((hidden, vocab), 1 / np.sqrt(hidden)),
        "b_out": np.zeros(vocab, np.float32),
    }


def make_batches(count: int, seed: int = 1) -> list[np.ndarray]:
    """Token windows of SEQ + 1 ids (inputs are the first SEQ, targets the last SEQ), drawn
    from Zipf's law as words are, so that the loss falls from the first steps."""
    rng = np.random.default_rng(seed)
    p = 1 / np.arange(1, VOCAB + 1)
    return [
        rng.choice(VOCAB, (BATCH, SEQ + 1), p=p / p.sum()).astype(np.int32) for _ in range(count)
    ]


# flowjit -------------------------------------------------------------------------------


def flowjit_cell(carry, x, w_x, w_h, b):
    """One LSTM step: ``carry`` is (h, c), ``x`` the (batch, embed) input; returns the new
    carry and h."""
    h, c = carry
    i, f, g, o = fnp.split(x @ w_x + h @ w_h + b, 4, axis=-1)
    c = fj.nn.sigmoid(f) * c + fj.nn.sigmoid(i) * fnp.tanh(g)
    h = fj.nn.sigmoid(o) * fnp.tanh(c)
    return (h, c), h


def flowjit_loss(p: dict, tokens):
    inputs, targets = tokens[:, :-1].T, tokens[:, 1:].T  # time-major
    h0 = fnp.zeros((tokens.shape[0], p["w_h"].shape[0]), fnp.float32)
    _, hs = fj.scan(
        lambda carry, x: flowjit_cell(carry, x, p["w_x"], p["w_h"], p["b"]),
        (h0, h0),
        p["embed"][inputs],
    )
    logits = hs @ p["w_out"] + p["b_out"]
    return fj.nn.softmax_cross_entropy(logits, targets).mean()


def flowjit_step_fn() -> tuple[Callable, dict]:
    params = {k: fj.Variable(v, name=k) for k, v in init_params(VOCAB, EMBED, HIDDEN).items()}
    variables = list(params.values())
    optimizer = fj.optim.Adam(LR, B1, B2, EPS)

    @fj.compile
    def step(tokens):
        loss = flowjit_loss(params, tokens)
        optimizer.apply(fj.gradients(loss, variables), variables)
        return loss

    return step, params


# jax -----------------------------------------------------------------------------------


def jax_cell(carry, x, w_x, w_h, b):
    h, c = carry
    i, f, g, o = jnp.split(x @ w_x + h @ w_h + b, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h


def jax_loss(p: dict, tokens):
    inputs, targets = tokens[:, :-1].T, tokens[:, 1:].T
    h0 = jnp.zeros((tokens.shape[0], p["w_h"].shape[0]), jnp.float32)
    _, hs = jax.lax.scan(
        lambda carry, x: jax_cell(carry, x, p["w_x"], p["w_h"], p["b"]),
        (h0, h0),
        p["embed"][inputs],
    )
    logits = hs @ p["w_out"] + p["b_out"]
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, targets[..., None], axis=-1).mean()


def jax_step_fn() -> tuple[Callable, dict, tuple]:
    """``step(params, adam_state, tokens) -> (params, adam_state, loss)``, optax.adam's
    rule (the one fj.optim.Adam follows)."""

    def step(params, state, tokens):
        loss, grads = jax.value_and_grad(jax_loss)(params, tokens)
        m, v, count = state
        count = count + 1
        m = jax.tree_util.tree_map(lambda m, g: m * B1 + g * (1 - B1), m, grads)
        v = jax.tree_util.tree_map(lambda v, g: v * B2 + g * g * (1 - B2), v, grads)
        t = count.astype(jnp.float32)

        def update(p, m, v):
            m_hat, v_hat = m / (1 - B1**t), v / (1 - B2**t)
            return p - m_hat / (jnp.sqrt(v_hat) + EPS) * LR

        params = jax.tree_util.tree_map(update, params, m, v)
        return params, (m, v, count), loss

    params = {k: jnp.asarray(v) for k, v in init_params(VOCAB, EMBED, HIDDEN).items()}

    def zeros():
        return {k: jnp.zeros_like(v) for k, v in params.items()}

    state = (zeros(), zeros(), jnp.zeros((), jnp.int32))
    return jax.jit(step, donate_argnums=(0, 1)), params, state


# scan compile time ---------------------------------------------------------------------


def scan_first_calls(length: int) -> tuple[float, float]:
    """First-call seconds (trace + compile + one run) of a fresh flowjit and jax function:
    the gradient of a small LSTM run over ``length`` steps."""
    batch, embed, hidden = SMALL["batch"], SMALL["embed"], SMALL["hidden"]
    params = init_params(VOCAB, embed, hidden, seed=2)
    weights = [params["w_x"], params["w_h"], params["b"]]
    xs = np.random.default_rng(3).standard_normal((length, batch, embed)).astype(np.float32)

    def flowjit_run(w_x, w_h, b, xs):
        h0 = fnp.zeros((batch, hidden), fnp.float32)
        _, hs = fj.scan(lambda carry, x: flowjit_cell(carry, x, w_x, w_h, b), (h0, h0), xs)
        return (hs * hs).mean()

    def jax_run(w_x, w_h, b, xs):
        h0 = jnp.zeros((batch, hidden), jnp.float32)
        _, hs = jax.lax.scan(lambda carry, x: jax_cell(carry, x, w_x, w_h, b), (h0, h0), xs)
        return (hs * hs).mean()

    times = []
    for fn in (fj.compile(fj.grad(flowjit_run, (0, 1, 2))), jax.jit(jax.grad(jax_run, (0, 1, 2)))):
        start = time.perf_counter()
        jax.block_until_ready(fn(*weights, xs))
        times.append(time.perf_counter() - start)
    return times[0], times[1]


# main ----------------------------------------------------------------------------------


def check_same_training(ours: list[float], theirs: list[float], variables, params) -> None:
    """Stop the benchmark unless flowjit trained the same model as jax: the same losses
    step by step and the same weights at the end."""
    try:
        np.testing.assert_allclose(ours, theirs, rtol=LOSS_RTOL, err_msg="losses")
        for name, variable in variables.items():
            np.testing.assert_allclose(
                np.asarray(variable), np.asarray(params[name]), atol=WEIGHT_ATOL, err_msg=name
            )
    except AssertionError as error:
        raise SystemExit(
            f"FAILED: flowjit and jax disagree after {len(ours)} steps\n"
            f"flowjit losses {np.array(ours)}\njax losses     {np.array(theirs)}\n{error}"
        ) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    opts = parser.parse_args()
    if opts.quick:
        opts.steps, opts.rounds = 3, 1
    batches = [jnp.asarray(t) for t in make_batches(CHECKED_STEPS)]

    flowjit_step, variables = flowjit_step_fn()
    jax_step, params, state = jax_step_fn()
    start = time.perf_counter()
    ours = [float(flowjit_step(batches[0]))]
    flowjit_first = time.perf_counter() - start
    start = time.perf_counter()
    params, state, loss = jax_step(params, state, batches[0])
    theirs = [float(loss)]
    jax_first = time.perf_counter() - start
    for tokens in batches[1:]:
        ours.append(float(flowjit_step(tokens)))
        params, state, loss = jax_step(params, state, tokens)
        theirs.append(float(loss))
    check_same_training(ours, theirs, variables, params)

    def run_flowjit() -> float:
        start = time.perf_counter()
        for i in range(opts.steps):
            loss = flowjit_step(batches[i % len(batches)])
        loss.block_until_ready()
        return opts.steps / (time.perf_counter() - start)

    def run_jax() -> float:
        nonlocal params, state
        start = time.perf_counter()
        for i in range(opts.steps):
            params, state, loss = jax_step(params, state, batches[i % len(batches)])
        loss.block_until_ready()
        return opts.steps / (time.perf_counter() - start)

    fast, slow = [], []
    for _ in range(opts.rounds):
        fast.append(run_flowjit())
        slow.append(run_jax())
    a, b = statistics.median(fast), statistics.median(slow)

    # each length twice, alternating, keeping the faster: the first compilation in a
    # process also pays one-time costs
    scan_times = {n: [] for n in SCAN_LENGTHS}
    for _ in range(2):
        for n in SCAN_LENGTHS:
            scan_times[n].append(scan_first_calls(n))
    scan_best = {n: tuple(map(min, zip(*t))) for n, t in scan_times.items()}

    short, long = SCAN_LENGTHS
    print(
        f"LSTM LM: vocab {VOCAB}, embed {EMBED}, hidden {HIDDEN}, {SEQ} steps, batch {BATCH}, "
        f"Adam; {jax.devices()[0].platform}; {opts.rounds} rounds of {opts.steps} steps"
    )
    print(f"losses agree over {CHECKED_STEPS} steps: {ours[0]:.4f} -> {ours[-1]:.4f}\n")
    print("| | flowjit | jax.jit | flowjit/jax | goal |")
    print("|---|---:|---:|---:|---|")
    print(f"| steps/s | {a:.1f} | {b:.1f} | {a / b:.3f} | >= 0.95 |")
    print(
        f"| first call (ms) | {flowjit_first * 1e3:.0f} | {jax_first * 1e3:.0f} "
        f"| {flowjit_first / jax_first:.3f} | <= 1.2 |"
    )
    print(
        f"\nscan compile time: gradient of an LSTM ({SMALL['batch']}x{SMALL['embed']}, "
        f"hidden {SMALL['hidden']}) over n steps, first call of a fresh function\n"
    )
    print(f"| | n = {short} | n = {long} | ratio {long}/{short} | goal |")
    print("|---|---:|---:|---:|---|")
    for k, name in enumerate(("flowjit", "jax.jit")):
        t_short, t_long = scan_best[short][k], scan_best[long][k]
        goal = "~1 (no growth)" if k == 0 else ""
        print(
            f"| {name} first call (ms) | {t_short * 1e3:.0f} | {t_long * 1e3:.0f} "
            f"| {t_long / t_short:.2f} | {goal} |"
        )


if __name__ == "__main__":
    main()
