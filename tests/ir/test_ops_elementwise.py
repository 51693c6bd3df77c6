"""Every elementwise op, every dtype it claims, on broadcast random inputs, against numpy."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from opcheck import OpCase, check_case, check_grad, jitted, params, rand

from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops.rules import ANY, FLOATS, INTS, INTS_AND_BOOL, NUMERIC
from flowjit.ir.types import bfloat16

SIGNED_AND_FLOATS = tuple(d for d in NUMERIC if d.kind != "u")


def unary(low=-3, high=3):
    return lambda rng, dt: ([rand(rng, (2, 3), dt, low, high)], {})


def binary(low=-3, high=3, nonzero=False):
    def make(rng, dt):
        a, b = rand(rng, (2, 1, 4), dt, low, high), rand(rng, (3, 1), dt, low, high)
        if nonzero:
            b = np.where(b == 0, np.ones_like(b), b)
        return [a, b], {}

    return make


def division(rng, dt):
    """Integer operands in [-9, 9] with a nonzero divisor; for floats the divisor is a power of
    two, so a / b is exact in every float dtype and flooring it is well defined (a quotient
    that rounds onto an integer would make float16 and numpy's float64 disagree)."""
    if np.dtype(dt).kind in "fV":
        a = rand(rng, (2, 1, 4), dt, -9, 9)
        b = (rng.choice([-4.0, -2.0, -0.5, 0.5, 1.0, 2.0, 4.0], size=(3, 1))).astype(dt)
        return [a, b], {}
    return binary(-9, 9, nonzero=True)(rng, dt)


def special(name: str):
    """scipy.special's function ``name`` (scipy comes with scikit-learn, a test dependency)."""
    from scipy import special as sp

    return getattr(sp, name)


def between_poles(rng, dt):
    """Negative values at least 0.1 from the poles of lgamma and digamma (the integers)."""
    whole = rng.integers(-4, 0, size=(2, 3))
    return [(whole + rng.uniform(0.1, 0.9, size=(2, 3))).astype(dt)], {}


def spread(exponents, exponent_bits: int, mantissa_bits: int):
    """Normal numbers of every dtype, +-(1 + k/4096) * 2^e for e in ``exponents``: 12 bits of
    mantissa to round, ties among them, and the exponents to overflow or flush."""

    def make(rng, dt):
        mantissa = 1 + rng.integers(0, 4096, size=(3, 8)) / 4096
        sign = rng.choice([-1.0, 1.0], size=(3, 8))
        x = sign * mantissa * np.exp2(rng.choice(list(exponents), size=(3, 8)))
        return [x.astype(dt)], {"exponent_bits": exponent_bits, "mantissa_bits": mantissa_bits}

    return make


def as_bfloat16(x, exponent_bits, mantissa_bits):
    return x.astype(bfloat16)


def as_float16_flushed(x, exponent_bits, mantissa_bits):
    """x as float16 (to nearest even, inf beyond the range), its subnormals zeros of x's sign."""
    with np.errstate(over="ignore"):
        y = x.astype(np.float16)
    return np.where(np.abs(y) < 2.0**-14, np.copysign(0.0, x), y)


def nonneg_base(rng, dt):
    a = rand(rng, (2, 3), dt, 0, 3)
    b = rand(rng, (3,), dt, 0, 3)
    return [a, b], {}


CASES = (
    [
        OpCase(E.neg, SIGNED_AND_FLOATS, unary(), np.negative),
        OpCase(E.abs_, NUMERIC, unary(), np.abs),
        OpCase(E.sign, NUMERIC, unary(), np.sign),
        OpCase(E.exp, FLOATS, unary(), np.exp),
        OpCase(E.exp2, FLOATS, unary(), np.exp2),
        OpCase(E.expm1, FLOATS, unary(), np.expm1),
        OpCase(E.log, FLOATS, unary(0.1, 5), np.log),
        OpCase(E.log1p, FLOATS, unary(-0.5, 5), np.log1p),
        OpCase(E.sqrt, FLOATS, unary(0, 5), np.sqrt),
        OpCase(E.rsqrt, FLOATS, unary(0.1, 5), lambda x: 1 / np.sqrt(x)),
        OpCase(E.sin, FLOATS, unary(), np.sin),
        OpCase(E.cos, FLOATS, unary(), np.cos),
        OpCase(E.tan, FLOATS, unary(-1.2, 1.2), np.tan, tol_scale=4),
        OpCase(E.tanh, FLOATS, unary(), np.tanh),
        OpCase(E.logistic, FLOATS, unary(), lambda x: 1 / (1 + np.exp(-x))),
        OpCase(E.erf, FLOATS, unary(), np.vectorize(math.erf)),
        OpCase(E.erfc, FLOATS, unary(), np.vectorize(math.erfc)),
        OpCase(E.erf_inv, FLOATS, unary(-0.95, 0.95), special("erfinv"), tol_scale=4),
        OpCase(E.lgamma, FLOATS, unary(0.1, 6), np.vectorize(math.lgamma), tol_scale=4),
        OpCase(
            E.lgamma,
            FLOATS,
            between_poles,
            np.vectorize(math.lgamma),
            name="lgamma_negative",
            tol_scale=16,
        ),
        OpCase(E.digamma, FLOATS, unary(0.1, 6), special("digamma"), tol_scale=4),
        OpCase(
            E.digamma,
            FLOATS,
            between_poles,
            special("digamma"),
            name="digamma_negative",
            tol_scale=16,
        ),
        OpCase(E.floor, FLOATS, unary(), np.floor),
        OpCase(E.ceil, FLOATS, unary(), np.ceil),
        OpCase(
            E.round_,
            FLOATS,
            lambda rng, dt: (
                [np.array([0.5, 1.5, 2.5, -0.5, -1.7, 3.2], dt) + rand(rng, (6,), dt, 0, 0)],
                {},
            ),
            np.round,
            grad_make=unary(),  # ties are jumps, where the gradient is undefined
        ),
        OpCase(
            E.reduce_precision,
            FLOATS,
            spread(range(-12, 13), 8, 7),
            as_bfloat16,
            # (the op is piecewise constant and its gradient jax's straight-through one: where
            # the op changes nothing, finite differences check it; magnitudes up to 2**6 keep
            # their float64 rounding error (~1e-16 * |objective| / eps) under the atol)
            grad_make=spread(range(-6, 7), 11, 52),
        ),
        OpCase(
            E.reduce_precision,
            (bfloat16, np.float32, np.float64),
            spread([*range(-30, -15), *range(-14, 21)], 5, 10),
            as_float16_flushed,
            name="reduce_precision_to_float16",
            grad_make=spread(range(-6, 7), 11, 52),
        ),
        OpCase(E.not_, INTS_AND_BOOL, unary(), np.invert),
        OpCase(E.stop_gradient, ANY, unary(), lambda x: x),
        OpCase(
            E.isfinite,
            FLOATS,
            lambda rng, dt: (
                [np.array([1, np.inf, -np.inf, np.nan], dt) * rand(rng, (4,), dt, 1, 2)],
                {},
            ),
            np.isfinite,
        ),
        OpCase(E.add, NUMERIC, binary(), np.add),
        OpCase(E.sub, NUMERIC, binary(), np.subtract),
        OpCase(E.mul, NUMERIC, binary(), np.multiply),
        OpCase(E.div, FLOATS, binary(nonzero=True), np.true_divide),
        OpCase(E.floor_divide, NUMERIC, division, np.floor_divide),
        OpCase(
            E.floor_divide,
            FLOATS,
            lambda rng, dt: (_division_specials(dt), {}),
            lambda a, b: _quiet_floor_divide(a, b),
            name="floor_divide_by_zero_and_infinity",
            grad_make=division,  # (no gradient to check at infinities)
        ),
        OpCase(E.remainder, NUMERIC, division, np.mod),
        OpCase(E.rem, NUMERIC, division, np.fmod),
        OpCase(E.pow_, NUMERIC, nonneg_base, np.power, tol_scale=4),
        OpCase(E.max_, NUMERIC, binary(), np.maximum),
        OpCase(E.min_, NUMERIC, binary(), np.minimum),
        OpCase(E.atan2, FLOATS, binary(), np.arctan2),
        OpCase(E.and_, INTS_AND_BOOL, binary(), np.bitwise_and),
        OpCase(E.or_, INTS_AND_BOOL, binary(), np.bitwise_or),
        OpCase(E.xor, INTS_AND_BOOL, binary(), np.bitwise_xor),
        OpCase(E.eq, ANY, binary(-1, 1), np.equal),
        OpCase(E.ne, ANY, binary(-1, 1), np.not_equal),
        OpCase(E.lt, ANY, binary(-1, 1), np.less),
        OpCase(E.le, ANY, binary(-1, 1), np.less_equal),
        OpCase(E.gt, ANY, binary(-1, 1), np.greater),
        OpCase(E.ge, ANY, binary(-1, 1), np.greater_equal),
        OpCase(
            E.select,
            ANY,
            lambda rng, dt: (
                [rand(rng, (3, 1), np.bool_), rand(rng, (1, 4), dt), rand(rng, (4,), dt)],
                {},
            ),
            np.where,
        ),
    ]
    + [
        OpCase(
            E.convert,
            ANY,
            lambda rng, dt, to=to: (
                [rand(rng, (2, 5), dt, 0 if np.dtype(to).kind == "u" else -3, 100)],
                {"dtype": to},
            ),
            lambda x, dtype: x.astype(dtype),
            name=f"convert_to_{np.dtype(to).name}",
        )
        for to in ANY
    ]
    + [
        OpCase(
            E.convert,
            FLOATS,
            lambda rng, dt, to=to: ([_out_of_range(dt)], {"dtype": to}),
            lambda x, dtype: _saturated(x, dtype),
            name=f"saturating_convert_to_{np.dtype(to).name}",
        )
        for to in map(
            np.dtype, (np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64, np.uint64)
        )
    ]
)


def _division_specials(dtype) -> list[np.ndarray]:
    """Dividends and divisors where floor(a / b) and numpy's floor division part: infinite
    or zero divisors, infinite dividends, signed zeros."""
    a = [1.0, -1.0, 0.0, np.inf, -np.inf, 5.0, -5.0, np.nan, 1.0, 7.0, -0.0, 7.5, -7.5, 3.0]
    b = [0.0, 0.0, 0.0, 2.0, 2.0, np.inf, np.inf, 1.0, -0.0, -np.inf, 3.0, 2.0, 2.0, -0.7]
    return [np.array(a).astype(dtype), np.array(b).astype(dtype)]


def _quiet_floor_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):  # (dividing by zero on purpose)
        return np.floor_divide(a, b)


