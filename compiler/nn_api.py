"""``fj.nn``: neural-network functions with jax.nn's signatures, built from flowjit.numpy."""

from __future__ import annotations

import math

import numpy as np

from flowjit.ir.errors import ArgumentError, ShapeError
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops import nn as N
from flowjit.ir.ops.rules import normalize_axis

from . import numpy_api as fnp
from . import numpy_linalg as fla
from .dtypes import float_dtype
from .location import check_int, user_location, wrap_public_functions
from .trace import emit


def _float(x):
    x = fnp.asarray(x)
    return fnp.astype(x, float_dtype(x.dtype))


def relu(x):
    # a select, not maximum(x, 0): its gradient at 0 is 0, as in jax and TensorFlow (maximum
    # splits a tie), and the backward pass is one select
    x = fnp.asarray(x)
    return fnp.where(x > 0, x, fnp.zeros((), x.dtype))


def sigmoid(x):
    return emit(E.logistic, [_float(x)])


def silu(x):
    x = _float(x)
    return x * sigmoid(x)


swish = silu


def softplus(x):
    # log(1 + exp(x)) computed stably: max(x, 0) + log1p(exp(-|x|))
    x = _float(x)
    return fnp.maximum(x, 0) + fnp.log1p(fnp.exp(-fnp.abs(x)))


def gelu(x, approximate: bool = True):
    x = _float(x)
    if approximate:
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
        return 0.5 * x * (1 + fnp.tanh(inner))
    return 0.5 * x * (1 + emit(E.erf, [x * (1 / math.sqrt(2))]))


def _constant_shift(x, axis):
    """The max along ``axis``, subtracted for stability; its gradient cancels, so none flows
    through it (saving the backward pass passes over x, as in jax)."""
    return emit(E.stop_gradient, [fnp.max(x, axis, keepdims=True)])


def logsumexp(x, axis=None, keepdims=False):
    x = _float(x)
    peak = _constant_shift(x, axis)  # (the shift's gradient cancels)
    peak = fnp.where(fnp.isfinite(peak), peak, 0)  # all -inf rows: avoid inf - inf
    out = fnp.log(fnp.sum(fnp.exp(x - peak), axis, keepdims=True)) + peak
    return out if keepdims else fnp.squeeze(out, axis if axis is not None else None)


def log_softmax(x, axis=-1):
    x = _float(x)
    shifted = x - _constant_shift(x, axis)
    return shifted - fnp.log(fnp.sum(fnp.exp(shifted), axis, keepdims=True))


def softmax(x, axis=-1):
    return _softmax(_float(x), axis)


def _softmax_of(x, axis):
    unnormalized = fnp.exp(x - _constant_shift(x, axis))
    return unnormalized / fnp.sum(unnormalized, axis, keepdims=True)


def _softmax_jvp(axis, primals, tangents):
    """y (t - sum(t y)), as jax.nn.softmax's rule: the gradient (this transposed) keeps only
    y, where the plain one kept exp(x) and y (a transformer's attention probabilities twice)."""
    (x,), (t,) = primals, tangents
    y = _softmax_of(x, axis)
    return y, y * (t - fnp.sum(t * y, axis, keepdims=True))


def _made_softmax():
    from .custom import custom_jvp

    made = custom_jvp(_softmax_of, nondiff_argnums=(1,))
    made.defjvp(_softmax_jvp)
    return made


def one_hot(x, num_classes: int, dtype=np.float32, axis=-1):
    x = fnp.asarray(x)
    num_classes = check_int(
        num_classes,
        "num_classes",
        op="one_hot",
        minimum=1,
        hint="; it is the number of classes (the labels run from 0 to num_classes - 1)",
    )
    classes = fnp.arange(num_classes, dtype=x.dtype)
    out = fnp.astype(fnp.expand_dims(x, -1) == classes, dtype)
    to = normalize_axis(axis, out.ndim)
    return out if to == out.ndim - 1 else fnp.transpose(out, _move_last(out.ndim, to))


def _move_last(ndim: int, to: int) -> tuple[int, ...]:
    order = list(range(ndim - 1))
    order.insert(to, ndim - 1)
    return tuple(order)


def softmax_cross_entropy(logits, labels):
    """Per-example loss of integer ``labels`` under ``logits`` (classes on the last axis)."""
    logits, labels = _float(logits), fnp.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(
            f"labels must be integer class ids, got {labels.dtype}; for one-hot or "
            "soft labels use -(labels * fj.nn.log_softmax(logits)).sum(-1)"
        )
    if labels.shape != logits.shape[:-1]:
        raise ShapeError(
            f"labels of shape {labels.shape} do not fit logits of shape "
            f"{logits.shape}: expected {logits.shape[:-1]}",
            op="softmax_cross_entropy",
            loc=user_location(),
        )
    # log(sum(exp(shifted))) - shifted[label], as optax: -log_softmax(logits)[label] (the
    # same roundings), but the backward pass scatters the label's cotangent alone, where
    # log_softmax's summed all of the scattered array again
    shifted = logits - _constant_shift(logits, -1)
    picked = fla.take_along_axis(shifted, fnp.expand_dims(labels, -1), -1)
    return fnp.log(fnp.sum(fnp.exp(shifted), -1)) - fnp.squeeze(picked, -1)


