"""Train a small decoder-only transformer (GPT) on the bytes of Python's own standard-library
source with flowjit: ``fj.Module`` layers from ``fj.nn``, AdamW from optax with warmup-cosine
and global-norm clipping, optionally bfloat16 compute, layers scanned (``fj.nn.ScanLayers``)
and rematerialized. It prints the held-out loss as it falls, saves a checkpoint of the model
and the optimizer by path, restores it, and ends with text sampled through a KV cache.

    python examples/gpt.py [--steps N] [--layers L] [--d-model D] [--heads H] [--seq T]
                           [--batch B] [--lr LR] [--bf16] [--scan] [--remat]
                           [--dropout P] [--sample N] [--checkpoint DIR] [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import flowjit as fj
import flowjit.numpy as fnp

# the text: these modules of the standard library, in this order (those this Python has)
MODULES = (
    "textwrap.py", "shlex.py", "fnmatch.py", "glob.py", "heapq.py", "bisect.py",
    "colorsys.py", "string.py", "queue.py", "sched.py", "graphlib.py", "reprlib.py",
    "calendar.py", "fractions.py", "random.py", "argparse.py", "dataclasses.py",
)  # fmt: skip
VOCAB = 256  # bytes
HELD_OUT = 0.1  # the last tenth of the text measures the loss


def load_bytes() -> np.ndarray:
    """The MODULES' source, concatenated, as int32 byte values."""
    directory = os.path.dirname(os.__file__)
    parts = []
    for name in MODULES:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                parts.append(f.read())
    return np.frombuffer(b"\n".join(parts), np.uint8).astype(np.int32)


class Block(fj.Module):
    """Pre-norm transformer block: causal self-attention, then a gelu MLP, each added to the
    residual stream (dropout on both branches)."""

    def __init__(self, d_model: int, heads: int, dropout: float, dtype, init, masks):
        self.norm1 = fj.nn.LayerNorm(d_model, dtype=dtype)
        self.attn = fj.nn.MultiHeadAttention(heads, in_features=d_model, dtype=dtype, rng=init)
        self.norm2 = fj.nn.LayerNorm(d_model, dtype=dtype)
        self.mlp = fj.nn.MLP(4 * d_model, in_features=d_model, dtype=dtype, rng=init)
        self.drop = fj.nn.Dropout(dropout, rng=masks)

    def __call__(self, x, *, cache=None, deterministic=False):
        attended = self.attn(self.norm1(x), causal=cache is None, cache=cache)
        x = x + self.drop(attended, deterministic=deterministic)
        return x + self.drop(self.mlp(self.norm2(x)), deterministic=deterministic)


class GPT(fj.Module):
    """Byte embedding plus learned positions, ``layers`` blocks, a final LayerNorm and the
    output head tied to the embedding; logits in float32 whatever the compute dtype."""

    def __init__(self, opts, seed: int = 0):
        init, masks = fj.random.Generator(seed), fj.random.Generator(seed + 1)
        dtype = jnp.bfloat16 if opts.bf16 else None
        d = opts.d_model
        self.embed = fj.nn.Embedding(VOCAB, d, dtype=dtype, rng=init, axes=("vocab", "embed"))
        normal = fj.nn.initializers.normal(0.02)
        self.param("position", normal, (opts.seq, d), rng=init, axes=(None, "embed"))
        make = lambda: Block(d, opts.heads, opts.dropout, dtype, init, masks)  # noqa: E731
        if opts.scan:
            self.blocks = fj.nn.ScanLayers(make, opts.layers, remat=opts.remat)
        else:
            self.blocks = [make() for _ in range(opts.layers)]
        self.norm = fj.nn.LayerNorm(d, dtype=dtype)
        self.dtype, self.scan, self.remat = dtype, opts.scan, opts.remat

    def layers(self):
        """Each block (for a scanned model: its template, which runs every layer)."""
        return [self.blocks.layer] * self.blocks.length if self.scan else self.blocks

    def __call__(self, tokens, *, caches=None, deterministic=False):
        """Logits [batch, time, VOCAB] for ``tokens`` [batch, time]; with ``caches`` (one
        KVCache per block), the tokens continue the cached ones."""
        t = tokens.shape[1]
        start = 0 if caches is None else caches[0].index.read()
        positions = fnp.dynamic_slice(self.position, (start, 0), (t, self.position.shape[1]))
        x = self.embed(tokens) + positions.astype(self.dtype or fnp.float32)
        # (under FSDP's axis rules, the residual stream stays split by batch: the layers'
        # weights are gathered, not the activations)
        x = fj.nn.with_logical_constraint(x, ("batch", "length", "embed"))
        if self.scan:
            per_layer = None if caches is None else [{"cache": c} for c in caches]
            x = self.blocks(x, deterministic=deterministic, per_layer=per_layer)
        else:
            for i, block in enumerate(self.blocks):
                cache = None if caches is None else caches[i]
                if self.remat and caches is None:
                    x = fj.checkpoint(lambda x, b=block: b(x, deterministic=deterministic))(x)
                else:
                    x = block(x, cache=cache, deterministic=deterministic)
                x = fj.nn.with_logical_constraint(x, ("batch", "length", "embed"))
        return self.embed.attend(self.norm(x)).astype(fnp.float32)


