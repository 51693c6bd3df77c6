"""take, take_along_axis, dynamic_slice and dynamic_update_slice against numpy, every operand
dtype and every index dtype, with indices and starts out of range on purpose."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import OpCase, add_op, check_case, check_grad, params, rand

from flowjit.ir import DTypeError, ShapeError
from flowjit.ir.ops import index as I
from flowjit.ir.ops.rules import ANY, INTS, NUMERIC

F32 = np.dtype(np.float32)


def some_indices(rng: np.random.Generator, shape: tuple[int, ...], dt, n: int) -> np.ndarray:
    """Indices of dtype ``dt`` for an axis of size ``n``: in range, negative (signed dtypes),
    past the end and, at position 0, the dtype's largest value."""
    idx = rand(rng, shape, dt, -2 * n, 2 * n)
    if idx.size:
        idx.reshape(-1)[0] = np.iinfo(dt).max
    return idx


def fixed(indices: np.ndarray, n: int) -> np.ndarray:
    """The spec spelled out on Python ints: count from the end once, then clamp."""
    spec = np.vectorize(lambda v: min(max(v + n if v < 0 else v, 0), n - 1), otypes=[np.int64])
    return spec(indices.astype(object)) if indices.size else indices.astype(np.int64)


def take_case(x_shape, i_shape, axis, index_dtype=None):
    def make(rng, dt):
        x_dt, i_dt = (F32, dt) if index_dtype is None else (dt, index_dtype)
        x = rand(rng, x_shape, x_dt)
        return [x, some_indices(rng, i_shape, i_dt, x_shape[axis])], {"axis": axis}

    return make


def np_take(x, indices, axis):
    return np.take(x, fixed(indices, x.shape[axis]), axis=axis)


def np_take_along_axis(x, indices, axis):
    return np.take_along_axis(x, fixed(indices, x.shape[axis]), axis=axis)


def starts_of(rng, shape, sizes, dtypes):
    """One scalar start per axis, each of its own dtype, from well before to well after the
    range that fits (so clamping happens), with the largest value on the last axis."""
    starts = [
        np.array(rand(rng, (), dt, -3, n - size + 3), dt)
        for dt, n, size in zip(dtypes, shape, sizes)
    ]
    starts[-1] = np.array(np.iinfo(dtypes[-1]).max, dtypes[-1])
    return starts


MIXED = (np.int8, np.uint32, np.int64)


def slice_case(shape, sizes, index_dtype=None):
    def make(rng, dt):
        x_dt, start_dts = (dt, MIXED) if index_dtype is None else (F32, (dt,) * len(shape))
        return [rand(rng, shape, x_dt), *starts_of(rng, shape, sizes, start_dts)], {"sizes": sizes}

    return make


def update_case(shape, update_shape, index_dtype=None):
    def make(rng, dt):
        x_dt, start_dts = (dt, MIXED) if index_dtype is None else (F32, (dt,) * len(shape))
        return [
            rand(rng, shape, x_dt),
            rand(rng, update_shape, x_dt),
            *starts_of(rng, shape, update_shape, start_dts),
        ], {}

    return make


def fitting(starts, shape, sizes):
    """Python slices at each start clamped to [0, dim - size]."""
    begins = [min(max(int(s), 0), dim - size) for s, dim, size in zip(starts, shape, sizes)]
    return tuple(slice(b, b + size) for b, size in zip(begins, sizes))


def np_dynamic_slice(x, *starts, sizes):
    return x[fitting(starts, x.shape, sizes)]


def np_dynamic_update_slice(x, update, *starts):
    out = x.copy()
    out[fitting(starts, x.shape, update.shape)] = update
    return out


def scatter_case(x_shape, i_shape, axis, index_dtype=None):
    def make(rng, dt):
        x_dt, i_dt = (F32, dt) if index_dtype is None else (dt, index_dtype)
        (_, indices), _ = take_case(x_shape, i_shape, axis, i_dt)(rng, F32)
        axis_ = axis % len(x_shape)
        updates = rand(rng, x_shape[:axis_] + i_shape + x_shape[axis_ + 1 :], x_dt)
        return [rand(rng, x_shape, x_dt), indices, updates], {"axis": axis}

    return make


def np_scatter_add(x, indices, updates, axis):
    """Every update added in a loop over the indices, on the spelled-out (fixed) indices."""
    out = x.copy()
    axis %= x.ndim
    fixed_indices = fixed(indices, x.shape[axis])
    moved = np.moveaxis(out, axis, 0)  # a view: adding to it adds to out
    # updates' index dims moved in front, in the indices' order
    lead = np.moveaxis(updates, list(range(axis, axis + indices.ndim)), list(range(indices.ndim)))
    for where in np.ndindex(indices.shape):
        moved[fixed_indices[where]] += lead[where]
    return out


