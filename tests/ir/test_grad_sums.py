"""A cotangent summed from several uses that the gradient uses more than once is computed
once (ir/grad.py, _compute_once): large ones go behind an optimization_barrier, so XLA does
not recompute a residual stream's whole sum in every layer below (issue 24's GPT gradient
read 13% more memory than jax's). The gradients stay jax's, in reverse and forward mode."""

from __future__ import annotations

import flowjit as fj
import jax
import jax.numpy as jnp
import numpy as np
from flowjit.ir import grad as G

LAYERS = 6


def residual_net(np_, ws, x):
    """A pre-norm residual stack, as a transformer's: each layer adds
    tanh(normalized(h) @ w_in) @ w_out to the stream."""
    h = x
    for w_in, w_out in zip(ws[::2], ws[1::2]):
        centered = h - h.mean(-1, keepdims=True)
        normalized = centered / np_.sqrt((centered * centered).mean(-1, keepdims=True) + 1e-5)
        h = h + np_.tanh(normalized @ w_in) @ w_out
    return (h * h).sum()


def weights(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((n, n)) / n).astype(np.float32) for _ in range(2 * LAYERS)]


def inputs(n: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)


def flowjit_gradient(n: int):
    ws = [fj.Variable(w) for w in weights(n)]

    @fj.compile
    def gradient(x):
        return fj.gradients(residual_net(fj.numpy, ws, x), ws)

    return gradient


def jax_gradient():
    return jax.jit(jax.grad(lambda ws, x: residual_net(jnp, ws, x)))


def barriers(n: int) -> int:
    text = flowjit_gradient(n).lower(inputs(n)).ir()
    return text.count("optimization_barrier(")


def bytes_accessed(compiled) -> float:
    cost = compiled.cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["bytes accessed"]


def test_large_summed_cotangents_used_twice_are_computed_once():
    n = 256  # (256 x 256 = 2**16 elements: MATERIALIZE_MIN_ELEMENTS)
    assert n * n == G.MATERIALIZE_MIN_ELEMENTS
    # at least the stream's cotangent at each layer's output: summed from the next layer's
    # branch and stream (the top one from h * h), used by this layer's branch and the next
    # sum (the centered values' are others: summed from the square and the division)
    assert barriers(n) >= LAYERS
    assert barriers(128) == 0  # smaller: XLA may recompute it where it is used


def test_the_gradients_equal_jax():
    n = 256
    got = flowjit_gradient(n)(inputs(n))
    want = jax_gradient()(weights(n), inputs(n))
    for g, w in zip(got, want, strict=True):
        scale = float(np.max(np.abs(w)))  # (float32 sums of 256 terms: relative to the largest)
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-5 * scale)


def test_xla_reads_less_memory_with_the_sums_computed_once(monkeypatch):
    """XLA's own cost model (not a timing): with the sums computed once the gradient reads
    less memory than without, and no more than jax's gradient."""
    n = 256
    with_barriers = bytes_accessed(flowjit_gradient(n).lower(inputs(n)).compile())
    monkeypatch.setattr(G, "MATERIALIZE_MIN_ELEMENTS", 2**62)
    without = bytes_accessed(flowjit_gradient(n).lower(inputs(n)).compile())
    jax_bytes = bytes_accessed(jax_gradient().lower(weights(n), inputs(n)).compile())
    assert with_barriers < 0.97 * without, (with_barriers, without)
    assert with_barriers <= 1.02 * jax_bytes, (with_barriers, jax_bytes)


def test_forward_mode_passes_through_the_barrier():
    """A Hessian-vector product (jvp of the gradient) of the stack with respect to the input,
    whose gradient holds the barriers, equals jax's."""
    n = 256
    ws = weights(n)
    v = np.random.default_rng(2).standard_normal((n, n)).astype(np.float32)

    def loss(x):
        return residual_net(fj.numpy, ws, x)

    @fj.compile
    def hvp(x, v):
        return fj.jvp(fj.grad(loss), (x,), (v,))[1]

    want = jax.jvp(jax.grad(lambda x: residual_net(jnp, ws, x)), (inputs(n),), (v,))[1]
    scale = float(np.max(np.abs(want)))
    np.testing.assert_allclose(
        np.asarray(hvp(inputs(n), v)), np.asarray(want), rtol=1e-4, atol=1e-5 * scale
    )
