"""StableHLO lowerings of ir/ops/nn.py."""

from __future__ import annotations

import itertools

import numpy as np

from flowjit.ir import Op, TensorType
from flowjit.ir.ops import nn as N

from .elementwise import compare
from .jaxshim import hlo, ir
from .linalg import highest_precision
from .lowering import (
    LoweringContext,
    accumulation_type,
    constant,
    full,
    ir_type,
    lowers,
    region_body,
    round_to,
)

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
def _conv2d_lower(ctx: LoweringContext, op: Op, x: ir.Value, w: ir.Value) -> ir.Value:
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
        precision_config=highest_precision(ctx),
    )
    return round_to(result, wide, out)


_COMBINE = {N.reduce_window_max: ("max", hlo.maximum), N.reduce_window_sum: ("sum", hlo.add)}

# On these platforms a pooling's gradient (select_and_scatter_add) is a fold of each window's
# elements and a few selects (_first_largest), not XLA's SelectAndScatter, and where the windows
# tile the input (strides == window: pooling's usual 2x2, stride 2) the pooling itself is a
# reshape + reduce, not a reduce_window. On XLA:CPU that took bench/suite's CNN step from 60 to
# 18 ms, mostly the SelectAndScatter (docs/performance.md). Other platforms keep XLA's windowed
# ops: unmeasured there, and a TPU tiles its two minor dims, which the reshape would split.
FOLDED_POOLING_PLATFORMS = {"cpu"}


def _tiled(ctx: LoweringContext, op: Op) -> bool:
    return op.attrs["strides"] == op.attrs["window"] and ctx.platform in FOLDED_POOLING_PLATFORMS


def _window_counts(op: Op) -> tuple[int, ...]:
    """Windows per dim: a pooling's output shape, its gradient's source's."""
    windowed = op.inputs[0] if op.opdef is N.select_and_scatter_add else op.outputs[0]
    return windowed.type.shape


def _tiles(op: Op, x: ir.Value, dtype: np.dtype, fill: np.ndarray) -> ir.Value:
    """The op's operand ``x`` (in ``dtype``) padded with ``fill`` as the op pads it and cut to
    whole windows (a VALID pooling drops the rest), as shape (out0, window0, out1, ...)."""
    shape, window = op.inputs[-1].type.shape, op.attrs["window"]
    counts, low = _window_counts(op), list(op.attrs["padding"][0::2])
    covered = [n * w for n, w in zip(counts, window)]
    high = [c - d - lo for c, d, lo in zip(covered, shape, low)]  # negative: cut off
    if any(low) or any(high):
        x = hlo.pad(x, constant(fill, dtype), low, high, [0] * len(shape))
    tiled = [size for n, w in zip(counts, window) for size in (n, w)]
    return hlo.reshape(ir_type(TensorType(tiled, dtype)), x)


def _untile(op: Op, tiles: ir.Value, dtype: np.dtype) -> ir.Value:
    """The inverse of ``_tiles`` for a result on the operand: back to the operand's shape,
    zero where the op's padding or the dropped rest was."""
    shape, window = op.inputs[-1].type.shape, op.attrs["window"]
    covered = [n * w for n, w in zip(_window_counts(op), window)]
    low = list(op.attrs["padding"][0::2])
    flat = hlo.reshape(ir_type(TensorType(covered, dtype)), tiles)
    high = [lo + d - c for lo, d, c in zip(low, shape, covered)]
    if not any(low) and not any(high):
        return flat
    zero = constant(np.zeros((), dtype))
    return hlo.pad(flat, zero, [-lo for lo in low], high, [0] * len(shape))


@lowers(*_COMBINE)
def _reduce_window_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    reduction, combine = _COMBINE[op.opdef]
    src, out = op.inputs[0].type, op.outputs[0].type
    # Sum float16/bfloat16 in float32, rounding once, like the reference (max is exact anyway).
    wide = accumulation_type(out) if reduction == "sum" else out
    if wide != out:
        x = hlo.convert(ir_type(TensorType(src.shape, wide.dtype)), x)
    init = N.reduce_window_init(wide.dtype, reduction)
    if _tiled(ctx, op):  # (a reduce: a fold of the window's elements, sliced, ran 1.2x slower)
        tiles = _tiles(op, x, wide.dtype, init)
        axes = list(range(1, 2 * src.ndim, 2))
        window = hlo.ReduceOp([ir_type(wide)], [tiles], [constant(init)], axes)
    else:
        window = hlo.ReduceWindowOp(
            [ir_type(wide)],
            [x],
            [constant(init)],
            list(op.attrs["window"]),
            window_strides=list(op.attrs["strides"]),
            padding=_pairs(op.attrs["padding"]),
        )
    region_body(window.regions[0], [TensorType((), wide.dtype)] * 2, lambda a, b: [combine(a, b)])
    return round_to(window.result, wide, out)


