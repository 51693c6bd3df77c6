"""Forward mode and the pullback (fj.jvp, fj.linearize, fj.vjp) against jax and against
finite differences: every differentiable op's tangents (tests/opcheck.py's cases, through
the reference interpreter and XLA), control flow, forward-over-reverse Hessian-vector
products, inside and outside fj.compile, and the errors a bad tangent gets."""

from __future__ import annotations

import copy
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import opcheck
import pytest

import flowjit as fj
import flowjit.numpy as fnp
from flowjit.ir.ops import host as H
from flowjit.ir.ops import jax_call as J
from flowjit.ir.ops import nn as N

FLOATS = (np.dtype(np.float64), np.dtype(np.float32))
# checked below through the ops' own front ends: a host call has no tangent (an error), and
# a jax computation's reference needs jax (fj.from_jax against jax.jvp)
OWN_TESTS = {H.host_call, J.jax_call}


def _op_params() -> list:
    found = []
    for opdef, cases in opcheck.load_cases().items():
        if opdef.vjp is None or opdef in OWN_TESTS:
            continue
        for case in cases:
            if case.edges:
                continue
            found += [p for p in _smooth(case).ids() if p.values[1] in FLOATS]
    return found


def _smooth(case: opcheck.OpCase) -> opcheck.OpCase:
    """select_and_scatter_add's cases draw operands from 100 values, or tie them on purpose:
    where a window's largest element is tied the op has no derivative (a perturbation moves
    the source elsewhere, and finite differences see the jump). Their gradient points have
    distinct operand values, 0.05 apart."""
    if case.opdef is not N.select_and_scatter_add:
        return case
    smooth = copy.copy(case)

    def grad_make(rng, dt):
        (source, operand), attrs = case.make(rng, dt)
        operand = (rng.permutation(operand.size).reshape(operand.shape) * 0.05 - 2).astype(dt)
        return [source, operand], attrs

    smooth.grad_make = grad_make
    return smooth


@pytest.mark.parametrize("case, dtype", _op_params())
def test_jvp_of_each_op_against_finite_differences(case, dtype):
    opcheck.check_jvp(case, dtype)


def test_every_differentiable_op_has_a_jvp_case():
    covered = {p.values[0].opdef for p in _op_params()}
    differentiable = {op for op in opcheck.load_cases() if op.vjp is not None}
    assert differentiable - covered == OWN_TESTS


RNG = np.random.default_rng(0)
X = RNG.standard_normal(3).astype(np.float32)
V = RNG.standard_normal(3).astype(np.float32)
W = RNG.standard_normal((3, 3)).astype(np.float32)


def _close(got, want, tol=2e-5):
    jax.tree_util.tree_map(
        lambda g, w: np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=tol, atol=tol),
        got,
        want,
    )


# each model: (flowjit function, the same function in jax)
def _scan(np_):
    def fn(x):
        def body(c, xi):
            c = np_.tanh(c @ W + xi * x)
            return c, np_.sin(c) * xi

        xs = np_.stack([x, 2 * x, x * x])
        if np_ is fnp:
            return fj.scan(body, x, xs)
        return jax.lax.scan(body, x, xs)

    return fn


def _cond(np_):
    def fn(x):
        branches = (lambda a: np_.sin(a) * a, lambda a: a * 3.0)
        cond = fj.cond if np_ is fnp else jax.lax.cond
        return cond(x.sum() > 0, *branches, x)

    return fn


def _while(np_):
    def fn(x):
        def body(c):
            return np_.sin(c[0]) * x + c[0], c[1] + 1

        loop = fj.while_loop if np_ is fnp else jax.lax.while_loop
        return loop(lambda c: c[1] < 5, body, (x, 0))[0]

    return fn


def _fori(np_):
    def fn(x):
        loop = fj.fori_loop if np_ is fnp else jax.lax.fori_loop
        return loop(0, 4, lambda i, c: c * np_.cos(c) + x, x)

    return fn


def _nested(np_):
    """A cond inside a scan body, a fori_loop inside the cond's branch."""

    def fn(x):
        cond = fj.cond if np_ is fnp else jax.lax.cond
        scan = fj.scan if np_ is fnp else jax.lax.scan
        fori = fj.fori_loop if np_ is fnp else jax.lax.fori_loop

        def body(c, xi):
            grow = lambda a: fori(0, 2, lambda i, b: np_.sin(b) * xi + a, a)  # noqa: E731
            c = cond(xi.sum() > 0, grow, lambda a: a * xi, c)
            return c, c.sum()

        return scan(body, x, np_.stack([x, -x, x * 0.5]))

    return fn


