"""StableHLO lowerings of ir/ops/remat.py: ``remat`` inlines its body (the recomputation its
gradient rule builds is already in the graph, behind an ``optimization_barrier``), which
becomes stablehlo.optimization_barrier; ``checkpoint_name`` is its operand."""

from __future__ import annotations

from collections.abc import Sequence

from flowjit.ir import Op
from flowjit.ir.ops import remat as R

from .jaxshim import hlo, ir
from .lowering import LoweringContext, emit_graph, lowers


@lowers(R.remat)
def _remat_lower(ctx: LoweringContext, op: Op, *operands: ir.Value) -> Sequence[ir.Value]:
    return emit_graph(ctx, op.attrs["body"], operands)


@lowers(R.optimization_barrier)
def _barrier_lower(ctx: LoweringContext, op: Op, *operands: ir.Value) -> Sequence[ir.Value]:
    return hlo.OptimizationBarrierOp(list(operands)).results


@lowers(R.checkpoint_name)
def _name_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> Sequence[ir.Value]:
    return [x]
