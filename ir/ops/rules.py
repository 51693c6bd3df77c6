"""Shape/dtype rules and reference helpers shared by several op families."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ArgumentError, DTypeError, ShapeError
from ..types import BOOL, FLOAT_DTYPES, INT_DTYPES, TensorType, dtype_name, is_float

FLOATS = FLOAT_DTYPES
INTS = INT_DTYPES
NUMERIC = INT_DTYPES + FLOAT_DTYPES
INTS_AND_BOOL = (BOOL,) + INT_DTYPES
ANY = (BOOL,) + NUMERIC


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """numpy broadcasting of shapes; ShapeError naming both shapes when they do not fit."""
    ndim = max(len(s) for s in shapes)
    out = []
    for axis in range(-ndim, 0):
        dims = {s[axis] for s in shapes if len(s) >= -axis} - {1}
        if len(dims) > 1:
            raise ShapeError(
                f"cannot broadcast shapes {' and '.join(map(str, shapes))}: "
                f"dimensions {' vs '.join(map(str, sorted(dims)))} at axis {axis}"
            )
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def check_dtype(t: TensorType, allowed: tuple[np.dtype, ...], what: str = "input") -> None:
    if t.dtype not in allowed:
        names = ", ".join(dtype_name(d) for d in allowed)
        raise DTypeError(f"{what} has dtype {dtype_name(t.dtype)}; expected one of {names}")


def same_dtype(types: tuple[TensorType, ...]) -> np.dtype:
    dtypes = {t.dtype for t in types}
    if len(dtypes) > 1:
        raise DTypeError(
            "operands have different dtypes "
            f"{', '.join(dtype_name(t.dtype) for t in types)}; convert one with .astype()"
        )
    return types[0].dtype


def check_arity(types: tuple[TensorType, ...], n: int) -> None:
    if len(types) != n:
        raise ShapeError(f"expects {n} operand(s), got {len(types)}")


def normalize_axis(axis: int, ndim: int) -> int:
    if not isinstance(axis, (int, np.integer)):
        raise ArgumentError(
            f"axis must be an int or a tuple of ints, got {axis!r}; axes are positions, fixed "
            "when the function is traced: if you meant the last axis, use axis=-1"
        )
    if not -ndim <= axis < max(ndim, 1) or (ndim == 0 and axis not in (0, -1)):
        raise ShapeError(f"axis {axis} is out of range for rank {ndim}")
    return axis % ndim if ndim else 0


def normalize_axes(axes: tuple[int, ...] | None, ndim: int) -> tuple[int, ...]:
    """None -> all axes; negative axes wrapped; duplicates rejected; sorted."""
    if axes is None:
        return tuple(range(ndim))
    if ndim == 0:
        if axes:
            raise ShapeError(f"axes {axes} are out of range for a scalar")
        return ()
    out = tuple(sorted(normalize_axis(a, ndim) for a in axes))
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated axis in {axes}")
    return out


def unary_rule(allowed: tuple[np.dtype, ...], out_dtype: np.dtype | None = None) -> Callable:
    def rule(types: tuple[TensorType, ...]) -> TensorType:
        check_arity(types, 1)
        check_dtype(types[0], allowed)
        return TensorType(types[0].shape, out_dtype or types[0].dtype)

    return rule


def nary_rule(n: int, allowed: tuple[np.dtype, ...], out_dtype: np.dtype | None = None) -> Callable:
    """n operands of one dtype in ``allowed``, shapes broadcast the numpy way."""

    def rule(types: tuple[TensorType, ...]) -> TensorType:
        check_arity(types, n)
        dtype = same_dtype(types)
        check_dtype(types[0], allowed)
        return TensorType(broadcast_shapes(*(t.shape for t in types)), out_dtype or dtype)

    return rule


def low_precision_ref(fn: Callable) -> Callable:
    """Evaluate ``fn`` in float32 for float16/bfloat16 inputs and round back, as XLA does."""

    def ref(*arrays: np.ndarray, **attrs) -> np.ndarray:
        dtype = np.result_type(*arrays) if arrays else None
        if dtype is not None and dtype.itemsize == 2 and dtype.kind in "fV":
            up = [a.astype(np.float32) if a.dtype == dtype else a for a in arrays]
            out = np.asarray(fn(*up, **attrs))
            if out.dtype != np.float32:
                return out
            with np.errstate(over="ignore"):  # (a result beyond the type's range is inf)
                return out.astype(dtype)
        return np.asarray(fn(*arrays, **attrs))

    return ref


def reduced_shape(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    """``shape`` with normalized ``axes`` dropped, or set to 1 under ``keepdims``."""
    if keepdims:
        return tuple(1 if d in axes else n for d, n in enumerate(shape))
    return tuple(n for d, n in enumerate(shape) if d not in axes)


def single_axis(axis: int, ndim: int) -> int:
    """``axis`` wrapped into [0, ndim) for ops that work along one real axis (rank >= 1)."""
    if ndim == 0:
        raise ShapeError("expects an input of rank >= 1, got a scalar; reshape it to [1] first")
    return normalize_axis(axis, ndim)


def check_count(name: str, values: tuple[int, ...], n: int, what: str) -> None:
    """ShapeError unless attribute ``name`` holds ``n`` entries (``what`` says why n)."""
    if len(values) != n:
        raise ShapeError(f"{name}={values} has {len(values)} entries; expected {n} ({what})")


def check_min(name: str, values: tuple[int, ...], low: int) -> None:
    if any(v < low for v in values):
        raise ShapeError(f"{name}={values} has entries below {low}")


def extreme(dtype: np.dtype, largest: bool) -> np.ndarray:
    """The largest (or smallest) value of ``dtype``: +-inf for floats, True/False for bool."""
    if dtype == BOOL:
        return np.array(largest)
    if is_float(dtype):
        return np.array(np.inf if largest else -np.inf, dtype)
    info = np.iinfo(dtype)
    return np.array(info.max if largest else info.min, dtype)