MODELS = {"scan": _scan, "cond": _cond, "while": _while, "fori_loop": _fori, "nested": _nested}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("sign", [1, -1])
def test_jvp_through_control_flow_equals_jax(name, sign):
    fn, jfn = MODELS[name](fnp), MODELS[name](jnp)
    x = sign * X
    _close(fj.jvp(fn, (x,), (V,)), jax.jvp(jfn, (x,), (V,)))

    @fj.compile
    def inside(x, v):
        return fj.jvp(fn, (x,), (v,))

    _close(inside(x, V), jax.jvp(jfn, (x,), (V,)))


def test_jvp_through_while_loop_where_reverse_mode_cannot():
    fn = _while(fnp)
    with pytest.raises(fj.GradientError, match="while loop"):
        fj.grad(lambda x: fn(x).sum())(X)
    _close(fj.jvp(fn, (X,), (V,)), jax.jvp(_while(jnp), (X,), (V,)))


def _loss(np_):
    scan = _scan(np_)

    def loss(x, w):
        carry, ys = scan(x)
        return np_.sum(np_.tanh(ys @ w) ** 2) + np_.sum(carry * x)

    return loss


@pytest.mark.parametrize("name", ["scan", "cond", "nested"])
def test_forward_over_reverse_hessian_vector_product_equals_jax(name):
    fn, jfn = MODELS[name](fnp), MODELS[name](jnp)

    def loss(x):
        return _sum_sq(fn(x), fnp)

    def jloss(x):
        return _sum_sq(jfn(x), jnp)

    want = jax.jvp(jax.grad(jloss), (X,), (V,))
    _close(fj.jvp(fj.grad(loss), (X,), (V,)), want, 1e-4)
    # and reverse over reverse agrees
    hvp = fj.grad(lambda x: fnp.sum(fj.grad(loss)(x) * V))(X)
    _close(hvp, want[1], 1e-4)


def _sum_sq(tree, np_):
    return sum(np_.sum(np_.sin(leaf) ** 2) for leaf in jax.tree_util.tree_leaves(tree))


def test_hessian_vector_product_of_two_arguments_equals_jax():
    loss, jloss = _loss(fnp), _loss(jnp)
    w = RNG.standard_normal((3, 3)).astype(np.float32)
    dw = RNG.standard_normal((3, 3)).astype(np.float32)
    got = fj.jvp(fj.grad(loss, argnums=(0, 1)), (X, w), (V, dw))
    want = jax.jvp(jax.grad(jloss, argnums=(0, 1)), (X, w), (V, dw))
    _close(got, want, 1e-4)


def test_reverse_over_forward_equals_jax():
    loss, jloss = _loss(fnp), _loss(jnp)
    w = RNG.standard_normal((3, 3)).astype(np.float32)
    got = fj.grad(lambda x: fj.jvp(lambda x: loss(x, w), (x,), (V,))[1])(X)
    want = jax.grad(lambda x: jax.jvp(lambda x: jloss(x, w), (x,), (V,))[1])(X)
    _close(got, want, 1e-4)


def test_jvp_of_pytrees_and_several_arguments():
    def fn(p, x):
        return {"h": fnp.tanh(x @ p["w"] + p["b"]), "n": (x * x).sum()}

    def jfn(p, x):
        return {"h": jnp.tanh(x @ p["w"] + p["b"]), "n": (x * x).sum()}

    p = {"w": W, "b": X}
    tp = {"w": W * 0.5, "b": V}
    _close(fj.jvp(fn, (p, X), (tp, V)), jax.jvp(jfn, (p, X), (tp, V)))


def test_jvp_keeps_only_the_tangent_ops_after_optimization():
    """The placeholders of a gradient rule transposed are dead code the passes remove."""

    @fj.compile
    def f(x, v):
        return fj.jvp(lambda x: fnp.sin(x) * x, (x,), (v,))

    ops = [line.split("=")[1].split("(")[0].strip() for line in _op_lines(f.lower(X, V).ir())]
    # sin(x) * x and its tangent (t cos(x)) x + sin(x) t, no more
    assert sorted(ops) == ["add", "cos", "mul", "mul", "mul", "mul", "sin"], ops
    _close(f(X, V), jax.jvp(lambda x: jnp.sin(x) * x, (X,), (V,)))


