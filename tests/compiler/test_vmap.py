"""fj.vmap (issue 23, item 1) against jax.vmap: per-example gradients, composition with
fj.grad in both orders, nesting, in_axes / out_axes, control flow (a per-example predicate),
variables (reads shared, per-example writes refused before anything changes), eager mode and
clear errors naming the user's line."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp

RNG = np.random.default_rng(23)


def close(got, want, tol=2e-5):
    got_leaves, want_leaves = jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)
    assert len(got_leaves) == len(want_leaves)
    for g, w in zip(got_leaves, want_leaves):
        assert np.shape(g) == np.shape(w)
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=tol, atol=tol)


def params(sizes):
    return [
        (RNG.standard_normal((a, b)).astype(np.float32) / np.sqrt(a), np.zeros(b, np.float32))
        for a, b in zip(sizes[:-1], sizes[1:])
    ]


def mlp_loss(np_):
    def loss(ps, x, y):
        h = x
        for i, (w, b) in enumerate(ps):
            h = h @ w + b
            if i < len(ps) - 1:
                h = np_.tanh(h)
        return ((h - y) ** 2).mean()

    return loss


PS = params([6, 16, 16, 3])
X = RNG.standard_normal((8, 6)).astype(np.float32)
Y = RNG.standard_normal((8, 3)).astype(np.float32)


def test_per_example_gradients_of_an_mlp_equal_jax():
    fj_loss, jax_loss = mlp_loss(fnp), mlp_loss(jnp)
    want = jax.vmap(jax.grad(jax_loss), in_axes=(None, 0, 0))(PS, X, Y)
    close(fj.vmap(fj.grad(fj_loss), in_axes=(None, 0, 0))(PS, X, Y), want)

    @fj.compile
    def step(ps, x, y):
        return fj.vmap(fj.grad(fj_loss), in_axes=(None, 0, 0))(ps, x, y)

    close(step(PS, X, Y), want)


def test_grad_of_vmap_and_vmap_of_grad_of_vmap():
    fj_loss, jax_loss = mlp_loss(fnp), mlp_loss(jnp)

    def total(np_, vmap, loss):
        return lambda ps, x, y: vmap(loss, in_axes=(None, 0, 0))(ps, x, y).sum()

    close(
        fj.grad(total(fnp, fj.vmap, fj_loss))(PS, X, Y),
        jax.grad(total(jnp, jax.vmap, jax_loss))(PS, X, Y),
    )
    xs, ys = X.reshape(2, 4, 6), Y.reshape(2, 4, 3)  # per group of examples
    got = fj.vmap(fj.grad(total(fnp, fj.vmap, fj_loss)), in_axes=(None, 0, 0))(PS, xs, ys)
    want = jax.vmap(jax.grad(total(jnp, jax.vmap, jax_loss)), in_axes=(None, 0, 0))(PS, xs, ys)
    close(got, want)


def test_nested_vmap_and_axes():
    a = RNG.standard_normal((3, 5)).astype(np.float32)
    b = RNG.standard_normal((4, 5)).astype(np.float32)

    def f(np_):
        return lambda u, v: np_.sin(u) * v + (u @ v)

    got = fj.vmap(fj.vmap(f(fnp), in_axes=(None, 0)), in_axes=(0, None))(a, b)
    close(got, jax.vmap(jax.vmap(f(jnp), in_axes=(None, 0)), in_axes=(0, None))(a, b))
    # a mapped axis that is not the first, out_axes, pytrees of in_axes, axis_size
    c = RNG.standard_normal((5, 2, 3)).astype(np.float32)
    got = fj.vmap(lambda x: x.sum(0), in_axes=2, out_axes=1)(c)
    close(got, jax.vmap(lambda x: x.sum(0), in_axes=2, out_axes=1)(c))
    tree = {"u": a, "v": (np.ascontiguousarray(a.T), 2.0)}
    got = fj.vmap(lambda t: t["u"] * t["v"][0] + t["v"][1], in_axes=({"u": 0, "v": (1, None)},))(
        tree
    )
    want = jax.vmap(lambda t: t["u"] * t["v"][0] + t["v"][1], in_axes=({"u": 0, "v": (1, None)},))(
        tree
    )
    close(got, want)
    got = fj.vmap(lambda x, *, k: x * k, in_axes=None)(np.float32(3), k=a[:, 0])  # (kwargs: 0)
    close(got, 3 * a[:, 0])
    got = fj.vmap(lambda x: x * 2, in_axes=None, axis_size=4)(np.float32(3))
    close(got, np.full(4, 6, np.float32))
    outs = fj.vmap(lambda x: (x, x.sum(), fnp.asarray(np.float32(2))), out_axes=(1, 0, None))(a)
    close(outs, (a.T, a.sum(1), np.float32(2)))


def test_vmap_of_scan_cond_and_while_equals_jax():
    xs = RNG.standard_normal((4, 6, 3)).astype(np.float32)

    def cumulative(np_, scan):
        def f(x):
            def step(c, row):
                c = np_.tanh(c + row)
                return c, c * 2

            return scan(step, np_.zeros(3, np.float32), x)

        return f

    got = fj.vmap(cumulative(fnp, fj.scan))(xs)
    close(got, jax.vmap(cumulative(jnp, jax.lax.scan))(xs))

    v = RNG.standard_normal((5, 3)).astype(np.float32)

    def branchy(np_, cond):
        return lambda x: cond(x.sum() > 0, lambda y: np_.sin(y), lambda y: y * 3.0, x)

    close(fj.vmap(branchy(fnp, fj.cond))(v), jax.vmap(branchy(jnp, jax.lax.cond))(v))

    def shared_pred(np_, cond):
        return lambda x, p: cond(p > 0, lambda y: y + 1.0, lambda y: y * 0.5, x)

    for p in (np.float32(1), np.float32(-1)):
        close(
            fj.vmap(shared_pred(fnp, fj.cond), in_axes=(0, None))(v, p),
            jax.vmap(shared_pred(jnp, jax.lax.cond), in_axes=(0, None))(v, p),
        )

    limits = np.array([1.0, 5.0, 20.0, 0.5], np.float32)  # each example stops on its own

    def doubling(np_, while_loop):
        def f(limit):
            return while_loop(lambda c: c[0] < limit, lambda c: (c[0] * 2, c[1] + 1), (0.25, 0))

        return f

    got = fj.vmap(doubling(fnp, fj.while_loop))(limits)
    want = jax.vmap(doubling(jnp, jax.lax.while_loop))(limits)
    close(got, want)
    np.testing.assert_array_equal(np.asarray(got[1]), [2, 5, 7, 1])

    def counted(np_, fori_loop):
        return lambda x: fori_loop(0, 3, lambda i, c: c * x + i, x)

    close(fj.vmap(counted(fnp, fj.fori_loop))(v), jax.vmap(counted(jnp, jax.lax.fori_loop))(v))


def test_per_example_gradient_through_scan_equals_jax():
    w = RNG.standard_normal((3, 3)).astype(np.float32) / 2
    xs = RNG.standard_normal((5, 4, 3)).astype(np.float32)

    def loss(np_, scan):
        def f(w, x):
            def step(c, row):
                return np_.tanh(c @ w + row), None

            c, _ = scan(step, np_.zeros(3, np.float32), x)
            return (c**2).sum()

        return f

    got = fj.vmap(fj.grad(loss(fnp, fj.scan)), in_axes=(None, 0))(w, xs)
    close(got, jax.vmap(jax.grad(loss(jnp, jax.lax.scan)), in_axes=(None, 0))(w, xs))


def test_variables_are_shared_and_per_example_writes_are_refused():
    w = fj.Variable(np.arange(3, dtype=np.float32), name="w")
    count = fj.Variable(np.zeros((), np.float32), name="count")
    x = RNG.standard_normal((4, 3)).astype(np.float32)

    @fj.compile
    def scaled(x):
        out = fj.vmap(lambda row: row * w)(x)
        count.assign_add(1.0)  # (outside the vmap)
        return out

    close(scaled(x), x * np.arange(3, dtype=np.float32))

    @fj.compile
    def shared_write(x):
        def f(row):
            count.assign(np.float32(7))  # the same value for every example: allowed
            return row * 2

        return fj.vmap(f)(x)

    close(shared_write(x), x * 2)
    assert float(np.asarray(count)) == 7.0

    @fj.compile
    def per_example_write(x):
        def f(row):
            w.assign(row)  # a different value for each example
            return row

        return fj.vmap(f)(x)

    before = np.array(w)
    with pytest.raises(fj.BatchingError, match=r"test_vmap.py:\d+.*\$w.*different value"):
        per_example_write(x)
    np.testing.assert_array_equal(np.asarray(w), before)  # unchanged, still readable


def test_eager_mode_gives_the_same_results():
    fj_loss = mlp_loss(fnp)
    want = fj.vmap(fj.grad(fj_loss), in_axes=(None, 0, 0))(PS, X, Y)

    @fj.compile
    def per_example(ps, x, y):
        return fj.vmap(fj.grad(fj_loss), in_axes=(None, 0, 0))(ps, x, y)

    fj.config.update("eager", True)
    try:
        close(per_example(PS, X, Y), want)
    finally:
        fj.config.update("eager", False)


def test_errors_name_the_users_line():
    a = np.zeros((3, 2), np.float32)
    b = np.zeros((4, 2), np.float32)
    with pytest.raises(fj.BatchingError, match=r"test_vmap.py:\d+.*one size.*args\[0\]: 3.*"):
        fj.vmap(lambda x, y: x + y)(a, b)
    with pytest.raises(fj.BatchingError, match=r"test_vmap.py:\d+.*in_axes has 1 entries.*2"):
        fj.vmap(lambda x, y: x + y, in_axes=(0,))(a, a)
    with pytest.raises(fj.BatchingError, match=r"in_axes 2 is not an axis of a rank-2 value"):
        fj.vmap(lambda x: x, in_axes=2)(a)
    with pytest.raises(fj.BatchingError, match=r"no argument is mapped; give axis_size="):
        fj.vmap(lambda x: x, in_axes=None)(a)
    with pytest.raises(fj.BatchingError, match=r"out_axes is None for a result that differs"):
        fj.vmap(lambda x: x * 2, out_axes=None)(a)
