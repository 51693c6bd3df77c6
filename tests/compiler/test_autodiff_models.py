"""fj.value_and_grad of small models (an MLP with softmax cross-entropy, a conv net with max
pooling, a layer-norm + attention block) against jax.value_and_grad of the same functions
written with jax.numpy. flowjit runs in float32; jax in float64 on the same inputs, so the
comparison measures flowjit's float32 rounding only."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import flowjit as fj
import flowjit.numpy as fnp

RNG = np.random.default_rng(0)


def normal(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def check(fj_loss, jax_loss, params, *data):
    value, grads = fj.value_and_grad(fj_loss)(params, *data)
    wide = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), params)
    data64 = [np.asarray(d, np.float64) if d.dtype.kind == "f" else d for d in data]
    want_value, want_grads = jax.value_and_grad(jax_loss)(wide, *data64)
    np.testing.assert_allclose(float(value), float(want_value), rtol=1e-5)
    assert set(grads) == set(want_grads)
    for name in params:
        want = np.asarray(want_grads[name])
        got = np.asarray(grads[name])
        assert got.dtype == np.float32 and got.shape == want.shape, name
        np.testing.assert_allclose(
            got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max(), err_msg=name
        )


def jax_cross_entropy(logits, labels):
    logp = jax.nn.log_softmax(logits, -1)
    return -jnp.take_along_axis(logp, labels[:, None], -1)[:, 0]


def test_mlp_with_softmax_cross_entropy():
    params = {
        "w1": normal(8, 32, scale=0.4),
        "b1": normal(32, scale=0.1),
        "w2": normal(32, 5, scale=0.3),
        "b2": normal(5, scale=0.1),
    }
    x, labels = normal(16, 8), RNG.integers(0, 5, 16).astype(np.int32)

    def fj_loss(p, x, labels):
        hidden = fj.nn.relu(x @ p["w1"] + p["b1"])
        return fnp.mean(fj.nn.softmax_cross_entropy(hidden @ p["w2"] + p["b2"], labels))

    def jax_loss(p, x, labels):
        hidden = jax.nn.relu(x @ p["w1"] + p["b1"])
        return jnp.mean(jax_cross_entropy(hidden @ p["w2"] + p["b2"], labels))

    check(fj_loss, jax_loss, params, x, labels)


def test_conv_net_with_max_pooling():
    params = {
        "k1": normal(3, 3, 3, 4, scale=0.3),
        "b1": normal(4, scale=0.1),
        "k2": normal(3, 3, 4, 6, scale=0.3),
    }
    x, labels = normal(2, 8, 8, 3), RNG.integers(0, 6, 2).astype(np.int32)

    def fj_loss(p, x, labels):
        h = fj.nn.relu(fj.nn.conv2d(x, p["k1"], padding="SAME") + p["b1"])
        h = fj.nn.max_pool2d(h, 2)
        h = fj.nn.conv2d(h, p["k2"], stride=2, padding="VALID")  # (2, 1, 1, 6)
        logits = fnp.mean(h, axis=(1, 2))
        return fnp.mean(fj.nn.softmax_cross_entropy(logits, labels))

    def jax_conv(x, k, stride, padding):
        return jax.lax.conv_general_dilated(
            x, k, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    def jax_loss(p, x, labels):
        h = jax.nn.relu(jax_conv(x, p["k1"], 1, "SAME") + p["b1"])
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        logits = jnp.mean(jax_conv(h, p["k2"], 2, "VALID"), axis=(1, 2))
        return jnp.mean(jax_cross_entropy(logits, labels))

    check(fj_loss, jax_loss, params, x, labels)


def test_layer_norm_attention_block():
    d = 8
    params = {
        "scale": 1 + normal(d, scale=0.1),
        "bias": normal(d, scale=0.1),
        **{name: normal(d, d, scale=d**-0.5) for name in ("wq", "wk", "wv", "wo")},
    }
    x = normal(2, 6, d)

    def fj_loss(p, x):
        h = fj.nn.layer_norm(x, p["scale"], p["bias"])
        q, k, v = h @ p["wq"], h @ p["wk"], h @ p["wv"]
        scores = fnp.einsum("bqd,bkd->bqk", q, k) / np.sqrt(d)
        out = fj.nn.softmax(scores, -1) @ v @ p["wo"] + x
        return fnp.mean(out * out)

    def jax_loss(p, x):
        mean = jnp.mean(x, -1, keepdims=True)
        var = jnp.mean((x - mean) ** 2, -1, keepdims=True)
        h = (x - mean) / jnp.sqrt(var + 1e-5) * p["scale"] + p["bias"]
        q, k, v = h @ p["wq"], h @ p["wk"], h @ p["wv"]
        scores = jnp.einsum("bqd,bkd->bqk", q, k) / np.sqrt(d)
        out = jax.nn.softmax(scores, -1) @ v @ p["wo"] + x
        return jnp.mean(out * out)

    check(fj_loss, jax_loss, params, x)
