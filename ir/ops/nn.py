"""Neural-network ops: 2-d convolution (NHWC activations, HWIO kernels, the dimension numbers
('NHWC', 'HWIO', 'NHWC') of jax.lax.conv_general_dilated) and windowed reductions, which
max_pool2d / avg_pool2d use with NHWC windows (1, k, k, 1)."""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np

from ..core import OpDef, register
from ..errors import ShapeError
from ..types import TensorType
from .rules import (
    FLOATS,
    NUMERIC,
    check_arity,
    check_count,
    check_dtype,
    check_min,
    extreme,
    low_precision_ref,
    same_dtype,
)


def window_out_size(size: int, window: int, stride: int) -> int:
    """How many windows of ``window`` elements, ``stride`` apart, fit in ``size`` elements."""
    return (size - window) // stride + 1 if size >= window else 0


def _taps(offset: int, count: int, stride: int) -> slice:
    """The ``count`` indices ``offset, offset + stride, ...`` as a slice."""
    return slice(offset, offset + (count - 1) * stride + 1 if count else offset, stride)


def _dilated(size: int, dilation: int) -> int:
    """The size of ``size`` elements with ``dilation - 1`` holes between neighbours."""
    return (size - 1) * dilation + 1 if size else 0


def _conv2d_rule(
    types: tuple[TensorType, ...],
    *,
    strides: tuple[int, ...],
    padding: tuple[int, ...],
    lhs_dilation: tuple[int, ...],
    rhs_dilation: tuple[int, ...],
    feature_group_count: int,
) -> TensorType:
    check_arity(types, 2)
    x, w = types
    dtype = same_dtype(types)
    check_dtype(x, FLOATS)
    if x.ndim != 4 or w.ndim != 4:
        raise ShapeError(
            f"conv2d takes NHWC activations and an HWIO kernel (rank 4 each); "
            f"got shapes {x.shape} and {w.shape}"
        )
    if 0 in w.shape[:2]:
        raise ShapeError(
            f"the kernel {w.shape} (HWIO) has an empty window; kernel H and W must be >= 1"
        )
    for name, values in (
        ("strides", strides),
        ("lhs_dilation", lhs_dilation),
        ("rhs_dilation", rhs_dilation),
    ):
        check_count(name, values, 2, "one per spatial dim H, W")
        check_min(name, values, 1)
    check_count("padding", padding, 4, "low_h, high_h, low_w, high_w")
    groups = feature_group_count
    if groups < 1 or x.shape[3] != w.shape[2] * groups or w.shape[3] % groups:
        raise ShapeError(
            f"conv2d of input {x.shape} (NHWC) with kernel {w.shape} (HWIO) and "
            f"feature_group_count={groups}: input channels {x.shape[3]} must equal "
            f"kernel in-channels {w.shape[2]} * {groups}, and kernel out-channels "
            f"{w.shape[3]} must be divisible by {groups}"
        )
    spatial = []
    for i in range(2):
        size = _dilated(x.shape[1 + i], lhs_dilation[i]) + padding[2 * i] + padding[2 * i + 1]
        window = _dilated(w.shape[i], rhs_dilation[i])
        spatial.append(window_out_size(max(size, 0), window, strides[i]))
    return TensorType((x.shape[0], *spatial, w.shape[3]), dtype)


def _dilate_and_pad(x: np.ndarray, axis: int, dilation: int, low: int, high: int) -> np.ndarray:
    """Insert ``dilation - 1`` zeros between elements along ``axis``, then pad with zeros
    (negative padding crops, as in XLA)."""
    shape = list(x.shape)
    shape[axis] = _dilated(x.shape[axis], dilation) + max(low, 0) + max(high, 0)
    out = np.zeros(shape, x.dtype)
    index = [slice(None)] * x.ndim
    index[axis] = slice(max(low, 0), max(low, 0) + _dilated(x.shape[axis], dilation), dilation)
    out[tuple(index)] = x
    index[axis] = slice(max(-low, 0), shape[axis] - max(-high, 0))
    return out[tuple(index)]