def along_case(x_shape, i_shape, axis, index_dtype=None):
    def make(rng, dt):
        x_dt, i_dt = (F32, dt) if index_dtype is None else (dt, index_dtype)
        (_, indices), _ = take_case(x_shape, i_shape, axis, i_dt)(rng, F32)
        return [rand(rng, x_shape, x_dt), indices, rand(rng, i_shape, x_dt)], {"axis": axis}

    return make


def np_scatter_add_along_axis(x, indices, updates, axis):
    """Every update added in a loop over its coordinates, at its (fixed) index along axis."""
    out = x.copy()
    axis %= x.ndim
    fixed_indices = fixed(indices, x.shape[axis])
    for where in np.ndindex(indices.shape):
        target = list(where)
        target[axis] = fixed_indices[where]
        out[tuple(target)] += updates[where]
    return out


CASES = [
    OpCase(I.take, ANY, take_case((4, 5, 2), (2, 3), 1, np.int32), np_take),
    OpCase(I.take, INTS, take_case((6, 3), (7,), 0), np_take, name="take_index_dtypes"),
    OpCase(I.take, ANY, take_case((5, 2), (), -2, np.int64), np_take, name="take_scalar_index"),
    OpCase(I.take, ANY, take_case((3, 0), (0, 2), 1, np.int32), np_take, name="take_no_indices"),
    OpCase(
        I.take_along_axis, ANY, take_case((3, 6, 1), (1, 4, 5), 1, np.int32), np_take_along_axis
    ),
    OpCase(
        I.take_along_axis,
        INTS,
        take_case((5, 4), (3, 4), 0),
        np_take_along_axis,
        name="take_along_axis_index_dtypes",
    ),
    OpCase(
        I.take_along_axis,
        ANY,
        take_case((2, 3), (2, 0), -1, np.int16),
        np_take_along_axis,
        name="take_along_axis_empty",
    ),
    OpCase(
        I.scatter_add_along_axis,
        NUMERIC,
        along_case((3, 4, 5), (3, 6, 5), 1, np.int32),  # 6 indices into 4: repeats add up
        np_scatter_add_along_axis,
    ),
    OpCase(
        I.scatter_add_along_axis,
        INTS,
        along_case((5, 4), (5, 2), -1),
        np_scatter_add_along_axis,
        name="scatter_add_along_axis_index_dtypes",
    ),
    OpCase(
        I.scatter_add_along_axis,
        NUMERIC,
        along_case((2, 3), (2, 0), 1, np.int64),
        np_scatter_add_along_axis,
        name="scatter_add_along_axis_empty",
    ),
    OpCase(I.dynamic_slice, ANY, slice_case((5, 6, 7), (2, 6, 3)), np_dynamic_slice),
    OpCase(
        I.dynamic_slice,
        INTS,
        slice_case((8, 9), (0, 4), INTS),
        np_dynamic_slice,
        name="dynamic_slice_index_dtypes",
    ),
    OpCase(I.dynamic_update_slice, ANY, update_case((5, 6, 7), (2, 6, 3)), np_dynamic_update_slice),
    OpCase(
        I.dynamic_update_slice,
        INTS,
        update_case((8, 9), (3, 4), INTS),
        np_dynamic_update_slice,
        name="dynamic_update_slice_index_dtypes",
    ),
    OpCase(I.scatter_add, NUMERIC, scatter_case((4, 5, 2), (3, 4), 1, np.int32), np_scatter_add),
    OpCase(
        I.scatter_add,
        INTS,
        scatter_case((6, 3), (9,), 0),
        np_scatter_add,
        name="scatter_add_index_dtypes",
    ),
    OpCase(
        I.scatter_add,
        NUMERIC,
        scatter_case((5, 2), (), -2, np.int64),
        np_scatter_add,
        name="scatter_add_scalar_index",
    ),
    OpCase(
        I.scatter_add,
        NUMERIC,
        scatter_case((3, 0), (0, 2), 1, np.int32),
        np_scatter_add,
        name="scatter_add_no_indices",
    ),
]


@pytest.mark.parametrize("case, dtype", params(CASES))
def test_op_against_numpy(case, dtype):
    check_case(case, dtype)


GRAD_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


@pytest.mark.parametrize(
    "case, dtype",
    [p for p in params(CASES) if p.values[0].opdef.vjp is not None and p.values[1] in GRAD_DTYPES],
)
def test_gradient(case, dtype):
    check_grad(case, dtype)


