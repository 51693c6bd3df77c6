"""Elementwise ops. Binary and ternary ops broadcast their operands the numpy way (the
lowering inserts the broadcasts); operands share one dtype (the tracer inserts converts)."""

from __future__ import annotations

import math

import numpy as np

from ..core import OpDef, register
from ..types import BOOL, TensorType
from .rules import (
    ANY,
    FLOATS,
    INTS_AND_BOOL,
    NUMERIC,
    check_arity,
    check_dtype,
    low_precision_ref,
    nary_rule,
    unary_rule,
)


def _unary(name: str, allowed, ref, out_dtype=None, doc: str = "") -> OpDef:
    return register(OpDef(name, unary_rule(allowed, out_dtype), low_precision_ref(ref), doc=doc))


def _binary(name: str, allowed, ref, out_dtype=None, doc: str = "") -> OpDef:
    return register(OpDef(name, nary_rule(2, allowed, out_dtype), low_precision_ref(ref), doc=doc))


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()


def _rsqrt(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (1 / np.sqrt(x)).astype(x.dtype)


def _logistic(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-x))).astype(x.dtype)


def _floor_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.floor_divide(a, b)


def _remainder(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.mod(a, b)


def _power(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.power(a, b)


def _math(fn):
    def ref(*arrays):
        with np.errstate(all="ignore"):
            return fn(*arrays)

    return ref


neg = _unary("neg", NUMERIC, np.negative, doc="-x")
abs_ = _unary("abs", NUMERIC, np.abs, doc="|x|")
sign = _unary("sign", NUMERIC, np.sign, doc="-1, 0 or 1 (nan stays nan)")
exp = _unary("exp", FLOATS, _math(np.exp))
expm1 = _unary("expm1", FLOATS, _math(np.expm1))
log = _unary("log", FLOATS, _math(np.log))
log1p = _unary("log1p", FLOATS, _math(np.log1p))
sqrt = _unary("sqrt", FLOATS, _math(np.sqrt))
rsqrt = _unary("rsqrt", FLOATS, _rsqrt, doc="1 / sqrt(x)")
sin = _unary("sin", FLOATS, np.sin)
cos = _unary("cos", FLOATS, np.cos)
tan = _unary("tan", FLOATS, np.tan)
tanh = _unary("tanh", FLOATS, np.tanh)
logistic = _unary("logistic", FLOATS, _logistic, doc="1 / (1 + exp(-x))")
erf = _unary("erf", FLOATS, _erf)
floor = _unary("floor", FLOATS, np.floor)
ceil = _unary("ceil", FLOATS, np.ceil)
round_ = _unary("round", FLOATS, np.round, doc="round half to even, as numpy.round")
not_ = _unary("not", INTS_AND_BOOL, np.invert, doc="logical not on bool, bitwise not on ints")
isfinite = _unary("isfinite", FLOATS, np.isfinite, out_dtype=BOOL)

add = _binary("add", NUMERIC, np.add)
sub = _binary("sub", NUMERIC, np.subtract)
mul = _binary("mul", NUMERIC, np.multiply)
div = _binary("div", FLOATS, _math(np.true_divide), doc="true division of floats")
floor_divide = _binary("floor_divide", NUMERIC, _floor_divide, doc="numpy.floor_divide")
remainder = _binary("remainder", NUMERIC, _remainder, doc="numpy.mod: the sign of the divisor")
pow_ = _binary("pow", NUMERIC, _power)
max_ = _binary("max", NUMERIC, np.maximum, doc="numpy.maximum (nan propagates)")
min_ = _binary("min", NUMERIC, np.minimum, doc="numpy.minimum (nan propagates)")
atan2 = _binary("atan2", FLOATS, np.arctan2)
and_ = _binary("and", INTS_AND_BOOL, np.bitwise_and)
or_ = _binary("or", INTS_AND_BOOL, np.bitwise_or)
xor = _binary("xor", INTS_AND_BOOL, np.bitwise_xor)
eq = _binary("eq", ANY, np.equal, out_dtype=BOOL)
ne = _binary("ne", ANY, np.not_equal, out_dtype=BOOL)
lt = _binary("lt", ANY, np.less, out_dtype=BOOL)
le = _binary("le", ANY, np.less_equal, out_dtype=BOOL)
gt = _binary("gt", ANY, np.greater, out_dtype=BOOL)
ge = _binary("ge", ANY, np.greater_equal, out_dtype=BOOL)


def _select_rule(types: tuple[TensorType, ...]) -> TensorType:
    check_arity(types, 3)
    pred, on_true, on_false = types
    check_dtype(pred, (BOOL,), "the predicate")
    # the predicate broadcasts like a third operand of the branches' dtype
    return nary_rule(3, ANY)((TensorType(pred.shape, on_true.dtype), on_true, on_false))


select = register(
    OpDef(
        "select",
        _select_rule,
        lambda p, a, b: np.where(p, a, b),
        doc="where(pred, on_true, on_false), broadcasting all three",
    )
)


def _convert_rule(types: tuple[TensorType, ...], *, dtype: np.dtype) -> TensorType:
    check_arity(types, 1)
    return TensorType(types[0].shape, dtype)


def _convert_ref(x: np.ndarray, *, dtype: np.dtype) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        if x.dtype.kind == "V" or dtype.kind == "V":  # bfloat16 goes through float32
            return (
                x.astype(np.float32).astype(dtype) if dtype != BOOL else x.astype(np.float32) != 0
            )
        return x.astype(dtype)


convert = register(
    OpDef(
        "convert",
        _convert_rule,
        _convert_ref,
        attrs={"dtype": "dtype"},
        doc="x.astype(dtype); float -> int truncates toward zero",
    )
)
