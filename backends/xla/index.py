"""StableHLO lowerings of ir/ops/index.py: stablehlo.gather for take and take_along_axis,
dynamic_slice and dynamic_update_slice, stablehlo.scatter (adding) for scatter_add. Indices are first made int64 and clamped explicitly,
so the result never depends on how XLA treats out-of-range indices."""

from __future__ import annotations

import numpy as np

from flowjit.ir import Op, TensorType
from flowjit.ir.ops import index as I
from flowjit.ir.ops.rules import single_axis

from .elementwise import compare
from .jaxshim import hlo, ir
from .lowering import (
    LoweringContext,
    accumulation_type,
    broadcast,
    constant,
    full,
    ir_type,
    lowers,
    region_body,
    round_to,
)

I64 = np.dtype(np.int64)


def index_i64(value: ir.Value, t: TensorType, hi: int, wrap: int | None = None) -> ir.Value:
    """Integer ``value`` (of type ``t``) as int64 clamped to [0, hi]; with ``wrap``, negative
    entries first get ``wrap`` added (numpy's counting from the end)."""
    if t.dtype.kind == "u":
        # Clamped in its own type first: int64 would turn a huge unsigned index negative.
        value = hlo.minimum(value, full(min(hi, int(np.iinfo(t.dtype).max)), t))
    if t.dtype != I64:
        value = hlo.convert(ir_type(TensorType(t.shape, I64)), value)
    if wrap is not None and t.dtype.kind == "i":
        negative = compare(value, full(0, TensorType(t.shape, I64)), "LT", I64)
        value = hlo.select(negative, hlo.add(value, full(wrap, TensorType(t.shape, I64))), value)
    return hlo.clamp(constant(0, I64), value, constant(hi, I64))


def _empty(t: TensorType) -> ir.Value:
    """An empty result: gather cannot express it when the indexed axis is empty too."""
    return full(0, t)


@lowers(I.take)
def _take_lower(ctx: LoweringContext, op: Op, x: ir.Value, indices: ir.Value) -> ir.Value:
    (xt, it), out = (v.type for v in op.inputs), op.outputs[0].type
    if out.size == 0:
        return _empty(out)
    axis = single_axis(op.attrs["axis"], xt.ndim)
    n = xt.shape[axis]
    # Each index selects a slice of x that is whole except along `axis`; the slices' dims sit
    # around the indices' dims in the output.
    numbers = hlo.GatherDimensionNumbers.get(
        offset_dims=[*range(axis), *range(axis + it.ndim, out.ndim)],
        collapsed_slice_dims=[axis],
        operand_batching_dims=[],
        start_indices_batching_dims=[],
        start_index_map=[axis],
        index_vector_dim=it.ndim,
    )
    sizes = [1 if d == axis else size for d, size in enumerate(xt.shape)]
    return hlo.gather(
        x, index_i64(indices, it, n - 1, wrap=n), numbers, sizes, indices_are_sorted=False
    )


@lowers(I.take_along_axis)
def _take_along_axis_lower(
    ctx: LoweringContext, op: Op, x: ir.Value, indices: ir.Value
) -> ir.Value:
    (xt, it), out = (v.type for v in op.inputs), op.outputs[0].type
    if out.size == 0:
        return _empty(out)
    axis = single_axis(op.attrs["axis"], xt.ndim)
    n = xt.shape[axis]
    # Broadcast both to the output shape (x keeps its own `axis`); every other axis is then a
    # batch axis shared by x and the indices, and each element gathers one scalar.
    x_shape = out.shape[:axis] + (n,) + out.shape[axis + 1 :]
    x = broadcast(x, xt, x_shape)
    indices = index_i64(
        broadcast(indices, it, out.shape), TensorType(out.shape, it.dtype), n - 1, wrap=n
    )
    batch = [d for d in range(out.ndim) if d != axis]
    numbers = hlo.GatherDimensionNumbers.get(
        offset_dims=[],
        collapsed_slice_dims=[axis],
        operand_batching_dims=batch,
        start_indices_batching_dims=batch,
        start_index_map=[axis],
        index_vector_dim=out.ndim,
    )
    return hlo.gather(x, indices, numbers, [1] * out.ndim, indices_are_sorted=False)


