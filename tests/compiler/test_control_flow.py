"""fj.cond, fj.while_loop, fj.fori_loop and fj.scan (API.md, section 5).

Each model is written once against a namespace of control flow and numpy functions: ``FJ``
(flowjit, compiled with fj.compile) or ``JAX`` (jax.lax under jax.jit). Both run in float32 on
the same random inputs; values and gradients (fj.value_and_grad against jax.value_and_grad)
must agree to float32 rounding. Variables, which jax has not, are checked against plain numpy
loops; the reference interpreter against XLA; the IR text against its own parser."""

from __future__ import annotations

import inspect
import re
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp

RNG = np.random.default_rng(0)
HERE = "test_control_flow.py"

FJ = SimpleNamespace(
    np=fnp, cond=fj.cond, while_loop=fj.while_loop, fori_loop=fj.fori_loop, scan=fj.scan
)
JAX = SimpleNamespace(
    np=jnp,
    cond=jax.lax.cond,
    while_loop=jax.lax.while_loop,
    fori_loop=jax.lax.fori_loop,
    scan=jax.lax.scan,
)


def normal(*shape, scale=1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def line_of(fn, marker: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, text in enumerate(lines) if marker in text)


def is_float(x) -> bool:
    return np.issubdtype(x.dtype, np.floating)


def assert_trees_close(got, want, rtol: float = 1e-5, dtypes: bool = True) -> None:
    """Same tree structure, and leaf by leaf the same shape (and dtype) and values within
    ``rtol`` (absolute tolerance ``rtol`` times the leaf's largest magnitude, at least 1)."""
    got_leaves, got_tree = jax.tree_util.tree_flatten(got)
    want_leaves, want_tree = jax.tree_util.tree_flatten(want)
    assert got_tree == want_tree, f"structure {got_tree} != {want_tree}"
    for i, (g, w) in enumerate(zip(got_leaves, want_leaves)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, f"leaf {i}: shape {g.shape} != {w.shape}"
        if dtypes:
            assert g.dtype == w.dtype, f"leaf {i}: dtype {g.dtype} != {w.dtype}"
        scale = max(float(np.abs(w).max(initial=0)), 1.0)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * scale, err_msg=f"leaf {i}")


def loss_of(model):
    """A scalar of every float result of ``model``, each leaf weighted differently (so a
    swapped or dropped leaf shows) and through a sine (so cotangents are not all ones)."""

    def loss(L, *args):
        leaves = [leaf for leaf in jax.tree_util.tree_leaves(model(L, *args)) if is_float(leaf)]
        return sum(L.np.sum(L.np.sin(leaf * (0.5 + 0.25 * i))) for i, leaf in enumerate(leaves))

    return loss


def check(model, *args, argnums=None, rtol: float = 1e-5) -> None:
    """``model(FJ, *args)`` compiled by flowjit equals ``model(JAX, *args)`` under jax.jit;
    with ``argnums``, so do value_and_grad of ``loss_of(model)`` with respect to them."""
    got = fj.compile(lambda *a: model(FJ, *a))(*args)
    want = jax.jit(lambda *a: model(JAX, *a))(*args)
    assert_trees_close(got, want, rtol)
    if argnums is not None:
        loss = loss_of(model)
        got = fj.value_and_grad(lambda *a: loss(FJ, *a), argnums=argnums)(*args)
        want = jax.value_and_grad(lambda *a: loss(JAX, *a), argnums=argnums)(*args)
        assert_trees_close(got, want, rtol)


# -- cond -----------------------------------------------------------------------------------
def cond_basic(L, x):
    return L.cond(L.np.sum(x) > 0, lambda a: L.np.sin(a) * 2, lambda a: a * a - 1, x)


@pytest.mark.parametrize("sign", [1, -1])
def test_cond_takes_the_branch_the_data_selects(sign):
    x = np.abs(normal(2, 3)) * sign
    check(cond_basic, x, argnums=0)


def cond_pytree(L, p, x, w, k):
    def yes(a, b):
        return {"sum": a + b["w"], "pair": (L.np.sin(a) * b["w"], b["k"] + 1)}

    def no(a, b):
        return {"sum": a * b["w"], "pair": (a - b["w"], b["k"] * 2)}

    return L.cond(p, yes, no, x, {"w": w, "k": k})


@pytest.mark.parametrize("pred", [True, False])
def test_cond_with_pytree_operands_and_results(pred):
    args = (np.bool_(pred), normal(3), normal(3), np.int32(5))
    check(cond_pytree, *args, argnums=(1, 2))
    result = fj.compile(lambda *a: cond_pytree(FJ, *a))(*args)
    assert set(result) == {"sum", "pair"} and isinstance(result["pair"], tuple)
    assert int(result["pair"][1]) == (6 if pred else 10)


def cond_closure(L, p, x, y, z):
    """Branches close over y and z; one returns the outer y, the other its operand, as is."""

    def yes(a):
        return a * y + L.np.sin(z), y

    def no(a):
        return a * z, a

    return L.cond(p > 0, yes, no, x)


@pytest.mark.parametrize("pred", [1.0, -1.0])
def test_cond_closures_and_outer_results_with_gradients_for_both_branches(pred):
    check(cond_closure, np.float32(pred), normal(4), normal(4), normal(4), argnums=(1, 2, 3))


def cond_outer_only(L, p, y, z):
    return L.cond(p, lambda: (y, z * 2), lambda: (z, y))


@pytest.mark.parametrize("pred", [True, False])
def test_cond_without_operands_returning_outer_tensors(pred):
    check(cond_outer_only, np.bool_(pred), normal(3), normal(3), argnums=(1, 2))


def cond_int_pred(L, n, x):
    return L.cond(n, lambda a: a + 1, lambda a: a * 3, x)


@pytest.mark.parametrize("n", [-2, 0, 3])
def test_cond_integer_predicate_is_true_when_nonzero(n):
    check(cond_int_pred, np.int32(n), normal(3), argnums=1)


# -- while_loop -----------------------------------------------------------------------------
def newton_sqrt(L, a, x0):
    """Eight Newton steps towards sqrt(a), counted in a dict carry; ``a`` is closed over."""

    def body(c):
        return {"i": c["i"] + 1, "x": 0.5 * (c["x"] + a / c["x"])}

    return L.while_loop(lambda c: c["i"] < 8, body, {"i": np.int32(0), "x": x0})


def test_while_loop_newton_iteration_with_dict_carry_and_closure():
    a = RNG.uniform(0.5, 10.0, 5).astype(np.float32)
    check(newton_sqrt, a, np.ones(5, np.float32))
    result = fj.compile(lambda *args: newton_sqrt(FJ, *args))(a, np.ones(5, np.float32))
    assert int(result["i"]) == 8
    np.testing.assert_allclose(result["x"], np.sqrt(a), rtol=1e-6)


def doublings(L, x, limit):
    """Doubles x until its sum reaches ``limit``: a trip count that depends on the data."""
    double = lambda c: (c[0] + 1, c[1] * 2)
    return L.while_loop(lambda c: L.np.sum(c[1]) < limit, double, (np.int32(0), x))


@pytest.mark.parametrize("limit", [0.5, 6.0, 1000.0])
def test_while_loop_data_dependent_trip_count(limit):
    x = np.array([0.25, 0.5, 0.25], np.float32)  # sum 1: sum after k doublings is 2**k
    check(doublings, x, np.float32(limit))
    count, _ = fj.compile(lambda *a: doublings(FJ, *a))(x, np.float32(limit))
    assert int(count) == max(int(np.ceil(np.log2(limit))), 0)


def while_loss(x, n):
    return fnp.sum(fj.while_loop(lambda c: fnp.sum(c) < 100.0, lambda c: c * 2, x))  # LOOP


def fori_tensor_bounds_loss(x, n):
    return fnp.sum(fj.fori_loop(0, n, lambda i, c: fnp.sin(c), x))  # LOOP


@pytest.mark.parametrize("loss", [while_loss, fori_tensor_bounds_loss], ids=lambda f: f.__name__)
def test_gradient_through_a_while_loop_is_a_clear_error(loss):
    with pytest.raises(fj.GradientError) as info:
        fj.grad(loss)(np.ones(3, np.float32), np.int32(3))
    message = str(info.value)
    assert f"{HERE}:{line_of(loss, '# LOOP')}" in message, message
    assert "fj.scan" in message and "fj.fori_loop" in message, message


# -- fori_loop ------------------------------------------------------------------------------
def fori_static(L, x, w):
    return L.fori_loop(1, 5, lambda i, c: L.np.sin(c * w) + i.astype(c.dtype) * c, x)


def test_fori_loop_static_bounds_values_and_gradients():
    check(fori_static, normal(4, scale=0.3), np.float32(0.7), argnums=(0, 1))
    traced = fj.compile(lambda *a: fori_static(FJ, *a)).lower(normal(4), np.float32(1)).ir("traced")
    assert "scan(" in traced and "while(" not in traced  # a scan: differentiable


def fori_dynamic(L, lower, upper, x):
    return L.fori_loop(lower, upper, lambda i, c: c * 1.5 + i.astype(c.dtype), x)


@pytest.mark.parametrize("lower, upper", [(1, 5), (3, 3), (4, 2)])
def test_fori_loop_tensor_bounds_run_as_a_while_loop(lower, upper):
    args = (np.int32(lower), np.int32(upper), normal(3))
    check(fori_dynamic, *args)
    traced = fj.compile(lambda *a: fori_dynamic(FJ, *a)).lower(*args).ir("traced")
    assert "while(" in traced and "scan(" not in traced


# -- scan -----------------------------------------------------------------------------------
def scan_basic(L, c0, xs, w):
    def body(c, x):
        c = L.np.tanh(c * w + x)
        return c, c * 2

    return L.scan(body, c0, xs)


def test_scan_carry_and_stacked_ys():
    check(scan_basic, normal(4), normal(6, 4), normal(4), argnums=(0, 1, 2))


def scan_pytree(L, h0, xs_a, xs_b):
    def body(carry, x):
        h, stats = carry
        h = L.np.tanh(h * x["a"] + x["b"][0])
        return (h, {"n": stats["n"] + 1, "sum": stats["sum"] + h}), {"h": h, "sq": (h * h,)}

    return L.scan(body, (h0, {"n": np.int32(0), "sum": h0 * 0}), {"a": xs_a, "b": (xs_b,)})


def test_scan_pytree_carry_xs_and_ys():
    check(scan_pytree, normal(3), normal(5, 3), normal(5, 3), argnums=(0, 1, 2))


def scan_length(L, c0, w):
    return L.scan(lambda c, _: (L.np.sin(c) * w + 1, c * c), c0, None, length=5)


def test_scan_without_xs_runs_length_steps():
    check(scan_length, normal(2), np.float32(0.8), argnums=(0, 1))


def scan_reverse(L, c0, xs):
    return L.scan(lambda c, x: (c * L.np.sin(x) + x, c * c), c0, xs, reverse=True)


def test_scan_reverse_runs_from_the_end_and_stacks_in_place():
    check(scan_reverse, normal(3), normal(4, 3), argnums=(0, 1))


def scan_closure(L, h0, xs, w, b):
    def body(h, x):
        h = L.np.tanh(x @ w + h * b)
        return h, L.np.sum(h * b)

    return L.scan(body, h0, xs)


def test_scan_gradients_with_respect_to_closed_over_tensors():
    args = (normal(4), normal(6, 3), normal(3, 4, scale=0.5), normal(4))
    check(scan_closure, *args, argnums=(0, 1, 2, 3))


def scan_empty_xs(L, c0, xs):
    return L.scan(lambda c, x: (c * x + 1, c * x), c0, xs)


def scan_empty_length(L, c0):
    return L.scan(lambda c, _: (c + 1, c * 2), c0, None, length=0)


def test_scan_of_zero_length_xs_returns_init_and_empty_ys():
    check(scan_empty_xs, normal(3), np.zeros((0, 3), np.float32), argnums=(0, 1))


def test_scan_of_length_zero_without_xs():
    check(scan_empty_length, normal(3), argnums=0)


def scan_long(L, c0, xs):
    return L.scan(lambda c, x: (0.999 * c + x, c * x), c0, xs)


def test_scan_of_a_thousand_steps():
    check(scan_long, np.float32(0.5), normal(1000), rtol=1e-4)


def test_program_size_does_not_grow_with_the_trip_count():
    """The body is traced once: the IR and the StableHLO of a scan's gradient are the same
    size for 10 and 1000 steps (only the lengths in types and constants differ)."""
    loss = fj.value_and_grad(lambda c0, xs: scan_long(FJ, c0, xs)[1].sum(), argnums=(0, 1))
    sizes = []
    for n in (10, 1000):
        lowered = fj.compile(loss).lower(np.float32(0.5), normal(n))
        sizes.append((lowered.ir().count("\n"), lowered.stablehlo().count("\n")))
    assert sizes[0] == sizes[1], sizes
    assert sizes[0][0] > 10


# -- nesting --------------------------------------------------------------------------------
def scan_in_scan(L, c0, xs, w):
    def row(c, r):
        return L.scan(lambda d, e: (L.np.sin(d * e + c) * w, d * e), c, r)

    return L.scan(row, c0, xs)


def test_scan_inside_scan_values():
    check(scan_in_scan, np.float32(0.5), normal(3, 4), np.float32(0.9))


def test_scan_inside_scan_gradients():
    check(scan_in_scan, np.float32(0.5), normal(3, 4), np.float32(0.9), argnums=(0, 1, 2))


def cond_in_scan(L, c0, xs, w):
    def body(c, x):
        c = L.cond(x > 0, lambda a: L.np.tanh(a * w + x), lambda a: a * x - w, c)
        return c, c * x

    return L.scan(body, c0, xs)


def test_cond_inside_scan_with_a_predicate_per_step():
    xs = np.array([0.7, -1.2, 0.3, 1.1, -0.4, -0.9], np.float32)
    check(cond_in_scan, normal(2), xs, np.float32(0.6), argnums=(0, 1, 2))


def fori_in_cond(L, p, x, w):
    def loop(a):
        return L.fori_loop(0, 3, lambda i, c: L.np.sin(c) * w + i.astype(c.dtype), a)

    return L.cond(p, loop, lambda a: a * w, x)


@pytest.mark.parametrize("pred", [True, False])
def test_fori_loop_inside_cond_values(pred):
    check(fori_in_cond, np.bool_(pred), normal(3), np.float32(0.8))


@pytest.mark.parametrize("pred", [True, False])
def test_fori_loop_inside_cond_gradients(pred):
    check(fori_in_cond, np.bool_(pred), normal(3), np.float32(0.8), argnums=(1, 2))


def while_in_scan(L, xs):
    def body(n, x):
        double = lambda c: (c[0] + 1, c[1] * 2)
        k, v = L.while_loop(lambda c: c[1] < x, double, (np.int32(0), x * 0 + 1))
        return n + k, v

    return L.scan(body, np.int32(0), xs)


def test_while_loop_inside_scan_values():
    xs = np.array([3.0, 10.0, 100.0, 0.5], np.float32)
    check(while_in_scan, xs)
    total, ys = fj.compile(lambda xs: while_in_scan(FJ, xs))(xs)
    assert int(total) == 2 + 4 + 7 + 0
    np.testing.assert_array_equal(ys, [4.0, 16.0, 128.0, 1.0])


# -- variables ------------------------------------------------------------------------------
def rnn_loss(L, params, h0, xs):
    """An Elman RNN over xs (time-major) with a readout at every step; ``b`` is also read
    after the loop."""

    def step(h, x):
        h = L.np.tanh(x @ params["wx"] + h @ params["wh"] + params["b"])
        return h, h @ params["wo"]

    h, outs = L.scan(step, h0, xs)
    return L.np.mean(outs * outs) + L.np.sum(h * params["b"])


def test_gradients_with_respect_to_variables_read_in_a_scan_body():
    values = {
        "wx": normal(3, 5, scale=0.5),
        "wh": normal(5, 5, scale=0.4),
        "b": normal(5, scale=0.1),
        "wo": normal(5, 2, scale=0.5),
    }
    variables = {name: fj.Variable(value, name=name) for name, value in values.items()}
    h0, xs = normal(5), normal(7, 3)

    @fj.compile
    def step(h0, xs):
        loss = rnn_loss(FJ, variables, h0, xs)
        return loss, dict(zip(variables, fj.gradients(loss, list(variables.values()))))

    got = step(h0, xs)
    want = jax.value_and_grad(lambda p: rnn_loss(JAX, p, h0, xs))(values)
    assert_trees_close(got, want)
    for name, variable in variables.items():  # only read
        np.testing.assert_array_equal(np.asarray(variable), values[name])


def expect_two_calls(f, reference, variable, *args) -> None:
    """Call ``f(*args)`` twice: each time its result and ``variable`` afterwards equal
    ``reference(value before the call, *args) -> (result, new value)``."""
    state = np.asarray(variable)
    for call in range(2):
        want, state = reference(state, *args)
        assert_trees_close(f(*args), want, rtol=1e-6, dtypes=False)
        np.testing.assert_allclose(np.asarray(variable), state, rtol=1e-6, err_msg=f"call {call}")


def test_variable_assigned_in_a_fori_loop_body():
    v = fj.Variable(np.zeros(3, np.float32), name="v")

    @fj.compile
    def f(x):
        def body(i, total):
            v.assign_add(x * i.astype(x.dtype))
            return total + fnp.sum(v)  # the value this step wrote

        return fj.fori_loop(0, 4, body, np.float32(0))

    def reference(v, x):
        total = np.float32(0)
        for i in range(4):
            v = v + x * i
            total = total + v.sum()
        return total, v

    expect_two_calls(f, reference, v, normal(3))


def test_variable_assigned_in_a_scan_body():
    v = fj.Variable(np.ones(2, np.float32), name="v")

    @fj.compile
    def f(xs):
        def body(c, x):
            v.assign_add(x)
            return c * 0.5 + fnp.sum(v), v * 1

        return fj.scan(body, np.float32(0), xs)

    def reference(v, xs):
        c, ys = np.float32(0), []
        for x in xs:
            v = v + x
            c = c * np.float32(0.5) + v.sum()
            ys.append(v)
        return (c, np.stack(ys)), v

    expect_two_calls(f, reference, v, normal(5, 2))


def test_variable_assigned_in_a_while_body():
    v = fj.Variable(np.float32(0), name="v")

    @fj.compile
    def f(limit):
        def body(c):
            v.assign_add(c)
            return c * 2

        return fj.while_loop(lambda c: c < limit, body, np.float32(1))

    def reference(v, limit):
        c = np.float32(1)
        while c < limit:
            v, c = v + c, c * 2
        return c, v

    expect_two_calls(f, reference, v, np.float32(20))


def test_variable_assigned_in_one_branch_of_a_cond():
    v = fj.Variable(np.zeros(2, np.float32), name="v")

    @fj.compile
    def f(p, x):
        def hit(a):
            v.assign_add(a)
            return a * 2

        return fj.cond(p, hit, lambda a: a - v, x)

    x, want = normal(2), np.zeros(2, np.float32)
    for p in (True, False, False, True):
        result = f(np.bool_(p), x)
        want_result = x * 2 if p else x - want
        want = want + x if p else want
        np.testing.assert_allclose(result, want_result, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(v), want, rtol=1e-6)


def test_variable_read_and_written_in_a_scan_body_in_program_order():
    v = fj.Variable(np.float32(1), name="v")

    @fj.compile
    def f(xs):
        def body(c, x):
            before = v * 1
            v.assign(v * 2 + x)
            after = v * 1
            v.assign_sub(c)
            return c + 1, (before, after, v * 1)

        return fj.scan(body, np.float32(0), xs)

    def reference(v, xs):
        c, ys = np.float32(0), []
        for x in xs:
            before = v
            v = v * 2 + x
            after = v
            v = v - c
            ys.append((before, after, v))
            c = c + 1
        return (c, tuple(np.array(y, np.float32) for y in zip(*ys))), v

    expect_two_calls(f, reference, v, np.array([1.0, 2.0, 3.0], np.float32))


def test_while_cond_reads_a_variable_its_body_writes():
    count = fj.Variable(np.int32(0), name="count")
    limit = fj.Variable(np.int32(3), name="limit")
    stride = fj.Variable(np.float32(0.5), name="stride")

    @fj.compile
    def f(x):
        def body(c):
            count.assign_add(1)
            return c + stride

        return fj.while_loop(lambda c: count < limit, body, x)

    x = normal(2)
    np.testing.assert_allclose(f(x), x + 1.5, rtol=1e-6)
    assert int(count.value) == 3
    np.testing.assert_allclose(f(x), x, rtol=1e-6)  # count == limit: no step
    limit.assign(5)
    stride.assign(2.0)
    np.testing.assert_allclose(f(x), x + 4.0, rtol=1e-6)
    assert int(count.value) == 5 and f.cache_info().traces == 1


def test_variable_assigned_in_a_scan_nested_in_a_scan():
    m = fj.Variable(np.zeros(2, np.float32), name="m")

    @fj.compile
    def f(xs):
        def outer(c, rows):
            def inner(d, row):
                m.assign_add(row)
                return d + fnp.sum(m), None

            d, _ = fj.scan(inner, c, rows)
            return d, m * 1

        return fj.scan(outer, np.float32(0), xs)

    def reference(m, xs):
        c, ys = np.float32(0), []
        for rows in xs:
            for row in rows:
                m = m + row
                c = c + m.sum()
            ys.append(m)
        return (c, np.stack(ys)), m

    expect_two_calls(f, reference, m, normal(2, 3, 2))


def test_generator_in_a_scan_body_draws_new_numbers_each_step():
    g, same_seed = fj.random.Generator(3), fj.random.Generator(3)

    @fj.compile
    def in_scan():
        return fj.scan(lambda c, _: (c, g.normal((2,))), np.float32(0), None, length=4)[1]

    @fj.compile
    def unrolled():
        return fnp.stack([same_seed.normal((2,)) for _ in range(4)])

    first, second = np.asarray(in_scan()), np.asarray(in_scan())
    draws = np.concatenate([first, second])
    assert len(np.unique(draws)) == draws.size, draws  # each step and call: new numbers
    np.testing.assert_array_equal(first, unrolled())  # the stream a generator gives in order
    np.testing.assert_array_equal(second, unrolled())


# -- errors ---------------------------------------------------------------------------------
# Each case traces fine with bad=False; with bad=True it fails at the line marked CALL.
def cond_structure(x, bad):
    wrong = lambda a: (a, (a, a)) if bad else (a, a)
    return fj.cond(fnp.sum(x) > 0, lambda a: (a, a), wrong, x)  # CALL


def cond_shape(x, bad):
    wrong = lambda a: (a, a[:2] if bad else a)
    return fj.cond(fnp.sum(x) > 0, lambda a: (a, a), wrong, x)  # CALL


def cond_dtype(x, bad):
    wrong = lambda a: (a, a.astype(np.int32) if bad else a)
    return fj.cond(fnp.sum(x) > 0, lambda a: (a, a), wrong, x)  # CALL


def scan_carry_shape(x, bad):
    body = lambda c, r: ((c[0] + r, c[1][:2] if bad else c[1]), r)
    return fj.scan(body, (x, x), fnp.stack([x, x]))  # CALL


def scan_carry_dtype(x, bad):
    n = lambda c: c["n"].astype(np.float32) if bad else c["n"] + 1
    body = lambda c, r: ({"h": c["h"] + r, "n": n(c)}, r)
    return fj.scan(body, {"h": x, "n": 0}, fnp.stack([x, x]))  # CALL


def scan_carry_structure(x, bad):
    body = lambda c, r: ((c, c) if bad else c + r, r)
    return fj.scan(body, x, fnp.stack([x, x]))  # CALL


def scan_not_a_pair(x, bad):
    body = lambda c, r: (c, r, r) if bad else (c, r)
    return fj.scan(body, x, fnp.stack([x, x]))  # CALL


def scan_xs_lengths(x, bad):
    xs = fnp.stack([x, x, x])
    return fj.scan(lambda c, r: (c + r[0] * r[1], c), x, (xs, xs[:2] if bad else xs))  # CALL


def while_carry_shape(x, bad):
    body = lambda c: c[:2] if bad else c * 2
    return fj.while_loop(lambda c: fnp.sum(c) < 100.0, body, x)  # CALL


def while_carry_dtype(x, bad):
    body = lambda c: (c[0] * 2, c[1].astype(np.float32) if bad else c[1] + 1)
    return fj.while_loop(lambda c: fnp.sum(c[0]) < 100.0, body, (x, 0))  # CALL


def while_carry_structure(x, bad):
    body = lambda c: [c[0] * 2, c[1]] if bad else (c[0] * 2, c[1])
    return fj.while_loop(lambda c: fnp.sum(c[0]) < 100.0, body, (x, x))  # CALL


def while_cond_not_bool(x, bad):
    test = lambda c: 100.0 - fnp.sum(c) if bad else fnp.sum(c) < 100.0
    return fj.while_loop(test, lambda c: c * 2, x)  # CALL


def while_cond_not_scalar(x, bad):
    test = lambda c: c < 100.0 if bad else fnp.all(c < 100.0)
    return fj.while_loop(test, lambda c: c * 2, x)  # CALL


ERROR_CASES = [
    (cond_structure, ["structure"]),
    (cond_shape, ["result[1]", "f32[2]", "f32[3]"]),
    (cond_dtype, ["result[1]", "i32[3]", "f32[3]"]),
    (scan_carry_shape, ["result[0][1]", "f32[2]", "f32[3]"]),
    (scan_carry_dtype, ["result[0]['n']", "f32[]", "i32[]"]),
    (scan_carry_structure, ["structure"]),
    (scan_not_a_pair, ["pair"]),
    (scan_xs_lengths, ["f32[3,3]", "f32[2,3]"]),
    (while_carry_shape, ["f32[2]", "f32[3]"]),
    (while_carry_dtype, ["result[1]", "f32[]", "i32[]"]),
    (while_carry_structure, ["structure"]),
    (while_cond_not_bool, ["bool", "f32[]"]),
    (while_cond_not_scalar, ["scalar", "bool[3]"]),
]


@pytest.mark.parametrize("case, fragments", ERROR_CASES, ids=[c.__name__ for c, _ in ERROR_CASES])
def test_mismatch_is_a_type_error_naming_the_line_and_leaves_the_function_usable(case, fragments):
    calls = fj.Variable(np.int32(0), name="calls")

    @fj.compile(static_argnums=1)
    def f(x, bad):
        calls.assign_add(1)
        return case(x, bad)

    x = np.array([1.0, 2.0, 3.0], np.float32)
    for ok in range(2):
        with pytest.raises(fj.TypeMismatchError) as info:
            f(x, True)
        message = str(info.value)
        assert isinstance(info.value, TypeError)
        assert f"{HERE}:{line_of(case, '# CALL')}" in message, message
        assert all(fragment in message for fragment in fragments), message
        assert int(calls.value) == ok  # the failed call changed no variable
        assert jax.tree_util.tree_leaves(f(x, False))
        assert int(calls.value) == ok + 1
    assert f.cache_info().traces == 1


@pytest.mark.parametrize("bounds", ["python ints", "tensors"])
def test_fori_loop_carry_mismatch_names_fori_loop_and_the_users_structure(bounds):
    def f(x, n):
        upper = 3 if bounds == "python ints" else n
        return fj.fori_loop(0, upper, lambda i, c: c[:2], x)  # CALL

    with pytest.raises(fj.TypeMismatchError) as info:
        fj.compile(f)(np.ones(3, np.float32), np.int32(3))
    message = str(info.value)
    assert f"{HERE}:{line_of(f, '# CALL')}" in message, message
    # body_fn returned one Tensor: no index into it (nor fori_loop's own loop) is where
    assert "fori_loop" in message and not re.search(r"result\[\d", message), message


# -- reference interpreter and IR -----------------------------------------------------------
def test_xla_results_equal_the_reference_interpreter():
    acc = fj.Variable(np.zeros(3, np.float32), name="acc")
    steps = fj.Variable(np.int32(0), name="steps")

    @fj.compile
    def f(xs, w, limit):
        def body(h, x):
            h = fnp.tanh(h * w + x)

            def hit(h):
                acc.assign_add(h)
                return h * 2

            return h, fj.cond(fnp.sum(h) > 0, hit, lambda h: h - acc, h)

        h, ys = fj.scan(body, np.zeros(3, np.float32), xs)

        def grow(c):
            steps.assign_add(1)
            return c * 1.5

        return h, ys, fj.while_loop(lambda c: fnp.sum(c) < limit, grow, fnp.abs(h) + 0.1)

    xs, w = normal(6, 3), normal(3)
    for _ in range(2):  # the second call starts from the variables the first one wrote
        args = (xs, w, np.float32(50))
        want, want_state = f.lower(*args).run_reference(*args)
        assert set(want_state) == {acc, steps}
        got = f(*args)
        assert_trees_close(got, want, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(acc), want_state[acc], rtol=1e-5, atol=1e-6)
        assert int(steps.value) == int(want_state[steps]) > 0


def test_traced_ir_nests_the_scan_body_and_round_trips():
    acc = fj.Variable(np.zeros(3, np.float32), name="acc")

    @fj.compile
    def f(xs, w):
        def body(h, x):
            h = fnp.tanh(h * w + x)
            acc.assign_add(h)
            return h, h * 2

        return fj.scan(body, np.zeros(3, np.float32), xs, reverse=True)

    lowered = f.lower(normal(4, 3), normal(3))
    text = lowered.ir("traced")
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if "= scan(" in line)
    header = lines[at]
    for attr in ("consts=1", "carries=1", "length=4", "reverse=true", "body=graph @body("):
        assert attr in header, header
    assert "state($acc" in header  # the body names the variable it writes
    end = next(i for i in range(at, len(lines)) if lines[i].lstrip().startswith("}}"))
    indent = lambda line: len(line) - len(line.lstrip())
    body = [line for line in lines[at + 1 : end] if indent(line) > indent(header)]
    assert len(body) == end - at - 1
    for op in ("= mul(", "= add(", "= tanh(", "assign_add_variable($acc", "return "):
        assert any(op in line for line in body), (op, text)
    outside = lines[:at] + lines[end + 1 :]
    assert not any("tanh(" in line or "assign_add_variable" in line for line in outside), text
    assert fj.ir.print_graph(fj.ir.parse(text)) == text
    optimized = lowered.ir()
    assert fj.ir.print_graph(fj.ir.parse(optimized)) == optimized