def _op_lines(ir: str) -> list[str]:
    return [line for line in ir.splitlines() if " = " in line]


def test_jvp_of_a_closure_differentiates_the_argument_only():
    def outer(x, v):
        return fj.jvp(lambda y: y * x, (x,), (v,))  # the closed-over x is a constant

    got = fj.compile(outer)(X, V)
    _close(got, (X * X, V * X))


def test_jvp_with_variables_in_the_function_and_in_a_loop():
    w = fj.Variable(W, name="w")

    def fn(x):
        return fj.fori_loop(0, 3, lambda i, c: fnp.tanh(c @ w), x) + x @ w

    def jfn(x):
        return jax.lax.fori_loop(0, 3, lambda i, c: jnp.tanh(c @ W), x) + x @ W

    @fj.compile
    def step(x, v):
        out = fj.jvp(fn, (x,), (v,))
        w.assign(w * 1.0)  # (a write after it stays in order)
        return out

    _close(step(X, V), jax.jvp(jfn, (X,), (V,)))


def test_jvp_of_imported_jax_function_equals_jax():
    fn = fj.from_jax(jax.scipy.special.i0e)  # no flowjit op: a jax_call
    _close(
        fj.jvp(lambda x: fn(x) * x, (X,), (V,)),
        jax.jvp(lambda x: jax.scipy.special.i0e(x) * x, (X,), (V,)),
    )


def test_jvp_through_a_host_call_is_an_error():
    def fn(x):
        return fj.host_call(np.sin, x, result_shape_dtypes=fj.ShapeDtype((3,), np.float32))

    with pytest.raises(fj.GradientError, match="host call"):
        fj.jvp(fn, (X,), (V,))
    # no tangent reaches it: fine
    out, tangent = fj.jvp(lambda x: fn(fj.stop_gradient(x)) + x, (X,), (V,))
    _close((out, tangent), (np.sin(X) + X, V))


def test_integer_primals_and_results_have_zero_tangents():
    def fn(x, n):
        return x * n.astype(fnp.float32), n * 2

    out, tangents = fj.jvp(fn, (X, np.int32(3)), (V, np.int32(5)))
    _close(out, (X * 3, 6))
    _close(tangents[0], V * 3)
    assert np.asarray(tangents[1]) == 0


def test_linearize_equals_jax_inside_and_outside_compile():
    fn, jfn = _scan(fnp), _scan(jnp)
    out, f_jvp = fj.linearize(fn, X)
    want_out, want_jvp = jax.linearize(jfn, X)
    _close(out, want_out)
    _close(f_jvp(V), want_jvp(V))
    _close(f_jvp(2 * V), want_jvp(2 * V))

    @fj.compile
    def inside(x, v1, v2):
        out, f_jvp = fj.linearize(fn, x)
        return out, f_jvp(v1), f_jvp(v2)

    _close(inside(X, V, X), (want_out, want_jvp(V), want_jvp(X)))


def _outputs(np_):
    def fn(x, w):
        h = np_.tanh(x[:, None] * w)
        return {"h": h, "s": np_.sin(x) * w.sum()}

    return fn


def test_vjp_of_non_scalar_outputs_equals_jax():
    fn, jfn = _outputs(fnp), _outputs(jnp)
    ct = {"h": W, "s": V}
    out, vjp_fn = fj.vjp(fn, X, W)
    want_out, want_vjp = jax.vjp(jfn, X, W)
    _close(out, want_out)
    _close(vjp_fn(ct), want_vjp(ct))
    _close(vjp_fn({"h": W * 2, "s": X}), want_vjp({"h": W * 2, "s": X}))

    @fj.compile
    def inside(x, w, ct):
        out, vjp_fn = fj.vjp(fn, x, w)
        return out, vjp_fn(ct)

    _close(inside(X, W, ct), (want_out, want_vjp(ct)))


