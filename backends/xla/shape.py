"""StableHLO lowerings of ir/ops/shape.py: each op maps onto one StableHLO op."""

from __future__ import annotations

from flowjit.ir import Op
from flowjit.ir.ops import shape as S

from .jaxshim import hlo, ir
from .lowering import LoweringContext, broadcast, ir_type, lowers


@lowers(S.reshape)
def _reshape_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    return hlo.reshape(ir_type(op.outputs[0].type), x)


@lowers(S.transpose)
def _transpose_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    return hlo.transpose(x, list(op.attrs["perm"]))


@lowers(S.broadcast_to)
def _broadcast_to_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    return broadcast(x, op.inputs[0].type, op.attrs["shape"])


@lowers(S.concatenate)
def _concatenate_lower(ctx: LoweringContext, op: Op, *xs: ir.Value) -> ir.Value:
    return hlo.concatenate(list(xs), op.attrs["axis"] % op.outputs[0].type.ndim)


@lowers(S.slice_)
def _slice_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    attrs = op.attrs
    return hlo.slice(x, list(attrs["start"]), list(attrs["limit"]), list(attrs["strides"]))


@lowers(S.pad)
def _pad_lower(ctx: LoweringContext, op: Op, x: ir.Value, value: ir.Value) -> ir.Value:
    low, high = list(op.attrs["low"]), list(op.attrs["high"])
    return hlo.pad(x, value, low, high, [0] * len(low))


@lowers(S.reverse)
def _reverse_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    ndim = op.inputs[0].type.ndim
    return hlo.reverse(x, sorted({a % ndim for a in op.attrs["axes"]}))
