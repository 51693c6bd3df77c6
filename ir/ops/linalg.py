"""Linear algebra: dot_general, XLA's one contraction op (matmul, batched matmul, vector dot
and einsum-like contractions are all spellings of it)."""

from __future__ import annotations

import numpy as np

from ..core import OpDef, register
from ..errors import ShapeError
from ..types import TensorType
from .rules import NUMERIC, check_arity, check_dtype, low_precision_ref, same_dtype


def dot_dims(
    lhs: TensorType,
    rhs: TensorType,
    *,
    lhs_contracting: tuple[int, ...],
    rhs_contracting: tuple[int, ...],
    lhs_batch: tuple[int, ...],
    rhs_batch: tuple[int, ...],
) -> tuple[tuple[int, ...], ...]:
    """The dimension numbers with negative axes wrapped, as (lhs_contracting, rhs_contracting,
    lhs_batch, rhs_batch); ShapeError unless they pair up dims of equal size, once each."""
    for kind, a, b in (
        ("contracting", lhs_contracting, rhs_contracting),
        ("batch", lhs_batch, rhs_batch),
    ):
        if len(a) != len(b):
            raise ShapeError(f"lhs_{kind}={a} and rhs_{kind}={b} must have the same length")
    dims = []
    for side, t, used in (
        ("lhs", lhs, lhs_contracting + lhs_batch),
        ("rhs", rhs, rhs_contracting + rhs_batch),
    ):
        if any(not -t.ndim <= d < t.ndim for d in used):
            raise ShapeError(
                f"{side} contracting and batch dims {used} are out of range for "
                f"{side} shape {t.shape}"
            )
        wrapped = tuple(d % t.ndim for d in used)
        if len(set(wrapped)) != len(wrapped):
            raise ShapeError(
                f"{side} contracting and batch dims {used} repeat an axis of {side} shape {t.shape}"
            )
        dims.append(wrapped)
    nc = len(lhs_contracting)
    lc, lb, rc, rb = dims[0][:nc], dims[0][nc:], dims[1][:nc], dims[1][nc:]
    for verb, a, b in (("contract", lc, rc), ("batch", lb, rb)):
        for i, j in zip(a, b):
            if lhs.shape[i] != rhs.shape[j]:
                raise ShapeError(
                    f"cannot {verb} shapes {lhs.shape} and {rhs.shape}: "
                    f"{lhs.shape[i]} != {rhs.shape[j]} (lhs dim {i}, rhs dim {j})"
                )
    return lc, rc, lb, rb


def _free(ndim: int, *used: tuple[int, ...]) -> list[int]:
    return [d for d in range(ndim) if not any(d in u for u in used)]


def _dot_general_rule(types: tuple[TensorType, ...], **dims: tuple[int, ...]) -> TensorType:
    check_arity(types, 2)
    lhs, rhs = types
    dtype = same_dtype(types)
    check_dtype(lhs, NUMERIC)
    lc, rc, lb, rb = dot_dims(lhs, rhs, **dims)
    shape = (
        [lhs.shape[d] for d in lb]
        + [lhs.shape[d] for d in _free(lhs.ndim, lc, lb)]
        + [rhs.shape[d] for d in _free(rhs.ndim, rc, rb)]
    )
    return TensorType(tuple(shape), dtype)


def _dot_general_ref(a: np.ndarray, b: np.ndarray, **dims: tuple[int, ...]) -> np.ndarray:
    # Bring both operands to (batch, free, contracted) matrices and let matmul do the work.
    lc, rc, lb, rb = dot_dims(TensorType(a.shape, a.dtype), TensorType(b.shape, b.dtype), **dims)
    lf, rf = _free(a.ndim, lc, lb), _free(b.ndim, rc, rb)
    batch = [a.shape[d] for d in lb]
    free_a, free_b = [a.shape[d] for d in lf], [b.shape[d] for d in rf]
    contracted = [a.shape[d] for d in lc]
    m, n, k = (int(np.prod(s, dtype=np.int64)) for s in (free_a, free_b, contracted))
    a2 = a.transpose([*lb, *lf, *lc]).reshape((*batch, m, k))
    b2 = b.transpose([*rb, *rc, *rf]).reshape((*batch, k, n))
    return np.matmul(a2, b2).reshape((*batch, *free_a, *free_b))


dot_general = register(
    OpDef(
        "dot_general",
        _dot_general_rule,
        low_precision_ref(_dot_general_ref),
        attrs={
            "lhs_contracting": "ints",
            "rhs_contracting": "ints",
            "lhs_batch": "ints",
            "rhs_batch": "ints",
        },
        doc="XLA DotGeneral: sum over paired contracting dims; output dims are the batch dims, "
        "then lhs free dims, then rhs free dims; float16/bfloat16 accumulate in float32",
    )
)
