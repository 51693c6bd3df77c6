"""StableHLO lowerings of ir/ops/custom.py: a function with a custom gradient is its primal
subgraph emitted inline (``fwd`` for a ``custom_vjp_call`` that gives its residuals); the
rules only matter to the gradient, taken before lowering."""

from __future__ import annotations

from collections.abc import Sequence

from flowjit.ir import Op
from flowjit.ir.ops import custom as C

from .jaxshim import ir
from .lowering import LoweringContext, emit_graph, lowers


@lowers(C.custom_vjp_call)
def _custom_vjp_lower(ctx: LoweringContext, op: Op, *args: ir.Value) -> Sequence[ir.Value]:
    return emit_graph(ctx, op.attrs["fwd" if op.attrs["with_residuals"] else "body"], args)


@lowers(C.custom_jvp_call)
def _custom_jvp_lower(ctx: LoweringContext, op: Op, *args: ir.Value) -> Sequence[ir.Value]:
    return emit_graph(ctx, op.attrs["body"], args)
