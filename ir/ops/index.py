"""Indexing by runtime integer tensors: take, take_along_axis, dynamic_slice and
dynamic_update_slice, and scatter_add (take's transpose, which its gradient needs). Indices
never fail at run time: ``take`` indices wrap once if negative, then clamp to the axis; slice
starts clamp so the whole slice fits (XLA's semantics)."""

from __future__ import annotations

import numpy as np

from ..core import OpDef, register
from ..errors import ShapeError
from ..types import TensorType
from .rules import (
    ANY,
    INTS,
    NUMERIC,
    broadcast_shapes,
    check_arity,
    check_dtype,
    same_dtype,
    single_axis,
)


def wrap_clamp(indices: np.ndarray, n: int) -> np.ndarray:
    """``indices`` into an axis of size ``n >= 1`` as int64: negative ones count from the end
    once (numpy), then everything is clamped to [0, n - 1]."""
    if indices.dtype.kind == "u":  # clamped first: a huge one must not turn negative in int64
        return np.minimum(indices.astype(np.uint64), np.uint64(n - 1)).astype(np.int64)
    indices = indices.astype(np.int64)
    return np.clip(np.where(indices < 0, indices + n, indices), 0, n - 1)


def _check_axis_nonempty(x: TensorType, axis: int, indices: TensorType) -> None:
    if x.shape[axis] == 0 and indices.size > 0:
        raise ShapeError(f"cannot index into empty axis {axis} of {x}")


def _take_rule(types: tuple[TensorType, ...], *, axis: int) -> TensorType:
    check_arity(types, 2)
    x, indices = types
    check_dtype(x, ANY)
    check_dtype(indices, INTS, "indices")
    axis = single_axis(axis, x.ndim)
    _check_axis_nonempty(x, axis, indices)
    return TensorType(x.shape[:axis] + indices.shape + x.shape[axis + 1 :], x.dtype)


def _take_ref(x: np.ndarray, indices: np.ndarray, *, axis: int) -> np.ndarray:
    axis = single_axis(axis, x.ndim)
    if indices.size == 0:  # nothing to read: the axis may be empty too
        return np.zeros(x.shape[:axis] + indices.shape + x.shape[axis + 1 :], x.dtype)
    return np.take(x, wrap_clamp(indices, x.shape[axis]), axis=axis)


take = register(
    OpDef(
        "take",
        _take_rule,
        _take_ref,
        attrs={"axis": "int"},
        doc="numpy.take(x, indices, axis): the output has shape x.shape[:axis] + "
        "indices.shape + x.shape[axis+1:]; a negative index counts from the "
        "end once, then out-of-range indices are clamped to [0, n-1] (numpy "
        "mode='clip' after wrapping), so no index is an error",
    )
)


def _along_rule(types: tuple[TensorType, ...], *, axis: int) -> TensorType:
    check_arity(types, 2)
    x, indices = types
    check_dtype(x, ANY)
    check_dtype(indices, INTS, "indices")
    axis = single_axis(axis, x.ndim)
    if indices.ndim != x.ndim:
        raise ShapeError(
            f"indices {indices} must have the rank of {x}; add unit dimensions "
            "(reshape or expand_dims) to index along one axis"
        )
    _check_axis_nonempty(x, axis, indices)
    # Every axis but `axis` broadcasts between x and indices; `axis` takes the indices' size.
    other = broadcast_shapes(
        *(tuple(1 if d == axis else n for d, n in enumerate(t.shape)) for t in (x, indices))
    )
    return TensorType(other[:axis] + (indices.shape[axis],) + other[axis + 1 :], x.dtype)


def _along_ref(x: np.ndarray, indices: np.ndarray, *, axis: int) -> np.ndarray:
    axis = single_axis(axis, x.ndim)
    if indices.size == 0:
        out = _along_rule(
            (TensorType(x.shape, x.dtype), TensorType(indices.shape, indices.dtype)), axis=axis
        )
        return np.zeros(out.shape, x.dtype)
    return np.take_along_axis(x, wrap_clamp(indices, x.shape[axis]), axis)


take_along_axis = register(
    OpDef(
        "take_along_axis",
        _along_rule,
        _along_ref,
        attrs={"axis": "int"},
        doc="numpy.take_along_axis(x, indices, axis): indices has x's rank and its other axes "
        "broadcast against x's; indices wrap and clamp as in take",
    )
)


