"""Dtype promotion for mixed operands, following jax.numpy's rules: Python scalars are weak
(``x_f16 + 1.0`` stays float16), arrays promote on jax's lattice (no silent float64).

64-bit dtypes follow jax's own ``jax_enable_x64`` setting, read when a function is traced (as
jax.jit reads it): with x64 off (jax's default), float64, int64 and uint64 arrays, constants
and requested dtypes become float32, int32 and uint32, exactly as in jax.numpy, so no 64-bit
type enters the IR. flowjit never changes the setting.

An integer never wraps silently on its way into a dtype (issue 20, item 9): a Python int or
integer data that does not fit the integer dtype it would take is an IntegerOverflowError
naming the argument, variable or line (``check_fits``), where jax raises an OverflowError or,
for a narrowed int64 array or an int constant meeting a narrower int, wraps it. With x64 on, a
Python int that needs 64 bits is int64 (``scalar_dtype``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from flowjit.backends.xla.jaxshim import jax, jnp

from flowjit.ir.errors import DTypeError, IntegerOverflowError
from flowjit.ir.types import BOOL, bfloat16, dtype_name, is_float, is_int

FLOAT0 = np.dtype(np.float32)  # the default float: Python floats, int / int
INT0 = np.dtype(np.int32)  # the default int: Python ints
INT64 = np.dtype(np.int64)


def is_python_scalar(x: Any) -> bool:
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


def scalar_dtype(x: bool | int | float) -> np.dtype:
    """The dtype of a Python scalar: bool, float32, and int32 for an int, or int64 for one that
    needs it where jax_enable_x64 is on."""
    if isinstance(x, bool):
        return BOOL
    if isinstance(x, int):
        return INT64 if x64_enabled() and not _fits(x, x, INT0) else INT0
    return FLOAT0


def x64_enabled() -> bool:
    """Whether jax computes in 64 bits here (``jax_enable_x64``, or a ``jax.enable_x64``
    scope around the call)."""
    return bool(jax.config.jax_enable_x64)


def canonicalize(dtype: Any) -> np.dtype:
    """``dtype`` as jax computes in it now: with x64 off, 64-bit dtypes become 32-bit."""
    return np.dtype(jax.dtypes.canonicalize_dtype(np.dtype(dtype)))


def result_dtype(*operands: Any) -> np.dtype:
    """The common dtype of Tensors, arrays and Python scalars."""
    strong = [canonicalize(x.dtype) for x in operands if not is_python_scalar(x)]
    weak = [scalar_dtype(x) for x in operands if is_python_scalar(x)]
    if not strong:
        return max(weak, key=lambda d: (_rank(d), d.itemsize))
    dtype = strong[0]
    for other in strong[1:]:
        dtype = np.dtype(jnp.promote_types(dtype, other))
    if dtype.itemsize == 8 and all(d.itemsize < 8 for d in strong):
        dtype = np.dtype(f"{dtype.kind}4")  # as jax's 32-bit mode: uint32 + int32 -> int32
    for w in weak:  # a weak scalar only lifts the kind: bool -> int -> float
        if _rank(w) > _rank(dtype):
            dtype = w
    return dtype


def _rank(dtype: np.dtype) -> int:
    return 2 if is_float(dtype) else 1 if is_int(dtype) else 0


_PYTHON_TYPES = {bool: BOOL, int: INT0, float: FLOAT0}


def canonical_dtype(dtype: Any) -> np.dtype:
    """``dtype`` (a requested dtype) as a numpy dtype; Python's ``int`` and ``float`` are int32
    and float32 (numpy would make them 64-bit); with x64 off, 64-bit dtypes are 32-bit."""
    return (
        _PYTHON_TYPES[dtype]
        if isinstance(dtype, type) and dtype in _PYTHON_TYPES
        else canonicalize(dtype)
    )


def float_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a float-only function computes in, as jax's ``to_inexact_dtype``: floats stay,
    64-bit ints -> float64, other ints and bools -> float32."""
    if is_float(dtype):
        return dtype
    return np.dtype(np.float64) if is_int(dtype) and dtype.itemsize == 8 else FLOAT0