def test_vjp_with_aux_and_through_scan_equals_jax():
    def fn(x):
        carry, ys = _scan(fnp)(x)
        return ys, carry.sum()

    def jfn(x):
        carry, ys = _scan(jnp)(x)
        return ys, carry.sum()

    ct = RNG.standard_normal((3, 3)).astype(np.float32)
    out, vjp_fn, aux = fj.vjp(fn, X, has_aux=True)
    want_out, want_vjp, want_aux = jax.vjp(jfn, X, has_aux=True)
    _close((out, aux, vjp_fn(ct)), (want_out, want_aux, want_vjp(ct)))


# -- errors -----------------------------------------------------------------------------------
def _line_below(lines: int) -> str:
    """``file:line`` of the line ``lines`` below the caller's (where the call under test is)."""
    frame = inspect.currentframe().f_back
    return f"test_forward.py:{frame.f_lineno + lines}"


def test_tangent_of_another_shape_is_an_error_at_the_users_line():
    where = _line_below(2)
    with pytest.raises(fj.ShapeError, match=rf"{where}: jvp: the tangent of primals\[0\] has "):
        fj.jvp(fnp.sin, (X,), (W,))

    @fj.compile
    def inside(x, v):
        where = _line_below(2)
        with pytest.raises(fj.ShapeError, match=f"{where}: jvp: .* shape"):
            fj.jvp(fnp.sin, (x,), (v,))
        return x

    inside(X, W)


def test_tangent_of_another_dtype_or_structure_is_an_error_that_says_how_to_fix_it():
    with pytest.raises(fj.TypeMismatchError, match=r"convert it with .astype\(float32\)"):
        fj.jvp(fnp.sin, (X,), (V.astype(np.int32),))
    with pytest.raises(fj.TypeMismatchError, match="same structure"):
        fj.jvp(lambda p: p["a"], ({"a": X},), ({"b": X},))
    with pytest.raises(fj.ArgumentError, match=r"tuple or list .* \(primal,\)"):
        fj.jvp(fnp.sin, X, (V,))
    with pytest.raises(fj.ArgumentError, match="one tangent per primal"):
        fj.jvp(fnp.sin, (X,), (V, V))


def test_cotangent_of_another_shape_is_an_error_at_the_users_line():
    out, vjp_fn = fj.vjp(fnp.sin, X)
    where = _line_below(2)
    with pytest.raises(fj.ShapeError, match=f"{where}: vjp: the cotangent of output has shape"):
        vjp_fn(W)
    with pytest.raises(fj.TypeMismatchError, match="the output's structure"):
        vjp_fn((V, V))


def test_pullback_used_in_another_trace_is_an_error():
    @fj.compile
    def f(x):
        out, vjp_fn = fj.vjp(fnp.sin, x)
        return fj.fori_loop(0, 2, lambda i, c: vjp_fn(c)[0], out)

    with pytest.raises(fj.TracingError, match="call fj.vjp where vjp_fn is used"):
        f(X)


# -- Jacobians (fj.vmap of jvp / of vjp's pullback) ------------------------------------------
def _two_outputs(np_):
    return lambda x, w: {"a": np_.tanh(x @ w), "b": np_.sin(x) * w.sum()}


@pytest.mark.parametrize("argnums", [0, 1, (0, 1)])
@pytest.mark.parametrize("kind", ["jacfwd", "jacrev"])
def test_jacobians_equal_jax(kind, argnums):
    w = RNG.standard_normal((3, 2)).astype(np.float32)
    got = getattr(fj, kind)(_two_outputs(fnp), argnums=argnums)(X, w)
    _close(got, getattr(jax, kind)(_two_outputs(jnp), argnums=argnums)(X, w))


def test_hessian_and_has_aux_equal_jax_inside_and_outside_compile():
    def g(x, w):
        return fnp.sum(fnp.tanh(x @ w) * fnp.sin(x).sum())

    def jg(x, w):
        return jnp.sum(jnp.tanh(x @ w) * jnp.sin(x).sum())

    w = RNG.standard_normal((3, 2)).astype(np.float32)
    _close(fj.hessian(g, argnums=(0, 1))(X, w), jax.hessian(jg, argnums=(0, 1))(X, w), 1e-4)
    inside = fj.compile(lambda x: fj.jacrev(lambda x: (fnp.sin(x) * x, x.sum()), has_aux=True)(x))
    _close(inside(X), jax.jacrev(lambda x: (jnp.sin(x) * x, x.sum()), has_aux=True)(X))
