"""fj.gradients, fj.grad, fj.value_and_grad and fj.stop_gradient (API.md, section 4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp

X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], np.float32)


def jax_loss(x, w):
    return jnp.sum(jnp.tanh(x * w) ** 2 + jnp.exp(-x) * w)


def test_gradients_inside_a_compiled_function_match_jax():
    w = np.array([0.3, -0.2, 0.9], np.float32)

    @fj.compile
    def f(x, w):
        loss = fnp.sum(fnp.tanh(x * w) ** 2 + fnp.exp(-x) * w)
        gx, gw = fj.gradients(loss, [x, w])
        return loss, gx, gw

    loss, gx, gw = f(X, w)
    want = jax.value_and_grad(jax_loss, argnums=(0, 1))(X, w)
    np.testing.assert_allclose(loss, want[0], rtol=1e-5)
    np.testing.assert_allclose(gx, want[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gw, want[1][1], rtol=1e-5, atol=1e-6)


def test_variable_gradient_is_summed_over_its_reads():
    w = fj.Variable(np.array([1.0, 2.0, 3.0], np.float32), name="w")

    @fj.compile
    def f(x):
        first = fnp.sum(w * x)  # read 1
        second = fnp.sum(w * w)  # read 2 (twice in one expression: one read each)
        (g,) = fj.gradients(first + second, [w])
        return g

    x = np.array([1.0, -1.0, 0.5], np.float32)
    np.testing.assert_allclose(f(x), x + 2 * np.asarray(w), rtol=1e-6)


def test_zeros_where_y_does_not_depend_on_x_and_stop_gradient():
    @fj.compile
    def f(x, unused):
        y = fnp.sum(x * fj.stop_gradient(x))  # d/dx = stop(x), not 2x
        gx, gu = fj.gradients(y, [x, unused])
        return gx, gu

    gx, gu = f(X, np.ones((4,), np.float32))
    np.testing.assert_allclose(gx, X)
    np.testing.assert_array_equal(gu, np.zeros(4))


def test_grad_and_value_and_grad_standalone_with_pytrees_and_aux():
    def loss(params, x):
        out = fnp.tanh(x @ params["w"] + params["b"])
        return fnp.mean(out * out), out.shape[0]

    params = {"w": np.full((3, 2), 0.1, np.float32), "b": np.array([0.5, -0.5], np.float32)}
    (value, aux), grads = fj.value_and_grad(loss, has_aux=True)(params, X)

    def jloss(params, x):
        out = jnp.tanh(x @ params["w"] + params["b"])
        return jnp.mean(out * out)

    want_value, want = jax.value_and_grad(jloss)(params, X)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    assert int(aux) == 2
    for k in ("w", "b"):
        np.testing.assert_allclose(grads[k], want[k], rtol=1e-5, atol=1e-7)
    g_only, aux2 = fj.grad(loss, has_aux=True)(params, X)
    np.testing.assert_allclose(g_only["w"], want["w"], rtol=1e-5, atol=1e-7)
    gx, gp = fj.grad(lambda p, x: loss(p, x)[0], argnums=(1, 0))(params, X)
    np.testing.assert_allclose(gp["b"], want["b"], rtol=1e-5, atol=1e-7)
    assert np.shape(gx) == X.shape


def test_non_scalar_y_is_a_clear_error():
    def f(x):
        return fj.gradients(x * 2, [x])[0]  # NONSCALAR

    with pytest.raises(fj.ShapeError, match="gradients needs a scalar y"):
        fj.compile(f)(X)
