"""StableHLO lowerings of ir/ops/creation.py."""

from __future__ import annotations

from flowjit.ir import Op
from flowjit.ir.ops import creation as C

from .jaxshim import hlo, ir
from .lowering import LoweringContext, constant, ir_type, lowers


@lowers(C.constant)
def _constant_lower(ctx: LoweringContext, op: Op) -> ir.Value:
    return constant(op.attrs["value"])


@lowers(C.iota)
def _iota_lower(ctx: LoweringContext, op: Op) -> ir.Value:
    t = op.outputs[0].type
    return hlo.iota(ir_type(t), op.attrs["dimension"] % t.ndim)