def _check_starts(x: TensorType, starts: tuple[TensorType, ...]) -> None:
    if len(starts) != x.ndim:
        raise ShapeError(f"expects one start index per axis of {x} ({x.ndim}), got {len(starts)}")
    for d, start in enumerate(starts):
        check_dtype(start, INTS, f"start index {d}")
        if start.ndim != 0:
            raise ShapeError(f"start index {d} must be a scalar, got {start}")


def clamped_starts(
    starts: tuple[np.ndarray, ...], shape: tuple[int, ...], sizes: tuple[int, ...]
) -> tuple[int, ...]:
    """Each start clamped to [0, dim - size] so that the slice fits, as XLA does."""
    return tuple(min(max(int(s), 0), dim - size) for s, dim, size in zip(starts, shape, sizes))


def _dynamic_slice_rule(types: tuple[TensorType, ...], *, sizes: tuple[int, ...]) -> TensorType:
    if not types:
        raise ShapeError("expects an operand and its start indices, got no operands")
    x, *starts = types
    check_dtype(x, ANY)
    _check_starts(x, tuple(starts))
    if len(sizes) != x.ndim or any(not 0 <= s <= n for s, n in zip(sizes, x.shape)):
        raise ShapeError(
            f"sizes {tuple(sizes)} do not fit {x}: give one size per axis, each in [0, dim]"
        )
    return TensorType(tuple(sizes), x.dtype)


