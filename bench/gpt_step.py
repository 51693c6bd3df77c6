"""A GPT training step, written twice with the same math and the same initial weights: (a) jax,
flax.linen layers and optax under ``jax.jit`` (parameters and optimizer state donated); (b)
flowjit, the plain functional way (parameters in fj.Variables, fj.nn layer functions, one
``@fj.compile`` step with ``fj.gradients`` and ``fj.optim.Optimizer`` running the same optax
transformation). The model: token and learned position embeddings, pre-LayerNorm blocks of
causal multi-head self-attention and a gelu MLP of 4x width, a final LayerNorm, an output head
tied to the embedding, cross-entropy in float32; AdamW with a warmup-cosine schedule after
global-norm clipping. With ``--dtype bfloat16`` the parameters stay float32 and are cast to
bfloat16 where used (as flax's ``dtype=bfloat16``), the loss is float32.

Reports the step time (interleaved rounds in one process, medians), the first call (trace +
compile + run, in a fresh process) and the peak RSS of a fresh process after a few steps, each
as a flowjit/jax ratio, and checks that the losses of the first steps agree.

    python bench/gpt_step.py [--size small|medium|all] [--dtype float32|bfloat16|all]
                             [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import flowjit as fj
import flowjit.numpy as fnp

# First calls compile: no persistent compilation cache (it would serve earlier runs' programs)
fj.config.update("cache_dir", None)
jax.config.update("jax_compilation_cache_dir", None)


@dataclass(frozen=True)
class Size:
    layers: int
    width: int
    heads: int
    context: int
    batch: int
    vocab: int = 256


SIZES = {
    "small": Size(layers=4, width=128, heads=4, context=128, batch=16),
    "medium": Size(layers=6, width=384, heads=6, context=256, batch=8),
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
TOTAL_STEPS = 1000  # the schedule's length


def optimizer() -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-3, 100, TOTAL_STEPS)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.01))


def batches(size: Size, count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sequences counting up (modulo the vocabulary) from a random start, with noise tokens."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        start = rng.integers(0, size.vocab, (size.batch, 1))
        seq = (start + np.arange(size.context + 1)) % size.vocab
        noise = rng.random(seq.shape) < 0.1
        seq = np.where(noise, rng.integers(0, size.vocab, seq.shape), seq).astype(np.int32)
        out.append((seq[:, :-1], seq[:, 1:]))
    return out


# -- (a) jax: flax.linen + optax -------------------------------------------------------------
class Block(nn.Module):
    size: Size
    dtype: Any

    @nn.compact
    def __call__(self, x, mask):
        # (the two-pass variance, as fj.nn.layer_norm: the same math)
        norm = lambda: nn.LayerNorm(dtype=self.dtype, use_fast_variance=False)  # noqa: E731
        h = norm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.size.heads, dtype=self.dtype)(
            h, h, mask=mask
        )
        h = nn.gelu(nn.Dense(4 * self.size.width, dtype=self.dtype)(norm()(x)))
        return x + nn.Dense(self.size.width, dtype=self.dtype)(h)


class GPT(nn.Module):
    size: Size
    dtype: Any

    @nn.compact
    def __call__(self, tokens):
        s = self.size
        normal = nn.initializers.normal(0.02)
        embed = nn.Embed(s.vocab, s.width, dtype=self.dtype, embedding_init=normal)
        position = self.param("position", normal, (s.context, s.width))
        x = embed(tokens) + position.astype(self.dtype)
        mask = nn.make_causal_mask(tokens)
        for _ in range(s.layers):
            x = Block(s, self.dtype)(x, mask)
        x = nn.LayerNorm(dtype=self.dtype, use_fast_variance=False)(x)
        return embed.attend(x)  # the output head is the embedding, tied


def jax_trainer(size: Size, dtype: Any, params: Any):
    """A function running one jax.jit step on a batch and returning its loss."""
    model, tx = GPT(size, dtype), optimizer()

    def step(params, opt_state, x, y):
        def loss_fn(params):
            logits = model.apply({"params": params}, x).astype(jnp.float32)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    jitted = jax.jit(step, donate_argnums=(0, 1))
    params = jax.tree.map(jnp.copy, params)  # (its own buffers, donated)
    state = [params, tx.init(params)]

    def run(x, y):
        state[0], state[1], loss = jitted(state[0], state[1], x, y)
        return loss

    run.jitted, run.state = jitted, state
    return run


# -- (b) flowjit: plain functions over a dict of fj.Variables ---------------------------------
def dense(p, x, dtype, contract: int = 1):
    """flax's Dense / DenseGeneral: ``x``'s last ``contract`` axes times the kernel, plus the
    bias, in ``dtype``."""
    kernel, bias = p["kernel"].astype(dtype), p["bias"].astype(dtype)
    axes = tuple(range(x.ndim - contract, x.ndim))
    return fnp.tensordot(x, kernel, (axes, tuple(range(contract)))) + bias


def layer_norm(p, x, dtype):
    return fj.nn.layer_norm(x, p["scale"], p["bias"], eps=1e-6).astype(dtype)


def attention(p, x, mask, dtype):
    """flax's MultiHeadDotProductAttention of ``x`` with itself under the causal ``mask`` (the
    heads are the kernels' second axis)."""
    q, k, v = (dense(p[name], x, dtype) for name in ("query", "key", "value"))
    q = q / np.sqrt(q.shape[-1]).astype(dtype)
    logits = fnp.einsum("bqhd,bkhd->bhqk", q, k)
    logits = fnp.where(mask, logits, jnp.finfo(dtype).min)
    weights = fj.nn.softmax(logits)
    return dense(p["out"], fnp.einsum("bhqk,bkhd->bqhd", weights, v), dtype, contract=2)


