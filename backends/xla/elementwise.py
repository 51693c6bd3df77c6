"""StableHLO lowerings of ir/ops/elementwise.py. Operands are broadcast to the output shape
first; numpy semantics that StableHLO lacks (floor division, mod) are built from its ops."""

from __future__ import annotations

import numpy as np

from flowjit.ir import Op, TensorType
from flowjit.ir.ops import elementwise as E
from flowjit.ir.types import BOOL, is_float

from .jaxshim import chlo, hlo, ir
from .lowering import broadcast, full, ir_type, lowers

_UNARY = {
    E.neg: hlo.negate,
    E.abs_: hlo.abs,
    E.sign: hlo.sign,
    E.exp: hlo.exponential,
    E.expm1: hlo.exponential_minus_one,
    E.log: hlo.log,
    E.log1p: hlo.log_plus_one,
    E.sqrt: hlo.sqrt,
    E.rsqrt: hlo.rsqrt,
    E.sin: hlo.sine,
    E.cos: hlo.cosine,
    E.tan: hlo.tan,
    E.tanh: hlo.tanh,
    E.logistic: hlo.logistic,
    E.erf: chlo.erf,
    E.floor: hlo.floor,
    E.ceil: hlo.ceil,
    E.round_: hlo.round_nearest_even,
    E.not_: hlo.not_,
    E.isfinite: hlo.is_finite,
}
_BINARY = {
    E.add: hlo.add,
    E.sub: hlo.subtract,
    E.mul: hlo.multiply,
    E.div: hlo.divide,
    E.max_: hlo.maximum,
    E.min_: hlo.minimum,
    E.atan2: hlo.atan2,
    E.and_: hlo.and_,
    E.or_: hlo.or_,
    E.xor: hlo.xor,
}
_COMPARE = {E.eq: "EQ", E.ne: "NE", E.lt: "LT", E.le: "LE", E.gt: "GT", E.ge: "GE"}


def broadcast_operands(op: Op, args) -> list[ir.Value]:
    """The op's operands broadcast (numpy-style) to its output shape."""
    shape = op.outputs[0].type.shape
    return [broadcast(a, v.type, shape) for a, v in zip(args, op.inputs)]


@lowers(*_UNARY)
def _unary_lower(op: Op, x: ir.Value) -> ir.Value:
    t = op.inputs[0].type
    if t.dtype.kind == "u" and op.opdef in (E.abs_, E.sign):  # stablehlo's take signed only
        # |x| -> x; sign(x) -> x != 0 (as 0 or 1)
        if op.opdef is E.abs_:
            return x
        return hlo.convert(ir_type(t), compare(x, full(0, t), "NE", t.dtype))
    return _UNARY[op.opdef](x)


@lowers(*_BINARY)
def _binary_lower(op: Op, *args: ir.Value) -> ir.Value:
    return _BINARY[op.opdef](*broadcast_operands(op, args))


def compare(a: ir.Value, b: ir.Value, direction: str, dtype: np.dtype) -> ir.Value:
    """stablehlo.compare with the comparison type numpy means for ``dtype``."""
    kind = "FLOAT" if is_float(dtype) else "UNSIGNED" if dtype.kind in "ub" else "SIGNED"
    return hlo.compare(
        a,
        b,
        hlo.ComparisonDirectionAttr.get(direction),
        compare_type=hlo.ComparisonTypeAttr.get(kind),
    )


@lowers(*_COMPARE)
def _compare_lower(op: Op, *args: ir.Value) -> ir.Value:
    return compare(*broadcast_operands(op, args), _COMPARE[op.opdef], op.inputs[0].type.dtype)


@lowers(E.select)
def _select_lower(op: Op, *args: ir.Value) -> ir.Value:
    return hlo.select(*broadcast_operands(op, args))


@lowers(E.convert)
def _convert_lower(op: Op, x: ir.Value) -> ir.Value:
    src, dst = op.inputs[0].type, op.outputs[0].type
    if dst.dtype == BOOL and src.dtype != BOOL:  # numpy: nonzero -> True (convert would truncate)
        return compare(x, full(0, src), "NE", src.dtype)
    return hlo.convert(ir_type(dst), x)


def _rounds_toward_zero(t: TensorType, rem: ir.Value, b: ir.Value) -> ir.Value:
    """Where stablehlo's truncating division differs from numpy's flooring one: the remainder
    (which takes the dividend's sign) is nonzero and its sign differs from the divisor's."""
    zero = full(0, t)
    return hlo.and_(
        compare(rem, zero, "NE", t.dtype),
        hlo.xor(compare(rem, zero, "LT", t.dtype), compare(b, zero, "LT", t.dtype)),
    )


@lowers(E.remainder)
def _remainder_lower(op: Op, *args: ir.Value) -> ir.Value:
    a, b = broadcast_operands(op, args)
    t, rem = op.outputs[0].type, hlo.remainder(a, b)
    if t.dtype.kind == "u":
        return rem
    # numpy.mod takes the divisor's sign: mod -> rem + b where they differ
    return hlo.select(_rounds_toward_zero(t, rem, b), hlo.add(rem, b), rem)


def _float_floor_divide(t: TensorType, a: ir.Value, b: ir.Value) -> ir.Value:
    """numpy's float floor division (npy_divmod), not floor(a / b), which differs where b or
    a is infinite (-5 // inf is -1, inf // 2 is NaN): the quotient of a minus its remainder,
    one less where the remainder's sign differs from b's, snapped to the nearest integer;
    a signed zero where that is 0; a / b where b is 0."""
    zero, one = full(0, t), full(1, t)
    rem, quotient = hlo.remainder(a, b), hlo.divide(a, b)
    div = hlo.divide(hlo.subtract(a, rem), b)
    div = hlo.select(_rounds_toward_zero(t, rem, b), hlo.subtract(div, one), div)
    floor = hlo.floor(div)
    up = compare(hlo.subtract(div, floor), full(0.5, t), "GT", t.dtype)
    snapped = hlo.select(up, hlo.add(floor, one), floor)
    signed_zero = hlo.multiply(zero, hlo.sign(quotient))
    snapped = hlo.select(compare(div, zero, "EQ", t.dtype), signed_zero, snapped)
    return hlo.select(compare(b, zero, "EQ", t.dtype), quotient, snapped)


@lowers(E.floor_divide)
def _floor_divide_lower(op: Op, *args: ir.Value) -> ir.Value:
    a, b = broadcast_operands(op, args)
    t = op.outputs[0].type
    if is_float(t.dtype):
        return _float_floor_divide(t, a, b)
    quotient = hlo.divide(a, b)  # truncates toward zero
    if t.dtype.kind == "u":
        return quotient
    # x // y -> trunc(x / y) - 1 where truncation rounded up
    fix = _rounds_toward_zero(t, hlo.remainder(a, b), b)
    return hlo.select(fix, hlo.subtract(quotient, full(1, t)), quotient)


@lowers(E.pow_)
def _pow_lower(op: Op, *args: ir.Value) -> ir.Value:
    return hlo.power(*broadcast_operands(op, args))


@lowers(E.stop_gradient)
def _stop_gradient_lower(op: Op, x: ir.Value) -> ir.Value:
    return x  # only autodiff treats it specially
