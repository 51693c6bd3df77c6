"""StableHLO lowerings of ir/ops/nn.py."""

from __future__ import annotations

import numpy as np

from flowjit.ir import Op, TensorType
from flowjit.ir.ops import nn as N

from .elementwise import compare
from .jaxshim import hlo, ir
from .linalg import highest_precision
from .lowering import accumulation_type, constant, ir_type, lowers, region_body, round_to

# ('NHWC', 'HWIO', 'NHWC') in XLA's terms
_NHWC_HWIO = dict(
    input_batch_dimension=0,
    input_feature_dimension=3,
    input_spatial_dimensions=[1, 2],
    kernel_input_feature_dimension=2,
    kernel_output_feature_dimension=3,
    kernel_spatial_dimensions=[0, 1],
    output_batch_dimension=0,
    output_feature_dimension=3,
    output_spatial_dimensions=[1, 2],
)


def _pairs(padding: tuple[int, ...]) -> ir.DenseIntElementsAttr:
    """[lo0, hi0, lo1, hi1, ...] as the (n, 2) padding attribute XLA expects."""
    return ir.DenseIntElementsAttr.get(np.asarray(padding, np.int64).reshape(-1, 2))


@lowers(N.conv2d)
def _conv2d_lower(op: Op, x: ir.Value, w: ir.Value) -> ir.Value:
    attrs, out = op.attrs, op.outputs[0].type
    wide = accumulation_type(out)
    result = hlo.convolution(
        ir_type(wide),
        x,
        w,
        hlo.ConvDimensionNumbers.get(**_NHWC_HWIO),
        attrs["feature_group_count"],
        1,
        window_strides=list(attrs["strides"]),
        padding=_pairs(attrs["padding"]),
        lhs_dilation=list(attrs["lhs_dilation"]),
        rhs_dilation=list(attrs["rhs_dilation"]),
        window_reversal=[False, False],
        precision_config=highest_precision(),
    )
    return round_to(result, wide, out)


_COMBINE = {N.reduce_window_max: ("max", hlo.maximum), N.reduce_window_sum: ("sum", hlo.add)}


@lowers(*_COMBINE)
def _reduce_window_lower(op: Op, x: ir.Value) -> ir.Value:
    reduction, combine = _COMBINE[op.opdef]
    src, out = op.inputs[0].type, op.outputs[0].type
    # Sum float16/bfloat16 in float32, rounding once, like the reference (max is exact anyway).
    wide = accumulation_type(out) if reduction == "sum" else out
    if wide != out:
        x = hlo.convert(ir_type(TensorType(src.shape, wide.dtype)), x)
    window = hlo.ReduceWindowOp(
        [ir_type(wide)],
        [x],
        [constant(N.reduce_window_init(wide.dtype, reduction))],
        list(op.attrs["window"]),
        window_strides=list(op.attrs["strides"]),
        padding=_pairs(op.attrs["padding"]),
    )
    region_body(window.regions[0], [TensorType((), wide.dtype)] * 2, lambda a, b: [combine(a, b)])
    return round_to(window.result, wide, out)


@lowers(N.select_and_scatter_add)
def _select_and_scatter_add_lower(op: Op, source: ir.Value, operand: ir.Value) -> ir.Value:
    out = op.outputs[0].type
    # Add float16/bfloat16 in float32, rounding once, like the reference (selection is exact).
    wide = accumulation_type(out)
    if wide != out:
        source = hlo.convert(ir_type(TensorType(op.inputs[0].type.shape, wide.dtype)), source)
        operand = hlo.convert(ir_type(TensorType(out.shape, wide.dtype)), operand)
    scatter = hlo.SelectAndScatterOp(
        ir_type(wide),
        operand,
        source,
        constant(np.zeros((), wide.dtype)),
        window_dimensions=list(op.attrs["window"]),
        window_strides=list(op.attrs["strides"]),
        padding=_pairs(op.attrs["padding"]),
    )
    scalar = TensorType((), wide.dtype)
    region_body(scatter.select, [scalar] * 2, lambda a, b: [compare(a, b, "GE", wide.dtype)])
    region_body(scatter.scatter, [scalar] * 2, lambda a, b: [hlo.add(a, b)])
    return round_to(scatter.result, wide, out)