def optimizer(opts) -> fj.optim.Optimizer:
    """AdamW (weight decay on matrices only) with a warmup-cosine schedule, after clipping
    the gradient's global norm to 1: optax's, run by fj.optim."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, opts.lr, max(1, opts.steps // 10), max(2, opts.steps), opts.lr / 10
    )
    decay = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
    return fj.optim.Optimizer(
        optax.chain(
            optax.clip_by_global_norm(1.0),
            optax.adamw(schedule, b2=0.95, weight_decay=0.1, mask=decay),
        ),
        name="adamw",
    )


def make_steps(model: GPT, opt: fj.optim.Optimizer, mesh=None):
    """The compiled training step (loss, gradients, AdamW) and the held-out loss; over
    ``mesh`` (if given) with the batch split along its "data" axis."""
    params = {p: v for p, v in model.named_variables().items() if v.trainable}
    over = {} if mesh is None else dict(mesh=mesh, in_shardings=fj.P("data"))

    def loss_of(batch, deterministic):
        logits = model(batch[:, :-1], deterministic=deterministic)
        return fj.nn.softmax_cross_entropy(logits, batch[:, 1:]).mean()

    @fj.compile(**over)
    def train_step(batch):
        loss = loss_of(batch, deterministic=False)
        grads = fj.gradients(loss, list(params.values()))
        opt.apply(dict(zip(params, grads)), params)
        return loss

    @fj.compile(**over)
    def eval_loss(batch):
        return loss_of(batch, deterministic=True)

    return train_step, eval_loss


def sample(model: GPT, prompt: bytes, count: int, temperature: float, seed: int = 0) -> str:
    """``count`` bytes after ``prompt``: the prompt fills one KV cache per block, then each
    new byte is one compiled step reading and extending the caches."""
    total = len(prompt) + count
    caches = [block.attn.init_cache(1, total) for block in model.layers()]

    @fj.compile
    def next_logits(tokens):
        return model(tokens, caches=caches, deterministic=True)[0, -1]

    rng = np.random.default_rng(seed)
    logits = np.asarray(next_logits(np.frombuffer(prompt, np.uint8).astype(np.int32)[None]))
    out = []
    for _ in range(count):
        p = np.exp((logits - logits.max()) / temperature)
        out.append(int(rng.choice(VOCAB, p=p / p.sum())))
        logits = np.asarray(next_logits(np.array([[out[-1]]], np.int32)))
    return (prompt + bytes(out)).decode("utf-8", errors="replace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128, help="bytes per training window")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--bf16", action="store_true", help="compute in bfloat16")
    parser.add_argument("--scan", action="store_true", help="scan over the stacked layers")
    parser.add_argument("--remat", action="store_true", help="recompute blocks in backward")
    parser.add_argument("--sample", type=int, default=200, help="bytes to generate")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--checkpoint", help="checkpoint folder (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="a small, short run (tests)")
    opts = parser.parse_args()
    if opts.quick:
        opts.steps, opts.layers, opts.d_model, opts.seq, opts.batch = 120, 2, 64, 64, 8
        opts.sample = 80

    data = load_bytes()
    split = int(len(data) * (1 - HELD_OUT))
    train, held_out = data[:split], data[split:]
    rng = np.random.default_rng(0)
    held = held_out[
        rng.integers(0, len(held_out) - opts.seq - 1, 32)[:, None] + np.arange(opts.seq + 1)
    ]
    print(f"{len(data)} bytes of standard-library source; {len(held_out)} held out")

    model = GPT(opts)
    opt = optimizer(opts)
    train_step, eval_loss = make_steps(model, opt)
    count = sum(v.size for v in model.trainable_variables)
    print(
        f"GPT: {opts.layers} layers, d_model {opts.d_model}, {count} parameters"
        f"{', bfloat16' if opts.bf16 else ''}{', scanned' if opts.scan else ''}"
        f"{', remat' if opts.remat else ''}"
    )
    every = max(1, opts.steps // 6)
    start = time.perf_counter()
    for step in range(1, opts.steps + 1):
        starts = rng.integers(0, len(train) - opts.seq - 1, opts.batch)
        loss = train_step(train[starts[:, None] + np.arange(opts.seq + 1)])
        if step == 1 or step % every == 0 or step == opts.steps:
            print(
                f"step {step:5d}  train loss {float(loss):.3f}  held-out loss "
                f"{float(eval_loss(held)):.3f}  ({time.perf_counter() - start:.1f} s)"
            )

    with tempfile.TemporaryDirectory() as scratch:
        ckpt = fj.Checkpoint(opts.checkpoint or scratch, model=model, optimizer=opt)
        ckpt.save(opts.steps)  # (asynchronous: the restore below waits for it)
        before = float(eval_loss(held))
        for v in model.variables:
            v.assign(np.zeros(v.shape, v.dtype))  # (lost, until restored)
        ckpt.restore()
        after = float(eval_loss(held))
        print(
            f"checkpoint at step {opts.steps}: {len(model.variables)} model variables by "
            f"path (e.g. {list(model.named_variables())[3]}); restored held-out loss "
            f"{after:.3f} {'equals' if after == before else 'DIFFERS FROM'} {before:.3f}"
        )
        ckpt.close()
    print("sample: " + sample(model, b"def ", opts.sample, opts.temperature))


if __name__ == "__main__":
    main()