def block(p, x, mask, dtype):
    h = layer_norm(p["LayerNorm_0"], x, dtype)
    x = x + attention(p["MultiHeadDotProductAttention_0"], h, mask, dtype)
    h = fj.nn.gelu(dense(p["Dense_0"], layer_norm(p["LayerNorm_1"], x, dtype), dtype))
    return x + dense(p["Dense_1"], h, dtype)


def gpt(p, tokens, size: Size, dtype):
    """The logits (in ``dtype``) of the next token."""
    table = p["Embed_0"]["embedding"].astype(dtype)
    x = fnp.take(table, tokens, axis=0) + p["position"].astype(dtype)
    mask = np.tril(np.ones((size.context, size.context), bool))
    for i in range(size.layers):
        x = block(p[f"Block_{i}"], x, mask, dtype)
    return layer_norm(p["LayerNorm_0"], x, dtype) @ table.T


def flowjit_trainer(size: Size, dtype: Any, params: Any):
    """A compiled flowjit step on a batch, returning its loss."""
    variables = jax.tree_util.tree_map_with_path(
        lambda path, value: fj.Variable(
            np.asarray(value), name=jax.tree_util.keystr(path, simple=True, separator="/")
        ),
        params,
    )
    leaves, treedef = jax.tree.flatten(variables, is_leaf=lambda v: isinstance(v, fj.Variable))
    opt = fj.optim.Optimizer(optimizer())

    @fj.compile
    def step(x, y):
        logits = gpt(variables, x, size, dtype).astype(np.float32)
        loss = fj.nn.softmax_cross_entropy(logits, y).mean()
        grads = fj.gradients(loss, leaves)
        opt.apply(jax.tree.unflatten(treedef, grads), variables)
        return loss

    step.variables = variables
    return step


def trainers(size_name: str, dtype_name: str, only: str | None = None) -> dict[str, Any]:
    """The step function of each implementation (or ``only`` one), from the same weights."""
    size, dtype = SIZES[size_name], DTYPES[dtype_name]
    tokens = np.zeros((size.batch, size.context), np.int32)
    params = GPT(size, dtype).init(jax.random.key(0), tokens)["params"]
    params = jax.tree.map(np.asarray, params)
    makers = {"flowjit": flowjit_trainer, "jax": jax_trainer}
    return {
        impl: make(size, dtype, params) for impl, make in makers.items() if only in (None, impl)
    }


