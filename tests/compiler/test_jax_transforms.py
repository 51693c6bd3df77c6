"""flowjit functions inside jax (issue 19, item 4): jax.grad, jax.value_and_grad and jax.vjp of
a pure compiled function run flowjit's own gradient graph, compiled; jax.vmap of one runs its
graph batched by flowjit's batching rules (issue 23); a function that writes Variables is refused under any jax transformation before anything
changes, and its Variables stay usable."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp

RNG = np.random.default_rng(3)
W = RNG.standard_normal((3, 2)).astype(np.float32)
X = RNG.standard_normal((4, 3)).astype(np.float32)


@fj.compile
def loss(w, x):
    return (fnp.tanh(x @ w) ** 2).sum()


def jax_loss(w, x):
    return (jnp.tanh(x @ w) ** 2).sum()


def close(got, want):
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=2e-5, atol=1e-6)


def test_jax_grad_value_and_grad_and_vjp_of_a_compiled_function_equal_jax():
    close(jax.grad(loss)(W, X), jax.grad(jax_loss)(W, X))
    close(jax.grad(loss, argnums=(0, 1))(W, X), jax.grad(jax_loss, argnums=(0, 1))(W, X))
    close(jax.value_and_grad(loss)(W, X), jax.value_and_grad(jax_loss)(W, X))
    out, back = jax.vjp(loss, W, X)
    want_out, want_back = jax.vjp(jax_loss, W, X)
    close((out, back(np.float32(2.0))), (want_out, want_back(np.float32(2.0))))
    close(jax.jit(jax.grad(loss))(W, X), jax.grad(jax_loss)(W, X))  # under jit too


def test_second_order_and_non_float_inputs_and_outputs():
    @fj.compile
    def f(x, k):
        return fnp.sin(x) * k, k + 1  # an int input and an int output

    def g(x):
        return f(x, np.int32(3))[0].sum()

    x = np.array([0.1, 0.7, -1.2], np.float32)
    close(jax.grad(g)(x), 3 * np.cos(x))
    close(jax.grad(lambda x: jax.grad(g)(x).sum())(x), -3 * np.sin(x))


def test_the_backward_pass_is_flowjits_gradient_graph():
    """jax differentiates the cluster with flowjit's rules: a while loop inside it is
    flowjit's GradientError, naming the user's line."""

    @fj.compile
    def looped(x):
        return fj.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] * 2.0), (0, x))[1]

    np.testing.assert_allclose(looped(np.float32(1.5)), 12.0)
    with pytest.raises(fj.GradientError, match="while loop"):
        jax.grad(looped)(np.float32(1.5))


def test_jax_grad_of_a_function_that_reads_a_variable():
    v = fj.Variable(W, name="v")

    @fj.compile
    def f(x):
        return (fnp.tanh(x @ v) ** 2).sum()

    close(jax.grad(f)(X), jax.grad(lambda x: jax_loss(W, x))(X))
    # the traced call queued no step to wait for: later steps' waits find only arrays
    limit = fj.config.max_steps_in_flight
    fj.config.update("max_steps_in_flight", 1)
    try:
        for _ in range(3):
            close(f(X), jax_loss(W, X))
    finally:
        fj.config.update("max_steps_in_flight", limit)


def test_jax_vmap_of_a_compiled_function_runs_flowjits_batching_rules():
    xs = RNG.standard_normal((5, 4, 3)).astype(np.float32)
    close(jax.vmap(loss, in_axes=(None, 0))(W, xs), jax.vmap(jax_loss, in_axes=(None, 0))(W, xs))
    ws = RNG.standard_normal((3, 2, 6)).astype(np.float32)  # (mapped along their last axis)
    close(jax.vmap(loss, in_axes=(2, None))(ws, X), jax.vmap(jax_loss, in_axes=(2, None))(ws, X))
    per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0))(W, xs)
    close(per_example, jax.vmap(jax.grad(jax_loss), in_axes=(None, 0))(W, xs))
    total = jax.grad(lambda w: jax.vmap(loss, in_axes=(None, 0))(w, xs).sum())(W)
    close(total, jax.grad(lambda w: jax.vmap(jax_loss, in_axes=(None, 0))(w, xs).sum())(W))


@pytest.mark.parametrize(
    "transform",
    [
        lambda f, x: jax.jit(f)(x),
        lambda f, x: jax.grad(lambda x: f(x).sum())(x),
        lambda f, x: jax.vmap(f)(np.stack([x, x])),
        lambda f, x: jax.jit(lambda x: f(x) * 2)(x),
    ],
    ids=["jit", "grad", "vmap", "jit-inside"],
)
def test_a_function_that_writes_variables_is_refused_under_jax_and_stays_usable(transform):
    total = fj.Variable(np.zeros(3, np.float32), name="total")

    @fj.compile
    def accumulate(x):
        total.assign_add(x)
        return x * 2

    x = np.ones(3, np.float32)
    accumulate(x)  # the first call outside jax: total is 1
    with pytest.raises(fj.TracingError, match="writes the Variables 'total'.*jax transformation"):
        transform(accumulate, x)
    np.testing.assert_array_equal(np.asarray(total.value), np.ones(3))
    accumulate(x)  # still usable
    np.testing.assert_array_equal(np.asarray(total.value), 2 * np.ones(3))


def test_a_writer_first_called_under_jax_jit_is_refused_and_unchanged():
    total = fj.Variable(np.zeros(3, np.float32), name="total")

    @fj.compile
    def accumulate(x):
        total.assign_add(x)
        return x

    with pytest.raises(fj.TracingError, match="writes the Variables 'total'"):
        jax.jit(accumulate)(np.ones(3, np.float32))
    assert isinstance(total.value, jax.Array) and not isinstance(total.value, jax.core.Tracer)
    np.testing.assert_array_equal(np.asarray(total.value), np.zeros(3))
    accumulate(np.ones(3, np.float32))
    np.testing.assert_array_equal(np.asarray(total.value), np.ones(3))


def test_a_function_with_host_calls_is_refused_under_jax_naming_the_host_call():
    @fj.compile
    def f(x):
        y = fj.host_call(np.cos, x, result_shape_dtypes=fj.ShapeDtype((3,), np.float32))  # HOST
        return y * x

    x = np.ones(3, np.float32)
    np.testing.assert_allclose(f(x), np.cos(x))
    line = f.fn.__code__.co_firstlineno + 2
    with pytest.raises(fj.TracingError, match=f"test_jax_transforms.py:{line}: host_call: f calls"):
        jax.jit(f)(x)
