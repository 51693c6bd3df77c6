"""StableHLO lowerings of ir/ops/linalg.py."""

from __future__ import annotations

import numpy as np

from flowjit.ir import Op, TensorType
from flowjit.ir.ops import linalg as L

from .jaxshim import hlo, ir
from .lowering import ir_type, lowers


def accumulation_type(t: TensorType) -> TensorType:
    """float16/bfloat16 products are summed in float32 (then rounded once), as jax does with
    preferred_element_type=float32; every other dtype sums in itself."""
    if t.dtype.itemsize == 2 and t.dtype.kind in "fV":
        return TensorType(t.shape, np.float32)
    return t


def highest_precision() -> ir.ArrayAttr:
    """Full-precision operands for both sides: without it GPUs multiply float32 in TF32 and
    TPUs in bfloat16, and the result would no longer be the numpy reference's."""
    return ir.ArrayAttr.get([hlo.PrecisionAttr.get("HIGHEST")] * 2)


def round_to(value: ir.Value, wide: TensorType, out: TensorType) -> ir.Value:
    """Convert a result computed in ``wide`` back to the op's output type ``out``."""
    return value if wide == out else hlo.convert(ir_type(out), value)


@lowers(L.dot_general)
def _dot_general_lower(op: Op, a: ir.Value, b: ir.Value) -> ir.Value:
    lc, rc, lb, rb = L.dot_dims(op.inputs[0].type, op.inputs[1].type, **op.attrs)
    numbers = hlo.DotDimensionNumbers.get(
        lhs_batching_dimensions=list(lb),
        rhs_batching_dimensions=list(rb),
        lhs_contracting_dimensions=list(lc),
        rhs_contracting_dimensions=list(rc),
    )
    out = op.outputs[0].type
    wide = accumulation_type(out)
    result = hlo.dot_general(ir_type(wide), a, b, numbers, precision_config=highest_precision())
    return round_to(result, wide, out)
