"""Dtype promotion for mixed operands, following jax.numpy's rules: Python scalars are weak
(``x_f16 + 1.0`` stays float16), arrays promote on jax's lattice (no silent float64)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from flowjit.ir.types import BOOL, is_float, is_int

FLOAT0 = np.dtype(np.float32)  # the default float: Python floats, int / int
INT0 = np.dtype(np.int32)  # the default int: Python ints


def is_python_scalar(x: Any) -> bool:
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


def scalar_dtype(x: bool | int | float) -> np.dtype:
    return BOOL if isinstance(x, bool) else INT0 if isinstance(x, int) else FLOAT0


def result_dtype(*operands: Any) -> np.dtype:
    """The common dtype of Tensors, arrays and Python scalars."""
    strong = [np.dtype(x.dtype) for x in operands if not is_python_scalar(x)]
    weak = [scalar_dtype(x) for x in operands if is_python_scalar(x)]
    if not strong:
        return max(weak, key=_rank)
    dtype = strong[0]
    for other in strong[1:]:
        dtype = np.dtype(jnp.promote_types(dtype, other))
    for w in weak:  # a weak scalar only lifts the kind: bool -> int -> float
        if _rank(w) > _rank(dtype):
            dtype = w
    return dtype


def _rank(dtype: np.dtype) -> int:
    return 2 if is_float(dtype) else 1 if is_int(dtype) else 0


def float_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a float-only function computes in: floats stay, ints and bools -> float32."""
    return dtype if is_float(dtype) else FLOAT0