def _window_elements(op: Op, tiles: ir.Value, dtype: np.dtype) -> list[ir.Value]:
    """Each window's element at each window offset (row-major), from ``_tiles``: one
    tensor of the windows' shape per offset."""
    windows = TensorType(_window_counts(op), dtype)
    elements = []
    for offset in itertools.product(*map(range, op.attrs["window"])):
        start = [k for o in offset for k in (0, o)]
        limit = [n for size, o in zip(windows.shape, offset) for n in (size, o + 1)]
        piece = hlo.slice(tiles, start, limit, [1] * len(start))
        elements.append(hlo.reshape(ir_type(windows), piece))
    return elements


@lowers(N.select_and_scatter_add)
def _select_and_scatter_add_lower(
    ctx: LoweringContext, op: Op, source: ir.Value, operand: ir.Value
) -> ir.Value:
    if _tiled(ctx, op):
        return _scatter_to_tiles(op, source, operand)
    if ctx.platform in FOLDED_POOLING_PLATFORMS:
        return _scatter_by_offsets(op, source, operand)
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


# XLA's SelectAndScatter is also not quite the op: with padding, XLA:CPU was seen to fold some
# windows column by column, so a tie or a NaN sent the gradient elsewhere than the reference.
# The fold here is the reference's (keep the one so far while it is >= the next; the padding is
# never picked): it gives the offset of the survivor, and the source goes there.

_I32 = np.dtype(np.int32)


