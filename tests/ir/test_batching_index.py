"""Batching rules of the indexing ops (take, take_along_axis, dynamic_slice,
dynamic_update_slice, scatter_add, scatter_add_along_axis) and the bit ops: ``fj.vmap`` of
each op, compiled through XLA, for every non-empty set of batched operands, equals the op's
numpy reference run on each example and stacked; indices and starts of several dtypes go out
of range on purpose (clamping and counting from the end must match per example). Gradients
through vmap, in both orders, are checked against jax.vmap / jax.grad of the same jax.numpy
code."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from opcheck import assert_matches, rand

import flowjit as fj
import flowjit.numpy as fnp
from flowjit.compiler.trace import emit
from flowjit.ir import TensorType
from flowjit.ir.ops import bits as B
from flowjit.ir.ops import index as I

F32 = np.dtype(np.float32)
SIZES = (1, 3)  # batch sizes
# index dtypes, each with a batch size (every pair would take minutes: one of each kind of
# dtype, the signed ones' negatives and the unsigned ones' huge values, is what the rules tell
# apart)
INDEXED = [(np.int8, 3), (np.uint8, 1), (np.int32, 3), (np.int64, 1), (np.uint64, 3)]


def subsets(n: int) -> list[tuple[bool, ...]]:
    """Every non-empty choice of which of ``n`` operands are batched."""
    return [flags for flags in itertools.product((False, True), repeat=n) if any(flags)]


def indices(rng, shape, dt, n: int) -> np.ndarray:
    """Indices of dtype ``dt`` into an axis of size ``n``: in range, negative (signed dtypes;
    they count from the end once), past either end, and the dtype's largest and smallest
    values at the first two positions (which would wrap if narrowed carelessly)."""
    out = rand(rng, shape, dt, -2 * n, 2 * n)
    info = np.iinfo(dt)
    flat = out.reshape(-1)
    flat[: min(2, flat.size)] = [info.max, info.min][: min(2, flat.size)]
    return out


def start(rng, n: int, size: int, dt, shape=(), extreme: bool = False) -> np.ndarray:
    """Starts of ``shape`` (the batch's, or () if shared) into an axis of size ``n`` for a
    slice of ``size``: from well before to well after the range that fits, and with
    ``extreme``, the dtype's largest and smallest values in the first and last entries."""
    out = np.asarray(rand(rng, shape, dt, -3, n - size + 3), dt)
    if extreme:
        flat = out.reshape(-1)
        flat[0], flat[-1] = (
            (np.iinfo(dt).max, np.iinfo(dt).min) if flat.size > 1 else (np.iinfo(dt).max,) * 2
        )
    return out


def vmapped(opdef, attrs, operands, flags):
    """``fj.vmap`` of the op (operands flagged in ``flags`` mapped over their first axis),
    inside ``fj.compile``."""

    def op(*xs):
        return emit(opdef, list(xs), **attrs)

    axes = tuple(0 if f else None for f in flags)
    return np.asarray(fj.compile(lambda *xs: fj.vmap(op, in_axes=axes)(*xs))(*operands))


def stacked_reference(opdef, attrs, operands, flags, size: int) -> np.ndarray:
    """The op's numpy reference run on each example, stacked."""
    return np.stack(
        [
            opdef.ref(*(x[b] if f else x for x, f in zip(operands, flags)), **attrs)
            for b in range(size)
        ]
    )


def check_batching(opdef, attrs, examples, flags, size: int, rng, what: str) -> None:
    """``examples(rng, batched) -> operands``, a batched operand with a leading batch axis of
    ``size``; ``fj.vmap`` of the op must equal the stacked reference exactly (floats up to
    the order in which a scatter adds repeats)."""
    operands = examples(rng, flags)
    got = vmapped(opdef, attrs, operands, flags)
    want = stacked_reference(opdef, attrs, operands, flags, size)
    assert_matches(got, want, want.dtype, 1.0, f"{what}, batched operands {flags}")


def lead(size: int, batched: bool) -> tuple[int, ...]:
    return (size,) if batched else ()


# -- take and take_along_axis ---------------------------------------------------------------
TAKE = [  # (x's example shape, the indices' example shape, axis)
    ((4, 5), (3,), 1),
    ((5,), (2, 3), 0),
    ((2, 4, 3), (), -2),
    ((3, 0), (0, 2), 1),  # no indices into an empty axis
]


@pytest.mark.parametrize(
    "index_dtype, size", INDEXED, ids=[f"{np.dtype(d).name}-{n}" for d, n in INDEXED]
)
@pytest.mark.parametrize("x_shape, i_shape, axis", TAKE)
def test_take(x_shape, i_shape, axis, index_dtype, size):
    rng = np.random.default_rng(0)

    def examples(rng, flags):
        n = x_shape[axis]
        return [
            rand(rng, lead(size, flags[0]) + x_shape, F32),
            indices(rng, lead(size, flags[1]) + i_shape, index_dtype, n),
        ]

    for flags in subsets(2):
        check_batching(I.take, {"axis": axis}, examples, flags, size, rng, "take")


TAKE_ALONG = [  # (x's example shape, the indices' example shape, axis)
    ((4, 5), (4, 3), 1),
    ((1, 5), (3, 2), 1),  # the other axes broadcast, x's against the indices'
    ((3, 5), (1, 7), -1),
    ((6, 2, 3), (4, 1, 3), 0),
    ((2, 3), (2, 0), 1),
]


@pytest.mark.parametrize(
    "index_dtype, size", INDEXED, ids=[f"{np.dtype(d).name}-{n}" for d, n in INDEXED]
)
@pytest.mark.parametrize("x_shape, i_shape, axis", TAKE_ALONG)
def test_take_along_axis(x_shape, i_shape, axis, index_dtype, size):
    rng = np.random.default_rng(1)

    def examples(rng, flags):
        return [
            rand(rng, lead(size, flags[0]) + x_shape, np.int32, -100, 100),
            indices(rng, lead(size, flags[1]) + i_shape, index_dtype, x_shape[axis]),
        ]

    for flags in subsets(2):
        check_batching(
            I.take_along_axis, {"axis": axis}, examples, flags, size, rng, "take_along_axis"
        )


# -- scatter_add and scatter_add_along_axis -------------------------------------------------
SCATTER = [  # (x's example shape, the indices' example shape, axis): repeats add up
    ((4, 5), (7,), 1),
    ((5,), (2, 3), 0),
    ((2, 3, 4), (), -1),
    ((2, 3), (0,), 0),
]


@pytest.mark.parametrize(
    "index_dtype, size", INDEXED, ids=[f"{np.dtype(d).name}-{n}" for d, n in INDEXED]
)
@pytest.mark.parametrize("x_shape, i_shape, axis", SCATTER)
def test_scatter_add(x_shape, i_shape, axis, index_dtype, size):
    rng = np.random.default_rng(2)
    a = axis % len(x_shape)
    u_shape = x_shape[:a] + i_shape + x_shape[a + 1 :]

    def examples(rng, flags):
        return [
            rand(rng, lead(size, flags[0]) + x_shape, np.int32, -100, 100),
            indices(rng, lead(size, flags[1]) + i_shape, index_dtype, x_shape[a]),
            rand(rng, lead(size, flags[2]) + u_shape, np.int32, -100, 100),
        ]

    for flags in subsets(3):
        check_batching(I.scatter_add, {"axis": axis}, examples, flags, size, rng, "scatter_add")


@pytest.mark.parametrize("size", SIZES)
def test_scatter_add_float_repeats(size):
    """Float updates, repeated indices: added up as per example (up to rounding order)."""
    rng = np.random.default_rng(3)

    def examples(rng, flags):
        return [
            rand(rng, lead(size, flags[0]) + (3, 4), F32),
            rand(rng, lead(size, flags[1]) + (6,), np.int32, -5, 5),
            rand(rng, lead(size, flags[2]) + (3, 6), F32),
        ]

    for flags in subsets(3):
        check_batching(I.scatter_add, {"axis": 1}, examples, flags, size, rng, "scatter_add")


ALONG = [  # (x's example shape, the indices' (and updates') example shape, axis)
    ((4, 5), (4, 7), 1),
    ((3, 2, 4), (5, 2, 4), 0),
    ((2, 3), (2, 0), -1),
]


@pytest.mark.parametrize(
    "index_dtype, size", INDEXED, ids=[f"{np.dtype(d).name}-{n}" for d, n in INDEXED]
)
@pytest.mark.parametrize("x_shape, i_shape, axis", ALONG)
def test_scatter_add_along_axis(x_shape, i_shape, axis, index_dtype, size):
    rng = np.random.default_rng(4)

    def examples(rng, flags):
        return [
            rand(rng, lead(size, flags[0]) + x_shape, np.int32, -100, 100),
            indices(rng, lead(size, flags[1]) + i_shape, index_dtype, x_shape[axis]),
            rand(rng, lead(size, flags[2]) + i_shape, np.int32, -100, 100),
        ]

    for flags in subsets(3):
        check_batching(
            I.scatter_add_along_axis,
            {"axis": axis},
            examples,
            flags,
            size,
            rng,
            "scatter_add_along_axis",
        )


# -- dynamic_slice and dynamic_update_slice -------------------------------------------------
SLICE = [  # (x's example shape, sizes)
    ((5, 6), (2, 3)),
    ((7,), (7,)),  # the whole axis: every start clamps to 0
    ((3, 4, 5), (3, 0, 2)),  # an empty slice along one axis
]
# start dtypes ("mixed": one per axis), each with a batch size
STARTS = [((np.int8,), 3), ((np.uint8,), 1), ((np.int64,), 3), ((np.uint64,), 1), ("mixed", 3)]
STARTS_IDS = [f"{w if w == 'mixed' else w[0].__name__}-{n}" for w, n in STARTS]


def slice_starts(rng, shape, sizes, dtypes, flags, size: int) -> list[np.ndarray]:
    """One start per axis, batched where flagged; the last axis's holds its dtype's extremes."""
    last = len(shape) - 1
    return [
        start(rng, n, k, dt, lead(size, f), extreme=d == last)
        for d, (n, k, dt, f) in enumerate(zip(shape, sizes, dtypes, flags))
    ]


def start_dtypes(which, ndim: int) -> tuple:
    return (np.int8, np.uint32, np.int64, np.uint8)[:ndim] if which == "mixed" else which * ndim


@pytest.mark.parametrize("which, size", STARTS, ids=STARTS_IDS)
@pytest.mark.parametrize("shape, sizes", SLICE)
def test_dynamic_slice(shape, sizes, which, size):
    rng = np.random.default_rng(5)
    dtypes = start_dtypes(which, len(shape))

    def examples(rng, flags):
        x = rand(rng, lead(size, flags[0]) + shape, np.int32, -100, 100)
        return [x, *slice_starts(rng, shape, sizes, dtypes, flags[1:], size)]

    for flags in subsets(1 + len(shape)):
        check_batching(
            I.dynamic_slice, {"sizes": sizes}, examples, flags, size, rng, "dynamic_slice"
        )


UPDATE = [  # (x's example shape, the update's example shape, x's dtype)
    ((5, 6), (2, 3), np.float32),
    ((4,), (4,), np.int32),
    ((3, 4, 2), (1, 2, 2), np.bool_),  # (exact for bools too: no arithmetic on the values)
    ((5, 6), (0, 3), np.float32),
]


@pytest.mark.parametrize("which, size", STARTS, ids=STARTS_IDS)
@pytest.mark.parametrize("shape, u_shape, dtype", UPDATE)
def test_dynamic_update_slice(shape, u_shape, dtype, which, size):
    rng = np.random.default_rng(6)
    dtypes = start_dtypes(which, len(shape))

    def examples(rng, flags):
        x = rand(rng, lead(size, flags[0]) + shape, dtype)
        update = rand(rng, lead(size, flags[1]) + u_shape, dtype)
        return [x, update, *slice_starts(rng, shape, u_shape, dtypes, flags[2:], size)]

    for flags in subsets(2 + len(shape)):
        check_batching(
            I.dynamic_update_slice, {}, examples, flags, size, rng, "dynamic_update_slice"
        )


def test_nested_vmap_per_example_indices():
    """vmap of vmap: the rules see operands already batched once (both levels batched)."""
    rng = np.random.default_rng(7)
    x = rand(rng, (2, 3, 6), F32)
    idx = indices(rng, (2, 3, 4), np.int32, 6)
    s = rand(rng, (2, 3), np.int32, -3, 6)
    u = rand(rng, (2, 3, 2), F32)

    def per_example(x, idx, s, u):
        taken = emit(I.take, [x, idx], axis=0)
        window = emit(I.dynamic_slice, [x, s], sizes=(2,))
        written = emit(I.dynamic_update_slice, [x, u, s])
        added = emit(I.scatter_add, [x, idx, taken], axis=0)
        return taken, window, written, added

    got = fj.compile(lambda *a: fj.vmap(fj.vmap(per_example))(*a))(x, idx, s, u)
    for b, c in itertools.product(range(2), range(3)):
        x_, i_, s_, u_ = x[b, c], idx[b, c], s[b, c], u[b, c]
        taken = I.take.ref(x_, i_, axis=0)
        want = [
            taken,
            I.dynamic_slice.ref(x_, s_, sizes=(2,)),
            I.dynamic_update_slice.ref(x_, u_, s_),
            I.scatter_add.ref(x_, i_, taken, axis=0),
        ]
        for g, w in zip(got, want):
            np.testing.assert_allclose(np.asarray(g)[b, c], w, rtol=1e-6)


# -- bit ops --------------------------------------------------------------------------------
SHIFTS = [B.shift_left, B.shift_right_logical, B.shift_right_arithmetic]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    "dtype", [np.int8, np.uint8, np.int32, np.uint64], ids=lambda d: d.__name__
)
@pytest.mark.parametrize("opdef", SHIFTS, ids=lambda o: o.name)
def test_shift(opdef, dtype, size):
    rng = np.random.default_rng(8)
    width = 8 * np.dtype(dtype).itemsize
    info = np.iinfo(dtype)

    def examples(rng, flags):
        x = rng.integers(info.min, info.max, lead(size, flags[0]) + (3, 4), dtype, endpoint=True)
        # amounts below, at and past the width (and negative: huge as unsigned), broadcasting
        amount = rand(rng, lead(size, flags[1]) + (4,), dtype, max(-2, info.min), width + 2)
        return [x, amount]

    for flags in subsets(2):
        check_batching(opdef, {}, examples, flags, size, rng, opdef.name)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    "source, target", [(np.float32, np.int32), (np.uint8, np.int8), (np.float16, np.int16)]
)
def test_bitcast_convert(source, target, size):
    rng = np.random.default_rng(9)

    def examples(rng, flags):
        return [rand(rng, lead(size, flags[0]) + (2, 3), source, -100, 100)]

    check_batching(
        B.bitcast_convert,
        {"dtype": np.dtype(target)},
        examples,
        (True,),
        size,
        rng,
        "bitcast_convert",
    )


