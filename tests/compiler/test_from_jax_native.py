"""fj.from_jax's translations (compiler/jax_primitives.py, ``NATIVE``): each jax primitive with an
exact flowjit op imports as that op, with no jax_call left; the compiled values equal jax.jit's
bit for bit (signed zeros and nans included) on random inputs with the edge values where the
two could differ; gradients equal jax.grad's. The primitives whose params or edge values have
no exact flowjit op stay held in a jax_call, and still equal jax."""

from __future__ import annotations

import functools
import itertools
import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj
from flowjit.ir import parse

F32, I32 = np.float32, np.int32
RNG = np.random.default_rng(0)
NAN = np.float32(np.nan)
# Values where jax and flowjit could part: nans of both signs, signed zeros, infinities, ties
EDGES = np.array([NAN, -NAN, 0.0, -0.0, np.inf, -np.inf, 1.5, 1.5, -2.5, 0.5], F32)


def floats(shape=(4, 6), edges: bool = True) -> np.ndarray:
    """Random float32 values, the first of them the edge values."""
    x = RNG.standard_normal(shape).astype(F32)
    if edges:
        x.reshape(-1)[: EDGES.size] = EDGES[: x.size]
    return x


def ints(shape, low: int, high: int, dtype=I32) -> np.ndarray:
    return RNG.integers(low, high, shape).astype(dtype)


X, Y = floats(), floats()
SMOOTH = floats(edges=False)
B = RNG.random((4, 6)) < 0.5
INDEX = np.array([[0, 5, -1], [-6, 6, 100]], I32)  # (in range, wrapping once, out of range)


def op_names(fn, args) -> list[str]:
    imported = fj.from_jax(fn)
    graph = parse(fj.compile(lambda *a: imported(*a)).lower(*args).ir("traced"))
    return [op.opdef.name for op in graph.ops]


def assert_same(got, want) -> None:
    """Equal values and dtypes, nans where jax has them, and the same sign bits (of zeros, and
    of nans, which sort and compare by their sign too)."""
    got, want = jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)
        if w.dtype.kind == "f":
            np.testing.assert_array_equal(np.signbit(g), np.signbit(w))


def check(fn, args, ops: set[str], *, exact: bool = True) -> None:
    """fn imports as ``ops`` and no jax_call, and its values equal jax.jit's."""
    names = op_names(fn, args)
    assert ops <= set(names), names
    assert "jax_call" not in names, names
    imported = fj.from_jax(fn)
    got, want = fj.compile(lambda *a: imported(*a))(*args), jax.jit(fn)(*args)
    if exact:
        assert_same(got, want)
    else:
        for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def squares(f):
    """The sum of the squares of f's results (one or a pytree): a loss to differentiate."""

    def loss(x, *rest):
        leaves = jax.tree_util.tree_leaves(f(x, *rest))
        return functools.reduce(operator.add, [(leaf**2).sum() for leaf in leaves])

    return loss


def check_grad(fn, args, rtol: float = 1e-6) -> None:
    """fj.grad of fn's loss with respect to each float operand equals jax.grad's."""
    imported = fj.from_jax(fn)
    wrt = tuple(i for i, a in enumerate(args) if np.asarray(a).dtype.kind == "f")
    got = fj.compile(fj.grad(squares(imported), argnums=wrt))(*args)
    want = jax.grad(squares(fn), argnums=wrt)(*args)
    assert len(got) == len(want) == len(wrt)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-6)