def _first_largest(op: Op, elements: list[ir.Value]) -> ir.Value:
    """The window offset (row-major number) each window's GE fold of ``elements`` (one per
    offset, the windows' shape) ends on, skipping the padding; 0 for a window all padding."""
    windows = TensorType(op.inputs[0].type.shape, _I32)
    shape, low = op.inputs[1].type.shape, op.attrs["padding"][0::2]
    strides, dtype = op.attrs["strides"], op.inputs[1].type.dtype

    def inside(offset) -> ir.Value | None:  # which windows' element at ``offset`` is no padding
        mask = None
        for axis, (k, s, lo, d) in enumerate(zip(offset, strides, low, shape)):
            first, end = -((k - lo) // s), -((k - lo - d) // s)  # ceil((lo - k) / s), ...
            if first <= 0 and end >= windows.shape[axis]:
                continue
            at = hlo.iota(ir_type(windows), axis)
            for part in (
                compare(at, full(first, windows), "GE", _I32),
                compare(at, full(end, windows), "LT", _I32),
            ):
                mask = part if mask is None else hlo.and_(mask, part)
        return mask

    offsets = list(itertools.product(*map(range, op.attrs["window"])))
    best, chosen, found = elements[0], full(0, windows), inside(offsets[0])
    for k, offset in enumerate(offsets[1:], start=1):
        value, valid = elements[k], inside(offset)
        take = hlo.not_(compare(best, value, "GE", dtype))
        if found is not None:  # no element picked yet: take the first real one
            take = hlo.or_(take, hlo.not_(found))
        if valid is not None:
            take = hlo.and_(take, valid)
            found = None if found is None else hlo.or_(found, valid)
        else:
            found = None
        best = hlo.select(take, value, best)
        chosen = hlo.select(take, full(k, windows), chosen)
    return chosen


def _nonzero(value: ir.Value, t: TensorType) -> ir.Value:
    """Where ``value`` is not 0 (nor -0: the reference adds the source to zeros, giving 0)."""
    return compare(value, full(0, t), "NE", t.dtype)


def _scatter_to_tiles(op: Op, source: ir.Value, operand: ir.Value) -> ir.Value:
    """Windows that tile the operand (strides == window): no two meet, so the source is placed,
    not added, in tile coordinates (_tiles)."""
    src, dtype = op.inputs[0].type, op.inputs[1].type.dtype
    window = op.attrs["window"]
    tiles = _tiles(op, operand, dtype, np.zeros((), dtype))
    chosen = _first_largest(op, _window_elements(op, tiles, dtype))
    # the source where the element's window offset is the chosen one
    tiled_shape = [n for size, w in zip(src.shape, window) for n in (size, w)]
    outer, inner = list(range(0, 2 * src.ndim, 2)), list(range(1, 2 * src.ndim, 2))
    tiled, numbered = TensorType(tiled_shape, dtype), TensorType(tiled_shape, _I32)
    numbers = np.arange(int(np.prod(window)), dtype=_I32).reshape(window)
    here = compare(
        hlo.broadcast_in_dim(ir_type(numbered), chosen, outer),
        hlo.broadcast_in_dim(ir_type(numbered), constant(numbers), inner),
        "EQ",
        _I32,
    )
    spread = hlo.broadcast_in_dim(ir_type(tiled), source, outer)
    placed = hlo.select(hlo.and_(here, _nonzero(spread, tiled)), spread, full(0, tiled))
    return _untile(op, placed, dtype)


def _scatter_by_offsets(op: Op, source: ir.Value, operand: ir.Value) -> ir.Value:
    """Any windows: the element at each window offset is a strided slice of the padded operand.
    The source chosen at window offset k lands at o * stride + k: phase k % stride of the
    stride-long tile o + k // stride. Each phase's parts are shifted by whole tiles (pads) and
    added (in float32 for float16/bfloat16, rounded once), and the phases interleave."""
    src, out = op.inputs[0].type, op.outputs[0].type
    window, strides, padding = op.attrs["window"], op.attrs["strides"], op.attrs["padding"]
    if any(n == 0 for n in src.shape):
        return full(0, out)
    low, high = list(padding[0::2]), list(padding[1::2])
    padded = hlo.pad(operand, constant(np.zeros((), out.dtype)), low, high, [0] * out.ndim)
    offsets = list(itertools.product(*map(range, window)))
    ends = [[k + (n - 1) * s + 1 for k, n, s in zip(ks, src.shape, strides)] for ks in offsets]
    elements = [hlo.slice(padded, list(k), e, list(strides)) for k, e in zip(offsets, ends)]
    chosen = _first_largest(op, elements)
    wide = accumulation_type(src)
    if wide != src:
        source = hlo.convert(ir_type(wide), source)
    keep, zero = _nonzero(source, wide), full(0, wide)
    tiles = TensorType(
        [n + (w - 1) // s for n, w, s in zip(src.shape, window, strides)], wide.dtype
    )
    phases: dict[tuple, ir.Value] = {}
    for number, ks in enumerate(offsets):
        picked = compare(chosen, full(number, TensorType(src.shape, _I32)), "EQ", _I32)
        shift = [k // s for k, s in zip(ks, strides)]
        part = hlo.pad(
            hlo.select(hlo.and_(picked, keep), source, zero),
            constant(np.zeros((), wide.dtype)),
            shift,
            [t - n - q for t, n, q in zip(tiles.shape, src.shape, shift)],
            [0] * src.ndim,
        )
        phase = tuple(k % s for k, s in zip(ks, strides))
        phases[phase] = hlo.add(phases[phase], part) if phase in phases else part
    # (tile0, phase0, tile1, phase1, ...): each phase in its slot, concatenated dim by dim
    single = ir_type(TensorType([n for t in tiles.shape for n in (t, 1)], wide.dtype))

    def interleaved(prefix: tuple) -> ir.Value:
        if len(prefix) == out.ndim:  # (strides past the window leave phases no window reaches)
            return hlo.reshape(single, phases[prefix] if prefix in phases else full(0, tiles))
        parts = [interleaved((*prefix, r)) for r in range(strides[len(prefix)])]
        return parts[0] if len(parts) == 1 else hlo.concatenate(parts, 2 * len(prefix) + 1)

    covered = [t * s for t, s in zip(tiles.shape, strides)]
    flat = hlo.reshape(ir_type(TensorType(covered, wide.dtype)), interleaved(()))
    result = hlo.pad(
        flat,
        constant(np.zeros((), wide.dtype)),
        [-lo for lo in low],
        [lo + d - c for lo, d, c in zip(low, out.shape, covered)],
        [0] * out.ndim,
    )
    return round_to(result, TensorType(out.shape, wide.dtype), out)
