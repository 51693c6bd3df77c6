"""The jax.jit peer of the benchmark suite (suite.py): each workload of workloads.py written
the plain way a jax user writes it: parameters as jax arrays, ``jax.value_and_grad``, one
``jax.jit(step, donate_argnums=0)`` returning the new state and the loss, ``jax.nn``,
``jax.lax.conv_general_dilated`` / ``jax.lax.reduce_window`` for the CNN, ``jax.lax.scan``
for the LSTM, Adam as workloads.adam. Prints one ``RESULT {json}`` line.

    python bench/suite/jax_peer.py WORKLOAD [--steps N] [--rounds R] [--warmup W]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import peer_common
import workloads as W

PEER = "jax.jit"
VERSION = f"jax {jax.__version__}"


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy of integer ``labels``."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, labels[..., None], axis=-1).mean()


def mlp_loss(params, x, y):
    h = x
    for i in range(0, len(params) - 2, 2):
        h = jax.nn.relu(h @ params[i] + params[i + 1])
    return cross_entropy(h @ params[-2] + params[-1], y)


def conv(x, k):
    return jax.lax.conv_general_dilated(
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def max_pool(x):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def cnn_loss(params, x, y):
    k1, c1, k2, c2, w, b = params
    h = max_pool(jax.nn.relu(conv(x, k1) + c1))
    h = max_pool(jax.nn.relu(conv(h, k2) + c2))
    return cross_entropy(h.reshape(h.shape[0], -1) @ w + b, y)


def lstm_cell(p, carry, x):
    h, c = carry
    i, f, g, o = jnp.split(x @ p["w_x"] + h @ p["w_h"] + p["b"], 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h


def lstm_loss(p, tokens):
    inputs, targets = tokens[:, :-1].T, tokens[:, 1:].T  # time-major
    h0 = jnp.zeros((tokens.shape[0], W.LSTM_HIDDEN), jnp.float32)
    _, hs = jax.lax.scan(lambda carry, x: lstm_cell(p, carry, x), (h0, h0), p["embed"][inputs])
    return cross_entropy(hs @ p["w_out"] + p["b_out"], targets)


def sgd_step(loss_fn, lr):
    def step(params, *batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), loss

    return step


def adam_step(loss_fn):
    """The state is (params, m, v, count); workloads.adam updates each parameter."""

    def step(state, *batch):
        params, m, v, count = state
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        count = count + 1
        t = count.astype(jnp.float32)
        new = {k: W.adam(params[k], grads[k], m[k], v[k], t, xp=jnp) for k in params}
        params, m, v = ({k: new[k][i] for k in new} for i in range(3))
        return (params, m, v, count), loss

    return step


def stateful(step, state) -> peer_common.Step:
    """``step(state, *batch) -> (state, loss)`` jitted with the state donated, as a function
    of the batch that keeps the state."""
    jitted = jax.jit(step, donate_argnums=0)

    def call(*batch):
        nonlocal state
        state, loss = jitted(state, *batch)
        return loss

    return call


def adam_loss(params, x):
    return sum(((p - x) ** 2).mean() for p in params)


def optax_step(loss_fn, tx):
    """``step((params, opt_state), *batch)``: the loss's gradient, then optax's update."""

    def step(state, *batch):
        params, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return step


def make_step(model: str) -> peer_common.Step:
    if model.startswith("gpt_"):
        import gpt_flax

        opts = W.gpt_options(model)
        run, _, _ = gpt_flax.jax_trainer(
            opts, jax.tree.map(jnp.asarray, gpt_flax.initial_params(opts))
        )
        return run
    if model.startswith("adam_"):
        params, tx = (
            [jnp.asarray(p) for p in W.adam_params(W.adam_count(model))],
            optax.adam(W.ADAM_LR),
        )
        return stateful(optax_step(adam_loss, tx), (params, tx.init(params)))
    if model == "mlp":
        params = [jnp.asarray(p) for p in W.mlp_params()]
        return stateful(sgd_step(mlp_loss, W.MLP_LR), params)
    if model == "cnn":
        params = [jnp.asarray(p) for p in W.cnn_params()]
        return stateful(sgd_step(cnn_loss, W.CNN_LR), params)
    params = {k: jnp.asarray(v) for k, v in W.lstm_params().items()}

    def zeros():  # m and v, each its own buffers (both are donated)
        return {k: jnp.zeros_like(v) for k, v in params.items()}

    state = (params, zeros(), zeros(), jnp.zeros((), jnp.int32))
    return stateful(adam_step(lstm_loss), state)


def main() -> None:
    opts = peer_common.arg_parser(__doc__).parse_args()
    if opts.workload == "dispatch":
        peer_common.run_dispatch(PEER, VERSION, opts, jax.jit(lambda x: x + 1))
    else:
        peer_common.run_training(PEER, VERSION, opts, make_step)


if __name__ == "__main__":
    main()