# -- measuring ---------------------------------------------------------------------------------
def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM: ru_maxrss would count the parent's, which it
    keeps across fork and exec)."""
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kib / 1024


def fresh_process(impl: str, size: str, dtype: str, steps: int) -> tuple[float, float]:
    """The first call's seconds and the peak RSS (MiB) after ``steps`` steps, in a fresh
    process (the model and data made beforehand)."""
    code = (
        f"import sys, time; sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r}); "
        f"import gpt_step as b; run = b.trainers({size!r}, {dtype!r}, {impl!r})[{impl!r}]; "
        f"data = b.batches(b.SIZES[{size!r}], {steps}); t = time.perf_counter(); "
        "float(run(*data[0])); first = time.perf_counter() - t\n"
        "for x, y in data[1:]: loss = run(x, y)\n"
        "float(loss); print(first, b.peak_rss_mib())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr)
    first, rss = done.stdout.split()[-2:]
    return float(first), float(rss)


def measure(size: str, dtype: str, rounds: int, steps: int, fresh: int) -> dict[str, Any]:
    runs = trainers(size, dtype)
    data = batches(SIZES[size], steps)
    losses = {impl: [float(run(x, y)) for x, y in data[:5]] for impl, run in runs.items()}
    rel = max(abs(a - b) / abs(b) for a, b in zip(losses["flowjit"], losses["jax"]))
    times: dict[str, list[float]] = {impl: [] for impl in runs}
    for _ in range(rounds):
        for impl, run in runs.items():
            start = time.perf_counter()
            for x, y in data:
                loss = run(x, y)
            float(loss)
            times[impl].append((time.perf_counter() - start) / len(data))
    step = {impl: statistics.median(t) for impl, t in times.items()}
    report = {
        "size": size,
        "dtype": dtype,
        "step_ms": {impl: 1e3 * t for impl, t in step.items()},
        "step_ratio": step["flowjit"] / step["jax"],
        "loss_rel_diff": rel,
        "losses": losses,
    }
    if fresh:
        firsts = {
            impl: [fresh_process(impl, size, dtype, 3) for _ in range(fresh)] for impl in runs
        }
        first = {impl: statistics.median(f for f, _ in r) for impl, r in firsts.items()}
        rss = {impl: statistics.median(m for _, m in r) for impl, r in firsts.items()}
        report |= {
            "first_call_s": first,
            "first_call_ratio": first["flowjit"] / first["jax"],
            "peak_rss_mib": rss,
            "peak_rss_ratio": rss["flowjit"] / rss["jax"],
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", choices=[*SIZES, "all"], default="all")
    parser.add_argument("--dtype", choices=[*DTYPES, "all"], default="all")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument(
        "--fresh", type=int, default=1, help="fresh processes per peer (first call, RSS)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small, float32, 3 rounds, no fresh processes"
    )
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    opts = parser.parse_args()
    if opts.quick:
        opts.size, opts.dtype, opts.rounds, opts.fresh = "small", "float32", 3, 0
    sizes = list(SIZES) if opts.size == "all" else [opts.size]
    dtypes = list(DTYPES) if opts.dtype == "all" else [opts.dtype]
    reports = []
    for size in sizes:
        for dtype in dtypes:
            r = measure(size, dtype, opts.rounds, opts.steps, opts.fresh)
            reports.append(r)
            ms = r["step_ms"]
            line = (
                f"{size:6s} {dtype:8s}  step flowjit {ms['flowjit']:8.2f} ms"
                f"  jax {ms['jax']:8.2f} ms"
                f"  ratio {r['step_ratio']:.3f}  losses rel diff {r['loss_rel_diff']:.1e}"
            )
            if "first_call_ratio" in r:
                line += (
                    f"  first call {r['first_call_ratio']:.3f}x"
                    f" ({r['first_call_s']['flowjit']:.2f}/{r['first_call_s']['jax']:.2f} s)"
                    f"  peak RSS {r['peak_rss_ratio']:.3f}x"
                    f" ({r['peak_rss_mib']['flowjit']:.0f}/{r['peak_rss_mib']['jax']:.0f} MiB)"
                )
            print(line, flush=True)
    if opts.json:
        print(json.dumps(reports))


if __name__ == "__main__":
    main()
