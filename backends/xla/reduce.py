"""StableHLO lowerings of ir/ops/reduce.py: stablehlo.reduce with a one-op region for the
plain reductions, a variadic (value, index) reduce for argmax/argmin and reduce_window for
the cumulative ops. A reduction of one element per result is that element (a reshape), and
none is left for XLA to compute at compile time, whose evaluator gives zeros other signs than
its compiled code (docs/ir-format.md, "Edge values")."""

from __future__ import annotations

import numpy as np

from flowjit.ir import Op, TensorType
from flowjit.ir.ops import reduce as R
from flowjit.ir.ops.rules import extreme, normalize_axes, reduced_shape, single_axis
from flowjit.ir.types import is_float

from .elementwise import compare, from_constants
from .jaxshim import hlo, ir
from .lowering import LoweringContext, constant, ir_type, lowers, region_body

# op -> (combiner, identity of the combiner for a dtype)
_REDUCERS = {
    R.reduce_sum: (hlo.add, lambda dt: np.zeros((), dt)),
    R.reduce_prod: (hlo.multiply, lambda dt: np.ones((), dt)),
    R.reduce_max: (hlo.maximum, lambda dt: extreme(dt, largest=False)),
    R.reduce_min: (hlo.minimum, lambda dt: extreme(dt, largest=True)),
    R.reduce_and: (hlo.and_, lambda dt: np.array(True)),
    R.reduce_or: (hlo.or_, lambda dt: np.array(False)),
}


def _reshape(value: ir.Value, src: TensorType, dst: TensorType) -> ir.Value:
    return value if src.shape == dst.shape else hlo.reshape(ir_type(dst), value)


def keep_from_folding(*operands: ir.Value) -> list[ir.Value]:
    """The operands of a sum (or extremum), the first behind an optimization barrier if all
    are computed from constants alone (within a few ops): XLA would compute the op at compile
    time, where a sum of -0.0s is -0.0 and the max of -0.0 and 0.0 whichever comes first
    (its compiled code and the reference kernels: 0.0 both)."""
    if all(from_constants(v) for v in operands):
        return [hlo.optimization_barrier([operands[0]]), *operands[1:]]
    return list(operands)


@lowers(*_REDUCERS)
def _reduce_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    src, out = op.inputs[0].type, op.outputs[0].type
    combine, identity = _REDUCERS[op.opdef]
    axes = normalize_axes(op.attrs["axes"], src.ndim)
    if all(src.shape[d] == 1 for d in axes):  # the element itself (0.0 + -0.0 is 0.0)
        return _reshape(x, src, out)
    (x,) = keep_from_folding(x)
    reduced = TensorType(reduced_shape(src.shape, axes, keepdims=False), src.dtype)
    reduce = hlo.ReduceOp([ir_type(reduced)], [x], [constant(identity(src.dtype))], list(axes))
    scalar = TensorType((), src.dtype)
    region_body(reduce.regions[0], [scalar, scalar], lambda a, b: [combine(a, b)])
    return _reshape(reduce.result, reduced, out)


@lowers(R.argmax, R.argmin)
def _arg_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    src, out = op.inputs[0].type, op.outputs[0].type
    axis = single_axis(op.attrs["axis"], src.ndim)
    largest = op.opdef is R.argmax
    dtype, i32 = src.dtype, np.dtype(np.int32)
    index = hlo.iota(ir_type(TensorType(src.shape, i32)), axis)
    reduced = reduced_shape(src.shape, (axis,), keepdims=False)

    def better(a: ir.Value, ia: ir.Value, b: ir.Value, ib: ir.Value) -> list[ir.Value]:
        # An order that is associative and commutative, as XLA may combine in any order:
        # a wins if it is more extreme, or a nan facing a number, or tied with a lower index.
        a_wins = compare(a, b, "GT" if largest else "LT", dtype)
        tied = compare(a, b, "EQ", dtype)
        if is_float(dtype):
            a_nan, b_nan = compare(a, a, "NE", dtype), compare(b, b, "NE", dtype)
            a_wins = hlo.or_(a_wins, hlo.and_(a_nan, hlo.not_(b_nan)))
            tied = hlo.or_(tied, hlo.and_(a_nan, b_nan))
        pick_a = hlo.or_(a_wins, hlo.and_(tied, compare(ia, ib, "LT", i32)))
        return [hlo.select(pick_a, a, b), hlo.select(pick_a, ia, ib)]

    # The initial index is past every real one, so any element ties with the identity and wins.
    inits = [constant(extreme(dtype, largest=not largest)), constant(np.iinfo(i32).max, i32)]
    reduce = hlo.ReduceOp(
        [ir_type(TensorType(reduced, dtype)), ir_type(TensorType(reduced, i32))],
        [x, index],
        inits,
        [axis],
    )
    region_body(reduce.regions[0], [TensorType((), dtype), TensorType((), i32)] * 2, better)
    return _reshape(reduce.results[1], TensorType(reduced, i32), out)


def _logaddexp(a: ir.Value, b: ir.Value) -> ir.Value:
    """jax's logaddexp: max(a, b) + log1p(exp(-|a - b|)), or a + b where a - b is NaN."""
    delta = hlo.subtract(a, b)
    spread = hlo.log_plus_one(hlo.exponential(hlo.negate(hlo.abs(delta))))
    nan = compare(delta, delta, "NE", np.dtype(np.float32))  # (any float: a FLOAT comparison)
    return hlo.select(nan, hlo.add(a, b), hlo.add(hlo.maximum(a, b), spread))


# cumulative op -> (combiner, identity of the combiner for a dtype)
_CUMULATIVE = {
    R.cumsum: _REDUCERS[R.reduce_sum],
    R.cumprod: _REDUCERS[R.reduce_prod],
    R.cummax: _REDUCERS[R.reduce_max],
    R.cummin: _REDUCERS[R.reduce_min],
    R.cumlogsumexp: (_logaddexp, lambda dt: np.array(-np.inf, dt)),
}


@lowers(*_CUMULATIVE)
def _cumulative_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    """A windowed reduction, as jax lowers these ops: output i combines the window of n
    elements ending at i (starting at i if reversed), the data padded with n - 1 identities
    before (after) it."""
    t = op.outputs[0].type
    axis = single_axis(op.attrs["axis"], t.ndim)
    n = t.shape[axis]
    # (a window of size 0 is invalid, and there is nothing to combine; a lone element XLA:CPU
    # adds to 0.0 in bfloat16, which would make -0.0 0.0, while jax's logaddexp with -inf
    # makes it 0.0 in every dtype)
    if t.size == 0 or (n == 1 and op.opdef is not R.cumlogsumexp):
        return x
    (x,) = keep_from_folding(x)
    combine, identity = _CUMULATIVE[op.opdef]
    window = [n if d == axis else 1 for d in range(t.ndim)]
    pad = [[0, 0] for _ in range(t.ndim)]
    pad[axis][1 if op.attrs["reverse"] else 0] = n - 1
    scalar = TensorType((), t.dtype)
    out = hlo.ReduceWindowOp(
        [ir_type(t)],
        [x],
        [constant(identity(t.dtype))],
        window,
        padding=ir.DenseIntElementsAttr.get(np.array(pad, np.int64)),
    )
    region_body(out.regions[0], [scalar, scalar], lambda a, b: [combine(a, b)])
    return out.result
