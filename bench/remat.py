"""Rematerialization: the gradient step of a 16-layer MLP and of a small transformer (causal
self-attention + MLP blocks), each with every layer (block) under ``fj.checkpoint`` and
without, side by side with the same model under ``jax.checkpoint`` and plain ``jax.jit``, in
one run. The models are written once, against a namespace holding either flowjit
(``flowjit.numpy``, ``fj.nn``, ``fj.checkpoint``) or jax (``jax.numpy``, ``jax.nn``,
``jax.checkpoint``).

Reports XLA's temporary bytes of the compiled gradient step (``memory_analysis()``, which is
deterministic) and the step time (median of interleaved rounds), with the ratios remat /
without. Goals: temp bytes with remat at most half of without; step time within 1.4x. The
gradients with remat must equal those without and jax's, or the run stops with FAILED.

    python bench/remat.py [--rounds R] [--steps N] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import flowjit as fj
import flowjit.numpy as fnp

FLOWJIT = SimpleNamespace(np=fnp, nn=fj.nn, checkpoint=fj.checkpoint, name="flowjit")
JAX = SimpleNamespace(np=jnp, nn=jax.nn, checkpoint=jax.checkpoint, name="jax")

MEMORY_GOAL, TIME_GOAL = 0.5, 1.4
GRAD_RTOL, GRAD_ATOL = 2e-4, 2e-5


@dataclass(frozen=True)
class Sizes:
    mlp_layers: int = 16
    mlp_batch: int = 512
    mlp_width: int = 256
    tf_layers: int = 4
    tf_batch: int = 8
    tf_seq: int = 128
    tf_width: int = 128
    tf_heads: int = 4


FULL = Sizes()
QUICK = Sizes(mlp_batch=128, mlp_width=64, tf_batch=2, tf_seq=32, tf_width=32)


# the models -------------------------------------------------------------------------------
def mlp_params(s: Sizes, seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    d = s.mlp_width
    return {
        "w": [
            (rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
            for _ in range(s.mlp_layers)
        ],
        "b": [np.full(d, 0.01 * i, np.float32) for i in range(s.mlp_layers)],
    }


def mlp_loss(lib: Any, remat: bool, params: dict, x: Any, policy: Any = None) -> Any:
    """A 16-layer MLP, ``h = gelu(h @ w + b)``, each layer checkpointed with ``remat``."""

    def layer(h, w, b):
        return lib.nn.gelu(h @ w + b)

    if remat:
        layer = lib.checkpoint(layer, policy=policy)
    h = x
    for w, b in zip(params["w"], params["b"]):
        h = layer(h, w, b)
    return (h * h).mean()


def transformer_params(s: Sizes, seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    d = s.tf_width

    def normal(shape, fan_in):
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

    names = {
        "wq": (d, d),
        "wk": (d, d),
        "wv": (d, d),
        "wo": (d, d),
        "w1": (d, 4 * d),
        "w2": (4 * d, d),
    }
    params = {
        k: [normal(shape, shape[0]) for _ in range(s.tf_layers)] for k, shape in names.items()
    }
    params["g1"] = [np.ones(d, np.float32) for _ in range(s.tf_layers)]
    params["g2"] = [np.ones(d, np.float32) for _ in range(s.tf_layers)]
    return params


def transformer_loss(
    lib: Any, remat: bool, params: dict, x: Any, heads: int, policy: Any = None
) -> Any:
    """Pre-norm blocks of causal multi-head self-attention and a 4x MLP (gelu) on ``x``
    (batch, sequence, width), each block checkpointed with ``remat``."""
    xp = lib.np

    def norm(h, g):
        mu = h.mean(axis=-1, keepdims=True)
        var = ((h - mu) ** 2).mean(axis=-1, keepdims=True)
        return (h - mu) / xp.sqrt(var + 1e-5) * g

    def block(h, p):
        b, t, d = h.shape
        a = norm(h, p["g1"])
        q, k, v = ((a @ p[w]).reshape(b, t, heads, d // heads) for w in ("wq", "wk", "wv"))
        scores = xp.einsum("bthd,bshd->bhts", q, k) / np.sqrt(d // heads)
        scores = xp.where(xp.tril(xp.ones((t, t), bool)), scores, -1e9)
        att = xp.einsum("bhts,bshd->bthd", lib.nn.softmax(scores, axis=-1), v)
        h = h + att.reshape(b, t, d) @ p["wo"]
        return h + lib.nn.gelu(norm(h, p["g2"]) @ p["w1"]) @ p["w2"]

    if remat:
        block = lib.checkpoint(block, policy=policy)
    h = x
    for i in range(len(params["wq"])):
        h = block(h, {k: v[i] for k, v in params.items()})
    return (h * h).mean()


# building and measuring -------------------------------------------------------------------
def models(s: Sizes) -> dict[str, tuple[Callable, dict, np.ndarray]]:
    """name -> (loss(lib, remat, params, x), params, x)."""
    rng = np.random.default_rng(1)
    mlp_x = rng.standard_normal((s.mlp_batch, s.mlp_width)).astype(np.float32)
    tf_x = rng.standard_normal((s.tf_batch, s.tf_seq, s.tf_width)).astype(np.float32)

    def transformer(lib, remat, params, x, policy=None):
        return transformer_loss(lib, remat, params, x, s.tf_heads, policy)

    return {
        f"MLP ({s.mlp_layers} layers)": (mlp_loss, mlp_params(s), mlp_x),
        f"transformer ({s.tf_layers} blocks)": (transformer, transformer_params(s), tf_x),
    }


def gradient_step(lib: Any, loss: Callable, remat: bool, policy: Any = None) -> Callable:
    """The compiled gradient of ``loss`` with respect to the parameters."""

    def objective(params, x):
        return loss(lib, remat, params, x, policy=policy)

    if lib is FLOWJIT:
        return fj.compile(fj.grad(objective))
    return jax.jit(jax.grad(objective))


def temp_bytes(step: Callable, params: dict, x: np.ndarray) -> int:
    """XLA's temporary bytes of ``step``'s executable (a flowjit or jax.jit function)."""
    return step.lower(params, x).compile().memory_analysis().temp_size_in_bytes


def check_gradients(name: str, grads: dict[str, Any]) -> None:
    """Stop unless every variant's gradients equal jax.jit's without remat."""
    want = grads["jax.jit"]
    for variant, got in grads.items():
        try:
            jax.tree_util.tree_map(
                lambda a, b: np.testing.assert_allclose(
                    np.asarray(a), np.asarray(b), rtol=GRAD_RTOL, atol=GRAD_ATOL
                ),
                got,
                want,
            )
        except AssertionError as error:
            raise SystemExit(f"FAILED: {name}: {variant} gradients differ\n{error}") from None


def measure(s: Sizes, rounds: int, steps: int) -> list[dict]:
    rows = []
    for name, (loss, params, x) in models(s).items():
        variants = {
            "flowjit": gradient_step(FLOWJIT, loss, False),
            "flowjit + fj.checkpoint": gradient_step(FLOWJIT, loss, True),
            "jax.jit": gradient_step(JAX, loss, False),
            "jax.jit + jax.checkpoint": gradient_step(JAX, loss, True),
        }
        jparams = jax.tree_util.tree_map(jnp.asarray, params)
        jx = jnp.asarray(x)
        check_gradients(name, {k: step(jparams, jx) for k, step in variants.items()})
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(rounds):  # interleaved, so a slow moment hurts every variant alike
            for key, step in variants.items():
                start = time.perf_counter()
                for _ in range(steps):
                    out = step(jparams, jx)
                jax.block_until_ready(out)
                times[key].append((time.perf_counter() - start) / steps)
        for key, step in variants.items():
            rows.append(
                {
                    "model": name,
                    "variant": key,
                    "temp_bytes": temp_bytes(step, jparams, jx),
                    "step_ms": statistics.median(times[key]) * 1e3,
                }
            )
    return rows


def table(rows: list[dict]) -> str:
    """A markdown table; each remat row's ratios are against the same peer without remat."""
    base = {(r["model"], r["variant"]): r for r in rows}
    lines = [
        "| model | variant | temp MB | step ms | temp / without | time / without | goal |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        plain = r["variant"].split(" + ")[0]
        ratios, goal = ("", ""), ""
        if plain != r["variant"]:
            ref = base[(r["model"], plain)]
            mem = r["temp_bytes"] / ref["temp_bytes"]
            speed = r["step_ms"] / ref["step_ms"]
            r.update(temp_ratio=mem, time_ratio=speed)
            ratios = (f"{mem:.2f}", f"{speed:.2f}")
            met = mem <= MEMORY_GOAL and speed <= TIME_GOAL
            goal = f"<= {MEMORY_GOAL} temp, <= {TIME_GOAL} time: {'met' if met else 'MISSED'}"
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['temp_bytes'] / 1e6:.2f} "
            f"| {r['step_ms']:.2f} | {ratios[0]} | {ratios[1]} | {goal} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    parser.add_argument("--quick", action="store_true", help="small models, a fast smoke run")
    parser.add_argument("--json", help="write the rows here")
    opts = parser.parse_args()
    sizes = QUICK if opts.quick else FULL
    if opts.quick:
        opts.rounds, opts.steps = 1, 1
    rows = measure(sizes, opts.rounds, opts.steps)
    print(
        f"remat: gradient steps on {jax.devices()[0].platform} "
        f"({jax.devices()[0].device_kind}); {sizes}; median of {opts.rounds} rounds of "
        f"{opts.steps} steps; gradients with remat equal those without and jax's\n"
    )
    print(table(rows))
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"sizes": sizes.__dict__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
