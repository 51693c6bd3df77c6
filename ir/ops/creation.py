"""Ops that create tensors from attributes alone."""

from __future__ import annotations

import numpy as np

from ..core import OpDef, register
from ..errors import DTypeError, ShapeError
from ..types import TensorType
from .rules import NUMERIC, check_arity, normalize_axis


def _constant_rule(types: tuple[TensorType, ...], *, value: np.ndarray) -> TensorType:
    check_arity(types, 0)
    return TensorType(value.shape, value.dtype)


constant = register(
    OpDef(
        "constant",
        _constant_rule,
        lambda *, value: value.copy(),
        attrs={"value": "array"},
        no_vjp="has no inputs",
        doc="a literal array",
    )
)


def _iota_rule(
    types: tuple[TensorType, ...], *, shape: tuple[int, ...], dimension: int, dtype: np.dtype
) -> TensorType:
    check_arity(types, 0)
    if not shape:
        raise ShapeError("iota needs a shape of rank >= 1")
    if np.dtype(dtype) not in NUMERIC:
        raise DTypeError(f"iota makes numbers, not {np.dtype(dtype)}; compare it to get booleans")
    normalize_axis(dimension, len(shape))
    return TensorType(shape, dtype)


def _iota_ref(*, shape: tuple[int, ...], dimension: int, dtype: np.dtype) -> np.ndarray:
    dimension %= len(shape)
    index = np.arange(shape[dimension]).reshape(
        [-1 if d == dimension else 1 for d in range(len(shape))]
    )
    return np.broadcast_to(index, shape).astype(dtype)


iota = register(
    OpDef(
        "iota",
        _iota_rule,
        _iota_ref,
        attrs={"shape": "ints", "dimension": "int", "dtype": "dtype"},
        no_vjp="has no inputs",
        doc="the index along `dimension`, broadcast to `shape`",
    )
)
