"""Gradients taken inside loop and branch bodies (issue 19, item 1), against jax.

Every construct (scan, cond, fori_loop with int bounds and with Tensor bounds, while_loop) x
every way the differentiated value enters the body (an operand, the carry, a Tensor captured
from the enclosing function, one captured from two levels up, a Variable) x first and second
order, plus a gradient taken outside through a body that takes one inside (meta-learning's
shape), which is defined for scan, cond and int-bound fori_loop and a GradientError through a
while loop. Each program is written once against a namespace ``L`` and run both by flowjit
(fj.compile, and eager mode) and by jax (jax.jit), so the expected values are jax's."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp

FJ = types.SimpleNamespace(
    grad=fj.grad,
    scan=fj.scan,
    cond=fj.cond,
    fori_loop=fj.fori_loop,
    while_loop=fj.while_loop,
    sin=fnp.sin,
    asarray=fnp.asarray,
    read=lambda v: fnp.asarray(v) if isinstance(v, fj.Variable) else v,
)
JAX = types.SimpleNamespace(
    grad=jax.grad,
    scan=jax.lax.scan,
    cond=jax.lax.cond,
    fori_loop=jax.lax.fori_loop,
    while_loop=jax.lax.while_loop,
    sin=jnp.sin,
    asarray=jnp.asarray,
    read=lambda v: v,
)

CONSTRUCTS = ["scan", "cond", "fori_int", "fori_tensor", "while"]
ENTRIES = {  # the ways a value enters a body, per construct
    "operand": {"scan", "cond"},
    "carry": {"scan", "fori_int", "fori_tensor", "while"},
    "captured": set(CONSTRUCTS),
    "captured_twice": set(CONSTRUCTS),
    "variable": set(CONSTRUCTS),
}
CASES = [(c, e) for e, where in ENTRIES.items() for c in CONSTRUCTS if c in where]
DIFFERENTIABLE = {"scan", "cond", "fori_int"}  # (a gradient through the construct itself)

W = np.array([0.3, -1.2, 0.8], np.float32)
XS = np.array([[1.0, 2.0, -0.5], [-3.0, 0.5, 1.0], [0.25, -1.0, 2.0]], np.float32)


def inner(L, w, x, order: int):
    """d/dw (or, second order, the Hessian's row sums) of sum(sin(w) * w * x), at ``w``."""
    f = lambda w_: (L.sin(w_) * w_ * x).sum()  # noqa: E731
    g = L.grad(f)
    if order == 2:
        first = g
        g = L.grad(lambda w_: first(w_).sum())
    return g(L.read(w))


def construct_sum(L, construct: str, entry: str, order: int, w, xs, n):
    """Sum over the rows x of ``xs`` of ``inner(w, x)``, computed inside ``construct`` with
    ``w`` entering its body as ``entry`` says. ``n`` is the row count as a Tensor (for
    Tensor loop bounds)."""
    acc0 = L.asarray(np.zeros(3, np.float32))
    if entry == "captured_twice":  # the construct inside a cond's branch: w is two levels up
        return L.cond(
            L.asarray(xs).sum() > -1e9,
            lambda: construct_sum(L, construct, "captured", order, w, xs, n),
            lambda: acc0,
        )
    gets_w = entry in ("operand", "carry")
    pick = lambda own: own if gets_w else w  # noqa: E731
    if construct == "scan":

        def body(carry, row):
            acc, w_c = carry
            w_in = row[0] if entry == "operand" else w_c
            return (acc + inner(L, pick(w_in), row[1], order), w_c), None

        stacked_w = L.asarray(np.zeros((3, 3), np.float32)) + L.read(w) if gets_w else None
        init = (acc0, L.read(w) if entry == "carry" else acc0)
        (acc, _), _ = L.scan(body, init, (stacked_w if gets_w else xs, xs))
        return acc
    if construct == "cond":
        total = acc0
        for k in range(3):  # rows of both signs: both branches run
            x = xs[k]
            total = total + L.cond(
                x.sum() > 0,
                lambda w_: inner(L, pick(w_), x, order),
                lambda w_: -inner(L, pick(w_), x, order),
                L.read(w) if gets_w else acc0,
            )
        return total
    carried = L.read(w) if entry == "carry" else acc0
    if construct in ("fori_int", "fori_tensor"):

        def step(i, carry):
            acc, w_c = carry
            return acc + inner(L, pick(w_c), xs[i], order), w_c

        upper = 3 if construct == "fori_int" else n
        lower = 0 if construct == "fori_int" else n - 3
        return L.fori_loop(lower, upper, step, (acc0, carried))[0]
    assert construct == "while"

    def loop(carry):
        i, acc, w_c = carry
        return i + 1, acc + inner(L, pick(w_c), xs[i], order), w_c

    start = L.asarray(np.int32(0))
    return L.while_loop(lambda c: c[0] < n, loop, (start, acc0, carried))[1]


def run_fj(construct, entry, order, outer: bool, eager: bool = False):
    v = fj.Variable(W, name="w")

    @fj.compile
    def f(w, xs, n):
        arg = v if entry == "variable" else w
        if outer and entry == "variable":  # d/dv of the sum, through the construct
            return fj.gradients(construct_sum(FJ, construct, entry, order, v, xs, n).sum(), [v])[0]
        if outer:  # d/dw of the sum, through the construct
            def total(w_):
                return construct_sum(FJ, construct, entry, order, w_, xs, n).sum()

            return fj.grad(total)(w)
        return construct_sum(FJ, construct, entry, order, arg, xs, n)

    fj.config.update("eager", eager)
    try:
        return np.asarray(f(W, XS, np.int32(3)))
    finally:
        fj.config.update("eager", False)


def run_jax(construct, entry, order, outer: bool):
    entry = "captured" if entry == "variable" else entry  # (jax's Variable: a closure over w)

    @jax.jit
    def f(w, xs, n):
        if outer:
            def total(w_):
                return construct_sum(JAX, construct, entry, order, w_, xs, n).sum()

            return jax.grad(total)(w)
        return construct_sum(JAX, construct, entry, order, w, xs, n)

    return np.asarray(f(W, XS, np.int32(3)))


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("construct,entry", CASES)
def test_gradient_inside_a_body_matches_jax(construct, entry, order):
    got = run_fj(construct, entry, order, outer=False)
    want = run_jax(construct, entry, order, outer=False)
    assert np.abs(want).max() > 0.1  # (the case computes something: zeros would not pass)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("construct,entry", [c for c in CASES if c[0] in DIFFERENTIABLE])
def test_gradient_through_a_body_that_takes_one_matches_jax(construct, entry, order):
    got = run_fj(construct, entry, order, outer=True)
    want = run_jax(construct, entry, order, outer=True)
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, rtol=5e-5, atol=5e-6)