def _saturated(x: np.ndarray, dtype) -> np.ndarray:
    """Float to integer as XLA converts: toward zero, clamped to the range, NaN to 0 (in
    Python integers, exact for every type)."""
    info = np.iinfo(dtype)
    clamp = lambda v: min(max(math.trunc(v), info.min), info.max)  # noqa: E731
    values = [
        0 if math.isnan(v) else clamp(v) if math.isfinite(v) else (info.max if v > 0 else info.min)
        for v in x.astype(np.float64).ravel()
    ]
    return np.array(values, dtype).reshape(x.shape)


def _out_of_range(dtype) -> np.ndarray:
    """NaN, infinities and values beyond every integer type's range, as ``dtype``."""
    values = [
        [np.nan, np.inf, -np.inf, -1e30, 1e30, -1.5],
        [-0.5, 0.7, 300.5, -200.5, 7e4, 2.0**63],
    ]
    with np.errstate(over="ignore"):  # (1e30 is inf in float16)
        return np.array(values).astype(dtype)


# -- edge values: what jax.jit gives is the meaning (docs/ir-format.md, "Edge values") -------
def _int_grid(dtype, signed: list[int], unsigned: list[int], extremes: bool) -> np.ndarray:
    info = np.iinfo(dtype)
    values = signed if info.min < 0 else unsigned
    ends = [info.min, info.max, info.min + 1, info.max - 1] if extremes else []
    return np.array(sorted({v for v in values if info.min <= v <= info.max} | set(ends)), dtype)


