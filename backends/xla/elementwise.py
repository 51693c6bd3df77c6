"""StableHLO lowerings of ir/ops/elementwise.py. Operands are broadcast to the output shape
first; the meanings StableHLO lacks (floor division, mod, integer power) or leaves to the
implementation (integer division by zero or of INT_MIN by -1) are built from its ops, to
give the reference kernels' results, which are jax.jit's (docs/ir-format.md, "Edge
values")."""

from __future__ import annotations

import numpy as np

from flowjit.ir import Op, TensorType
from flowjit.ir.ops import elementwise as E
from flowjit.ir.types import BOOL, is_float

from .jaxshim import chlo, hlo, ir
from .lowering import LoweringContext, broadcast, full, ir_type, lowers

_UNARY = {
    E.neg: hlo.negate,
    E.abs_: hlo.abs,
    E.sign: hlo.sign,
    E.exp: hlo.exponential,
    E.exp2: hlo.exp2,
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
    E.erfc: chlo.erfc,
    E.erf_inv: chlo.erf_inv,
    E.lgamma: chlo.lgamma,
    E.floor: hlo.floor,
    E.ceil: hlo.ceil,
    E.round_: hlo.round_nearest_even,
    E.not_: hlo.not_,
    E.isfinite: hlo.is_finite,
}
_BINARY = {
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
def _unary_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    t = op.inputs[0].type
    if t.dtype.kind == "u" and op.opdef in (E.abs_, E.sign):  # stablehlo's take signed only
        # |x| -> x; sign(x) -> x != 0 (as 0 or 1)
        if op.opdef is E.abs_:
            return x
        return hlo.convert(ir_type(t), compare(x, full(0, t), "NE", t.dtype))
    return _UNARY[op.opdef](x)


@lowers(E.digamma)
def _digamma_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    """chlo.digamma, but -1 / x at a zero, as jax's (chlo gives -inf at -0.0 too)."""
    t = op.inputs[0].type
    at_zero = compare(x, full(0, t), "EQ", t.dtype)
    return hlo.select(at_zero, hlo.divide(full(-1, t), x), chlo.digamma(x))


@lowers(*_BINARY)
def _binary_lower(ctx: LoweringContext, op: Op, *args: ir.Value) -> ir.Value:
    return _BINARY[op.opdef](*broadcast_operands(op, args))


@lowers(E.add, E.sub)
def _add_sub_lower(ctx: LoweringContext, op: Op, a: ir.Value, b: ir.Value) -> ir.Value:
    """IEEE addition and subtraction: -0.0 + 0.0 is 0.0, and so is -0.0 - -0.0. XLA's
    algebraic simplifier rewrites x + 0 -> x, 0 + x -> x and x - 0 -> x whatever the zero's
    sign, which would keep that -0.0, so a float zero it can see at compile time goes to it
    behind an optimization barrier (x + -0.0 and x - 0.0 are x: those zeros need none)."""
    if is_float(op.outputs[0].type.dtype):
        if op.opdef is E.add:
            a, b = _hide_zeros(a, negative=False), _hide_zeros(b, negative=False)
        else:
            b = _hide_zeros(b, negative=True)
    a, b = broadcast_operands(op, [a, b])
    return (hlo.add if op.opdef is E.add else hlo.subtract)(a, b)


# ops that only move or retype a constant's elements, which XLA sees through to the constant
_SHAPE_ONLY = ("stablehlo.broadcast_in_dim", "stablehlo.reshape", "stablehlo.transpose")
_SHAPE_ONLY += ("stablehlo.convert",)
_LOOK_BACK = 4  # ops in a row followed back to tell whether a value is computed from constants


def _hide_zeros(value: ir.Value, negative: bool) -> ir.Value:
    """``value``, behind an optimization barrier if XLA may find at compile time that it is
    all zeros with at least one whose sign bit is ``negative``: a literal constant (moved or
    retyped) of such zeros, or any other value computed from constants alone within
    _LOOK_BACK ops (XLA folds it; flowjit's own constant folding leaves such values only past
    its size limit or when turned off)."""
    constant = _constant_under(value)
    if constant is None:
        hide = from_constants(value)
    else:
        elements = _elements(constant)
        hide = elements is None or bool(
            np.all(elements == 0) and np.any(np.signbit(elements) == negative)
        )
    return hlo.optimization_barrier([value]) if hide else value


def _constant_under(value: ir.Value) -> "ir.Operation | None":
    """The stablehlo.constant ``value`` is, through ops in _SHAPE_ONLY (None if none)."""
    while not isinstance(value, ir.BlockArgument):
        if value.owner.name == "stablehlo.constant":
            return value.owner
        if value.owner.name not in _SHAPE_ONLY:
            return None
        value = value.owner.operands[0]
    return None


def _elements(constant: "ir.Operation") -> "np.ndarray | None":
    """A constant's elements as float64 (None if numpy cannot read them: bfloat16 but for
    a splat)."""
    attr = ir.DenseElementsAttr(constant.attributes["value"])
    try:
        return np.asarray(attr).astype(np.float64)
    except TypeError:
        if attr.is_splat:
            return np.array(ir.FloatAttr(attr.get_splat_value()).value)
        return None


def from_constants(value: ir.Value, depth: int = _LOOK_BACK) -> bool:
    """Whether ``value`` is computed from constants alone by at most ``depth`` ops in a row
    (a deeper computation counts as one from arguments: cheap to ask of every operand)."""
    if isinstance(value, ir.BlockArgument):
        return False
    owner = value.owner
    if owner.name == "stablehlo.constant":
        return True
    if depth == 0 or len(owner.regions):  # (a loop or branch: not one XLA folds)
        return False
    return all(from_constants(v, depth - 1) for v in owner.operands)


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
def _compare_lower(ctx: LoweringContext, op: Op, *args: ir.Value) -> ir.Value:
    return compare(*broadcast_operands(op, args), _COMPARE[op.opdef], op.inputs[0].type.dtype)


@lowers(E.select)
def _select_lower(ctx: LoweringContext, op: Op, *args: ir.Value) -> ir.Value:
    return hlo.select(*broadcast_operands(op, args))


@lowers(E.convert)
def _convert_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    src, dst = op.inputs[0].type, op.outputs[0].type
    if dst.dtype == BOOL and src.dtype != BOOL:  # numpy: nonzero -> True (convert would truncate)
        return compare(x, full(0, src), "NE", src.dtype)
    return hlo.convert(ir_type(dst), x)


def _rounds_toward_zero(t: TensorType, rem: ir.Value, b: ir.Value) -> ir.Value:
    """Where stablehlo's truncating division differs from a flooring one: the remainder
    (which takes the dividend's sign) is nonzero and its sign differs from the divisor's."""
    zero = full(0, t)
    return hlo.and_(
        compare(rem, zero, "NE", t.dtype),
        hlo.xor(compare(rem, zero, "LT", t.dtype), compare(b, zero, "LT", t.dtype)),
    )


def _safe_divisor(t: TensorType, b: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value | None]:
    """``b`` with 1 where XLA's integer division is implementation-defined (a zero divisor;
    -1 in a signed type, for INT_MIN), with the masks of its zeros and (signed) -1s."""
    zero = compare(b, full(0, t), "EQ", t.dtype)
    if t.dtype.kind == "u":
        return hlo.select(zero, full(1, t), b), zero, None
    minus_one = compare(b, full(-1, t), "EQ", t.dtype)
    return hlo.select(hlo.or_(zero, minus_one), full(1, t), b), zero, minus_one


@lowers(E.remainder)
def _remainder_lower(ctx: LoweringContext, op: Op, *args: ir.Value) -> ir.Value:
    a, b = broadcast_operands(op, args)
    t = op.outputs[0].type
    if not is_float(t.dtype):
        b = _safe_divisor(t, b)[0]  # x % 0 and x % -1 are 0
    rem = hlo.remainder(a, b)
    if t.dtype.kind == "u":
        return rem
    # the divisor's sign: mod -> rem + b where they differ (a zero keeps the dividend's sign)
    return hlo.select(_rounds_toward_zero(t, rem, b), hlo.add(rem, b), rem)


@lowers(E.rem)
def _rem_lower(ctx: LoweringContext, op: Op, *args: ir.Value) -> ir.Value:
    a, b = broadcast_operands(op, args)
    t = op.outputs[0].type
    if is_float(t.dtype):
        return hlo.remainder(a, b)
    safe, zero, _ = _safe_divisor(t, b)  # (INT_MIN rem -1 is INT_MIN rem 1: 0)
    return hlo.select(zero, a, hlo.remainder(a, safe))  # x rem 0 is x


def _float_floor_divide(t: TensorType, a: ir.Value, b: ir.Value) -> ir.Value:
    """jax.numpy's float floor division, as the reference kernel spells it: (a - fmod(a, b))
    / b (a / b where b is 0), one less where the remainder's sign differs from b's, rounded
    half away from zero."""
    zero = full(0, t)
    mod = hlo.remainder(a, b)
    dividend = hlo.select(compare(b, zero, "EQ", t.dtype), a, hlo.subtract(a, mod))
    div = hlo.divide(dividend, b)
    differ = compare(hlo.sign(b), hlo.sign(mod), "NE", t.dtype)  # (a NaN's sign differs)
    fix = hlo.and_(compare(mod, zero, "NE", t.dtype), differ)
    return hlo.round_nearest_afz(hlo.select(fix, hlo.subtract(div, full(1, t)), div))


@lowers(E.floor_divide)
def _floor_divide_lower(ctx: LoweringContext, op: Op, *args: ir.Value) -> ir.Value:
    a, b = broadcast_operands(op, args)
    t = op.outputs[0].type
    if is_float(t.dtype):
        return _float_floor_divide(t, a, b)
    safe, zero, minus_one = _safe_divisor(t, b)
    quotient = hlo.divide(a, safe)  # truncates toward zero
    if t.dtype.kind == "u":  # x // 0 is all ones
        return hlo.select(zero, full(np.iinfo(t.dtype).max, t), quotient)
    # x // y -> trunc(x / y) - 1 where truncation rounded up
    fix = _rounds_toward_zero(t, hlo.remainder(a, safe), safe)
    quotient = hlo.select(fix, hlo.subtract(quotient, full(1, t)), quotient)
    quotient = hlo.select(minus_one, hlo.negate(a), quotient)  # (INT_MIN // -1 wraps)
    # x // 0 is -1 for x == 0, else -2
    dividend_zero = compare(a, full(0, t), "EQ", t.dtype)
    by_zero = hlo.select(dividend_zero, full(-1, t), full(-2, t))
    return hlo.select(zero, by_zero, quotient)


@lowers(E.pow_)
def _pow_lower(ctx: LoweringContext, op: Op, *args: ir.Value) -> ir.Value:
    a, b = broadcast_operands(op, args)
    t = op.outputs[0].type
    if is_float(t.dtype):
        return hlo.power(a, b)
    # integers: binary exponentiation over the exponent's low 6 bits (jax.numpy.power's),
    # starting from 0 where a is 0 and b is not
    zero, one = full(0, t), full(1, t)
    both = hlo.and_(compare(a, zero, "EQ", t.dtype), compare(b, zero, "NE", t.dtype))
    out = hlo.select(both, zero, one)
    for _ in range(6):
        odd = compare(hlo.and_(b, one), one, "EQ", t.dtype)
        out = hlo.select(odd, hlo.multiply(out, a), out)
        a, b = hlo.multiply(a, a), hlo.shift_right_logical(b, one)
    return out


@lowers(E.reduce_precision)
def _reduce_precision_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    """stablehlo.reduce_precision, of a value XLA could compute at compile time behind an
    optimization barrier: its evaluator makes a NaN infinity without mantissa bits (its
    compiled code, jax.jit's and the reference kernel keep the NaN)."""
    if from_constants(x):
        x = hlo.optimization_barrier([x])
    return hlo.reduce_precision(x, op.attrs["exponent_bits"], op.attrs["mantissa_bits"])


@lowers(E.stop_gradient)
def _stop_gradient_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    return x  # only autodiff treats it specially
