"""A flax model and an optax optimizer, trained under flowjit as they are: a small GPT (flax.linen
token embedding, causal self-attention blocks, a tied output head) on a toy sequence task, with
optax AdamW, a warmup-cosine schedule and global-norm clipping. The port is one decorator and
the Variables recipe (the parameters flax's ``init`` gives, each held in an fj.Variable, named
by its path); the same code also runs under jax.jit, and both loss curves are printed.

    python examples/flax_port.py [--steps N] [--layers L] [--quick]
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import flowjit as fj

VOCAB, WIDTH, HEADS, CONTEXT, BATCH = 32, 32, 4, 16, 8


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention and an MLP."""

    @nn.compact
    def __call__(self, x):
        mask = nn.make_causal_mask(jnp.ones(x.shape[:2]))
        h = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=HEADS)(h, h, mask=mask)
        h = nn.LayerNorm()(x)
        return x + nn.Dense(WIDTH)(nn.gelu(nn.Dense(4 * WIDTH)(h)))


class GPT(nn.Module):
    layers: int = 2

    @nn.compact
    def __call__(self, tokens):
        embed = nn.Embed(VOCAB, WIDTH)
        position = self.param("position", nn.initializers.normal(0.02), (CONTEXT, WIDTH))
        x = embed(tokens) + position[: tokens.shape[1]]
        for _ in range(self.layers):
            x = Block()(x)
        return embed.attend(nn.LayerNorm()(x))  # (the output head is the embedding, tied)


def batches(steps: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sequences counting up modulo VOCAB from a random start: the next token is learnable."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        start = rng.integers(0, VOCAB, (BATCH, 1))
        seq = ((start + np.arange(CONTEXT + 1)) % VOCAB).astype(np.int32)
        out.append((seq[:, :-1], seq[:, 1:]))
    return out


def optimizer(steps: int) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-3, max(1, steps // 5), steps)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.01))


def loss_fn(model: GPT, params, x, y):
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def train_jax(model: GPT, params, data) -> list[float]:
    """The training under jax.jit: the loss of each step."""
    tx = optimizer(len(data))

    @jax.jit
    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(lambda p: loss_fn(model, p, x, y))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    state, losses = tx.init(params), []
    for x, y in data:
        params, state, loss = step(params, state, x, y)
        losses.append(float(loss))
    return losses


def as_variables(params):
    """The Variables recipe: each parameter in an fj.Variable named by its path (and back
    with ``jax.tree.map(lambda v: v.value, variables)``)."""
    def variable(path, value):
        name = jax.tree_util.keystr(path, simple=True, separator="/")  # Block_0/Dense_0/kernel
        return fj.Variable(np.asarray(value), name=name)

    return jax.tree_util.tree_map_with_path(variable, params)


def flowjit_trainer(model: GPT, params, steps: int):
    """The same training under flowjit: the Variables, the optimizer and the compiled step."""
    variables = as_variables(params)
    opt = fj.optim.Optimizer(optimizer(steps))
    loss = fj.from_jax(lambda p, x, y: loss_fn(model, p, x, y), name="gpt_loss")

    @fj.compile
    def step(x, y):
        return opt.minimize(lambda: loss(variables, x, y), variables)

    return variables, opt, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="10 steps, one layer")
    opts = parser.parse_args()
    steps, layers = (10, 1) if opts.quick else (opts.steps, opts.layers)

    model, data = GPT(layers), batches(steps)
    params = model.init(jax.random.key(0), data[0][0])["params"]
    want = train_jax(model, params, data)
    _, _, step = flowjit_trainer(model, params, steps)
    got = [float(step(x, y)) for x, y in data]
    print("step   jax.jit   flowjit")
    for i in range(0, steps, max(1, steps // 10)):
        print(f"{i:4d}  {want[i]:8.5f}  {got[i]:8.5f}")
    diff = max(abs(g - w) / abs(w) for g, w in zip(got, want))
    print(f"largest relative difference of the losses: {diff:.2e}")
    if diff <= 1e-5:
        print("the flax port matches jax.jit")


if __name__ == "__main__":
    main()
