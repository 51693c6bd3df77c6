"""Bit operations on integers: shifts and reinterpreting an array's bits as another dtype.

Shifts mean what XLA's do, where numpy's are undefined: the shift amount is read as an unsigned
number of the operand's width (a negative amount is a huge one), and an amount at or beyond the
width gives 0, or for the arithmetic shift a fill with the top bit (for unsigned dtypes too).
Operands broadcast the numpy way and share one integer dtype, like elementwise ops."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..batching import defbatch_all, elementwise_batch
from ..core import OpDef, register
from ..errors import DTypeError
from ..types import NUMERIC_DTYPES, TensorType, dtype_name
from .rules import INTS, check_arity, check_dtype, nary_rule


def _as(bits: np.ndarray, kind: str) -> np.ndarray:
    """``bits`` reinterpreted as the signed ("i") or unsigned ("u") integer of its width."""
    return bits.view(np.dtype(f"{kind}{bits.dtype.itemsize}"))


def _shift_ref(shift: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> Callable:
    """The reference of a shift: ``shift(x, n, within)`` gets the amount clamped to width - 1
    (numpy's shifts by more are undefined) and where the true amount was below the width."""

    def ref(x: np.ndarray, amount: np.ndarray) -> np.ndarray:
        x, amount = np.broadcast_arrays(x, amount)
        width = 8 * x.dtype.itemsize
        amount = _as(amount, "u")
        clamped = np.minimum(amount, width - 1).astype(amount.dtype)
        return np.asarray(shift(x, clamped, amount < width)).view(x.dtype)

    return ref


def _left(x: np.ndarray, n: np.ndarray, within: np.ndarray) -> np.ndarray:
    return np.where(within, _as(x, "u") << n, 0)


def _right_logical(x: np.ndarray, n: np.ndarray, within: np.ndarray) -> np.ndarray:
    return np.where(within, _as(x, "u") >> n, 0)


def _right_arithmetic(x: np.ndarray, n: np.ndarray, within: np.ndarray) -> np.ndarray:
    signed = _as(x, "i")
    return signed >> _as(n, "i")  # a shift by width - 1 already fills with the top bit


def _shift(name: str, shift: Callable, doc: str) -> OpDef:
    return register(
        OpDef(
            name, nary_rule(2, INTS), _shift_ref(shift), no_vjp="integers have no gradient", doc=doc
        )
    )


shift_left = _shift("shift_left", _left, "x << n; 0 where n >= the bit width")
shift_right_logical = _shift(
    "shift_right_logical", _right_logical, "x >> n filling with zeros; 0 where n >= the bit width"
)
shift_right_arithmetic = _shift(
    "shift_right_arithmetic",
    _right_arithmetic,
    "x >> n filling with the top bit; all top bits where n >= the bit width",
)

BITCASTABLE = NUMERIC_DTYPES  # bool has no defined bit layout in XLA


def _bitcast_rule(types: tuple[TensorType, ...], *, dtype: np.dtype) -> TensorType:
    check_arity(types, 1)
    check_dtype(types[0], BITCASTABLE)
    if dtype not in BITCASTABLE:
        raise DTypeError(f"cannot bitcast to {dtype_name(dtype)}; it has no fixed bit layout")
    src = types[0].dtype
    if src.itemsize != dtype.itemsize:
        raise DTypeError(
            f"cannot bitcast {dtype_name(src)} ({8 * src.itemsize} bits) to {dtype_name(dtype)} "
            f"({8 * dtype.itemsize} bits); bitcast_convert keeps the width, use convert to "
            "change values"
        )
    return TensorType(types[0].shape, dtype)


bitcast_convert = register(
    OpDef(
        "bitcast_convert",
        _bitcast_rule,
        lambda x, *, dtype: x.view(dtype),
        attrs={"dtype": "dtype"},
        no_vjp="reinterpreting bits has no gradient",
        doc="x's bits read as `dtype` of the same width (x.view(dtype)); the shape is kept",
    )
)


# -- batching rules (ir/batching.py): shifts broadcast as elementwise ops do; a bitcast keeps
# the shape, the batch axis too
defbatch_all(
    elementwise_batch, shift_left, shift_right_logical, shift_right_arithmetic, bitcast_convert
)
