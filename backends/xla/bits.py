"""StableHLO lowerings of ir/ops/bits.py. StableHLO's shifts already saturate the way the ops
are defined (amounts read as unsigned; at or beyond the width: 0, or the top bit for the
arithmetic shift), so each op maps onto one StableHLO op."""

from __future__ import annotations

from flowjit.ir import Op
from flowjit.ir.ops import bits as B

from .elementwise import broadcast_operands
from .jaxshim import hlo, ir
from .lowering import LoweringContext, ir_type, lowers

_SHIFTS = {
    B.shift_left: hlo.shift_left,
    B.shift_right_logical: hlo.shift_right_logical,
    B.shift_right_arithmetic: hlo.shift_right_arithmetic,
}


@lowers(*_SHIFTS)
def _shift_lower(ctx: LoweringContext, op: Op, *args: ir.Value) -> ir.Value:
    return _SHIFTS[op.opdef](*broadcast_operands(op, args))


@lowers(B.bitcast_convert)
def _bitcast_convert_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    return hlo.bitcast_convert(ir_type(op.outputs[0].type), x)