def _conv2d_ref(
    x: np.ndarray,
    w: np.ndarray,
    *,
    strides: tuple[int, ...],
    padding: tuple[int, ...],
    lhs_dilation: tuple[int, ...],
    rhs_dilation: tuple[int, ...],
    feature_group_count: int,
) -> np.ndarray:
    out_type = _conv2d_rule(
        (TensorType(x.shape, x.dtype), TensorType(w.shape, w.dtype)),
        strides=strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        feature_group_count=feature_group_count,
    )
    n, oh, ow, o = out_type.shape
    for axis in (1, 2):
        i = axis - 1
        x = _dilate_and_pad(x, axis, lhs_dilation[i], padding[2 * i], padding[2 * i + 1])
    groups = feature_group_count
    xg = x.reshape(*x.shape[:3], groups, x.shape[3] // groups)  # N, H, W, G, C/G
    wg = w.reshape(*w.shape[:3], groups, o // groups)  # H, W, C/G, G, O/G
    out = np.zeros((n, oh, ow, groups, o // groups), x.dtype)
    # One kernel tap at a time: the strided window of x it meets, times its weights.
    for i, j in itertools.product(range(w.shape[0]), range(w.shape[1])):
        top, left = i * rhs_dilation[0], j * rhs_dilation[1]
        patch = xg[:, _taps(top, oh, strides[0]), _taps(left, ow, strides[1])]
        out += np.einsum("nhwgc,cgo->nhwgo", patch, wg[i, j])
    return out.reshape(n, oh, ow, o)


conv2d = register(
    OpDef(
        "conv2d",
        _conv2d_rule,
        low_precision_ref(_conv2d_ref),
        attrs={
            "strides": "ints",
            "padding": "ints",
            "lhs_dilation": "ints",
            "rhs_dilation": "ints",
            "feature_group_count": "int",
        },
        doc="jax.lax.conv_general_dilated(x, w, strides, ((low_h, high_h), (low_w, high_w)), "
        "lhs_dilation, rhs_dilation, ('NHWC', 'HWIO', 'NHWC'), feature_group_count); negative "
        "padding crops; float16/bfloat16 accumulate in float32",
    )
)


def _reduce_window_rule(
    types: tuple[TensorType, ...],
    *,
    window: tuple[int, ...],
    strides: tuple[int, ...],
    padding: tuple[int, ...],
) -> TensorType:
    check_arity(types, 1)
    x = types[0]
    check_dtype(x, NUMERIC)
    for name, values in (("window", window), ("strides", strides)):
        check_count(name, values, x.ndim, f"one per dim of {x.shape}")
        check_min(name, values, 1)
    check_count("padding", padding, 2 * x.ndim, f"low and high per dim of {x.shape}")
    check_min("padding", padding, 0)
    shape = tuple(
        window_out_size(d + padding[2 * i] + padding[2 * i + 1], window[i], strides[i])
        for i, d in enumerate(x.shape)
    )
    return TensorType(shape, x.dtype)


def reduce_window_init(dtype: np.dtype, reduction: str) -> np.ndarray:
    """The padding value and identity of a windowed reduction ("max" or "sum")."""
    if reduction == "sum":
        return np.zeros((), dtype)
    return extreme(dtype, largest=False)


def _reduce_window(reduction: str, combine: Callable) -> Callable:
    def ref(
        x: np.ndarray,
        *,
        window: tuple[int, ...],
        strides: tuple[int, ...],
        padding: tuple[int, ...],
    ) -> np.ndarray:
        out_shape = _reduce_window_rule(
            (TensorType(x.shape, x.dtype),), window=window, strides=strides, padding=padding
        ).shape
        padded = np.full(
            [d + padding[2 * i] + padding[2 * i + 1] for i, d in enumerate(x.shape)],
            reduce_window_init(x.dtype, reduction),
            x.dtype,
        )
        padded[tuple(slice(padding[2 * i], padding[2 * i] + d) for i, d in enumerate(x.shape))] = x
        out = np.full(out_shape, reduce_window_init(x.dtype, reduction), x.dtype)
        # Fold in one window offset at a time: the strided view of every window's element there.
        for offset in itertools.product(*map(range, window)):
            view = padded[tuple(map(_taps, offset, out_shape, strides))]
            out = combine(out, view)
        return out

    return low_precision_ref(ref)


_WINDOW_ATTRS = {"window": "ints", "strides": "ints", "padding": "ints"}
reduce_window_max = register(
    OpDef(
        "reduce_window_max",
        _reduce_window_rule,
        _reduce_window("max", np.maximum),
        attrs=_WINDOW_ATTRS,
        doc="the max of each window; padding is -inf (the least integer for ints); padding is "
        "[low0, high0, low1, high1, ...]",
    )
)
reduce_window_sum = register(
    OpDef(
        "reduce_window_sum",
        _reduce_window_rule,
        _reduce_window("sum", np.add),
        attrs=_WINDOW_ATTRS,
        doc="the sum of each window; padding is 0; padding is [low0, high0, low1, high1, ...]; "
        "float16/bfloat16 accumulate in float32",
    )
)


def _select_and_scatter_add_rule(
    types: tuple[TensorType, ...],
    *,
    window: tuple[int, ...],
    strides: tuple[int, ...],
    padding: tuple[int, ...],
) -> TensorType:
    check_arity(types, 2)
    source, operand = types
    same_dtype(types)
    check_dtype(operand, NUMERIC)
    windows = _reduce_window_rule((operand,), window=window, strides=strides, padding=padding)
    if source.shape != windows.shape:
        raise ShapeError(
            f"select_and_scatter_add: source {source.shape} must have the shape of the windows "
            f"{windows.shape} of operand {operand.shape}"
        )
    return operand


def _select_and_scatter_add_ref(
    source: np.ndarray,
    operand: np.ndarray,
    *,
    window: tuple[int, ...],
    strides: tuple[int, ...],
    padding: tuple[int, ...],
) -> np.ndarray:
    _select_and_scatter_add_rule(
        (TensorType(source.shape, source.dtype), TensorType(operand.shape, operand.dtype)),
        window=window,
        strides=strides,
        padding=padding,
    )
    low_precision = source.dtype.itemsize == 2 and source.dtype.kind in "fV"
    wide = np.dtype(np.float32) if low_precision else source.dtype
    out = np.zeros(operand.shape, wide)
    low = padding[0::2]
    # Each window picks its first largest element (padding never wins) and gets the source:
    # XLA's GE selection, which keeps the element picked so far while it is >= the next one
    # (so a NaN is picked when met, and left for the next element)
    for index in np.ndindex(source.shape):
        best, where = None, None
        for offset in itertools.product(*map(range, window)):
            at = tuple(o * s + k - lo for o, s, k, lo in zip(index, strides, offset, low))
            if any(not 0 <= a < d for a, d in zip(at, operand.shape)):
                continue
            if best is None or not best >= operand[at]:
                best, where = operand[at], at
        if where is not None:
            out[where] += source[index]
    return out.astype(source.dtype)


select_and_scatter_add = register(
    OpDef(
        "select_and_scatter_add",
        _select_and_scatter_add_rule,
        _select_and_scatter_add_ref,
        attrs=_WINDOW_ATTRS,
        doc="(source, operand): XLA SelectAndScatter with GE selection and add scattering: "
        "each source element is added at its window's first largest operand element (padding, "
        "laid out as in reduce_window_max, never selected); the gradient of reduce_window_max",
    )
)


# -- gradient rules (ir/grad.py) ------------------------------------------------------------------
def _unsupported(op, what: str) -> ShapeError:
    return ShapeError(
        f"the gradient of {op.opdef.name} is not supported for {what}; file an issue",
        op=op.opdef.name,
        loc=op.loc,
    )


def _empty(t: TensorType) -> bool:
    return any(d == 0 for d in t.shape)


def _conv_vjp_padding(
    in_size: int, k_size: int, out_size: int, stride: int, low: int, lhs_d: int, rhs_d: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(low, high) paddings of the input-gradient and kernel-gradient convolutions along one
    spatial dim (jax's _conv_general_vjp_lhs_padding and _conv_general_vjp_rhs_padding)."""
    lhs_dilated, rhs_dilated = _dilated(in_size, lhs_d), _dilated(k_size, rhs_d)
    out_dilated = _dilated(out_size, stride)
    before = rhs_dilated - low - 1
    after = lhs_dilated + rhs_dilated - 1 - out_dilated - before
    rhs_high = out_dilated - lhs_dilated + rhs_dilated - low - 1
    return (before, after), (low, rhs_high)


def _conv2d_group_vjp(e, x, w, g, attrs):
    """(input cotangent, kernel cotangent) of a feature_group_count=1 conv2d."""
    from .shape import reverse, transpose

    strides, padding = attrs["strides"], attrs["padding"]
    lhs_d, rhs_d = attrs["lhs_dilation"], attrs["rhs_dilation"]
    pads = [
        _conv_vjp_padding(
            x.type.shape[1 + i],
            w.type.shape[i],
            g.type.shape[1 + i],
            strides[i],
            padding[2 * i],
            lhs_d[i],
            rhs_d[i],
        )
        for i in range(2)
    ]
    # input: the cotangent convolved with the flipped kernel, I and O swapped
    flipped = e(reverse, e(transpose, w, perm=(0, 1, 3, 2)), axes=(0, 1))
    gx = e(
        conv2d,
        g,
        flipped,
        strides=tuple(lhs_d),
        padding=(*pads[0][0], *pads[1][0]),
        lhs_dilation=tuple(strides),
        rhs_dilation=tuple(rhs_d),
        feature_group_count=1,
    )
    # kernel: input (channels as batch) convolved with the cotangent (batch as in-channels)
    gw = e(
        conv2d,
        e(transpose, x, perm=(3, 1, 2, 0)),
        e(transpose, g, perm=(1, 2, 0, 3)),
        strides=tuple(rhs_d),
        padding=(*pads[0][1], *pads[1][1]),
        lhs_dilation=tuple(lhs_d),
        rhs_dilation=tuple(strides),
        feature_group_count=1,
    )
    gw = e(transpose, gw, perm=(1, 2, 0, 3))
    if gx.type.shape != x.type.shape or gw.type.shape != w.type.shape:
        raise AssertionError(f"conv2d vjp shapes {gx.type}, {gw.type} for {x.type}, {w.type}")
    return gx, gw


@conv2d.defvjp
def _conv2d_vjp(e, op, g):
    from .shape import concatenate, slice_

    x, w = op.inputs
    if _empty(g.type) or _empty(x.type) or _empty(w.type):
        return [e.zeros(x.type), e.zeros(w.type)]
    groups = op.attrs["feature_group_count"]
    if groups == 1:
        return list(_conv2d_group_vjp(e, x, w, g, op.attrs))

    def channels(v, group, count):  # v[..., group * count : (group + 1) * count]
        shape = v.type.shape
        return e(
            slice_,
            v,
            start=(0, 0, 0, group * count),
            limit=(*shape[:3], (group + 1) * count),
            strides=(1, 1, 1, 1),
        )

    cg, og = w.type.shape[2], w.type.shape[3] // groups
    parts = [
        _conv2d_group_vjp(e, channels(x, i, cg), channels(w, i, og), channels(g, i, og), op.attrs)
        for i in range(groups)
    ]
    return [e(concatenate, *(p[k] for p in parts), axis=3) for k in range(2)]


def _dilate(e, v, axis: int, dilation: int):
    """``dilation - 1`` zeros between neighbours along ``axis`` (pad a new axis, fold it in)."""
    from .shape import pad, reshape, slice_

    if dilation == 1 or v.type.shape[axis] <= 1:
        return v
    shape = v.type.shape
    n = shape[axis]
    split = e(reshape, v, shape=(*shape[: axis + 1], 1, *shape[axis + 1 :]))
    high = [0] * split.type.ndim
    high[axis + 1] = dilation - 1
    spread = e(pad, split, e.constant(0, v.type.dtype), low=(0,) * len(high), high=tuple(high))
    flat = e(reshape, spread, shape=(*shape[:axis], n * dilation, *shape[axis + 1 :]))
    limit = list(flat.type.shape)
    limit[axis] = _dilated(n, dilation)
    return e(slice_, flat, start=(0,) * len(limit), limit=tuple(limit), strides=(1,) * len(limit))


@reduce_window_sum.defvjp
def _reduce_window_sum_vjp(e, op, g):
    # d x_pad[p] = sum of g over the windows covering p: the dilated cotangent, padded by
    # window - 1 on both sides, summed over windows at stride 1; then the padding is cut off.
    from .shape import slice_

    x = op.inputs[0]
    window, strides, padding = op.attrs["window"], op.attrs["strides"], op.attrs["padding"]
    if _empty(g.type) or _empty(x.type):
        return [e.zeros(x.type)]
    for axis, stride in enumerate(strides):
        g = _dilate(e, g, axis, stride)
    pads = []
    for i, d in enumerate(x.type.shape):
        padded = d + padding[2 * i] + padding[2 * i + 1]
        covered = g.type.shape[i] + window[i] - 1  # positions the windows reach
        pads += [window[i] - 1, window[i] - 1 + padded - covered]
    total = e(
        reduce_window_sum,
        g,
        window=tuple(window),
        strides=(1,) * len(window),
        padding=tuple(pads),
    )
    start = tuple(padding[0::2])
    limit = tuple(lo + d for lo, d in zip(start, x.type.shape))
    if total.type.shape == x.type.shape:
        return [total]
    return [e(slice_, total, start=start, limit=limit, strides=(1,) * len(start))]


@reduce_window_max.defvjp
def _reduce_window_max_vjp(e, op, g):
    # each window's cotangent goes to its (first) largest element, as XLA's select_and_scatter
    x = op.inputs[0]
    if _empty(g.type) or _empty(x.type):
        return [e.zeros(x.type)]
    return [e(select_and_scatter_add, g, x, **op.attrs)]


@select_and_scatter_add.defvjp
def _select_and_scatter_add_vjp(e, op, g):
    raise _unsupported(op, "second-order gradients of max pooling (reduce_window_max)")


# -- batching rules (ir/batching.py): the batch axis is first, the example's axes follow --------
@conv2d.defbatch
def _conv2d_batch(e, op, args, batched):
    """One conv for the whole batch (B examples, each conv2d(x: N,H,W,C, w: kh,kw,C/G,O)
    with G = feature_group_count), as jax's conv batching rule:

    - x batched, w shared: the batch joins the conv's own: x as (B*N, H, W, C).
    - w batched, x shared: the batch joins the output channels, inside each group (a group's
      output channels are contiguous): w as (kh, kw, C/G, G*B*O/G), the result's channels
      (G, B, O/G) sorted back to (B, G*O/G).
    - both batched: the batch joins the channels of both, as B*G groups: x as (N, H, W, B*C),
      where group b*G + g holds example b's group g, and w as (kh, kw, C/G, B*O)."""
    from .shape import reshape, transpose

    x, w = args
    (n, *_, c), (kh, kw, cg, o) = (v.type.shape for v in op.inputs)
    (_, oh, ow, _), size = op.outputs[0].type.shape, e.size
    groups = op.attrs["feature_group_count"]
    attrs = dict(op.attrs)
    if size == 0:  # (B*G groups would be none)
        return [e.zeros(e.batched_type(op.outputs[0].type))], [True]
    if not batched[1]:
        x = e(reshape, x, shape=(size * n, *x.type.shape[2:]))
        out = e(conv2d, x, w, **attrs)
        return [e(reshape, out, shape=(size, n, oh, ow, o))], [True]
    if not batched[0]:
        w = e(reshape, w, shape=(size, kh, kw, cg, groups, o // groups))
        w = e(transpose, w, perm=(1, 2, 3, 4, 0, 5))  # kh, kw, C/G, G, B, O/G
        out = e(conv2d, x, e(reshape, w, shape=(kh, kw, cg, size * o)), **attrs)
        out = e(reshape, out, shape=(n, oh, ow, groups, size, o // groups))
        out = e(transpose, out, perm=(4, 0, 1, 2, 3, 5))  # B, N, OH, OW, G, O/G
        return [e(reshape, out, shape=(size, n, oh, ow, o))], [True]
    x = e(reshape, e(transpose, x, perm=(1, 2, 3, 0, 4)), shape=(*x.type.shape[1:4], size * c))
    w = e(reshape, e(transpose, w, perm=(1, 2, 3, 0, 4)), shape=(kh, kw, cg, size * o))
    attrs["feature_group_count"] = size * groups
    out = e(reshape, e(conv2d, x, w, **attrs), shape=(n, oh, ow, size, o))
    return [e.moveaxis(out, 3, 0)], [True]


def _window_batch(e, op, args, batched):
    """A window of one element over the batch axis: each example's windows stay its own.
    (select_and_scatter_add's source and operand both get the batch axis.)"""
    operands = [e.materialize(a, b) for a, b in zip(args, batched)]
    window, strides, padding = (op.attrs[k] for k in ("window", "strides", "padding"))
    out = e(
        op.opdef,
        *operands,
        window=(1, *window),
        strides=(1, *strides),
        padding=(0, 0, *padding),
    )
    return [out], [True]


reduce_window_max.defbatch(_window_batch)
reduce_window_sum.defbatch(_window_batch)
select_and_scatter_add.defbatch(_window_batch)
