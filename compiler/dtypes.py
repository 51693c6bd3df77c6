"""Dtype promotion for mixed operands, following jax.numpy's rules: Python scalars are weak
(``x_f16 + 1.0`` stays float16), arrays promote on jax's lattice (no silent float64).

64-bit dtypes follow jax's own ``jax_enable_x64`` setting, read when a function is traced (as
jax.jit reads it): with x64 off (jax's default), float64, int64 and uint64 arrays, constants
and requested dtypes become float32, int32 and uint32, exactly as in jax.numpy, so no 64-bit
type enters the IR. flowjit never changes the setting."""

from __future__ import annotations

from typing import Any

import numpy as np

from flowjit.backends.xla.jaxshim import jax, jnp

from flowjit.ir.types import BOOL, bfloat16, is_float, is_int

FLOAT0 = np.dtype(np.float32)  # the default float: Python floats, int / int
INT0 = np.dtype(np.int32)  # the default int: Python ints


def is_python_scalar(x: Any) -> bool:
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


def scalar_dtype(x: bool | int | float) -> np.dtype:
    return BOOL if isinstance(x, bool) else INT0 if isinstance(x, int) else FLOAT0


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
        return max(weak, key=_rank)
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
