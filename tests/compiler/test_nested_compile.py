"""Compiled functions call compiled functions (issue 19, item 3): a compiled function called
while another is traced is inlined into the caller's graph, as a nested jax.jit is; its static
arguments, Variables and source lines carry over, and fj.grad of a compiled function works."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp

HERE = "test_nested_compile.py"
RNG = np.random.default_rng(7)
W = RNG.standard_normal((3, 2)).astype(np.float32)
X = RNG.standard_normal((4, 3)).astype(np.float32)


@fj.compile
def layer(w, x):
    return fnp.tanh(x @ w)  # LAYER


@fj.compile
def loss(w, x):
    return layer(w, x).sum()


def jax_loss(w, x):
    return jnp.tanh(x @ w).sum()


def line_of(fn, marker: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, text in enumerate(lines) if marker in text)


def test_a_compiled_function_calls_a_compiled_function_inlined():
    np.testing.assert_allclose(loss(W, X), jax_loss(W, X), rtol=1e-5)
    text = loss.lower(W, X).ir("traced")
    # one graph: layer's ops are the caller's, on the user's line
    assert "= cluster(" not in text and f'loc("{HERE}":{line_of(layer.fn, "# LAYER")})' in text
    assert text.count("tanh(") == 1
    assert layer.cache_info().traces == 0  # it was never traced or compiled on its own


def test_grad_and_value_and_grad_of_compiled_functions_match_jax():
    want_value, want_grads = jax.value_and_grad(jax_loss, argnums=(0, 1))(W, X)
    np.testing.assert_allclose(fj.grad(loss)(W, X), want_grads[0], rtol=1e-5, atol=1e-6)
    value, grads = fj.value_and_grad(loss, argnums=(0, 1))(W, X)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # a compiled function's gradient, inside another compiled function
    @fj.compile
    def step(w, x):
        return w - 0.1 * fj.grad(lambda w_: layer(w_, x).sum())(w)

    np.testing.assert_allclose(step(W, X), W - 0.1 * want_grads[0], rtol=1e-5, atol=1e-6)


def test_static_arguments_and_variables_carry_over():
    count = fj.Variable(np.zeros((), np.float32), name="count")

    @fj.compile(static_argnums=1)
    def act(x, kind):
        count.assign_add(1.0)
        return fnp.maximum(x, 0) if kind == "relu" else fnp.tanh(x)

    @fj.compile
    def both(x):
        return act(x, "relu") + act(x, kind="tanh") * count

    got = both(X)
    np.testing.assert_allclose(got, np.maximum(X, 0) + np.tanh(X) * 2, rtol=1e-6)
    assert float(count.value) == 2.0
    both(X)
    assert float(count.value) == 4.0 and both.cache_info().traces == 1
    assert act.cache_info().traces == 0
    np.testing.assert_allclose(act(X, "relu"), np.maximum(X, 0))  # and on its own
    assert float(count.value) == 5.0
    np.testing.assert_allclose(act(X, kind="tanh"), np.tanh(X), rtol=1e-6)  # static by keyword
    assert float(count.value) == 6.0


def test_inlined_inside_a_loop_body_and_in_eager_mode():
    @fj.compile
    def f(w, xs):
        return fj.scan(lambda c, x: (c + loss(w, x[None]), None), 0.0, xs)[0]

    want = sum(float(jax_loss(W, X[i : i + 1])) for i in range(len(X)))
    np.testing.assert_allclose(f(W, X), want, rtol=1e-5)
    fj.config.update("eager", True)
    try:
        np.testing.assert_allclose(f(W, X), want, rtol=1e-5)
        np.testing.assert_allclose(fj.grad(loss)(W, X), jax.grad(jax_loss)(W, X), rtol=1e-5)
    finally:
        fj.config.update("eager", False)


def test_a_nested_call_with_a_bad_argument_names_it():
    @fj.compile
    def f(x):
        return layer(x, "not an array")

    with pytest.raises(TypeError, match="layer: x is a str"):
        f(W)


def test_a_function_over_a_mesh_called_inside_a_trace_is_a_clear_error():
    mesh = fj.Mesh(fj.devices()[:1], ("data",))
    sharded = fj.compile(lambda x: x * 2, mesh=mesh, in_shardings=fj.P("data"))

    @fj.compile
    def f(x):
        return sharded(x) + 1

    with pytest.raises(fj.ShardingError, match="called while another function is traced"):
        f(X)


@pytest.mark.parametrize("eager", [False, True])
def test_a_compiled_function_called_by_a_host_call_runs_on_its_values(eager):
    """A host call's Python function runs on concrete values, in eager mode too (where it runs
    while the caller is traced): a compiled function it calls runs, and is not inlined."""
    seen = []

    def on_host(a):
        out = layer(W, a)
        seen.append(type(out))
        return np.asarray(out)

    @fj.compile
    def f(x):
        shape = fj.ShapeDtype((4, 2), np.float32)
        return fj.host_call(on_host, x, result_shape_dtypes=shape) + 1

    fj.config.update("eager", eager)
    try:
        got = f(X)
    finally:
        fj.config.update("eager", False)
    np.testing.assert_allclose(got, np.tanh(X @ W) + 1, rtol=1e-5)
    assert seen and all(issubclass(t, jax.Array) for t in seen), seen
