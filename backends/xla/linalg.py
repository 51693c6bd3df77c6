"""StableHLO lowerings of ir/ops/linalg.py."""

from __future__ import annotations

from flowjit.ir import Op
from flowjit.ir.ops import linalg as L

from .jaxshim import hlo, ir
from .lowering import LoweringContext, accumulation_type, ir_type, lowers, round_to
from .reduce import keep_from_folding


def highest_precision(ctx: LoweringContext) -> ir.ArrayAttr | None:
    """Full-precision operands for both sides: without it GPUs multiply float32 in TF32 and
    TPUs in bfloat16, and the result would no longer be the numpy reference's. None on CPU,
    which multiplies float32 in float32 at any setting, and where a setting keeps XLA from
    its fast (XNNPACK) kernels for dots and convolutions: 3.5x slower per-example conv
    gradients (bench/per_example.py)."""
    if ctx.platform == "cpu":
        return None
    return ir.ArrayAttr.get([hlo.PrecisionAttr.get("HIGHEST")] * 2)


@lowers(L.dot_general)
def _dot_general_lower(ctx: LoweringContext, op: Op, a: ir.Value, b: ir.Value) -> ir.Value:
    lc, rc, lb, rb = L.dot_dims(op.inputs[0].type, op.inputs[1].type, **op.attrs)
    numbers = hlo.DotDimensionNumbers.get(
        lhs_batching_dimensions=list(lb),
        rhs_batching_dimensions=list(rb),
        lhs_contracting_dimensions=list(lc),
        rhs_contracting_dimensions=list(rc),
    )
    a, b = keep_from_folding(a, b)
    out = op.outputs[0].type
    wide = accumulation_type(out)
    result = hlo.dot_general(ir_type(wide), a, b, numbers, precision_config=highest_precision(ctx))
    return round_to(result, wide, out)