def _starts(op: Op, starts: tuple[ir.Value, ...], sizes: tuple[int, ...]) -> list[ir.Value]:
    shape = op.inputs[0].type.shape
    types = [v.type for v in op.inputs[len(op.inputs) - len(starts) :]]
    return [index_i64(s, t, dim - size) for s, t, dim, size in zip(starts, types, shape, sizes)]


@lowers(I.dynamic_slice)
def _dynamic_slice_lower(ctx: LoweringContext, op: Op, x: ir.Value, *starts: ir.Value) -> ir.Value:
    sizes = op.attrs["sizes"]
    return hlo.dynamic_slice(x, _starts(op, starts, sizes), list(sizes))


@lowers(I.dynamic_update_slice)
def _dynamic_update_slice_lower(
    ctx: LoweringContext, op: Op, x: ir.Value, update: ir.Value, *starts: ir.Value
) -> ir.Value:
    return hlo.dynamic_update_slice(x, update, _starts(op, starts, op.inputs[1].type.shape))


@lowers(I.scatter_add)
def _scatter_add_lower(
    ctx: LoweringContext, op: Op, x: ir.Value, indices: ir.Value, updates: ir.Value
) -> ir.Value:
    # take's gather turned around: each index names a slice of x, whole but along `axis`, and
    # the updates hold those slices with the indices' dims in the middle.
    def numbers(axis: int, it: TensorType, ut: TensorType):
        return hlo.ScatterDimensionNumbers.get(
            update_window_dims=[*range(axis), *range(axis + it.ndim, ut.ndim)],
            inserted_window_dims=[axis],
            input_batching_dims=[],
            scatter_indices_batching_dims=[],
            scattered_dims_to_operand_dims=[axis],
            index_vector_dim=it.ndim,
        )

    return _scatter(op, x, indices, updates, numbers)


@lowers(I.scatter_add_along_axis)
def _scatter_add_along_axis_lower(
    ctx: LoweringContext, op: Op, x: ir.Value, indices: ir.Value, updates: ir.Value
) -> ir.Value:
    # take_along_axis's gather turned around: every other axis is a batch axis of both x and
    # the indices (as jax's own transpose), so each update lands in its own row
    def numbers(axis: int, it: TensorType, ut: TensorType):
        batch = [d for d in range(it.ndim) if d != axis]
        return hlo.ScatterDimensionNumbers.get(
            update_window_dims=[],
            inserted_window_dims=[axis],
            input_batching_dims=batch,
            scatter_indices_batching_dims=batch,
            scattered_dims_to_operand_dims=[axis],
            index_vector_dim=it.ndim,
        )

    return _scatter(op, x, indices, updates, numbers)


def _scatter(op: Op, x: ir.Value, indices: ir.Value, updates: ir.Value, numbers) -> ir.Value:
    """A scatter op adding ``updates`` into ``x``, with dimension numbers
    ``numbers(axis, indices type, updates type)``; float16/bfloat16 add up in float32 and
    round once, like the reference."""
    xt, it, ut = (v.type for v in op.inputs)
    if ut.size == 0:
        return x
    axis = single_axis(op.attrs["axis"], xt.ndim)
    n = xt.shape[axis]
    wide = accumulation_type(xt)
    if wide != xt:
        x = hlo.convert(ir_type(wide), x)
        updates = hlo.convert(ir_type(TensorType(ut.shape, wide.dtype)), updates)
    scatter = hlo.ScatterOp(
        [ir_type(wide)],
        [x],
        index_i64(indices, it, n - 1, wrap=n),
        [updates],
        numbers(axis, it, ut),
        indices_are_sorted=ir.BoolAttr.get(False),
        unique_indices=ir.BoolAttr.get(False),
    )
    scalar = TensorType((), wide.dtype)
    region_body(scatter.regions[0], [scalar, scalar], lambda a, b: [hlo.add(a, b)])
    return round_to(scatter.results[0], wide, xt)
