"""examples/gpt.py's GPT in flax.linen (nn.Embed, nn.LayerNorm,
nn.MultiHeadDotProductAttention, nn.Dense, the tied head) with the same optax AdamW chain
(workloads.gpt_tx), trained by one ``jax.jit`` step with the parameters and optimizer state
donated, as a jax user writes it: the jax.jit peer of the suite's GPT rows and of
bench/gpt_fsdp.py. Parameters are keyed by flax's paths, which are the flowjit model's with
``blocks_0`` for ``blocks/0`` (``flax_path``), so both peers start from the same weights
(``initial_params``: flax's init). Imports no flowjit.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import workloads as W


class MLP(nn.Module):
    hidden: int
    dtype: Any

    @nn.compact
    def __call__(self, x):
        h = nn.gelu(nn.Dense(self.hidden, dtype=self.dtype, name="up")(x))
        return nn.Dense(x.shape[-1], dtype=self.dtype, name="down")(h)


class Block(nn.Module):
    heads: int
    dtype: Any

    @nn.compact
    def __call__(self, x):
        mask = nn.make_causal_mask(jnp.ones(x.shape[:2]))
        h = nn.LayerNorm(dtype=self.dtype, name="norm1")(x)
        x = x + nn.MultiHeadDotProductAttention(self.heads, dtype=self.dtype, name="attn")(
            h, h, mask=mask
        )
        return x + MLP(4 * x.shape[-1], self.dtype, name="mlp")(
            nn.LayerNorm(dtype=self.dtype, name="norm2")(x)
        )


class GPT(nn.Module):
    layers: int
    d_model: int
    heads: int
    seq: int
    dtype: Any = None
    batch_sharding: Any = None  # (FSDP: the residual stream stays split by batch)

    def constrain(self, x):
        if self.batch_sharding is None:
            return x
        return jax.lax.with_sharding_constraint(x, self.batch_sharding)

    @nn.compact
    def __call__(self, tokens):
        embed = nn.Embed(W.GPT_VOCAB, self.d_model, dtype=self.dtype, name="embed")
        position = self.param("position", nn.initializers.normal(0.02), (self.seq, self.d_model))
        x = embed(tokens) + position[: tokens.shape[1]].astype(self.dtype or jnp.float32)
        x = self.constrain(x)
        for i in range(self.layers):
            x = self.constrain(Block(self.heads, self.dtype, name=f"blocks_{i}")(x))
        return embed.attend(nn.LayerNorm(dtype=self.dtype, name="norm")(x)).astype(jnp.float32)


def flax_model(opts, mesh: Any = None) -> GPT:
    """The flax GPT of ``opts``; over a ``mesh``, its residual stream split by batch."""
    split = None if mesh is None else jax.sharding.NamedSharding(mesh.jax, jax.P("data"))
    return GPT(
        opts.layers, opts.d_model, opts.heads, opts.seq, jnp.bfloat16 if opts.bf16 else None, split
    )


def flax_path(path: str) -> tuple[str, ...]:
    """flowjit's path (``blocks/0/attn/query/kernel``) as flax's keys."""
    parts = path.split("/")
    if parts[0] == "blocks":
        parts = [f"blocks_{parts[1]}", *parts[2:]]
    return tuple(parts)


def initial_params(opts) -> dict:
    """flax's initial parameters of the GPT of ``opts`` (key 0), as numpy arrays."""
    model = flax_model(opts)
    tokens = np.zeros((1, opts.seq), np.int32)
    return jax.tree.map(np.asarray, model.init(jax.random.key(0), tokens)["params"])


def at_path(tree: dict, path: str) -> Any:
    """The leaf of flax's ``tree`` at flowjit's ``path``."""
    for key in flax_path(path):
        tree = tree[key]
    return tree


def params_of(model: Any, mesh: Any = None) -> dict:
    """The flowjit model's variables as flax's parameter tree (jax arrays, their shardings
    kept; with a ``mesh``, the unsharded ones replicated over it, as flowjit runs them)."""
    tree: dict = {}
    for path, variable in model.named_variables().items():
        *outer, leaf = flax_path(path)
        node = tree
        for key in outer:
            node = node.setdefault(key, {})
        value = jnp.array(variable.value, copy=True)
        if mesh is not None and variable.sharding is None:
            value = jax.device_put(value, jax.sharding.NamedSharding(mesh.jax, jax.P()))
        node[leaf] = value
    return tree


def loss_fn(model: GPT, params, batch):
    logits = model.apply({"params": params}, batch[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()


def jax_trainer(opts, params, mesh: Any = None):
    """``run(batch) -> loss``: jax.jit training of the flax model from ``params`` with the
    example's optimizer (parameters and state donated; their shardings kept step to step;
    over a ``mesh``, the state's scalars replicated), the jitted step and the state."""
    model, tx = flax_model(opts, mesh), W.gpt_tx()
    shardings = jax.tree.map(lambda a: a.sharding, params)
    opt_state = jax.jit(tx.init)(params)
    if mesh is not None:
        replicated = jax.sharding.NamedSharding(mesh.jax, jax.P())
        opt_state = jax.tree.map(
            lambda a: a if len(a.sharding.device_set) > 1 else jax.device_put(a, replicated),
            opt_state,
        )
    state = [params, opt_state]

    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(lambda p: loss_fn(model, p, batch))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state_shardings = jax.tree.map(lambda a: a.sharding, state[1])
    jitted = jax.jit(step, donate_argnums=(0, 1), out_shardings=(shardings, state_shardings, None))

    def run(batch):
        state[0], state[1], loss = jitted(state[0], state[1], batch)
        return loss

    return run, jitted, state


COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "collective-permute", "all-to-all")


def collectives(hlo: str) -> dict[str, int]:
    """How many of each collective an optimized HLO module holds (async pairs counted once)."""
    counts = {}
    for name in COLLECTIVES:
        counts[name] = sum(
            1 for line in hlo.splitlines() if f" {name}(" in line or f" {name}-start(" in line
        )
    return counts
