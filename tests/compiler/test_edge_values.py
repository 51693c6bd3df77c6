"""Edge values (docs/ir-format.md, "Edge values"): integer division and remainder by zero and
of INT_MIN by -1, integer powers with negative and large exponents, and signed zeros give
what jax.jit gives for the same jax.numpy function, bit for bit, on every path: compiled with
the values as arguments, with them as constants (constant folding computes the op with the
reference kernel), in eager mode and on the reference interpreter; and numpy warns of
nothing on the way."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp

I8, I32, I64 = np.dtype(np.int8), np.dtype(np.int32), np.dtype(np.int64)
U8, U32, F32 = np.dtype(np.uint8), np.dtype(np.uint32), np.dtype(np.float32)
F64 = np.dtype(np.float64)


def _ints(dtype: np.dtype, values: list[int]) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.array([v for v in values if info.min <= v <= info.max], dtype)


def integer_division(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of dividend and divisor among zero, +-1, small values and the ends of the
    range (INT_MIN // -1 overflows)."""
    info = np.iinfo(dtype)
    values = _ints(dtype, [0, 1, -1, 7, -7, 3, -3, int(info.min), int(info.max)])
    return values.reshape(-1, 1), values


def integer_power(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    bases = _ints(dtype, [-3, -2, -1, 0, 1, 2, 3, int(np.iinfo(dtype).max)])
    exponents = _ints(dtype, [-65, -64, -2, -1, 0, 1, 2, 31, 63, 64, 65, 127, 200])
    return bases.reshape(-1, 1), exponents


def signed_zeros(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    values = np.array([0.0, -0.0, 0.5, -0.5, 3.0, -3.0, np.inf, -np.inf, np.nan], dtype)
    return values.reshape(-1, 1), values


CASES = [
    (fnp.floor_divide, jnp.floor_divide, integer_division, [I8, I32, I64, U8, U32]),
    (fnp.remainder, jnp.remainder, integer_division, [I8, I32, I64, U8, U32]),
    (fnp.power, jnp.power, integer_power, [I8, I32, I64, U8, U32]),
] + [
    (fn, jfn, signed_zeros, [F32, F64])
    for fn, jfn in [
        (fnp.floor_divide, jnp.floor_divide),
        (fnp.remainder, jnp.remainder),
        (fnp.maximum, jnp.maximum),
        (fnp.minimum, jnp.minimum),
        (fnp.add, jnp.add),
        (fnp.subtract, jnp.subtract),
        (fnp.multiply, jnp.multiply),
        (lambda a, b: fnp.sign(fnp.multiply(a, b)), lambda a, b: jnp.sign(a * b)),
    ]
]
PARAMS = [
    pytest.param(fn, jfn, make, dtype, id=f"{make.__name__}-{jfn.__name__}-{dtype.name}")
    for fn, jfn, make, dtypes in CASES
    for dtype in dtypes
]


def assert_same_bits(got, want, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, what
    if want.dtype.kind == "f":
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan, err_msg=f"{what}: NaN")
        got, want = np.where(nan, 0, got), np.where(nan, 0, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want), err_msg=f"{what}: sign")
    np.testing.assert_array_equal(got, want, err_msg=what)


def four_paths(fn, a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """fn(a, b) compiled on arguments, compiled on constants, eagerly and on the reference
    interpreter (the traced graph, no pass run), with every numpy warning an error. (a and b
    are broadcast first: constant folding computes no result larger than its inputs.)"""
    a, b = (np.ascontiguousarray(x) for x in np.broadcast_arrays(a, b))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = {
            "compiled": fj.compile(fn)(a, b),
            "constants": fj.compile(lambda: fn(a, b))(),
            "reference": fj.compile(fn, passes=[]).lower(a, b).run_reference(a, b)[0],
        }
        fj.config.update("eager", True)
        try:
            out["eager"] = fj.compile(fn)(a, b)
        finally:
            fj.config.update("eager", False)
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("fn, jfn, make, dtype", PARAMS)
def test_every_path_gives_what_jax_jit_gives(fn, jfn, make, dtype):
    a, b = make(dtype)
    want = np.asarray(jax.jit(jfn)(a, b))
    for path, got in four_paths(fn, a, b).items():
        assert_same_bits(got, want, f"{path}: {jfn.__name__}({a.ravel()}, {b})")


def test_constants_fold_on_the_constants_path():
    # (so that the "constants" path above is constant folding's, not XLA's)
    a, b = np.broadcast_arrays(*integer_division(I32))
    text = fj.compile(lambda: fnp.floor_divide(a, b)).lower().ir()
    assert "floor_divide" not in text, text


@pytest.mark.parametrize("dtype", [F32, F64])
def test_adding_a_constant_zero_is_ieee(dtype):
    # -0.0 + 0.0 is 0.0 and -0.0 - -0.0 is 0.0 where the zero is a constant too; (jax.jit
    # gives -0.0 there: XLA's simplifier drops the add; flowjit keeps IEEE's meaning on every
    # path, which is what jax.jit gives when the zero is an argument)
    x = np.array([-0.0, 0.0, 2.0], dtype)
    zero, negative_zero = np.zeros((), dtype), np.array(-0.0, dtype)
    want = np.array([0.0, 0.0, 2.0], dtype)
    for fn in (
        lambda x, _: fnp.add(x, zero),
        lambda x, _: fnp.add(zero, x),
        lambda x, _: fnp.subtract(x, negative_zero),
        lambda x, _: fnp.add(x, fnp.ones_like(x) - 1),  # a zero XLA would compute itself
    ):
        for path, got in four_paths(fn, x, x).items():
            assert_same_bits(got, want, path)
