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