I32 = np.dtype(np.int32)


def test_take_shape_errors():
    with pytest.raises(DTypeError, match="indices has dtype f32"):
        add_op(I.take, [((3,), F32), ((2,), F32)], axis=0)
    with pytest.raises(ShapeError, match="out of range"):
        add_op(I.take, [((3,), F32), ((2,), I32)], axis=1)
    with pytest.raises(ShapeError, match="empty axis 1"):
        add_op(I.take, [((3, 0), F32), ((2,), I32)], axis=1)


def test_take_along_axis_shape_errors():
    with pytest.raises(ShapeError, match="must have the rank"):
        add_op(I.take_along_axis, [((3, 4), F32), ((4,), I32)], axis=1)
    with pytest.raises(ShapeError, match="cannot broadcast"):
        add_op(I.take_along_axis, [((3, 4), F32), ((2, 7), I32)], axis=1)


def test_dynamic_slice_shape_errors():
    scalar = ((), I32)
    with pytest.raises(ShapeError, match="one start index per axis"):
        add_op(I.dynamic_slice, [((3, 4), F32), scalar], sizes=(1, 1))
    with pytest.raises(ShapeError, match="must be a scalar"):
        add_op(I.dynamic_slice, [((3, 4), F32), scalar, ((1,), I32)], sizes=(1, 1))
    with pytest.raises(DTypeError, match="start index 0"):
        add_op(I.dynamic_slice, [((3, 4), F32), ((), F32), scalar], sizes=(1, 1))
    with pytest.raises(ShapeError, match="do not fit"):
        add_op(I.dynamic_slice, [((3, 4), F32), scalar, scalar], sizes=(1, 5))
    with pytest.raises(ShapeError, match="do not fit"):
        add_op(I.dynamic_slice, [((3, 4), F32), scalar, scalar], sizes=(1,))


def test_dynamic_update_slice_shape_errors():
    scalar = ((), I32)
    with pytest.raises(DTypeError, match="different dtypes"):
        add_op(I.dynamic_update_slice, [((3, 4), F32), ((1, 1), I32), scalar, scalar])
    with pytest.raises(ShapeError, match="does not fit"):
        add_op(I.dynamic_update_slice, [((3, 4), F32), ((4, 1), F32), scalar, scalar])
    with pytest.raises(ShapeError, match="does not fit"):
        add_op(I.dynamic_update_slice, [((3, 4), F32), ((1,), F32), scalar, scalar])
    with pytest.raises(ShapeError, match="got 1 operand"):
        add_op(I.dynamic_update_slice, [((3, 4), F32)])


def test_scatter_add_shape_errors():
    with pytest.raises(ShapeError, match=r"must have shape \(3, 2, 4\)"):
        add_op(I.scatter_add, [((3, 5), F32), ((2, 4), I32), ((3, 2), F32)], axis=1)
    with pytest.raises(DTypeError, match="indices has dtype f32"):
        add_op(I.scatter_add, [((3,), F32), ((2,), F32), ((2,), F32)], axis=0)
    with pytest.raises(DTypeError, match="different dtypes"):
        add_op(I.scatter_add, [((3,), F32), ((2,), I32), ((2,), I32)], axis=0)
    with pytest.raises(ShapeError, match="empty axis 0"):
        add_op(I.scatter_add, [((0,), F32), ((2,), I32), ((2,), F32)], axis=0)


@pytest.mark.x64  # (float64 data, compared to 1e-12, and 64-bit indices)
@pytest.mark.parametrize("index_dtype", [np.dtype(d).name for d in INTS])
@pytest.mark.parametrize("opdef", [I.take, I.take_along_axis], ids=lambda o: o.name)
def test_gather_gradient_wraps_and_clamps_every_index_dtype(opdef, index_dtype):
    """The gradients of take and take_along_axis add g at the indices the gathers read, for
    negative, past-the-end and huge (unsigned) indices of every dtype, repeats adding up."""
    import flowjit as fj
    import flowjit.numpy as fnp
    from flowjit.compiler.trace import emit

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4))
    indices = some_indices(rng, (3, 4), np.dtype(index_dtype), 5)
    w = rng.standard_normal((3, 4) if opdef is I.take_along_axis else (3, 4, 4))
    got = fj.grad(lambda x: (emit(opdef, [x, fnp.asarray(indices)], axis=0) * w).sum())(x)
    want = np.zeros_like(x)
    if opdef is I.take:
        np.add.at(want, fixed(indices, 5), w)
    else:
        np.add.at(want, (fixed(indices, 5), np.arange(4)), w)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12)