# (id, function, its operands, the flowjit ops it becomes, operands to differentiate at or None)
CASES = [
    ("slice", lambda x: x[1:3, ::2], (X,), {"slice"}, (SMOOTH,)),
    ("roll", lambda x: jnp.roll(x, 2, axis=1), (X,), {"slice", "concatenate"}, (SMOOTH,)),
    ("split", lambda x: jnp.split(x, [1, 4], axis=1), (X,), {"slice"}, (SMOOTH,)),
    (
        "pad",
        lambda x: jnp.pad(x, ((1, 2), (0, 1)), constant_values=-0.0),
        (X,),
        {"pad"},
        (SMOOTH,),
    ),
    (
        "pad_negative",  # (negative padding crops)
        lambda x, v: jax.lax.pad(x, v, ((-1, 2, 0), (3, -4, 0))),
        (X, F32(7)),
        {"pad", "slice"},
        (SMOOTH, F32(7)),
    ),
    ("rev", lambda x: jnp.flip(x, (0, 1)), (X,), {"reverse"}, (SMOOTH,)),
    ("squeeze_expand_transpose", lambda x: x[:1].squeeze(0)[:, None].T, (X,), {"transpose"}, None),
    (
        "dynamic_slice",  # (starts out of range clamp so the slice fits)
        lambda x, i, j: jax.lax.dynamic_slice(x, (i, j), (2, 3)),
        (X, I32(-3), I32(9)),
        {"dynamic_slice"},
        (SMOOTH, I32(3), I32(1)),
    ),
    (
        "dynamic_slice_constant_starts",
        lambda x: jax.lax.dynamic_slice(x, (3, 2), (2, 3)),
        (X,),
        {"dynamic_slice"},
        (SMOOTH,),
    ),
    (
        "dynamic_update_slice",
        lambda x, u, i: jax.lax.dynamic_update_slice(x, u, (i, I32(1))),
        (X, floats((2, 3)), I32(7)),
        {"dynamic_update_slice"},
        (SMOOTH, floats((2, 3), edges=False), I32(1)),
    ),
    ("cumsum", lambda x: jnp.cumsum(x, axis=1), (SMOOTH,), {"cumsum"}, (SMOOTH,)),
    (
        "cumsum_reverse_signed_zeros",
        lambda x: jax.lax.cumsum(x, axis=0, reverse=True),
        (np.array([[-0.0, 1.0], [-0.0, -0.0], [-0.0, -0.0]], F32),),
        {"cumsum"},
        (SMOOTH,),
    ),
    (
        "cumsum_ints",
        lambda x: jnp.cumsum(x, axis=0),
        (ints((5, 3), -(2**31), 2**31 - 1),),
        {"cumsum"},
        None,
    ),
    (
        "cumprod",  # (gradients where a row has one zero and two zeros)
        lambda x: (jnp.cumprod(x, axis=1), jax.lax.cumprod(x, axis=0, reverse=True)),
        (X,),
        {"cumprod"},
        (np.where(np.isin(np.arange(24).reshape(4, 6), [3, 7, 10]), F32(0), SMOOTH),),
    ),
    (
        "cumprod_ints",
        lambda x: jnp.cumprod(x, axis=0),
        (ints((5, 3), -(2**31), 2**31 - 1),),
        {"cumprod"},
        None,
    ),
    (
        "cummax_cummin",  # (nans of both signs, signed zeros, infinities, ties)
        lambda x: (jax.lax.cummax(x, axis=1), jax.lax.cummin(x, axis=0, reverse=True)),
        (X,),
        {"cummax", "cummin"},
        (SMOOTH,),
    ),
    (
        "cummax_ints",
        lambda x: jax.lax.cummax(x, axis=1, reverse=True),
        (ints((4, 6), -9, 9),),
        {"cummax"},
        None,
    ),
    (
        "cumlogsumexp",
        lambda x: (jax.lax.cumlogsumexp(x, axis=1), jax.lax.cumlogsumexp(x, reverse=True)),
        (X,),
        {"cumlogsumexp"},
        (SMOOTH * 10,),
    ),
    (
        "argmax_argmin",  # (nans of both signs first, ties and signed zeros)
        lambda x: (jnp.argmax(x, axis=1), jnp.argmin(x, axis=0)),
        (X,),
        {"argmax", "argmin"},
        None,
    ),
    ("argmax_ints", lambda x: jnp.argmax(x, axis=0), (ints((5, 3), -2, 2),), {"argmax"}, None),
    ("sort", lambda x: jnp.sort(x, axis=1), (X,), {"sort"}, (SMOOTH,)),
    ("sort_signed_zeros_and_nans", lambda x: jnp.sort(x), (EDGES,), {"sort"}, None),
    ("argsort", lambda x: jnp.argsort(x, axis=0), (X,), {"argsort", "take_along_axis"}, None),
    (
        "argsort_descending",
        lambda x: jnp.argsort(x, axis=1, descending=True),
        (X,),
        {"argsort", "take_along_axis", "reverse"},
        None,
    ),
    (
        "sort_two_operands",
        lambda k, v: jax.lax.sort((k, v), dimension=0, num_keys=1),
        (ints((5, 3), 0, 3).astype(F32), X[:, :3][[0, 1, 2, 3, 0]]),
        {"argsort", "take_along_axis"},
        None,
    ),
    (
        "sort_ints_unstable",  # (equal integer keys are indistinguishable)
        lambda x: jax.lax.sort(x, dimension=0, is_stable=False),
        (ints((5, 3), -3, 3),),
        {"sort"},
        None,
    ),
    (
        "all_any",
        lambda b: (jnp.all(b, axis=0), jnp.any(b)),
        (B,),
        {"reduce_and", "reduce_or"},
        None,
    ),
    (
        "logic_bool",
        lambda a, b: (a & ~b) | (a ^ b),
        (B, ~B.T.reshape(4, 6)),
        {"and", "or", "xor", "not"},
        None,
    ),
    (
        "logic_ints",
        lambda a, b: (a & ~b) | (a ^ b),
        (ints((4, 6), -99, 99), ints((4, 6), -99, 99)),
        {"and", "or", "xor", "not"},
        None,
    ),
    (
        "shifts",  # (amounts past the width and negative ones)
        lambda a, n: (
            jax.lax.shift_left(a, n),
            jax.lax.shift_right_logical(a, n),
            jax.lax.shift_right_arithmetic(a, n),
        ),
        (ints((4, 6), -(2**31), 2**31 - 1), ints((4, 6), -3, 40)),
        {"shift_left", "shift_right_logical", "shift_right_arithmetic"},
        None,
    ),
    (
        "bitcast",
        lambda x: jax.lax.bitcast_convert_type(x, jnp.int32),
        (X,),
        {"bitcast_convert"},
        None,
    ),
    (
        "pow",
        lambda x, y: x**y,
        (X, np.roll(X, 3).reshape(4, 6)),
        {"pow"},
        (np.abs(SMOOTH) + 0.1, SMOOTH),
    ),
    (
        "rem_ints",  # (C's fmod: the dividend's sign; x rem 0 is x, INT_MIN rem -1 is 0)
        lambda x, y: (jax.lax.rem(x, y), x % y),
        (
            np.append(ints((23,), -9, 9), I32(-(2**31))),
            np.append(ints((23,), -3, 3), I32(-1)),
        ),
        {"rem"},
        None,
    ),
    (
        "rem_floats",  # (nans, infinities and signed zeros against each other)
        lambda x, y: (jax.lax.rem(x, y), jnp.fmod(x, y), x % y),
        (X, np.roll(X, 5).reshape(4, 6)),
        {"rem"},
        (SMOOTH * 5, SMOOTH[::-1] + 0.5),
    ),
    ("exp2", jnp.exp2, (X * 20,), {"exp2"}, (SMOOTH,)),
    (
        "reduce_precision",  # (to bfloat16's and float16's formats, and one without mantissa)
        lambda x: (
            jax.lax.reduce_precision(x, 8, 7),
            jax.lax.reduce_precision(x * 1e4, 5, 10),
            jax.lax.reduce_precision(x, 3, 0),
        ),
        (X,),
        {"reduce_precision"},
        (SMOOTH,),
    ),
    (
        "clamp",  # (every triple of edge values: nans of both signs, signed zeros, low > high)
        lambda lo, x, hi: jax.lax.clamp(lo, x, hi),
        tuple(np.array(v, F32) for v in zip(*itertools.product(EDGES[:7], repeat=3))),
        {"max", "min"},
        None,
    ),
    ("clamp_scalars", lambda x: jax.lax.clamp(-0.0, x, 1.0), (X,), {"max", "min"}, (SMOOTH,)),
    (
        "stop_gradient",
        lambda x: jnp.sin(x) * jax.lax.stop_gradient(x),
        (X,),
        {"stop_gradient"},
        (SMOOTH,),
    ),
    (
        "select_n_int",  # (a predicate out of range picks the first or the last case)
        lambda w, a, b, c: jax.lax.select_n(w, a, b, c),
        (ints((4, 6), -2, 5), X, Y, SMOOTH),
        {"select", "lt"},
        None,
    ),
    (
        "round_half_to_even",
        lambda x: jnp.round(x),
        (np.array([0.5, 1.5, 2.5, -0.5, -2.5, -0.4, NAN, np.inf, 1e30], F32),),
        {"round"},
        None,
    ),
    (
        "convert",  # (float to int truncates, saturates, nan is 0; to bool: nonzero)
        lambda x: (x.astype(jnp.int32), x.astype(jnp.uint8), x.astype(jnp.int8), x.astype(bool)),
        (np.array([NAN, np.inf, -np.inf, 3e9, -3e9, -1.5, 0.7, 300, -3, -0.0], F32),),
        {"convert"},
        None,
    ),
    (
        "take_fill",  # (jnp.take's default mode: out of range gives nan)
        lambda x, i: jnp.take(x, i, axis=1),
        (X, INDEX),
        {"take", "select"},
        (SMOOTH, INDEX),
    ),
    (
        "take_fill_last_axis_ints",
        lambda x, i: jnp.take(x, i, axis=0),
        (ints((4,), 0, 9), INDEX),
        {"take"},
        None,
    ),
    (
        "take_clip",
        lambda x, i: jnp.take(x, i, axis=0, mode="clip"),
        (X, INDEX),
        {"take"},
        (SMOOTH, INDEX),
    ),
    (
        "index",  # (x[i] wraps a negative index once, then clamps)
        lambda x, i: x[i],
        (X, np.array([-9, -5, -1, 0, 3, 4, 10], I32)),
        {"take"},
        (SMOOTH, np.array([-4, -1, 0, 3, 3], I32)),
    ),
    (
        "index_unsigned",
        lambda x, i: x[:, i],
        (X, np.array([0, 5, 6, 200], np.uint8)),
        {"take"},
        None,
    ),
    (
        "take_along_axis",
        lambda x, i: jnp.take_along_axis(x, i, axis=1),
        (X, ints((4, 3), -8, 8)),
        {"take_along_axis", "select"},
        (SMOOTH, ints((4, 3), -8, 8)),
    ),
    (
        "scatter_add",  # (repeated indices add up; those out of range, wrapped once, drop)
        lambda x, i, u: x.at[i].add(u),
        (X, np.array([1, -1, 3, 1, 9, -100], I32), floats((6, 6))),
        {"scatter_add", "select"},
        (SMOOTH, np.array([1, -1, 3, 1, 9, -100], I32), floats((6, 6), edges=False)),
    ),
    (
        "scatter_add_inner_axis_clip",
        lambda x, i, u: x.at[:, i].add(u, mode="clip"),
        (X, INDEX, floats((4, 2, 3))),
        {"scatter_add"},
        (SMOOTH, INDEX, floats((4, 2, 3), edges=False)),
    ),
    (
        "segment_sum_ints",
        lambda d, i: jax.ops.segment_sum(d, i, 4),
        (ints((5, 3), -9, 9), np.array([0, 3, 3, 7, -1], I32)),
        {"scatter_add"},
        None,
    ),
    (
        "conv_nhwc",
        lambda x, w: jax.lax.conv_general_dilated(
            x, w, (1, 2), ((1, -1), (0, 2)), (1, 2), (2, 1), ("NHWC", "HWIO", "NHWC"), 2
        ),
        (floats((2, 7, 8, 6)), floats((3, 3, 3, 4))),
        {"conv2d"},
        (floats((2, 7, 8, 6), edges=False), floats((3, 3, 3, 4), edges=False)),
    ),
    (
        "conv_nchw",
        lambda x, w: jax.lax.conv_general_dilated(x, w, (2, 1), "SAME"),
        (floats((2, 3, 7, 8)), floats((4, 3, 3, 2))),
        {"conv2d", "transpose"},
        (floats((2, 3, 7, 8), edges=False), floats((4, 3, 3, 2), edges=False)),
    ),
    (
        "cond",
        lambda x: jax.lax.cond(x.sum() > 0, lambda v: jnp.sin(v) * v, lambda v: v**3, x),
        (SMOOTH,),
        {"cond"},
        (SMOOTH,),
    ),
    (
        "switch",  # (lax.switch clamps the index; the cond it makes runs the last branch past it)
        lambda x, i: jax.lax.switch(i, [lambda v: v, jnp.sin, lambda v: v * v], x),
        (X, I32(7)),
        {"cond"},
        (SMOOTH, I32(-5)),
    ),
    (
        "fori_loop",
        lambda x: jax.lax.fori_loop(0, 3, lambda i, c: jnp.sin(c * x) + i, x),
        (X,),
        {"scan"},
        (SMOOTH,),
    ),
    (
        "scan_reverse_with_consts_and_ys",
        lambda x, w: jax.lax.scan(
            lambda c, row: (jnp.tanh(c * w + row), (c.sum(), row * c)), x[0], x, reverse=True
        ),
        (X, Y[0]),
        {"scan"},
        (SMOOTH, SMOOTH[1]),
    ),
    (
        "while_loop",
        lambda x: jax.lax.while_loop(
            lambda c: c[1].sum() < 100, lambda c: (c[0] + 1, c[1] * 2 + 1), (0, x)
        ),
        (np.abs(SMOOTH),),
        {"while"},
        None,
    ),
]


