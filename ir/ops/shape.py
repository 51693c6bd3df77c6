"""Shape ops: moving, copying and padding elements without computing on them. Every op takes
fully resolved attributes (the tracer turns -1 sizes, Python slices and negative steps into
these), so each shape rule only checks them and never guesses."""

from __future__ import annotations

import numpy as np

from ..batching import shifted_axis_batch
from ..core import OpDef, register
from ..errors import ShapeError
from ..types import TensorType
from .rules import (
    ANY,
    check_arity,
    check_count,
    check_dtype,
    check_min,
    normalize_axes,
    normalize_axis,
    same_dtype,
)


def _one_input(types: tuple[TensorType, ...]) -> TensorType:
    check_arity(types, 1)
    check_dtype(types[0], ANY)
    return types[0]


def _reshape_rule(types: tuple[TensorType, ...], *, shape: tuple[int, ...]) -> TensorType:
    x = _one_input(types)
    check_min("shape", shape, 0)
    out = TensorType(shape, x.dtype)
    if out.size != x.size:
        raise ShapeError(
            f"cannot reshape {x.shape} ({x.size} elements) to {shape} ({out.size} elements)"
        )
    return out


reshape = register(
    OpDef(
        "reshape",
        _reshape_rule,
        lambda x, *, shape: x.reshape(shape),
        attrs={"shape": "ints"},
        doc="x.reshape(shape) in row-major order; shape has no -1",
    )
)


def _transpose_rule(types: tuple[TensorType, ...], *, perm: tuple[int, ...]) -> TensorType:
    x = _one_input(types)
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"perm={perm} is not a permutation of the {x.ndim} axes of {x.shape}")
    return TensorType(tuple(x.shape[p] for p in perm), x.dtype)


transpose = register(
    OpDef(
        "transpose",
        _transpose_rule,
        lambda x, *, perm: np.transpose(x, perm).copy(),
        attrs={"perm": "ints"},
        doc="numpy.transpose: output axis i is input axis perm[i]",
    )
)


def _broadcast_to_rule(types: tuple[TensorType, ...], *, shape: tuple[int, ...]) -> TensorType:
    x = _one_input(types)
    check_min("shape", shape, 0)
    lead = len(shape) - x.ndim
    if lead < 0 or any(d not in (1, t) for d, t in zip(x.shape, shape[lead:])):
        raise ShapeError(
            f"cannot broadcast shape {x.shape} to {shape}: input dims align to "
            "the right and must equal the target dim or be 1"
        )
    return TensorType(shape, x.dtype)


broadcast_to = register(
    OpDef(
        "broadcast_to",
        _broadcast_to_rule,
        lambda x, *, shape: np.broadcast_to(x, shape).copy(),
        attrs={"shape": "ints"},
        doc="numpy.broadcast_to: dims align right, size 1 stretches",
    )
)


def _concatenate_rule(types: tuple[TensorType, ...], *, axis: int) -> TensorType:
    if not types:
        raise ShapeError("expects at least 1 operand, got 0")
    dtype = same_dtype(types)
    check_dtype(types[0], ANY)
    shapes = [t.shape for t in types]
    if any(t.ndim != types[0].ndim for t in types) or types[0].ndim == 0:
        raise ShapeError(
            f"cannot concatenate shapes {', '.join(map(str, shapes))}: operands need one rank >= 1"
        )
    axis = normalize_axis(axis, types[0].ndim)
    rest = {s[:axis] + s[axis + 1 :] for s in shapes}
    if len(rest) > 1:
        raise ShapeError(
            f"cannot concatenate shapes {', '.join(map(str, shapes))} along axis "
            f"{axis}: the other dimensions differ"
        )
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return TensorType(tuple(out), dtype)


concatenate = register(
    OpDef(
        "concatenate",
        _concatenate_rule,
        lambda *xs, axis: np.concatenate(xs, axis=axis),
        attrs={"axis": "int"},
        doc="numpy.concatenate of one or more operands along axis",
    )
)