# -- gradients through vmap, both orders, against jax ---------------------------------------
def j_index(i, n: int):
    """take's index semantics in jax: count from the end once, then clamp."""
    return jnp.clip(jnp.where(i < 0, i + n, i), 0, n - 1)


def j_start(s):
    """A start as flowjit clamps it (jax's dynamic_slice would count a negative one from the
    end; XLA clamps the rest), as int32 (jax's batched dynamic_slice wants one index dtype)."""
    return jnp.maximum(s, 0).astype(jnp.int32)


def j_scatter_add_along_axis(x, i, u, axis):
    where = list(jnp.indices(i.shape, sparse=True))
    where[axis] = j_index(i, x.shape[axis])
    return x.at[tuple(where)].add(u)


# (op, attrs, example shapes and dtypes of the operands, the float operands, the jax code)
GRAD_CASES = [
    (
        I.take,
        {"axis": 1},
        [((3, 5), F32), ((4,), np.int32)],
        (0,),
        lambda x, i: jnp.take(x, j_index(i, 5), axis=1),
    ),
    (
        I.take_along_axis,
        {"axis": 0},
        [((5, 3), F32), ((4, 3), np.int8)],
        (0,),
        lambda x, i: jnp.take_along_axis(x, j_index(i, 5), axis=0),
    ),
    (
        I.dynamic_slice,
        {"sizes": (2, 3)},
        [((4, 6), F32), ((), np.int32), ((), np.uint8)],
        (0,),
        lambda x, s, t: lax.dynamic_slice(x, (j_start(s), j_start(t)), (2, 3)),
    ),
    (
        I.dynamic_update_slice,
        {},
        [((4, 6), F32), ((2, 3), F32), ((), np.int8), ((), np.int32)],
        (0, 1),
        lambda x, u, s, t: lax.dynamic_update_slice(x, u, (j_start(s), j_start(t))),
    ),
    (
        I.scatter_add,
        {"axis": 0},
        [((4, 3), F32), ((5,), np.int32), ((5, 3), F32)],
        (0, 2),
        lambda x, i, u: x.at[j_index(i, 4)].add(u),
    ),
    (
        I.scatter_add_along_axis,
        {"axis": 1},
        [((3, 4), F32), ((3, 6), np.uint8), ((3, 6), F32)],
        (0, 2),
        lambda x, i, u: j_scatter_add_along_axis(x, i, u, 1),
    ),
]