def _dynamic_slice_ref(x: np.ndarray, *starts: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    begin = clamped_starts(starts, x.shape, sizes)
    return x[tuple(slice(b, b + s) for b, s in zip(begin, sizes))].copy()


dynamic_slice = register(
    OpDef(
        "dynamic_slice",
        _dynamic_slice_rule,
        _dynamic_slice_ref,
        attrs={"sizes": "ints"},
        doc="x[s0:s0+sizes[0], ...] for scalar int start tensors s0, s1, ... (one per axis, any "
        "int dtypes); each start is clamped to [0, dim - size] so the slice always fits",
    )
)


def _dynamic_update_slice_rule(types: tuple[TensorType, ...]) -> TensorType:
    if len(types) < 2:
        raise ShapeError(
            f"expects an operand, an update and start indices, got {len(types)} operand(s)"
        )
    x, update, *starts = types
    check_dtype(x, ANY)
    same_dtype((x, update))
    if update.ndim != x.ndim or any(u > n for u, n in zip(update.shape, x.shape)):
        raise ShapeError(
            f"update {update} does not fit in {x}: it needs the same rank and no larger dimensions"
        )
    _check_starts(x, tuple(starts))
    return x


def _dynamic_update_slice_ref(x: np.ndarray, update: np.ndarray, *starts: np.ndarray) -> np.ndarray:
    begin = clamped_starts(starts, x.shape, update.shape)
    out = x.copy()
    out[tuple(slice(b, b + s) for b, s in zip(begin, update.shape))] = update
    return out


dynamic_update_slice = register(
    OpDef(
        "dynamic_update_slice",
        _dynamic_update_slice_rule,
        _dynamic_update_slice_ref,
        doc="x with update written at (s0, s1, ...), scalar int start tensors clamped as in "
        "dynamic_slice so the update always fits; update has x's dtype and rank",
    )
)


def _scatter_types(types: tuple[TensorType, ...], axis: int) -> tuple:
    """A scatter's (x, indices, updates, axis), their dtypes checked and the axis made
    non-negative."""
    check_arity(types, 3)
    x, indices, updates = types
    check_dtype(x, NUMERIC)
    check_dtype(indices, INTS, "indices")
    same_dtype((x, updates))
    axis = single_axis(axis, x.ndim)
    _check_axis_nonempty(x, axis, indices)
    return x, indices, updates, axis


def _scatter_add_rule(types: tuple[TensorType, ...], *, axis: int) -> TensorType:
    x, indices, updates, axis = _scatter_types(types, axis)
    want = x.shape[:axis] + indices.shape + x.shape[axis + 1 :]
    if updates.shape != want:
        raise ShapeError(
            f"updates {updates} must have shape {want} (x.shape[:axis] + indices.shape + "
            f"x.shape[axis+1:], the shape take(x, indices, axis={axis}) would give)"
        )
    return x


def _scatter_add_ref(
    x: np.ndarray, indices: np.ndarray, updates: np.ndarray, *, axis: int
) -> np.ndarray:
    axis = single_axis(axis, x.ndim)
    if not indices.size:
        return x.copy()
    return _added_at(x, (slice(None),) * axis + (wrap_clamp(indices, x.shape[axis]),), updates)


def _added_at(x: np.ndarray, where: tuple, updates: np.ndarray) -> np.ndarray:
    """x with ``updates`` added at ``where`` (numpy.add.at: repeats add up); float16 and
    bfloat16 are summed in float32 and rounded once."""
    low = x.dtype.itemsize == 2 and x.dtype.kind in "fV"
    out = x.astype(np.float32) if low else x.copy()
    np.add.at(out, where, updates.astype(out.dtype))
    return out.astype(x.dtype) if low else out


scatter_add = register(
    OpDef(
        "scatter_add",
        _scatter_add_rule,
        _scatter_add_ref,
        attrs={"axis": "int"},
        doc="(x, indices, updates): x plus each slice of updates added at its index along "
        "`axis` (numpy.add.at; repeated indices add up), the transpose of take: updates has "
        "take(x, indices, axis)'s shape and indices wrap and clamp as in take",
    )
)


def _scatter_add_along_axis_rule(types: tuple[TensorType, ...], *, axis: int) -> TensorType:
    x, indices, updates, axis = _scatter_types(types, axis)
    others = [d for d in range(x.ndim) if d != axis]
    if (
        updates.shape != indices.shape
        or indices.ndim != x.ndim
        or any(indices.shape[d] != x.shape[d] for d in others)
    ):
        raise ShapeError(
            f"indices {indices} and updates {updates} must have one shape, x's {x} but along "
            f"axis {axis} (take_along_axis(x, indices, axis={axis})'s shape)"
        )
    return x


def _scatter_add_along_axis_ref(
    x: np.ndarray, indices: np.ndarray, updates: np.ndarray, *, axis: int
) -> np.ndarray:
    axis = single_axis(axis, x.ndim)
    if not indices.size:
        return x.copy()
    where = list(np.indices(indices.shape, sparse=True))
    where[axis] = wrap_clamp(indices, x.shape[axis])
    return _added_at(x, tuple(where), updates)


scatter_add_along_axis = register(
    OpDef(
        "scatter_add_along_axis",
        _scatter_add_along_axis_rule,
        _scatter_add_along_axis_ref,
        attrs={"axis": "int"},
        doc="(x, indices, updates): x plus each element of updates added at its index along "
        "`axis`, the other coordinates kept (repeated indices add up): the transpose of "
        "take_along_axis; indices and updates have its result's shape, indices wrap and clamp",
    )
)


# -- gradient rules (ir/grad.py) -------------------------------------------------------------
def _wrap_clamp(e, indices, n: int):
    """``wrap_clamp`` built with IR ops: ``indices`` as int64 in [0, n - 1]."""
    from .elementwise import add, convert, lt, max_, min_, select

    dtype, i64 = indices.type.dtype, np.dtype(np.int64)
    if dtype.kind == "u":  # clamped in its own dtype first, as in wrap_clamp
        indices = e(min_, indices, e.constant(min(n - 1, int(np.iinfo(dtype).max)), dtype))
    if dtype != i64:
        indices = e(convert, indices, dtype=i64)
    if dtype.kind == "i":
        negative = e(lt, indices, e.constant(0, i64))
        indices = e(select, negative, e(add, indices, e.constant(n, i64)), indices)
    return e(min_, e(max_, indices, e.constant(0, i64)), e.constant(n - 1, i64))


@take.defvjp
def _take_vjp(e, op, g):  # a gather's transpose: add each slice of g back where it came from
    x, indices = op.inputs
    return [e(scatter_add, e.zeros(x.type), indices, g, axis=op.attrs["axis"]), None]


def take_along_axis_transpose(e, g, indices, x: TensorType, axis: int):
    """The cotangent of x in ``take_along_axis(x, indices, axis)`` for the output's cotangent
    ``g``: each element of g is added back to one element of x broadcast to the output's shape
    (x's own axis kept), and the broadcast is then summed away. Also the transpose of top_k's
    and sort's gathers. The scatter keeps every other axis (a batch split over devices stays
    split)."""
    from .shape import broadcast_to

    axis = single_axis(axis, x.ndim)
    out = g.type
    if out.size == 0:
        return e.zeros(x)
    n = x.shape[axis]
    full = out.shape[:axis] + (n,) + out.shape[axis + 1 :]
    if indices.type.shape != out.shape:
        indices = e(broadcast_to, indices, shape=out.shape)
    zeros = e.zeros(TensorType(full, x.dtype))
    summed = e(scatter_add_along_axis, zeros, indices, g, axis=axis)
    return e.unbroadcast(summed, x)


@take_along_axis.defvjp
def _take_along_axis_vjp(e, op, g):
    x, indices = op.inputs
    return [take_along_axis_transpose(e, g, indices, x.type, op.attrs["axis"]), None]


@dynamic_slice.defvjp
def _dynamic_slice_vjp(e, op, g):  # g written into zeros at the same (clamped) starts
    x, *starts = op.inputs
    return [e(dynamic_update_slice, e.zeros(x.type), g, *starts)] + [None] * len(starts)


@dynamic_update_slice.defvjp
def _dynamic_update_slice_vjp(e, op, g):  # x: g but where overwritten; update: that window
    _, update, *starts = op.inputs
    return [
        e(dynamic_update_slice, g, e.zeros(update.type), *starts),
        e(dynamic_slice, g, *starts, sizes=update.type.shape),
    ] + [None] * len(starts)


@scatter_add_along_axis.defvjp
def _scatter_add_along_axis_vjp(e, op, g):  # x: g; updates: what take_along_axis reads there
    _, indices, _ = op.inputs
    return [g, None, e(take_along_axis, g, indices, axis=op.attrs["axis"])]


@scatter_add.defvjp
def _scatter_add_vjp(e, op, g):  # x: g; updates: what take reads at the same indices
    _, indices, _ = op.inputs
    return [g, None, e(take, g, indices, axis=op.attrs["axis"])]


# -- batching rules (ir/batching.py): the batch axis is first, the example's axes follow ----
# Per-example indices make every rule a gather or scatter along one axis of the batch, with
# the batch axis as one of take_along_axis's (or scatter_add_along_axis's) other axes.
def _batch_lead(e, value, batched: bool):
    """``value`` with a batch axis: its own, or one of size 1 for a shared value (which
    take_along_axis and select broadcast against the batch)."""
    from .shape import reshape

    return value if batched else e(reshape, value, shape=(1, *value.type.shape))


def _along(e, indices, axis: int, ndim: int):
    """Batched ``indices`` of shape (batch, k) reshaped to index ``axis`` of a batch of
    rank-``ndim`` examples: (batch, 1, ..., k, ..., 1), k at ``axis + 1``."""
    from .shape import reshape

    lead, k = indices.type.shape
    return e(reshape, indices, shape=(lead,) + (1,) * axis + (k,) + (1,) * (ndim - axis - 1))


@take.defbatch
def _take_batch(e, op, args, batched):
    """A batched x with shared indices: the axis moves up by one. Shared x, batched indices:
    the batch axis comes out where the indices' axes do and moves to the front. Both: each
    example reads its own x, a take_along_axis with the indices flattened (it wraps and clamps
    them as take does)."""
    from .shape import reshape

    x, indices = args
    xt, it = op.inputs[0].type, op.inputs[1].type
    axis = single_axis(op.attrs["axis"], xt.ndim)
    if not batched[1]:
        return [e(take, x, indices, axis=axis + 1)], [True]
    if not batched[0]:
        return [e.moveaxis(e(take, x, indices, axis=axis), axis, 0)], [True]
    flat = _along(e, e(reshape, indices, shape=(e.size, it.size)), axis, xt.ndim)
    out = e(take_along_axis, x, flat, axis=axis + 1)
    return [e(reshape, out, shape=(e.size, *op.outputs[0].type.shape))], [True]


@take_along_axis.defbatch
def _take_along_axis_batch(e, op, args, batched):  # the batch axis is one more other axis
    x, indices = (_batch_lead(e, a, b) for a, b in zip(args, batched))
    axis = single_axis(op.attrs["axis"], op.inputs[0].type.ndim)
    return [e(take_along_axis, x, indices, axis=axis + 1)], [True]


@scatter_add.defbatch
def _scatter_add_batch(e, op, args, batched):
    """Shared indices: the axis moves up by one (x and updates given the batch axis).
    Per-example indices: a scatter_add_along_axis, the indices flattened and broadcast to
    the flattened updates (it wraps and clamps them as scatter_add does)."""
    from .shape import broadcast_to, reshape

    x, indices, updates = (e.materialize(a, b) for a, b in zip(args, batched))
    xt, it = op.inputs[0].type, op.inputs[1].type
    axis = single_axis(op.attrs["axis"], xt.ndim)
    if not batched[1]:
        return [e(scatter_add, x, args[1], updates, axis=axis + 1)], [True]
    flat = (e.size, *xt.shape[:axis], it.size, *xt.shape[axis + 1 :])
    indices = _along(e, e(reshape, indices, shape=(e.size, it.size)), axis, xt.ndim)
    indices = e(broadcast_to, indices, shape=flat)
    updates = e(reshape, updates, shape=flat)
    return [e(scatter_add_along_axis, x, indices, updates, axis=axis + 1)], [True]


@scatter_add_along_axis.defbatch
def _scatter_add_along_axis_batch(e, op, args, batched):  # the batch axis: one more other axis
    operands = [e.materialize(a, b) for a, b in zip(args, batched)]
    axis = single_axis(op.attrs["axis"], op.inputs[0].type.ndim)
    return [e(scatter_add_along_axis, *operands, axis=axis + 1)], [True]


def _clamped_start(e, start, hi: int):
    """A start index built with IR ops as ``clamped_starts`` clamps it: int64 in [0, hi]."""
    from .elementwise import convert, max_, min_

    dtype, i64 = start.type.dtype, np.dtype(np.int64)
    if dtype.kind == "u":  # clamped in its own dtype first: a huge one must not turn negative
        start = e(min_, start, e.constant(min(hi, int(np.iinfo(dtype).max)), dtype))
    if dtype != i64:
        start = e(convert, start, dtype=i64)
    return e(min_, e(max_, start, e.constant(0, i64)), e.constant(hi, i64))


def _start_column(e, start, batched: bool, hi: int):
    """A start clamped as ``clamped_starts`` does, as an int64 column: shape (batch, 1) for
    per-example starts, (1, 1) for a shared one (to broadcast against iota's (1, n))."""
    from .shape import reshape

    return e(reshape, _clamped_start(e, start, hi), shape=(e.size if batched else 1, 1))


def _positions(e, n: int):
    """0..n-1 as int64 of shape (1, n)."""
    from .creation import iota

    return e(iota, shape=(1, n), dimension=1, dtype=np.dtype(np.int64))


@dynamic_slice.defbatch
def _dynamic_slice_batch(e, op, args, batched):
    """The axes with shared starts are sliced as in the op (the batch axis whole); each axis
    with per-example starts is then gathered with take_along_axis at each example's clamped
    start plus 0..size-1."""
    from .elementwise import add

    x, *starts = args
    xt, sizes = op.inputs[0].type, op.attrs["sizes"]
    per_example = batched[1:]
    if not all(per_example):
        zero = e.constant(0, np.int32)
        kept = tuple(n if b else k for n, k, b in zip(xt.shape, sizes, per_example))
        firsts = [zero if b else s for s, b in zip(starts, per_example)]
        if batched[0]:
            x = e(dynamic_slice, x, zero, *firsts, sizes=(e.size, *kept))
        else:
            x = e(dynamic_slice, x, *firsts, sizes=kept)
    x = _batch_lead(e, x, batched[0])
    for d, (start, b) in enumerate(zip(starts, per_example)):
        if b:
            first = _start_column(e, start, True, xt.shape[d] - sizes[d])
            window = e(add, first, _positions(e, sizes[d]))
            x = e(take_along_axis, x, _along(e, window, d, xt.ndim), axis=d + 1)
    return [x], [True]


@dynamic_update_slice.defbatch
def _dynamic_update_slice_batch(e, op, args, batched):
    """Shared starts: the batch axis is written whole (x and the update given it).
    Per-example starts: each element of x is selected from the update, gathered along each
    axis at the element's position less the clamped start, inside the window, and from x
    outside it (a select: exact for every dtype, bool included)."""
    from .elementwise import and_, ge, lt, select, sub

    x, update, *starts = args
    xt, ut = op.inputs[0].type, op.inputs[1].type
    if not any(batched[2:]):
        x, update = (e.materialize(a, b) for a, b in zip(args[:2], batched))
        return [e(dynamic_update_slice, x, update, e.constant(0, np.int32), *starts)], [True]
    if ut.size == 0:  # (nothing is written, and an empty update has nothing to gather)
        return [e.materialize(x, batched[0])], [True]
    i64 = np.dtype(np.int64)
    update, inside = _batch_lead(e, update, batched[1]), None
    for d, (start, b) in enumerate(zip(starts, batched[2:])):
        n, size = xt.shape[d], ut.shape[d]
        first = _start_column(e, start, b, n - size)
        # (a position outside the window reads some element of the update: selected away)
        offset = _along(e, e(sub, _positions(e, n), first), d, xt.ndim)
        update = e(take_along_axis, update, offset, axis=d + 1)
        here = e(and_, e(ge, offset, e.constant(0, i64)), e(lt, offset, e.constant(size, i64)))
        inside = here if inside is None else e(and_, inside, here)
    return [e(select, inside, update, x)], [True]  # (a shared x broadcasts from the right)