def integer_division_edges(rng, dt):
    """Every dividend against every divisor of: zero, +-1, small values and the range's ends
    (INT_MIN // -1 overflows), in a random order."""
    a = _int_grid(dt, [0, 1, -1, 7, -7, 6], [0, 1, 7, 6], extremes=True)
    b = _int_grid(dt, [0, 1, -1, 3, -3, 2], [0, 1, 3, 2], extremes=True)
    return [rng.permutation(a).reshape(-1, 1), rng.permutation(b)], {}


def integer_power_edges(rng, dt):
    """Bases around zero and the range's ends against exponents that are negative, zero,
    small, and 64 or more (jnp.power uses the exponent's low 6 bits)."""
    a = _int_grid(dt, [-3, -2, -1, 0, 1, 2, 3], [0, 1, 2, 3], extremes=True)
    exponents = [-65, -64, -3, -2, -1, 0, 1, 2, 7, 63, 64, 65, 127]
    b = _int_grid(dt, exponents, [0, 1, 7, 63, 64, 65, 127, 200], extremes=False)
    return [rng.permutation(a).reshape(-1, 1), rng.permutation(b)], {}


FLOAT_EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, np.inf, -np.inf, np.nan]


def float_edges(rng, dt):
    """Signed zeros, infinities and NaN against each other and a few finite values."""
    values = np.array(FLOAT_EDGES).astype(dt)
    return [rng.permutation(values).reshape(-1, 1), rng.permutation(values)], {}