def grad_operands(rng, specs, flags, size: int) -> list[np.ndarray]:
    out = []
    for (shape, dtype), f in zip(specs, flags):
        full = lead(size, f) + shape
        if np.dtype(dtype) == F32:
            out.append(rand(rng, full, F32))
        else:  # indices or starts, out of range too
            out.append(rand(rng, full, dtype, max(-6, np.iinfo(dtype).min), 8))
    return out


@pytest.mark.parametrize("size", [3])  # (a batch of one: the rules' own tests above)
@pytest.mark.parametrize(
    "opdef, attrs, specs, floats, jax_fn", GRAD_CASES, ids=[c[0].name for c in GRAD_CASES]
)
def test_grad_through_vmap(opdef, attrs, specs, floats, jax_fn, size):
    """fj.vmap(fj.grad(loss)) against jax.vmap(jax.grad(loss)), and fj.grad of the summed
    fj.vmap against jax.grad of the summed jax.vmap, for every set of batched operands."""
    rng = np.random.default_rng(10)
    example = opdef.infer(tuple(TensorType(s, np.dtype(d)) for s, d in specs), attrs)[0]
    weights = rng.standard_normal(example.shape).astype(F32)

    def loss(*xs):
        return fnp.sum(emit(opdef, list(xs), **attrs) * weights)

    def j_loss(*xs):
        return jnp.sum(jax_fn(*xs) * weights)

    for flags in subsets(len(specs)):
        operands = grad_operands(rng, specs, flags, size)
        axes = tuple(0 if f else None for f in flags)
        for order, (got, want) in grads_both_orders(loss, j_loss, floats, axes).items():
            for k, (g, w) in enumerate(zip(got(*operands), want(*operands))):
                np.testing.assert_allclose(
                    np.asarray(g),
                    np.asarray(w),
                    rtol=1e-5,
                    atol=1e-5,
                    err_msg=f"{order} {k}, {opdef.name}, batched operands {flags}",
                )


def grads_both_orders(loss, j_loss, floats, axes) -> dict:
    """By order, (flowjit's, jax's) gradient functions: of each example's loss under vmap,
    and of the batch's summed losses."""

    def total(*xs):
        return fnp.sum(fj.vmap(loss, in_axes=axes)(*xs))

    def j_total(*xs):
        return jnp.sum(jax.vmap(j_loss, in_axes=axes)(*xs))

    return {
        "vmap(grad)": (
            fj.compile(lambda *xs: fj.vmap(fj.grad(loss, floats), in_axes=axes)(*xs)),
            jax.vmap(jax.grad(j_loss, floats), in_axes=axes),
        ),
        "grad(vmap)": (fj.compile(fj.grad(total, floats)), jax.grad(j_total, floats)),
    }