@pytest.mark.parametrize("construct", ["while", "fori_tensor"])
def test_gradient_through_a_while_loop_that_takes_one_is_a_gradient_error(construct):
    with pytest.raises(fj.GradientError, match="while loop"):
        run_fj(construct, "captured", 1, outer=True)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("construct,entry", CASES)
def test_gradient_inside_a_body_in_eager_mode_matches_jax(construct, entry, order):
    got = run_fj(construct, entry, order, outer=False, eager=True)
    want = run_jax(construct, entry, order, outer=False)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("construct,entry", [c for c in CASES if c[0] in DIFFERENTIABLE])
def test_gradient_through_a_body_that_takes_one_in_eager_mode_matches_jax(construct, entry):
    got = run_fj(construct, entry, 2, outer=True, eager=True)
    np.testing.assert_allclose(got, run_jax(construct, entry, 2, outer=True), rtol=5e-5, atol=5e-6)


def test_gradients_of_a_captured_tensor_and_variable_inside_a_scan():
    """fj.gradients (TF's form) with respect to a closure and a Variable, in a scan body."""
    v = fj.Variable(W, name="v")

    @fj.compile
    def f(w, xs):
        def body(c, x):
            gw, gv = fj.gradients((fnp.sin(w) * w * x).sum() + (v * v * x).sum(), [w, v])
            return c, (gw, gv)

        return fj.scan(body, 0.0, xs)[1]

    gw, gv = f(W, XS)
    np.testing.assert_allclose(gw, (np.cos(W) * W + np.sin(W)) * XS, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gv, 2 * W * XS, rtol=1e-6)


def test_the_issue_reproducer():
    @fj.compile
    def f(w, xs):
        def body(c, x):
            return c, fj.grad(lambda w_: w_ * w_ * x)(w)  # d/dw (w^2 x) = 2 w x

        return fj.scan(body, 0.0, xs)[1]

    np.testing.assert_allclose(f(np.float32(3.0), np.arange(3, dtype=np.float32)), [0, 6, 12])


def test_grad_treats_a_closure_over_its_argument_as_a_constant_as_jax_does():
    @fj.compile
    def f(w):
        return fj.grad(lambda w_: (w_ * w).sum())(w)  # jax: w (the closure is a constant)

    np.testing.assert_allclose(f(W), W)
    np.testing.assert_allclose(jax.grad(lambda w_: (w_ * jnp.asarray(W)).sum())(W), W)
