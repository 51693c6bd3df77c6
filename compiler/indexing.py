"""``tensor[key]``: ints, slices (any step), None, Ellipsis and integer arrays (gather).

Basic indices become one ``slice`` (plus ``reverse`` for negative steps) and a ``reshape``;
integer-array indices become one ``take`` on the indexed axes merged into one."""

from __future__ import annotations

from typing import Any

import numpy as np

from flowjit.ir.errors import ShapeError
from flowjit.ir.ops import shape as S

from .location import user_location, with_user_location
from .trace import emit


def _is_array_index(k: Any) -> bool:
    from .tensor import Tensor

    return isinstance(k, (Tensor, np.ndarray, list)) or (
        isinstance(k, np.generic) and k.dtype.kind not in "iu"
    )


def _expand_key(key: Any, ndim: int) -> list:
    key = list(key) if isinstance(key, tuple) else [key]
    consumed = sum(1 for k in key if k is not None and k is not Ellipsis)
    if consumed > ndim:
        raise IndexError(f"too many indices: {consumed} for a Tensor of rank {ndim}")
    # by identity: `in` and `.index` would compare array indices with ==
    ellipses = [i for i, k in enumerate(key) if k is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if ellipses:
        key[ellipses[0] : ellipses[0] + 1] = [slice(None)] * (ndim - consumed)
    else:
        key += [slice(None)] * (ndim - consumed)
    return key


@with_user_location
def getitem(x, key):
    from .numpy_api import asarray, reshape

    entries = _expand_key(key, x.ndim)
    if any(k is None for k in entries) and any(_is_array_index(k) for k in entries):
        # None beside integer arrays: index a new size-1 axis with `:` instead, which places
        # every dim as numpy does (and separates the arrays around it, as None does)
        dims = iter(x.shape)
        x = reshape(x, tuple(1 if k is None else next(dims) for k in entries))
        entries = [slice(None) if k is None else k for k in entries]
    ints_are_advanced = _ints_are_advanced(entries)
    start, limit, strides, flips, out_shape = [], [], [], [], []
    advanced: list[tuple[int, Any]] = []  # (axis, indices)
    axis = 0
    for k in entries:
        if k is None:
            out_shape.append(("new", 1))
            continue
        n = x.shape[axis]
        if isinstance(k, slice):
            lo, hi, step = k.indices(n)
            if step > 0:
                size = max(0, -(-(hi - lo) // step))
                first = lo
            else:
                size = max(0, -(-(lo - hi) // -step))
                first = lo + (size - 1) * step if size else 0  # the smallest index taken
                flips.append(axis)
            start.append(first if size else 0)
            limit.append(first + (size - 1) * abs(step) + 1 if size else 0)
            strides.append(abs(step))
            out_shape.append(("dim", size))
        elif _is_int(k):
            i = int(k)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
            i %= n
            if ints_are_advanced:  # a 0-d index array: it places the index dims as numpy does
                start.append(0), limit.append(n), strides.append(1)
                advanced.append((axis, asarray(np.int32(i))))
                out_shape.append(("adv", n))
            else:
                start.append(i), limit.append(i + 1), strides.append(1)
                out_shape.append(("drop", 1))
        elif _is_array_index(k):
            start.append(0), limit.append(n), strides.append(1)
            advanced.append((axis, asarray(k)))
            out_shape.append(("adv", n))
        else:
            raise IndexError(
                f"cannot index a Tensor with {type(k).__name__}; use ints, slices, "
                "None, ... or integer arrays"
            )
        axis += 1
    if tuple(start) != (0,) * x.ndim or tuple(limit) != x.shape or set(strides) - {1}:
        x = emit(S.slice_, [x], start=tuple(start), limit=tuple(limit), strides=tuple(strides))
    if flips:
        x = emit(S.reverse, [x], axes=tuple(flips))
    if advanced:
        kept = [i for i, (tag, _) in enumerate(out_shape) if tag != "drop"]
        x = reshape(x, tuple(x.shape[i] for i in kept))
        return _gather(x, [(kept.index(a), idx) for a, idx in advanced])
    return reshape(x, tuple(size for tag, size in out_shape if tag != "drop"))


def _is_int(k: Any) -> bool:
    return isinstance(k, (int, np.integer)) and not isinstance(k, bool)


def _ints_are_advanced(entries: list) -> bool:
    """numpy counts an int next to an integer array as an advanced index: when the advanced
    indices are not adjacent (``x[1, :, [0, 2]]``), the index dims go first. Only then must the
    int be gathered; otherwise slicing it away first gives the same result."""
    if not any(_is_array_index(k) for k in entries):
        return False
    at = [n for n, k in enumerate(entries) if _is_array_index(k) or _is_int(k)]
    return at != list(range(at[0], at[0] + len(at)))


def _gather(x, advanced):
    """Apply integer-array indices: move the indexed axes together, merge them into one axis
    and ``take`` along it with the flattened index (numpy's placement rule: the index dims go
    where the indexed axes were if those are adjacent, else first)."""
    from .numpy_api import add, broadcast_to, clip, multiply, reshape, transpose, where
    from .numpy_linalg import take

    axes = [a for a, _ in advanced]
    shapes = [tuple(i.shape) for _, i in advanced]
    try:
        index_shape = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ShapeError(
            f"index arrays of shapes {shapes} do not broadcast together",
            op="getitem",
            loc=user_location(),
        ) from None
    if len(advanced) == 1:
        return take(x, advanced[0][1], axis=axes[0])
    contiguous = axes == list(range(axes[0], axes[0] + len(axes)))
    position = axes[0] if contiguous else 0
    others = [a for a in range(x.ndim) if a not in axes]
    sizes = [x.shape[a] for a in axes]
    x = transpose(x, others[:position] + axes + others[position:])
    merged = int(np.prod(sizes, dtype=np.int64))
    x = reshape(x, x.shape[:position] + (merged,) + x.shape[position + len(axes) :])
    flat, stride = None, 1
    for (_, idx), size in zip(reversed(advanced), reversed(sizes)):
        # wrap negatives and clamp per axis, as take does for one axis
        idx = broadcast_to(idx, index_shape)
        idx = clip(where(idx < 0, idx + size, idx), 0, size - 1)
        term = idx if stride == 1 else multiply(idx, stride)
        flat = term if flat is None else add(flat, term)
        stride *= size
    return take(x, flat, axis=position)
