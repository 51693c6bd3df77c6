"""Elementwise ops. Binary and ternary ops broadcast their operands the numpy way (the
lowering inserts the broadcasts); operands share one dtype (the tracer inserts converts)."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from ..batching import elementwise_batch
from ..core import OpDef, register
from ..errors import ShapeError
from ..types import BOOL, TensorType, is_float
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
    rule, ref = unary_rule(allowed, out_dtype), low_precision_ref(ref)
    return register(OpDef(name, rule, ref, doc=doc, batch=elementwise_batch))


def _binary(name: str, allowed, ref, out_dtype=None, doc: str = "") -> OpDef:
    rule, ref = nary_rule(2, allowed, out_dtype), low_precision_ref(ref)
    return register(OpDef(name, rule, ref, doc=doc, broadcasts=True, batch=elementwise_batch))


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()


def _erfc(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erfc, otypes=[x.dtype])(x) if x.size else x.copy()


def _lgamma(x: np.ndarray) -> np.ndarray:
    """log |gamma(x)|: inf at the poles (0, -1, -2, ...) and at +-inf, NaN at NaN."""
    poles = (x <= 0) & (x == np.floor(x))  # (-inf among them)
    safe = np.where(poles | ~np.isfinite(x), np.ones_like(x), x)
    out = np.vectorize(math.lgamma, otypes=[x.dtype])(safe) if x.size else x.copy()
    return np.where(np.isnan(x), x, np.where(poles | np.isinf(x), np.inf, out)).astype(x.dtype)


def _digamma(x: np.ndarray) -> np.ndarray:
    """The derivative of lgamma, as XLA's: -1 / x at a zero (-inf at 0.0, inf at -0.0), NaN at
    the negative integers and -inf, inf at inf. Negative x reflect (psi(x) = psi(1 - x) -
    pi / tan(pi x)); positive x rise by the recurrence psi(x) = psi(x + 1) - 1 / x to 10 or
    more, where the asymptotic series (to x^-14) is exact in float64."""
    with np.errstate(all="ignore"):
        negative = x < 0
        z = np.where(negative, 1 - x, x)
        total = np.zeros_like(z)
        for _ in range(10):
            small = z < 10
            total = np.where(small, total - 1 / z, total)
            z = np.where(small, z + 1, z)
        r2, series = 1 / (z * z), np.zeros_like(z)
        for c in (1 / 12, -691 / 32760, 1 / 132, -1 / 240, 1 / 252, -1 / 120, 1 / 12):
            series = c + r2 * series  # (B_2k / 2k, from the last term)
        out = total + np.log(z) - 0.5 / z - r2 * series
        out = np.where(negative, out - np.pi / np.tan(np.pi * x), out)
        out = np.where(negative & (x == np.floor(x)), np.nan, out)  # (-inf too)
        out = np.where(x == 0, -1 / x, out)
        return np.where(x == np.inf, x, out).astype(x.dtype)


def _erf_inv(x: np.ndarray) -> np.ndarray:
    """The inverse of erf on [-1, 1]: +-inf at +-1, NaN beyond; signed zeros stay. Winitzki's
    approximation, then Newton's steps on erfc(y) = 1 - |x| (exact in float64 where y is
    large, there 1 - |x| has no rounding), in float64."""
    with np.errstate(all="ignore"):
        ax = np.abs(x.astype(np.float64))
        log = np.log1p(-ax * ax)
        a = 0.147
        b = 2 / (np.pi * a) + log / 2
        y = np.sqrt(np.sqrt(b * b - log / a) - b)
        erfc = np.vectorize(math.erfc, otypes=[np.float64])
        inside = ax < 1
        for _ in range(4):
            safe = np.where(inside, y, 0.0)
            step = (erfc(safe) - (1 - ax)) / (2 / math.sqrt(math.pi) * np.exp(-safe * safe))
            y = np.where(inside, safe + step, y)
        y = np.where(ax == 1, np.inf, np.where(ax > 1, np.nan, y))
        return np.where(np.isnan(x), x, np.copysign(y, x)).astype(x.dtype)


def _rsqrt(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (1 / np.sqrt(x)).astype(x.dtype)


def _logistic(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-x))).astype(x.dtype)


# -- edge values (docs/ir-format.md): what jax.jit gives for the same jax.numpy function,
# which constant folding and eager mode (they run these kernels) then share with compiled
# code; backends/xla/elementwise.py spells the same formulas out in StableHLO --------------


def _safe_divisor(b: np.ndarray) -> np.ndarray:
    """``b`` with 1 where integer division overflows: a zero divisor, and -1 in a signed
    type (INT_MIN // -1), where every dividend's quotient is -a (INT_MIN wraps to itself)
    and its remainder 0."""
    unsafe = (b == 0) | (b == -1) if b.dtype.kind == "i" else b == 0
    return np.where(unsafe, np.ones_like(b), b)


def _floor_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integers: the floor of a / b; INT_MIN // -1 wraps to INT_MIN; x // 0 is all ones when
    unsigned, and when signed -1 for x == 0 and -2 otherwise (XLA's division gives -1, and
    jax's flooring takes one more off where x and 0 differ in sign).
    Floats: as jax.numpy.floor_divide, see _float_floor_divide."""
    if a.dtype.kind in "fV":
        return _float_floor_divide(a, b)
    quotient = np.floor_divide(a, _safe_divisor(b))
    if a.dtype.kind == "u":
        return np.where(b == 0, np.asarray(np.iinfo(a.dtype).max, a.dtype), quotient)
    with np.errstate(over="ignore"):  # -INT_MIN wraps to INT_MIN, as XLA negates
        quotient = np.where(b == -1, np.negative(a), quotient)
    by_zero = np.where(a == 0, np.asarray(-1, a.dtype), np.asarray(-2, a.dtype))
    return np.where(b == 0, by_zero, quotient)


def _float_floor_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - fmod(a, b)) / b (a / b where b is 0), one less where the remainder and b differ in
    sign, rounded half away from zero: CPython's float_divmod as jax.numpy has it, without
    the step that gives a zero quotient the sign of a / b (so -0.0 // 3 is 0.0 and
    -0.5 // -3 is -0.0, where numpy and Python give -0.0 and 0.0)."""
    with np.errstate(all="ignore"):  # (inf and NaN are results like any other here)
        mod = np.fmod(a, b)
        div = np.where(b == 0, a, a - mod) / b
        fix = (mod != 0) & (np.sign(b) != np.sign(mod))  # (NaN's sign is NaN: differs)
        div = np.where(fix, div - 1, div)
        whole = np.trunc(div)
        return np.where(np.abs(div - whole) >= 0.5, whole + np.sign(div), whole).astype(a.dtype)


def _remainder(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """fmod(a, b), plus b where it is nonzero and its sign differs from b's (jax.numpy's
    remainder): a zero takes a's sign (-3.0 % 3 is -0.0; numpy.mod gives 0.0), x % 0 is NaN
    for floats and 0 for integers, INT_MIN % -1 is 0."""
    if a.dtype.kind not in "fV":
        b = _safe_divisor(b)
    with np.errstate(all="ignore"):
        rem = np.fmod(a, b)
        fix = (rem != 0) & ((rem < 0) != (b < 0))
        return np.where(fix, rem + b, rem).astype(a.dtype)


def _rem(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C's fmod (jax.lax.rem): a - b * trunc(a / b), exact, with the dividend's sign (a zero
    too); floats: x rem 0 and inf rem y are NaN, x rem inf is x. Integers: x rem 0 is x (as
    XLA has it), INT_MIN rem -1 is 0."""
    if a.dtype.kind not in "fV":
        a, b = np.broadcast_arrays(a, b)
        return np.where(b == 0, a, np.fmod(a, _safe_divisor(b)))
    with np.errstate(all="ignore"):
        return np.fmod(a, b)


def _power(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Floats: numpy.power. Integers: jax.numpy.power's binary exponentiation over the low 6
    bits of the exponent (as jax has it), in wrapping arithmetic: a ** (b mod 64), except
    0 ** b is 0 for every b != 0. So exponents in [0, 63] give the wrapped power, and others
    wrap: 2 ** -1 is 2 ** 63 (0 in 32 bits), 3 ** 64 is 1, (-1) ** -3 is -1."""
    if a.dtype.kind in "fV":
        with np.errstate(all="ignore"):
            return np.power(a, b)
    a, b = np.broadcast_arrays(a, b)
    out = np.where((a == 0) & (b != 0), np.zeros_like(a), np.ones_like(a))
    base, bits = a.copy(), np.bitwise_and(b, 63)
    with np.errstate(over="ignore"):  # (products wrap, as XLA's do)
        for _ in range(6):
            out = np.where(np.bitwise_and(bits, 1) == 1, out * base, out)
            base, bits = base * base, bits >> 1
    return out


def _extremum(pick, negative_wins: bool):
    """numpy.maximum or numpy.minimum (``pick``), ordering -0.0 below 0.0 (IEEE 754-2019, as
    XLA's): of two zeros, min takes -0.0 and max 0.0 if either is one (numpy: either)."""

    def ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = pick(a, b)
        if a.dtype.kind not in "fV":
            return out
        zeros = (a == 0) & (b == 0)
        return np.where(zeros, np.where(np.signbit(a) == negative_wins, a, b), out)

    return ref


def _sign(x: np.ndarray) -> np.ndarray:
    """numpy.sign, but sign(-0.0) is -0.0, as XLA's (numpy gives 0.0)."""
    out = np.sign(x)
    return np.where(x == 0, x, out) if x.dtype.kind in "fV" else out


def _math(fn):
    """``fn`` without numpy's warnings: an overflow, inf - inf or sin(inf) gives inf or NaN,
    results like any other, on every path that runs the kernel (the reference interpreter,
    constant folding, eager mode)."""

    def ref(*arrays):
        with np.errstate(all="ignore"):
            return fn(*arrays)

    return ref


neg = _unary("neg", NUMERIC, np.negative, doc="-x")
abs_ = _unary("abs", NUMERIC, np.abs, doc="|x|")
sign = _unary("sign", NUMERIC, _sign, doc="-1, 0 or 1; -0.0 and nan stay")
exp = _unary("exp", FLOATS, _math(np.exp))
exp2 = _unary("exp2", FLOATS, _math(np.exp2), doc="2 ** x")
expm1 = _unary("expm1", FLOATS, _math(np.expm1))
log = _unary("log", FLOATS, _math(np.log))
log1p = _unary("log1p", FLOATS, _math(np.log1p))
sqrt = _unary("sqrt", FLOATS, _math(np.sqrt))
rsqrt = _unary("rsqrt", FLOATS, _rsqrt, doc="1 / sqrt(x)")
sin = _unary("sin", FLOATS, _math(np.sin))
cos = _unary("cos", FLOATS, _math(np.cos))
tan = _unary("tan", FLOATS, _math(np.tan))
tanh = _unary("tanh", FLOATS, np.tanh)
logistic = _unary("logistic", FLOATS, _logistic, doc="1 / (1 + exp(-x))")
erf = _unary("erf", FLOATS, _erf)
erfc = _unary("erfc", FLOATS, _erfc, doc="1 - erf(x), accurate where erf(x) is near 1")
erf_inv = _unary("erf_inv", FLOATS, _erf_inv, doc="erf^-1(x): +-inf at +-1, nan beyond")
lgamma = _unary("lgamma", FLOATS, _lgamma, doc="log|gamma(x)|: inf at 0, -1, -2, ... and +-inf")
digamma = _unary(
    "digamma", FLOATS, _digamma, doc="d lgamma(x) / dx: -1/x at +-0.0; nan at -1, -2, ... and -inf"
)
floor = _unary("floor", FLOATS, np.floor)
ceil = _unary("ceil", FLOATS, np.ceil)
round_ = _unary("round", FLOATS, np.round, doc="round half to even, as numpy.round")
not_ = _unary("not", INTS_AND_BOOL, np.invert, doc="logical not on bool, bitwise not on ints")
isfinite = _unary("isfinite", FLOATS, np.isfinite, out_dtype=BOOL)

add = _binary("add", NUMERIC, _math(np.add))
sub = _binary("sub", NUMERIC, _math(np.subtract))
mul = _binary("mul", NUMERIC, _math(np.multiply))
div = _binary("div", FLOATS, _math(np.true_divide), doc="true division of floats")
floor_divide = _binary(
    "floor_divide", NUMERIC, _floor_divide, doc="jax.numpy.floor_divide (x // 0: see docs)"
)
remainder = _binary(
    "remainder", NUMERIC, _remainder, doc="jax.numpy.remainder: the sign of the divisor"
)
rem = _binary("rem", NUMERIC, _rem, doc="jax.lax.rem: C's fmod, the sign of the dividend")
pow_ = _binary("pow", NUMERIC, _power, doc="jax.numpy.power (integers: exponent mod 64)")
max_ = _binary("max", NUMERIC, _extremum(np.maximum, False), doc="nan propagates; -0.0 < 0.0")
min_ = _binary("min", NUMERIC, _extremum(np.minimum, True), doc="nan propagates; -0.0 < 0.0")
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
        broadcasts=True,
        batch=elementwise_batch,
    )
)


def _convert_rule(types: tuple[TensorType, ...], *, dtype: np.dtype) -> TensorType:
    check_arity(types, 1)
    return TensorType(types[0].shape, dtype)


def _convert_ref(x: np.ndarray, *, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "iu" and x.dtype.kind in "fV":
        return _float_to_int(x, dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        if x.dtype.kind == "V" or dtype.kind == "V":  # bfloat16 goes through float32
            return (
                x.astype(np.float32).astype(dtype) if dtype != BOOL else x.astype(np.float32) != 0
            )
        return x.astype(dtype)


def _float_to_int(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Floats to integers as XLA converts them (numpy leaves the rest to the platform):
    truncated toward zero, saturating at the type's range, NaN to 0."""
    info = np.iinfo(dtype)
    t = np.nan_to_num(np.trunc(x.astype(np.float64)), nan=0.0, posinf=np.inf, neginf=-np.inf)
    high, low = t >= float(info.max), t <= float(info.min)  # (float(max) may round up)
    inside = ~(high | low)
    out = np.empty(x.shape, dtype)
    out[high], out[low] = info.max, info.min
    out[inside] = t[inside].astype(dtype)
    return out


convert = register(
    OpDef(
        "convert",
        _convert_rule,
        _convert_ref,
        attrs={"dtype": "dtype"},
        doc="x.astype(dtype); float -> int truncates toward zero, saturates, NaN -> 0",
        batch=elementwise_batch,
    )
)


def _reduce_precision_rule(
    types: tuple[TensorType, ...], *, exponent_bits: int, mantissa_bits: int
) -> TensorType:
    check_arity(types, 1)
    check_dtype(types[0], FLOATS)
    if exponent_bits < 1 or mantissa_bits < 0:
        raise ShapeError(
            f"reduce_precision to {exponent_bits} exponent and {mantissa_bits} mantissa bits: "
            "a float format has at least 1 exponent bit and 0 mantissa bits"
        )
    return types[0]


def _reduce_precision_ref(x: np.ndarray, *, exponent_bits: int, mantissa_bits: int) -> np.ndarray:
    """XLA's ReducePrecision, on the bits of ``x`` in its own dtype: the mantissa rounded to
    ``mantissa_bits`` (to nearest, ties to even), then, with fewer exponent bits, a value
    beyond the narrow format's range is infinity of its sign and one in its subnormal range
    or below a zero of its sign; a NaN stays a NaN of its sign (with no mantissa bits too)."""
    info = ml_dtypes.finfo(x.dtype)
    src_mantissa, src_exponent = int(info.nmant), int(info.nexp)
    width = 8 * x.dtype.itemsize
    uint = np.dtype(f"uint{width}")
    bits = np.ascontiguousarray(x).view(uint)

    def u(value: int) -> np.ndarray:
        return np.asarray(value % (1 << width), uint)

    if mantissa_bits < src_mantissa:
        shift = src_mantissa - mantissa_bits
        last = 1 << shift  # (the last mantissa bit kept)
        # add half an ulp of the narrow format, a bit less where the last bit kept is even
        rounding = u((last >> 1) - 1) + ((bits & u(last)) >> u(shift))
        bits = (bits + rounding) & u(~(last - 1))
    if exponent_bits < src_exponent:
        src_bias, bias = (1 << (src_exponent - 1)) - 1, (1 << (exponent_bits - 1)) - 1
        exponent_mask = ((1 << src_exponent) - 1) << src_mantissa
        exponent = bits & u(exponent_mask)
        signed_zero = bits & u(1 << (src_exponent + src_mantissa))
        overflows = exponent > u((src_bias + bias) << src_mantissa)
        underflows = exponent <= u((src_bias - bias) << src_mantissa)
        bits = np.where(overflows, signed_zero | u(exponent_mask), bits)
        bits = np.where(underflows, signed_zero, bits)
    out = np.asarray(bits, uint).view(x.dtype).reshape(x.shape)
    return np.where(np.isnan(x), x, out)


reduce_precision = register(
    OpDef(
        "reduce_precision",
        _reduce_precision_rule,
        _reduce_precision_ref,
        attrs={"exponent_bits": "int", "mantissa_bits": "int"},
        doc="x rounded to a float format of `exponent_bits` and `mantissa_bits` (XLA's "
        "ReducePrecision): to nearest even; with fewer exponent bits than x's dtype, inf beyond "
        "the format's range and a zero below its normal numbers; nan stays",
        batch=elementwise_batch,
    )
)


stop_gradient = register(
    OpDef(
        "stop_gradient",
        unary_rule(ANY),
        lambda x: x.copy(),
        no_vjp="it stops gradients: that is what it is for",
        doc="x; gradients stop here",
        batch=elementwise_batch,
    )
)


# -- gradient rules (ir/grad.py): each beside the algebra it differentiates ------------------
def _vjp(*opdefs):
    def register_rule(rule):
        for opdef in opdefs:
            opdef.defvjp(rule)
        return rule

    return register_rule


def _scalar(e, value, like):
    return e.constant(value, like.type.dtype)


@_vjp(neg)
def _neg_vjp(e, op, g):  # d(-x) = -g
    return [e(neg, g)]


@_vjp(abs_)
def _abs_vjp(e, op, g):  # d|x| = g * sign(x)
    return [e(mul, g, e(sign, op.inputs[0]))]


@_vjp(sign, floor, ceil, round_, floor_divide)
def _zero_vjp(e, op, g):  # piecewise constant: zero almost everywhere (as jax)
    return [None] * len(op.inputs)


@_vjp(exp)
def _exp_vjp(e, op, g):  # d e^x = g * e^x
    return [e(mul, g, op.outputs[0])]


@_vjp(exp2)
def _exp2_vjp(e, op, g):  # d 2^x = g 2^x log 2
    y = op.outputs[0]
    return [e(mul, g, e(mul, y, _scalar(e, math.log(2), y)))]


@_vjp(expm1)
def _expm1_vjp(e, op, g):  # d (e^x - 1) = g * (y + 1)
    y = op.outputs[0]
    return [e(mul, g, e(add, y, _scalar(e, 1, y)))]


@_vjp(log)
def _log_vjp(e, op, g):  # d log x = g / x
    return [e(div, g, op.inputs[0])]


@_vjp(log1p)
def _log1p_vjp(e, op, g):  # d log(1 + x) = g / (1 + x)
    x = op.inputs[0]
    return [e(div, g, e(add, x, _scalar(e, 1, x)))]


@_vjp(sqrt)
def _sqrt_vjp(e, op, g):  # d sqrt(x) = g / (2 sqrt(x))
    y = op.outputs[0]
    return [e(div, g, e(mul, y, _scalar(e, 2, y)))]


@_vjp(rsqrt)
def _rsqrt_vjp(e, op, g):  # d x^-1/2 = -g/2 * y / x
    x, y = op.inputs[0], op.outputs[0]
    return [e(mul, e(mul, g, _scalar(e, -0.5, y)), e(div, y, x))]


@_vjp(sin)
def _sin_vjp(e, op, g):  # d sin x = g cos x
    return [e(mul, g, e(cos, op.inputs[0]))]


@_vjp(cos)
def _cos_vjp(e, op, g):  # d cos x = -g sin x
    return [e(neg, e(mul, g, e(sin, op.inputs[0])))]


@_vjp(tan)
def _tan_vjp(e, op, g):  # d tan x = g (1 + y^2)
    y = op.outputs[0]
    return [e(mul, g, e(add, _scalar(e, 1, y), e(mul, y, y)))]


@_vjp(tanh)
def _tanh_vjp(e, op, g):  # d tanh x = g (1 - y^2)
    y = op.outputs[0]
    return [e(mul, g, e(sub, _scalar(e, 1, y), e(mul, y, y)))]


@_vjp(logistic)
def _logistic_vjp(e, op, g):  # d s(x) = g s (1 - s)
    y = op.outputs[0]
    return [e(mul, g, e(mul, y, e(sub, _scalar(e, 1, y), y)))]


@_vjp(erf)
def _erf_vjp(e, op, g):  # d erf x = g 2/sqrt(pi) e^(-x^2)
    x = op.inputs[0]
    bell = e(exp, e(neg, e(mul, x, x)))
    return [e(mul, g, e(mul, bell, _scalar(e, 2 / math.sqrt(math.pi), x)))]


@_vjp(erfc)
def _erfc_vjp(e, op, g):  # d erfc x = -g 2/sqrt(pi) e^(-x^2)
    x = op.inputs[0]
    bell = e(exp, e(neg, e(mul, x, x)))
    return [e(mul, g, e(mul, bell, _scalar(e, -2 / math.sqrt(math.pi), x)))]


@_vjp(erf_inv)
def _erf_inv_vjp(e, op, g):  # d erf^-1 x = g sqrt(pi)/2 e^(y^2)
    y = op.outputs[0]
    return [e(mul, g, e(mul, e(exp, e(mul, y, y)), _scalar(e, math.sqrt(math.pi) / 2, y)))]


@_vjp(lgamma)
def _lgamma_vjp(e, op, g):  # d lgamma x = g digamma(x)
    return [e(mul, g, e(digamma, op.inputs[0]))]


@_vjp(digamma)
def _digamma_vjp(e, op, g):  # d digamma x = g trigamma(x)
    return [e(mul, g, _trigamma(e, op.inputs[0]))]


def _trigamma(e, x):
    """polygamma(1, x) (jax's derivative of digamma) from flowjit's ops: below 0.5 by the
    reflection pi^2 / sin^2(pi x) - trigamma(1 - x); above, eight steps of the recurrence
    trigamma(z) = 1 / z^2 + trigamma(z + 1) and the asymptotic series at z + 8 (to z^-15)."""
    one = _scalar(e, 1, x)
    reflect = e(lt, x, _scalar(e, 0.5, x))
    z = e(select, reflect, e(sub, one, x), x)
    total = None
    for k in range(8):
        shifted = e(add, z, _scalar(e, k, x)) if k else z
        term = e(div, one, e(mul, shifted, shifted))
        total = term if total is None else e(add, total, term)
    r = e(div, one, e(add, z, _scalar(e, 8, x)))
    r2 = e(mul, r, r)
    series = _scalar(e, 7 / 6, x)
    for c in (-691 / 2730, 5 / 66, -1 / 30, 1 / 42, -1 / 30, 1 / 6):
        series = e(add, _scalar(e, c, x), e(mul, r2, series))
    series = e(add, e(mul, e(mul, r, r2), series), e(add, r, e(mul, r2, _scalar(e, 0.5, x))))
    positive = e(add, total, series)
    # (sin(pi x)^2 = sin(pi (x - n))^2, and x - round(x) is exact: accurate near the poles)
    sine = e(sin, e(mul, e(sub, x, e(round_, x)), _scalar(e, math.pi, x)))
    reflected = e(sub, e(div, _scalar(e, math.pi**2, x), e(mul, sine, sine)), positive)
    return e(select, reflect, reflected, positive)


@_vjp(add)
def _add_vjp(e, op, g):  # d(a + b) = (g, g), each summed back to its operand's shape
    a, b = op.inputs
    return [e.unbroadcast(g, a.type), e.unbroadcast(g, b.type)]


@_vjp(sub)
def _sub_vjp(e, op, g):  # d(a - b) = (g, -g)
    a, b = op.inputs
    return [e.unbroadcast(g, a.type), e.unbroadcast(e(neg, g), b.type)]


@_vjp(mul)
def _mul_vjp(e, op, g):  # d(a b) = (g b, g a)
    a, b = op.inputs
    return [e.unbroadcast(e(mul, g, b), a.type), e.unbroadcast(e(mul, g, a), b.type)]


@_vjp(div)
def _div_vjp(e, op, g):  # d(a / b) = (g / b, -g a / b^2)
    a, b = op.inputs
    ga = e(div, g, b)
    return [e.unbroadcast(ga, a.type), e.unbroadcast(e(neg, e(mul, ga, e(div, a, b))), b.type)]


@_vjp(remainder)
def _remainder_vjp(e, op, g):  # a mod b = a - b floor(a / b): (g, -g floor(a / b))
    a, b = op.inputs
    quotient = e(floor, e(div, a, b))
    return [e.unbroadcast(g, a.type), e.unbroadcast(e(neg, e(mul, g, quotient)), b.type)]


@_vjp(rem)
def _rem_vjp(e, op, g):  # a rem b = a - b trunc(a / b): (g, -g trunc(a / b)), as jax's
    a, b = op.inputs
    quotient = e(div, a, b)
    whole = e(mul, e(sign, quotient), e(floor, e(abs_, quotient)))
    return [e.unbroadcast(g, a.type), e.unbroadcast(e(neg, e(mul, g, whole)), b.type)]


@_vjp(pow_)
def _pow_vjp(e, op, g):  # d a^b = (g b a^(b-1), g a^b log a), the latter 0 where a <= 0
    a, b = op.inputs
    y = op.outputs[0]
    ga = gb = None  # (only for an operand that may carry a derivative: x ** 2 has no db)
    if e.is_active(a):
        ga = e.unbroadcast(e(mul, g, e(mul, b, e(pow_, a, e(sub, b, _scalar(e, 1, b))))), a.type)
    if e.is_active(b):
        positive = e(gt, a, _scalar(e, 0, a))
        safe_log = e(log, e(select, positive, a, _scalar(e, 1, a)))
        gb = e(select, positive, e(mul, g, e(mul, y, safe_log)), _scalar(e, 0, y))
        gb = e.unbroadcast(gb, b.type)
    return [ga, gb]


def _pick(e, mask, g):
    return e(select, mask, g, _scalar(e, 0, g))


@_vjp(max_, min_)
def _extremum_vjp(e, op, g):  # g goes to the operand that won; ties split it evenly (as jax)
    a, b = op.inputs
    y = op.outputs[0]
    half = e(mul, g, _scalar(e, 0.5, g))
    tie = e(eq, a, b)
    ga = e(select, tie, half, _pick(e, e(eq, a, y), g))
    gb = e(select, tie, half, _pick(e, e(eq, b, y), g))
    return [e.unbroadcast(ga, a.type), e.unbroadcast(gb, b.type)]


@_vjp(atan2)
def _atan2_vjp(e, op, g):  # d atan2(a, b) = (g b, -g a) / (a^2 + b^2)
    a, b = op.inputs
    scale = e(div, g, e(add, e(mul, a, a), e(mul, b, b)))
    return [
        e.unbroadcast(e(mul, scale, b), a.type),
        e.unbroadcast(e(neg, e(mul, scale, a)), b.type),
    ]


@_vjp(select)
def _select_vjp(e, op, g):  # the chosen branch gets g, the other zero; the predicate none
    pred, a, b = op.inputs
    zero = _scalar(e, 0, g)
    return [
        None,
        e.unbroadcast(e(select, pred, g, zero), a.type),
        e.unbroadcast(e(select, pred, zero, g), b.type),
    ]


@_vjp(reduce_precision)
def _reduce_precision_vjp(e, op, g):  # linear, as jax has it: g reduced the same way
    return [e(reduce_precision, g, **op.attrs)]


@_vjp(convert)
def _convert_vjp(e, op, g):  # back to the input's dtype, if that is a float
    x = op.inputs[0]
    return [e(convert, g, dtype=x.type.dtype) if is_float(x.type.dtype) else None]


for _opdef, _why in (
    (not_, "bitwise/logical"),
    (isfinite, "a predicate"),
    (and_, "bitwise"),
    (or_, "bitwise"),
    (xor, "bitwise"),
    (eq, "a comparison"),
    (ne, "a comparison"),
    (lt, "a comparison"),
    (le, "a comparison"),
    (gt, "a comparison"),
    (ge, "a comparison"),
):
    _opdef.declare_no_vjp(f"{_why}: its result is not differentiable")