def _pair(v, name: str, op: str) -> tuple[int, int]:
    """A stride, dilation or window: an int >= 1 for both spatial axes, or a pair of them."""
    pair = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    wanted = "an int >= 1 or a pair of them"
    if len(pair) != 2:
        raise ArgumentError(f"{name} must be {wanted}, got {v!r}", op=op, loc=user_location())
    hint = f"; if you meant the smallest {name}, use {name}=1"
    first, second = (check_int(p, name, op=op, minimum=1, wanted=wanted, hint=hint) for p in pair)
    return first, second


def _same_padding(size: int, window: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    effective = (window - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _padding(padding, spatial, window, stride, dilation) -> tuple[int, ...]:
    if padding == "VALID":
        return (0, 0, 0, 0)
    if padding == "SAME":
        return tuple(
            p
            for i in range(2)
            for p in _same_padding(spatial[i], window[i], stride[i], dilation[i])
        )
    pads = tuple(int(p) for pair in padding for p in pair)
    if len(pads) != 4:
        raise ValueError(
            f"padding must be 'SAME', 'VALID' or ((lo, hi), (lo, hi)), got {padding!r}"
        )
    return pads


def conv2d(x, w, stride=1, padding="SAME", dilation=1):
    """2-D convolution of NHWC ``x`` with HWIO ``w``."""
    x, w = fnp._common(_float(x), w)
    if x.ndim != 4 or w.ndim != 4:
        raise ShapeError(
            f"conv2d needs NHWC input and HWIO weights, got shapes {x.shape} and {w.shape}",
            op="conv2d",
            loc=user_location(),
        )
    stride, dilation = _pair(stride, "stride", "conv2d"), _pair(dilation, "dilation", "conv2d")
    pads = _padding(padding, x.shape[1:3], w.shape[:2], stride, dilation)
    return emit(
        N.conv2d,
        [x, w],
        strides=stride,
        padding=pads,
        lhs_dilation=(1, 1),
        rhs_dilation=dilation,
        feature_group_count=1,
    )


def _pool(opdef, x, window, stride, padding):
    window = _pair(window, "window", opdef.name)
    stride = window if stride is None else _pair(stride, "stride", opdef.name)
    if x.ndim != 4:
        raise ShapeError(
            f"pooling needs an NHWC input, got shape {x.shape}", op=opdef.name, loc=user_location()
        )
    pads = _padding(padding, x.shape[1:3], window, stride, (1, 1))
    return (
        emit(
            opdef, [x], window=(1, *window, 1), strides=(1, *stride, 1), padding=(0, 0, *pads, 0, 0)
        ),
        window,
        stride,
        pads,
    )


def max_pool2d(x, window=2, stride=None, padding="VALID"):
    return _pool(N.reduce_window_max, fnp.asarray(x), window, stride, padding)[0]


def avg_pool2d(x, window=2, stride=None, padding="VALID"):
    """Mean over each window; with SAME padding, padded cells are not counted (as flax)."""
    x = _float(x)
    total, window, stride, pads = _pool(N.reduce_window_sum, x, window, stride, padding)
    if not any(pads):
        return total / (window[0] * window[1])
    ones = fnp.ones((1, *x.shape[1:3], 1), x.dtype)
    counts = _pool(N.reduce_window_sum, ones, window, stride, padding)[0]
    return total / counts


def layer_norm(x, scale=None, bias=None, eps: float = 1e-5):
    """Normalize over the last axis, then scale and shift. A float16 or bfloat16 ``x`` is
    normalized in float32 (its statistics too, as flax's LayerNorm) and the result rounded
    back to its dtype once."""
    x = _float(x)
    if x.dtype.itemsize < 4:
        wide = lambda v: None if v is None else fnp.asarray(v).astype(np.float32)  # noqa: E731
        return layer_norm(wide(x), wide(scale), wide(bias), eps).astype(x.dtype)
    mean = fnp.mean(x, -1, keepdims=True)
    centered = x - mean
    variance = fnp.mean(centered * centered, -1, keepdims=True)
    out = centered * fnp.rsqrt(variance + eps)
    if scale is not None:
        out = out * scale
    if bias is not None:
        out = out + bias
    return out


def dropout(x, rate: float, generator, *, deterministic: bool = False):
    """Zero each element with probability ``rate`` and scale the rest by 1 / (1 - rate).
    ``generator`` supplies the mask through ``generator.bernoulli(p, shape)`` (an
    ``fj.random.Generator``); ``deterministic=True`` (evaluation) returns ``x`` unchanged."""
    x = _float(x)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"dropout rate must be in [0, 1], got {rate}")
    if deterministic or rate == 0.0:
        return x
    if rate == 1.0:
        return fnp.zeros_like(x)
    keep = fnp.asarray(generator.bernoulli(1.0 - rate, x.shape))
    if keep.shape != x.shape or keep.dtype != np.bool_:
        raise ShapeError(
            f"generator.bernoulli gave {keep.dtype}{list(keep.shape)}; dropout needs "
            f"a bool mask of shape {x.shape}",
            op="dropout",
            loc=user_location(),
        )
    return fnp.where(keep, x / (1.0 - rate), 0)


wrap_public_functions(globals(), __name__)


_softmax = _made_softmax()
