"""StableHLO lowerings of ir/ops/sort.py: one stable stablehlo.sort of (values, iota) whose
comparator orders floats with nans last (first when descending), as numpy and jax do."""

from __future__ import annotations

from flowjit.ir import Op, TensorType
from flowjit.ir.ops import sort as S
from flowjit.ir.ops.rules import single_axis
from flowjit.ir.types import is_float

from .elementwise import compare
from .jaxshim import hlo, ir
from .lowering import LoweringContext, ir_type, lowers, region_body


def sorted_with_indices(
    x: ir.Value, t: TensorType, axis: int, descending: bool
) -> tuple[ir.Value, ir.Value]:
    """``x`` (of type ``t``) stably sorted along ``axis``, and the int32 indices it came from."""
    dtype = t.dtype
    index_type = TensorType(t.shape, S.INDEX)

    def comes_first(a: ir.Value, b: ir.Value, ia: ir.Value, ib: ir.Value) -> list[ir.Value]:
        # A strict weak order: all nans are equivalent and rank above every number, and
        # -0.0 ties with 0.0 (the plain float comparisons already do so).
        first = compare(a, b, "GT" if descending else "LT", dtype)
        if is_float(dtype):
            a_nan, b_nan = compare(a, a, "NE", dtype), compare(b, b, "NE", dtype)
            nan_first = (
                hlo.and_(a_nan, hlo.not_(b_nan)) if descending else hlo.and_(hlo.not_(a_nan), b_nan)
            )
            first = hlo.or_(first, nan_first)
        return [first]

    sort = hlo.SortOp(
        [ir_type(t), ir_type(index_type)],
        [x, hlo.iota(ir_type(index_type), axis)],
        dimension=axis,
        is_stable=True,
    )
    scalars = [TensorType((), dtype)] * 2 + [TensorType((), S.INDEX)] * 2
    region_body(sort.regions[0], scalars, comes_first)
    return sort.results[0], sort.results[1]


@lowers(S.sort, S.argsort)
def _sort_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    t = op.inputs[0].type
    axis = single_axis(op.attrs["axis"], t.ndim)
    values, indices = sorted_with_indices(x, t, axis, op.attrs["descending"])
    return values if op.opdef is S.sort else indices


@lowers(S.top_k)
def _top_k_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> list[ir.Value]:
    t = op.inputs[0].type
    values, indices = sorted_with_indices(x, t, t.ndim - 1, descending=True)
    limit = op.outputs[0].type.shape
    start, strides = [0] * t.ndim, [1] * t.ndim
    return [hlo.slice(v, start, list(limit), strides) for v in (values, indices)]