def _slice_rule(
    types: tuple[TensorType, ...],
    *,
    start: tuple[int, ...],
    limit: tuple[int, ...],
    strides: tuple[int, ...],
) -> TensorType:
    x = _one_input(types)
    for name, values in (("start", start), ("limit", limit), ("strides", strides)):
        check_count(name, values, x.ndim, f"one per dim of {x.shape}")
    check_min("strides", strides, 1)
    for axis, (lo, hi, dim) in enumerate(zip(start, limit, x.shape)):
        if not 0 <= lo <= hi <= dim:
            raise ShapeError(
                f"slice {lo}:{hi} of axis {axis} (size {dim}) of {x.shape} needs "
                f"0 <= start <= limit <= {dim}"
            )
    out = tuple((hi - lo + s - 1) // s for lo, hi, s in zip(start, limit, strides))
    return TensorType(out, x.dtype)


def _slice_ref(
    x: np.ndarray, *, start: tuple[int, ...], limit: tuple[int, ...], strides: tuple[int, ...]
) -> np.ndarray:
    return x[tuple(map(slice, start, limit, strides))].copy()


slice_ = register(
    OpDef(
        "slice",
        _slice_rule,
        _slice_ref,
        attrs={"start": "ints", "limit": "ints", "strides": "ints"},
        doc="x[start:limit:strides] per dim; strides >= 1",
    )
)


def _pad_rule(
    types: tuple[TensorType, ...], *, low: tuple[int, ...], high: tuple[int, ...]
) -> TensorType:
    check_arity(types, 2)
    x, value = types
    same_dtype(types)
    check_dtype(x, ANY)
    if value.ndim != 0:
        raise ShapeError(f"the pad value must be a scalar (shape ()), got shape {value.shape}")
    for name, values in (("low", low), ("high", high)):
        check_count(name, values, x.ndim, f"one per dim of {x.shape}")
        check_min(name, values, 0)
    return TensorType(tuple(d + lo + hi for d, lo, hi in zip(x.shape, low, high)), x.dtype)


def _pad_ref(
    x: np.ndarray, value: np.ndarray, *, low: tuple[int, ...], high: tuple[int, ...]
) -> np.ndarray:
    # np.pad rejects some dtypes (bfloat16) as constant_values; a filled array takes them all
    out = np.full([d + lo + hi for d, lo, hi in zip(x.shape, low, high)], value, x.dtype)
    out[tuple(slice(lo, lo + d) for lo, d in zip(low, x.shape))] = x
    return out


pad = register(
    OpDef(
        "pad",
        _pad_rule,
        _pad_ref,
        attrs={"low": "ints", "high": "ints"},
        doc="(x, pad_value): low[i] / high[i] copies of pad_value before / after each dim i",
    )
)


def _reverse_rule(types: tuple[TensorType, ...], *, axes: tuple[int, ...]) -> TensorType:
    x = _one_input(types)
    normalize_axes(axes, x.ndim)
    return x


reverse = register(
    OpDef(
        "reverse",
        _reverse_rule,
        lambda x, *, axes: np.flip(x, axes).copy() if axes else x.copy(),
        attrs={"axes": "ints"},
        doc="numpy.flip over axes",
    )
)


# -- gradient rules (ir/grad.py) -------------------------------------------------------------
@reshape.defvjp
def _reshape_vjp(e, op, g):  # reshape back
    return [e(reshape, g, shape=op.inputs[0].type.shape)]


@broadcast_to.defvjp
def _broadcast_to_vjp(e, op, g):  # sum over the stretched dims
    return [e.unbroadcast(g, op.inputs[0].type)]


@transpose.defvjp
def _transpose_vjp(e, op, g):  # transpose back by the inverse permutation
    perm = op.attrs["perm"]
    return [e(transpose, g, perm=tuple(int(i) for i in np.argsort(perm)))]


@concatenate.defvjp
def _concatenate_vjp(e, op, g):  # each operand gets its own stretch of g along the axis
    axis = normalize_axis(op.attrs["axis"], g.type.ndim)
    cts, begin = [], 0
    for x in op.inputs:
        end = begin + x.type.shape[axis]
        start = tuple(begin if d == axis else 0 for d in range(g.type.ndim))
        limit = tuple(end if d == axis else n for d, n in enumerate(g.type.shape))
        cts.append(e(slice_, g, start=start, limit=limit, strides=(1,) * g.type.ndim))
        begin = end
    return cts


@slice_.defvjp
def _slice_vjp(e, op, g):
    # g back in place, zeros elsewhere: strides spread g out (each element followed by
    # stride - 1 zeros, through a unit axis padded and merged back), then pad around it.
    x = op.inputs[0]
    start, strides = op.attrs["start"], op.attrs["strides"]
    if g.type.size == 0:
        return [e.zeros(x.type)]
    zero = e.constant(0, g.type.dtype)
    if any(s > 1 for s in strides):
        split = tuple(n for d, s in zip(g.type.shape, strides) for n in ((d, 1) if s > 1 else (d,)))
        high = tuple(h for s in strides for h in ((0, s - 1) if s > 1 else (0,)))
        spread = e(pad, e(reshape, g, shape=split), zero, low=(0,) * len(split), high=high)
        merged = tuple(d * s for d, s in zip(g.type.shape, strides))
        g = e(reshape, spread, shape=merged)
        spans = tuple((d - 1) * s + 1 for d, s in zip(op.outputs[0].type.shape, strides))
        g = e(slice_, g, start=(0,) * len(spans), limit=spans, strides=(1,) * len(spans))
    high = tuple(n - b - d for n, b, d in zip(x.type.shape, start, g.type.shape))
    return [e(pad, g, zero, low=tuple(start), high=high)]


@pad.defvjp
def _pad_vjp(e, op, g):  # x gets its window of g; the pad value the sum of the rest
    from .elementwise import sub
    from .reduce import reduce_sum

    x = op.inputs[0]
    low = op.attrs["low"]
    inner = e(
        slice_,
        g,
        start=tuple(low),
        limit=tuple(lo + d for lo, d in zip(low, x.type.shape)),
        strides=(1,) * x.type.ndim,
    )
    every = tuple(range(g.type.ndim))
    total = e(reduce_sum, g, axes=every, keepdims=False)
    window = e(reduce_sum, inner, axes=every, keepdims=False)
    return [inner, e(sub, total, window) if every else e.zeros(op.inputs[1].type)]


@reverse.defvjp
def _reverse_vjp(e, op, g):  # reverse back
    return [e(reverse, g, axes=op.attrs["axes"])]


# -- batching rules (ir/batching.py): the batch axis is first, the example's axes follow ----
reverse.defbatch(shifted_axis_batch("axes"))


@transpose.defbatch
def _transpose_batch(e, op, args, batched):  # the batch axis stays first
    return [e(transpose, args[0], perm=(0, *(p + 1 for p in op.attrs["perm"])))], [True]


@reshape.defbatch
def _reshape_batch(e, op, args, batched):  # each example reshaped on its own
    return [e(reshape, args[0], shape=(e.size, *op.attrs["shape"]))], [True]


@broadcast_to.defbatch
def _broadcast_to_batch(e, op, args, batched):  # the example's axes line up after the batch's
    shape = op.attrs["shape"]
    x = e.expand(args[0], True, len(shape))
    return [e(broadcast_to, x, shape=(e.size, *shape))], [True]


@concatenate.defbatch
def _concatenate_batch(e, op, args, batched):  # along the example's axis, one further
    xs = [e.materialize(a, b) for a, b in zip(args, batched)]
    axis = normalize_axis(op.attrs["axis"], op.outputs[0].type.ndim) + 1
    return [e(concatenate, *xs, axis=axis)], [True]


@slice_.defbatch
def _slice_batch(e, op, args, batched):  # the whole batch axis, each example's slice
    start, limit, strides = (op.attrs[k] for k in ("start", "limit", "strides"))
    return [e(slice_, args[0], start=(0, *start), limit=(e.size, *limit), strides=(1, *strides))], [
        True
    ]


@pad.defbatch
def _pad_batch(e, op, args, batched):
    """A shared pad value pads every example's axes (not the batch axis); one value per
    example: pad with zeros, then select the pad value outside each example's window."""
    x, value = e.materialize(args[0], batched[0]), args[1]
    low, high = (0, *op.attrs["low"]), (0, *op.attrs["high"])
    if not batched[1]:
        return [e(pad, x, value, low=low, high=high)], [True]
    from . import elementwise as E

    padded = e(pad, x, e.constant(0, x.type.dtype), low=low, high=high)
    inside = e(broadcast_to, e.constant(True, np.bool_), shape=x.type.shape)
    mask = e(pad, inside, e.constant(False, np.bool_), low=low, high=high)
    value = e.expand(value, True, padded.type.ndim - 1)
    return [e(E.select, mask, padded, value)], [True]