@pytest.mark.parametrize("fn, args, ops, at", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_translated_primitive_is_its_flowjit_op_and_equals_jax(fn, args, ops, at):
    check(fn, args, ops)
    if at is not None:
        check_grad(fn, at)


def test_cumsum_values_equal_jax_up_to_the_order_of_the_sums():
    x = RNG.standard_normal((3, 50)).astype(F32)
    check(lambda x: jnp.cumsum(x, axis=1), (x,), {"cumsum"}, exact=False)


# (id, function, operands, ops, operands to differentiate at): special functions, whose values
# and gradients equal jax's to float32's last bits (XLA's and jax's formulas differ)
SPECIAL = [
    ("gelu_exact_erfc", lambda x: jax.nn.gelu(x, approximate=False), (X,), {"erfc"}, (SMOOTH,)),
    ("erfc", jax.lax.erfc, (X * 3,), {"erfc"}, (SMOOTH,)),
    ("erf_inv", jax.scipy.special.erfinv, (X / 3,), {"erf_inv"}, (SMOOTH / 4,)),
    (
        "lgamma_digamma",  # (poles at 0, -1, -2, ...; -1 / x at a zero)
        lambda x: (jax.scipy.special.gammaln(x), jax.scipy.special.digamma(x)),
        (np.concatenate([X, [[-1.0, -2.0, -2.5, 1e-30, -1e-30, 7.0]]]).astype(F32),),
        {"lgamma", "digamma"},
        # (negative values away from the poles and from digamma's roots, -0.504, -1.573, ...,
        # where float32 keeps few of its bits)
        (np.abs(SMOOTH) + 0.5, np.array([-0.2, -0.8, -1.3, -1.8, -2.2, -2.9], F32)),
    ),
]


@pytest.mark.parametrize("fn, args, ops, at", [c[1:] for c in SPECIAL], ids=[c[0] for c in SPECIAL])
def test_a_special_function_is_its_flowjit_op_and_equals_jax(fn, args, ops, at):
    check(fn, args, ops, exact=False)
    for x in at:
        check_grad(fn, (x,), rtol=1e-5)


def test_second_order_gradients_through_gather_sort_and_dynamic_slice():
    def fn(x):
        y = jnp.sort(jnp.take(x, INDEX[0], axis=1, mode="clip"), axis=0)
        return jax.lax.dynamic_slice(y, (1, 0), (2, 3)) ** 3

    imported = fj.from_jax(fn)
    second = fj.compile(fj.grad(lambda x: fj.grad(squares(imported))(x).sum()))
    want = jax.grad(lambda x: jax.grad(squares(fn))(x).sum())(SMOOTH)
    np.testing.assert_allclose(second(SMOOTH), want, rtol=1e-5, atol=1e-5)


# Primitives or params without an exact flowjit op, and why each stays in a jax_call
HELD = [
    # lax.round's default rounds half away from zero; flowjit's round is half to even
    ("round_away_from_zero", lambda x: jax.lax.round(x), (np.array([0.5, -2.5], F32),)),
    # jax's top_k ranks a nan with the sign bit set smallest; flowjit's top_k, largest
    ("top_k", lambda x: jax.lax.top_k(x, 3), (X,)),
    # an unstable sort of floats may order -0.0 and 0.0 (or nans) either way
    ("sort_unstable_floats", lambda x: jax.lax.sort(x, is_stable=False), (SMOOTH,)),
    ("sort_two_keys", lambda a, b: jax.lax.sort((a, b), num_keys=2), (X, Y)),
    ("pad_interior", lambda x: jax.lax.pad(x, F32(0), ((0, 0, 1), (1, 0, 2))), (X,)),
    ("gather_two_axes", lambda x, i, j: x[i, j], (X, INDEX, INDEX)),
    ("scatter_set", lambda x, i: x.at[i].set(7.0), (X, INDEX[0])),
    (
        "scatter_add_bfloat16",  # (flowjit's scatter_add sums float16 and bfloat16 in float32)
        lambda x, i: x.astype(jnp.bfloat16).at[i].add(1.0).astype(F32),
        (X, INDEX[0]),
    ),
]


@pytest.mark.parametrize("fn, args", [c[1:] for c in HELD], ids=[c[0] for c in HELD])
def test_a_primitive_without_an_exact_flowjit_op_is_held_and_equals_jax(fn, args):
    assert "jax_call" in op_names(fn, args)
    imported = fj.from_jax(fn)
    got, want = fj.compile(lambda *a: imported(*a))(*args), jax.jit(fn)(*args)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        # (XLA compiles a held computation with the ops around it: the last bits may differ)
        np.testing.assert_allclose(g, w, rtol=1e-6)
