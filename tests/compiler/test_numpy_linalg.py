"""``flowjit.numpy``'s linear algebra, creation, indexing and sorting functions through
``fj.compile``, against numpy on fresh random inputs (the rest is in test_numpy.py). Values
come from numpy (in float64, rounded to the result dtype); result dtypes from jax.numpy; the
functions without a numpy counterpart (top_k, dynamic_slice, ...) are checked against jax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from frontcheck import expect_all, reference, wide
from opcheck import assert_matches, rand

import flowjit as fj
import flowjit.numpy as fnp

F16, BF16, F32, F64 = fnp.float16, fnp.bfloat16, fnp.float32, fnp.float64
I8, I32, I64, U8, U32, BOOL = fnp.int8, fnp.int32, fnp.int64, fnp.uint8, fnp.uint32, fnp.bool_
name_of = lambda d: np.dtype(d).name  # noqa: E731 (pytest ids)


# -- linear algebra ----------------------------------------------------------------------------
MATMUL = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((4,), (2, 4, 3)),
    ((2, 3, 4), (4,)),
]
DOT = [
    ((3, 4), (4, 5)),
    ((4,), (4,)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((2, 3, 4), (5, 4, 2)),
    ((2, 3, 4), (4,)),
    ((), (3, 4)),
    ((3, 4), ()),
]


@pytest.mark.parametrize(
    "ta,tb", [(F32, F32), (I32, I32), (I8, F16), (BF16, BF16), (F16, F32)], ids=name_of
)
def test_matmul_and_dot(ta, tb):
    rng = np.random.default_rng()
    mm = [(rand(rng, a, ta), rand(rng, b, tb)) for a, b in MATMUL]
    dd = [(rand(rng, a, ta), rand(rng, b, tb)) for a, b in DOT]
    got = fj.compile(
        lambda mm, dd: {
            **{f"matmul{a.shape}{b.shape}": fnp.matmul(a, b) for a, b in mm},
            **{f"dot{a.shape}{b.shape}": fnp.dot(a, b) for a, b in dd},
        }
    )(mm, dd)
    want = {
        **{f"matmul{a.shape}{b.shape}": reference(np.matmul, jnp.matmul, a, b) for a, b in mm},
        **{f"dot{a.shape}{b.shape}": reference(np.dot, jnp.dot, a, b) for a, b in dd},
    }
    expect_all(got, want, scale=4)


EINSUM = [
    ("ij,jk->ik", (3, 4), (4, 5)),
    ("ij,jk", (3, 4), (4, 5)),
    ("ij,jk->ki", (3, 4), (4, 5)),
    ("bij,bjk->bik", (2, 3, 4), (2, 4, 5)),
    ("i,i->", (4,), (4,)),
    ("i,j->ij", (3,), (4,)),
    ("ij,ij->i", (3, 4), (3, 4)),
    ("ij,ij", (3, 4), (3, 4)),
    ("ijk,kj->i", (2, 3, 4), (4, 3)),
    ("bhqd,bhkd->bhqk", (2, 2, 3, 4), (2, 2, 5, 4)),
    ("ij,k->ik", (3, 4), (5,)),
    ("ba,ca->bc", (3, 4), (5, 4)),
    ("i j , j k -> k i", (3, 4), (4, 5)),
    ("ij,jk->", (3, 4), (4, 5)),
]


@pytest.mark.parametrize("spec,sa,sb", EINSUM, ids=[e[0].replace(" ", "_") for e in EINSUM])
def test_einsum(spec, sa, sb):
    rng = np.random.default_rng()
    a, b = rand(rng, sa, F32), rand(rng, sb, F32)
    got = np.asarray(fj.compile(lambda a, b: fnp.einsum(spec, a, b))(a, b))
    want = np.einsum(spec.replace(" ", ""), wide(a), wide(b)).astype(np.float32)
    assert_matches(got, want, got.dtype, 4, spec)


EINSUM_TYPED = {
    "ii": ("ij,kj->ik", I32, I32, (2, 4)),
    "ih": ("ij,jk->ik", I32, F16, (4, 2)),
    "i8_summed_away": ("ij,k->ik", I8, I8, (2,)),
    "u8": ("ij,jk->ik", U8, U8, (4, 2)),
    "bool": ("ij,jk->ik", BOOL, BOOL, (4, 2)),
    "bool_summed_away": ("ij,k->ik", BOOL, BOOL, (2,)),
}


def test_einsum_of_integers_bools_and_mixed_types():
    rng = np.random.default_rng()
    args = {
        name: (rand(rng, (3, 4), ta, 0, 3), rand(rng, shape_b, tb, 0, 3))
        for name, (_, ta, tb, shape_b) in EINSUM_TYPED.items()
    }
    got = fj.compile(
        lambda args: {
            name: fnp.einsum(EINSUM_TYPED[name][0], a, b) for name, (a, b) in args.items()
        }
    )(args)

    def ref(name):
        spec = EINSUM_TYPED[name][0]
        return reference(
            lambda a, b: np.einsum(spec, a, b), lambda a, b: jnp.einsum(spec, a, b), *args[name]
        )

    expect_all(got, {name: ref(name) for name in EINSUM_TYPED}, scale=2)


def test_matmul_and_dot_of_bools():
    rng = np.random.default_rng()
    a, b, v = rand(rng, (2, 3, 4), BOOL), rand(rng, (4, 5), BOOL), rand(rng, (4,), BOOL)
    got = fj.compile(
        lambda a, b, v: {"matmul": a @ b, "dot": fnp.dot(a, v), "tensordot": fnp.tensordot(a, b, 1)}
    )(a, b, v)
    expect_all(
        got,
        {
            "matmul": reference(np.matmul, jnp.matmul, a, b),
            "dot": reference(np.dot, jnp.dot, a, v),
            "tensordot": reference(
                lambda a, b: np.tensordot(a, b, 1), lambda a, b: jnp.tensordot(a, b, 1), a, b
            ),
        },
    )


TENSORDOT = [
    ((2, 3, 4), (3, 4, 5), 2),
    ((3, 4), (4, 5), 1),
    ((2, 3), (4,), 0),
    ((2, 3, 4), (4, 3, 5), ([1, 2], [1, 0])),
    ((3, 4), (5, 3), (0, 1)),
    ((2, 3, 4), (4, 2), ((-1, 0), (0, -1))),
]


@pytest.mark.parametrize("sa,sb,axes", TENSORDOT, ids=[str(t[2]) for t in TENSORDOT])
def test_tensordot(sa, sb, axes):
    rng = np.random.default_rng()
    a, b = rand(rng, sa, F32), rand(rng, sb, I32)
    got = np.asarray(fj.compile(lambda a, b: fnp.tensordot(a, b, axes))(a, b))
    want = reference(
        lambda a, b: np.tensordot(a, b, axes), lambda a, b: jnp.tensordot(a, b, axes), a, b
    )
    assert_matches(got, want, got.dtype, 4, f"tensordot {axes}")


# -- creation ----------------------------------------------------------------------------------
CREATION = {
    "zeros": (lambda m, x: m.zeros((2, 3))),
    "zeros_int": (lambda m, x: m.zeros(3, m.int32)),
    "ones": (lambda m, x: m.ones((2, 1))),
    "ones_bool": (lambda m, x: m.ones((2,), m.bool_)),
    "ones_bf16": (lambda m, x: m.ones((2, 2), dtype=fnp.bfloat16)),
    "full_float": (lambda m, x: m.full((2, 3), 1.5)),
    "full_int": (lambda m, x: m.full((2,), 3)),
    "full_bool": (lambda m, x: m.full(2, True)),
    "full_f16": (lambda m, x: m.full((2, 2), 2, m.float16)),
    "full_traced": (lambda m, x: m.full((2, 3), x[1, 2])),
    "zeros_like": (lambda m, x: m.zeros_like(x)),
    "ones_like": (lambda m, x: m.ones_like(x)),
    "ones_like_int": (lambda m, x: m.ones_like(x, m.int32)),
    "zeros_like_bool": (lambda m, x: m.zeros_like(x > 0)),
    "arange": (lambda m, x: m.arange(5)),
    "arange_start": (lambda m, x: m.arange(2, 7)),
    "arange_step": (lambda m, x: m.arange(1, 10, 3)),
    "arange_down": (lambda m, x: m.arange(5, 0, -1)),
    "arange_down_step": (lambda m, x: m.arange(6, -3, -4)),
    "arange_float": (lambda m, x: m.arange(0, 1, 0.25)),
    "arange_float_start": (lambda m, x: m.arange(0.5, 3)),
    "arange_dtype": (lambda m, x: m.arange(3, dtype=m.float32)),
    "arange_empty": (lambda m, x: m.arange(3, 1)),
    "eye": (lambda m, x: m.eye(3)),
    "eye_rect": (lambda m, x: m.eye(3, 4)),
    "eye_k": (lambda m, x: m.eye(4, 3, k=1)),
    "eye_int": (lambda m, x: m.eye(3, k=-1, dtype=m.int32)),
}


def test_creation():
    x = rand(np.random.default_rng(), (2, 3), F16)
    got = fj.compile(lambda x: {name: fn(fnp, x) for name, fn in CREATION.items()})(x)
    want = {
        name: reference(lambda x: fn(np, x), lambda x: fn(jnp, x), x)
        for name, fn in CREATION.items()
    }
    expect_all(got, want)


# -- indexing functions ------------------------------------------------------------------------
def wrap_clip(indices: np.ndarray, n: int) -> np.ndarray:
    """flowjit's documented out-of-range rule: negative indices count from the end once, then
    everything is clamped to the axis."""
    return np.clip(np.where(indices < 0, indices + n, indices), 0, n - 1)


def test_take():
    rng = np.random.default_rng()
    x = rand(rng, (4, 5), F32)
    i, j = rng.integers(-5, 5, 3).astype(np.int32), rng.integers(-20, 20, (2, 3)).astype(np.int32)
    k = rng.integers(-8, 8, (2, 2)).astype(np.int64)

    @fj.compile
    def f(x, i, j, k):
        return {
            "flat": fnp.take(x, j),
            "axis1": fnp.take(x, i, axis=1),
            "axis0_2d": fnp.take(x, k, axis=0),
            "axis-1": fnp.take(x, i, -1),
            "list": fnp.take(x, [3, -1, 0], axis=0),
            "scalar": fnp.take(x, 2, axis=1),
        }

    expect_all(
        f(x, i, j, k),
        {
            "flat": np.take(x, wrap_clip(j, 20)),
            "axis1": np.take(x, i, axis=1),
            "axis0_2d": np.take(x, wrap_clip(k, 4), axis=0),
            "axis-1": np.take(x, i, -1),
            "list": np.take(x, [3, -1, 0], axis=0),
            "scalar": np.take(x, 2, axis=1),
        },
    )


def test_take_along_axis():
    rng = np.random.default_rng()
    x = rand(rng, (4, 5), F32)
    order0, order1 = np.argsort(x, 0).astype(np.int32), np.argsort(x, 1).astype(np.int32)
    i = rng.integers(-5, 5, (4, 1)).astype(np.int32)  # one column per row
    j = rng.integers(0, 4, (2, 5)).astype(np.int32)  # along axis 0
    k = rng.integers(-5, 5, (1, 3)).astype(np.int32)  # broadcast over the rows

    @fj.compile
    def f(x, order0, order1, i, j, k):
        return {
            "sort0": fnp.take_along_axis(x, order0, 0),
            "sort1": fnp.take_along_axis(x, order1, axis=-1),
            "one_per_row": fnp.take_along_axis(x, i, 1),
            "rows": fnp.take_along_axis(x, j, 0),
            "broadcast": fnp.take_along_axis(x, k, 1),
        }

    expect_all(
        f(x, order0, order1, i, j, k),
        {
            "sort0": np.sort(x, 0),
            "sort1": np.sort(x, 1),
            "one_per_row": np.take_along_axis(x, i, 1),
            "rows": np.take_along_axis(x, j, 0),
            "broadcast": np.take_along_axis(x, np.broadcast_to(k, (4, 3)), 1),
        },
    )


@pytest.mark.parametrize("starts", [(1, 2), (0, 0), (4, 5), (-1, 3), (-7, 100), (3, -2)], ids=str)
def test_dynamic_slice_and_update_slice(starts):
    """Starts are traced; out-of-range ones follow jax.lax (negative wrap once, then the slice
    is moved to fit)."""
    rng = np.random.default_rng()
    x, update = rand(rng, (5, 6), F32), rand(rng, (2, 3), F32)
    i, j = (np.int32(s) for s in starts)

    @fj.compile
    def f(x, update, i, j):
        return {
            "slice": fnp.dynamic_slice(x, (i, j), (2, 3)),
            "slice_static_start": fnp.dynamic_slice(x, (1, j), [3, 6]),
            "update": fnp.dynamic_update_slice(x, update, (i, j)),
            "update_cast": fnp.dynamic_update_slice(x, update.astype(fnp.float16), [i, 0]),
        }

    with jax.enable_x64(False):
        want = {
            "slice": jax.lax.dynamic_slice(x, (i, j), (2, 3)),
            "slice_static_start": jax.lax.dynamic_slice(x, (1, j), (3, 6)),
            "update": jax.lax.dynamic_update_slice(x, update, (i, j)),
            "update_cast": jax.lax.dynamic_update_slice(
                x, update.astype(np.float16).astype(np.float32), (i, np.int32(0))
            ),
        }
    expect_all(f(x, update, i, j), {k: np.asarray(v) for k, v in want.items()})


# -- sorting -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F32, I32, F16, BF16, U8, BOOL], ids=name_of)
def test_sort_argsort_top_k(dtype):
    """Small integer values, so ties are frequent: argsort is stable, top_k takes the lower
    index first."""
    rng = np.random.default_rng()
    x = (rng.integers(0, 5, (3, 6)) / (2 if np.dtype(dtype).kind in "fV" else 1)).astype(dtype)

    @fj.compile
    def f(x):
        return {
            "sort": fnp.sort(x),
            "sort0": fnp.sort(x, axis=0),
            "sortNone": fnp.sort(x, None),
            "argsort": fnp.argsort(x),
            "argsort0": fnp.argsort(x, 0),
            "argsortNone": fnp.argsort(x, axis=None),
            "top3": fnp.top_k(x, 3),
            "top_all": fnp.top_k(x, 6),
            "top0": fnp.top_k(x[0], 1),
        }

    stable = {"kind": "stable"}
    with jax.enable_x64(False):
        top3, top_all, top0 = (
            tuple(np.asarray(v) for v in jax.lax.top_k(a, k))
            for a, k in ((x, 3), (x, 6), (x[0], 1))
        )
    expect_all(
        f(x),
        {
            "sort": np.sort(x),
            "sort0": np.sort(x, 0),
            "sortNone": np.sort(x, None),
            "argsort": np.argsort(x, **stable).astype(np.int32),
            "argsort0": np.argsort(x, 0, **stable).astype(np.int32),
            "argsortNone": np.argsort(x, None, **stable).astype(np.int32),
            "top3": top3,
            "top_all": top_all,
            "top0": top0,
        },
    )


def test_sort_puts_nan_last():
    x = np.array([[3, np.nan, -1, np.inf, 0], [np.nan, -np.inf, 2, np.nan, 1]], np.float32)
    got = fj.compile(lambda x: {"sort": fnp.sort(x), "argsort": fnp.argsort(x)})(x)
    expect_all(got, {"sort": np.sort(x), "argsort": np.argsort(x, kind="stable").astype(I32)})