def float_edges_unary(rng, dt):
    return [rng.permutation(np.array(FLOAT_EDGES + [-0.4, 0.4, 1.5]).astype(dt))], {}


def lax_rem(a, b):
    """jax.lax.rem, its operands broadcast (lax's binary ops take equal shapes)."""
    return lax.rem(*jnp.broadcast_arrays(a, b))


def reduce_precision_edges(bits):
    """The float edge values and random ones over a wide range, to a format of ``bits``
    (exponent, mantissa)."""

    def make(rng, dt):
        x = rng.standard_normal(20) * np.exp2(rng.integers(-30, 30, size=20))
        with np.errstate(over="ignore"):
            values = np.concatenate([FLOAT_EDGES, x]).astype(dt)
        return [rng.permutation(values)], {"exponent_bits": bits[0], "mantissa_bits": bits[1]}

    return make


def jax_reduce_precision(x, exponent_bits, mantissa_bits):
    return lax.reduce_precision(x, exponent_bits, mantissa_bits)


def edge_case(opdef, dtypes, make, fn, name: str = "") -> OpCase:
    name = name or f"{opdef.name}_edges"
    return OpCase(opdef, dtypes, make, jitted(fn), name, tol_scale=4, edges=True)


EDGE_CASES = [
    edge_case(E.floor_divide, INTS, integer_division_edges, jnp.floor_divide),
    edge_case(E.remainder, INTS, integer_division_edges, jnp.remainder),
    edge_case(E.pow_, INTS, integer_power_edges, jnp.power),
    edge_case(E.rem, INTS, integer_division_edges, lax_rem),
]
EDGE_CASES += [
    edge_case(opdef, FLOATS, float_edges, fn)
    for opdef, fn in [
        (E.add, jnp.add),
        (E.sub, jnp.subtract),
        (E.mul, jnp.multiply),
        (E.div, jnp.divide),
        (E.floor_divide, jnp.floor_divide),
        (E.remainder, jnp.remainder),
        (E.rem, lax_rem),
        (E.pow_, jnp.power),
        (E.max_, jnp.maximum),
        (E.min_, jnp.minimum),
        (E.atan2, jnp.arctan2),
    ]
]
EDGE_CASES += [
    edge_case(
        E.reduce_precision,
        FLOATS,
        reduce_precision_edges(bits),
        jax_reduce_precision,
        f"reduce_precision_edges_{bits[0]}_{bits[1]}",
    )
    for bits in [(5, 2), (2, 1), (4, 0), (1, 0), (11, 3)]
]
EDGE_CASES += [
    edge_case(opdef, FLOATS, float_edges_unary, fn)
    for opdef, fn in [
        (E.neg, jnp.negative),
        (E.abs_, jnp.abs),
        (E.sign, jnp.sign),
        (E.floor, jnp.floor),
        (E.ceil, jnp.ceil),
        (E.round_, jnp.round),
        (E.sqrt, jnp.sqrt),
        (E.rsqrt, lax.rsqrt),
        (E.exp, jnp.exp),
        (E.exp2, jnp.exp2),
        (E.expm1, jnp.expm1),
        (E.log, jnp.log),
        (E.log1p, jnp.log1p),
        (E.sin, jnp.sin),
        (E.tan, jnp.tan),
        (E.tanh, jnp.tanh),
        (E.erf, lax.erf),
        (E.erfc, lax.erfc),
        (E.erf_inv, lax.erf_inv),
        (E.lgamma, lax.lgamma),
        (E.digamma, lax.digamma),
    ]
]


@pytest.mark.parametrize("case, dtype", params(CASES + EDGE_CASES))
def test_op_against_numpy(case, dtype):
    check_case(case, dtype)


GRAD_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


@pytest.mark.parametrize(
    "case, dtype",
    [p for p in params(CASES) if p.values[0].opdef.vjp is not None and p.values[1] in GRAD_DTYPES],
)
def test_gradient(case, dtype):
    check_grad(case, dtype)