def accumulation_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype mean and var accumulate in, as jax.numpy's: float16 and bfloat16 sums of many
    elements overflow or lose their low digits, so they are computed in float32."""
    return FLOAT0 if dtype in (np.dtype(np.float16), bfloat16) else dtype


def check_fits(value: Any, dtype: Any, what: str, **where: Any) -> None:
    """An IntegerOverflowError naming ``what`` (and ``where``: op, loc) unless every integer
    in ``value`` (a Python int, nested lists of them, numpy data) fits ``dtype``; non-integer
    dtypes and values pass. Converting such an integer would wrap it around (numpy's astype, as
    jax narrows int64 data with x64 off) or raise numpy's OverflowError, which names nothing."""
    dtype = np.dtype(dtype)
    if not is_int(dtype):
        return
    bounds = _int_bounds(value, dtype)
    if bounds is not None and not _fits(*bounds, dtype):
        low, high = bounds
        raise _overflow(low if low < np.iinfo(dtype).min else high, dtype, what, **where)


def data_dtype(value: Any) -> np.dtype:
    """The dtype flowjit gives host data (a Variable's initial value): numpy data its own, as
    jax computes in it now (``canonicalize``); Python floats float32, bools bool, and ints
    int32, or int64 where jax_enable_x64 is on and one needs it (``scalar_dtype``)."""
    array = np.asarray(value)
    python_data = not isinstance(value, (np.ndarray, np.generic))
    if python_data and array.dtype.kind == "f":
        return FLOAT0
    if python_data and array.dtype.kind in "iuO":  # (object: ints beyond 64 bits)
        bounds = _int_bounds(value, INT0)
        if bounds is not None:
            return INT64 if x64_enabled() and not _fits(*bounds, INT0) else INT0
    return array.dtype if array.dtype.kind == "O" else canonicalize(array.dtype)


def _int_bounds(value: Any, dtype: np.dtype) -> tuple[int, int] | None:
    """The least and greatest integer in ``value``; None if it holds none, or if its integer
    dtype fits in ``dtype`` anyway (nothing to look at)."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, int):
        return value, value
    array = np.asarray(value)
    if array.dtype.kind in "iu":
        if not array.size or np.can_cast(array.dtype, dtype, casting="safe"):
            return None
        return int(array.min()), int(array.max())
    if array.dtype.kind == "O":  # (Python ints beyond 64 bits, maybe among others)
        ints = [int(x) for x in array.flat if isinstance(x, (int, np.integer))]
        return (min(ints), max(ints)) if ints else None
    return None


def check_scalar_kind(value: bool | int | float, dtype: np.dtype, action: str, target: str) -> None:
    """A DTypeError unless the Python scalar ``value`` keeps its value in ``dtype`` (but for
    float precision): a float into an int or bool dtype would lose its fraction (1.7 -> 1), an
    int into bool all but its truth, and an int must fit (``check_fits``). The message reads
    ``{action} the Python float 1.7 to {target} of dtype i32: ...``."""
    if _rank(scalar_dtype(value)) > _rank(dtype):
        fix = "round(value) or int(value)" if isinstance(value, float) else "bool(value)"
        became = np.asarray(value).astype(dtype).item()
        raise DTypeError(
            f"{action} the Python {type(value).__name__} {value!r} to {target} of dtype "
            f"{dtype_name(dtype)}: it would become {became!r}; convert it first ({fix}) if "
            "that is what you mean"
        )
    check_fits(value, dtype, f"{action} a value to {target}")


def _fits(low: int, high: int, dtype: np.dtype) -> bool:
    info = np.iinfo(dtype)
    return info.min <= low and high <= info.max


def _overflow(bad: int, dtype: np.dtype, what: str, **where: Any) -> IntegerOverflowError:
    wider = INT0 if _fits(bad, bad, INT0) else INT64
    if not _fits(bad, bad, INT64):
        fix = "use a float" if dtype == INT64 else "it does not fit int64 either; use a float"
    elif wider == INT64 and not x64_enabled():
        fix = (
            "with jax_enable_x64 off (jax's default) integers are at most 32-bit: turn it on "
            "(jax.config.update('jax_enable_x64', True)) to compute in int64, or use a float"
        )
    else:
        fix = f"use a wider dtype, {wider.name} (.astype(np.{wider.name})), or a float"
    info = np.iinfo(dtype)
    return IntegerOverflowError(
        f"{what}: the integer {bad} does not fit {dtype_name(dtype)} ({info.min} to "
        f"{info.max}) and would wrap around; {fix}",
        **where,
    )
