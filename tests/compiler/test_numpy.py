"""Every ``flowjit.numpy`` function of API.md section 2 through ``fj.compile``, against numpy on
fresh random inputs. Values come from numpy (in float64, rounded to the result dtype); result
dtypes come from jax.numpy with its default 32-bit types; a few functions without a numpy
counterpart (rsqrt, top_k, dynamic_slice, dynamic_update_slice) are checked against jax."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from frontcheck import expect_all, reference, wide
from opcheck import assert_matches, rand

import flowjit as fj
import flowjit.numpy as fnp

F16, BF16, F32, F64 = fnp.float16, fnp.bfloat16, fnp.float32, fnp.float64
I8, I32, I64, U8, U32, BOOL = fnp.int8, fnp.int32, fnp.int64, fnp.uint8, fnp.uint32, fnp.bool_
name_of = lambda d: np.dtype(d).name  # noqa: E731 (pytest ids)


# -- elementwise -------------------------------------------------------------------------------
# name: (low, high) of the inputs; numpy and jax.numpy functions of the same name are the
# reference unless listed in SPECIAL
UNARY = {
    "negative": (-3, 3),
    "abs": (-3, 3),
    "sign": (-3, 3),
    "exp": (-3, 3),
    "expm1": (-3, 3),
    "log": (0.1, 5),
    "log1p": (-0.9, 5),
    "sqrt": (0, 5),
    "rsqrt": (0.1, 5),
    "square": (-3, 3),
    "sin": (-3, 3),
    "cos": (-3, 3),
    "tan": (-1.2, 1.2),
    "tanh": (-3, 3),
    "floor": (-3, 3),
    "ceil": (-3, 3),
    "round": (-3, 3),
    "logical_not": (-1, 1),
    "isfinite": (-3, 3),
}
SPECIAL = {"rsqrt": (lambda x: 1 / np.sqrt(x), lambda x: 1 / jnp.sqrt(x))}


def unary_input(rng, name: str, dtype) -> np.ndarray:
    low, high = UNARY[name]
    x = rand(rng, (3, 5), dtype, low, high)
    if np.dtype(dtype).kind in "fV":
        if name == "round":  # halves round to even
            x.flat[:6] = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]
        if name == "isfinite":
            x.flat[:3] = [np.inf, -np.inf, np.nan]
        if name in ("sign", "logical_not"):
            x.flat[:2] = [0, -0.0]
    return x


@pytest.mark.parametrize("dtype", [F32, F16, BF16, I32, I8, F64, U8, U32], ids=name_of)
def test_unary(dtype):
    rng = np.random.default_rng()
    unsigned = np.dtype(dtype).kind == "u"  # abs and sign of unsigned: their own test below
    xs = {
        name: unary_input(rng, name, dtype)
        for name in UNARY
        if not (unsigned and name in ("abs", "sign"))
    }
    got = fj.compile(lambda xs: {name: getattr(fnp, name)(x) for name, x in xs.items()})(xs)
    want = {
        name: reference(
            *SPECIAL[name] if name in SPECIAL else (getattr(np, name), getattr(jnp, name)), x
        )
        for name, x in xs.items()
    }
    expect_all(got, want, scale=2)


@pytest.mark.parametrize("dtype", [U8, U32], ids=name_of)
@pytest.mark.parametrize("name", ["abs", "sign"])
def test_abs_and_sign_of_unsigned(name, dtype):
    """abs is the identity and sign is 0 or 1 on unsigned ints (the ops' rules accept them)."""
    x = rand(np.random.default_rng(), (6,), dtype, 0, 3)
    x[0] = 0
    got = np.asarray(fj.compile(getattr(fnp, name))(x))
    assert_matches(got, reference(getattr(np, name), getattr(jnp, name), x), got.dtype, 1, name)


# name: (left (low, high), right (low, high)); right ranges exclude zero by a sign flip below
BINARY = {
    "add": ((-3, 3), (-3, 3)),
    "subtract": ((-3, 3), (-3, 3)),
    "multiply": ((-3, 3), (-3, 3)),
    "divide": ((-3, 3), (1, 3)),
    "floor_divide": ((-9, 9), (1, 4)),
    "mod": ((-9, 9), (1, 4)),
    "power": ((0.5, 2), (0, 2)),
    "maximum": ((-3, 3), (-3, 3)),
    "minimum": ((-3, 3), (-3, 3)),
    "arctan2": ((-3, 3), (-3, 3)),
    "equal": ((0, 2), (0, 2)),
    "not_equal": ((0, 2), (0, 2)),
    "less": ((0, 2), (0, 2)),
    "less_equal": ((0, 2), (0, 2)),
    "greater": ((0, 2), (0, 2)),
    "greater_equal": ((0, 2), (0, 2)),
    "logical_and": ((-1, 1), (-1, 1)),
    "logical_or": ((-1, 1), (-1, 1)),
}


def binary_inputs(rng, name: str, dtype) -> tuple[np.ndarray, np.ndarray]:
    (lo_a, hi_a), (lo_b, hi_b) = BINARY[name]
    floating = np.dtype(dtype).kind in "fV"
    if name in ("floor_divide", "mod") and floating:
        # (2k+1)/16 over +-2^j: the quotient is never an integer, so it floors the same in
        # every precision
        a = ((2 * rng.integers(-24, 25, (3, 1, 4)) + 1) / 16).astype(dtype)
        return a, rng.choice([-2, -1, -0.5, 0.5, 1, 2], (2, 4)).astype(dtype)
    if name in ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal"):
        return (
            rng.integers(lo_a, hi_a + 1, (3, 1, 4)).astype(dtype),  # ties are likely
            rng.integers(lo_b, hi_b + 1, (2, 4)).astype(dtype),
        )
    a, b = rand(rng, (3, 1, 4), dtype, lo_a, hi_a), rand(rng, (2, 4), dtype, lo_b, hi_b)
    if lo_b > 0:  # nonzero divisors of either sign
        b = np.where(rng.random(b.shape) < 0.5, -wide(b), wide(b)).astype(dtype)
    return a, b


@pytest.mark.parametrize("dtype", [F32, F16, BF16, I32, I8], ids=name_of)
def test_binary(dtype):
    """Each binary function broadcasting (3,1,4) with (2,4), and with a Python scalar."""
    rng = np.random.default_rng()
    names = [n for n in BINARY if not (n == "arctan2" and np.dtype(dtype).kind == "i")]
    ins = {name: binary_inputs(rng, name, dtype) for name in names}

    @fj.compile
    def f(ins):
        out = {}
        for name, (a, b) in ins.items():
            fn = getattr(fnp, name)
            out.update({name: fn(a, b), f"{name}(a, 2)": fn(a, 2), f"{name}(1, b)": fn(1, b)})
        return out

    want = {}
    for name, (a, b) in ins.items():
        np_fn, jnp_fn = getattr(np, name), getattr(jnp, name)
        want.update(
            {
                name: reference(np_fn, jnp_fn, a, b),
                f"{name}(a, 2)": reference(lambda a: np_fn(a, 2), lambda a: jnp_fn(a, 2), a),
                f"{name}(1, b)": reference(lambda b: np_fn(1, b), lambda b: jnp_fn(1, b), b),
            }
        )
    expect_all(f(ins), want, scale=2)


def test_arctan2_of_integers_and_mixed_types():
    rng = np.random.default_rng()
    a, b, h = rand(rng, (4,), I32), rand(rng, (4,), I32), rand(rng, (4,), F16)
    got = fj.compile(
        lambda a, b, h: {
            "ii": fnp.arctan2(a, b),
            "hi": fnp.arctan2(h, a),
            "add_hi": fnp.add(h, a),
            "max_ih": fnp.maximum(a, h),
        }
    )(a, b, h)
    expect_all(
        got,
        {
            "ii": reference(np.arctan2, jnp.arctan2, a, b),
            "hi": reference(np.arctan2, jnp.arctan2, h, a),
            "add_hi": reference(np.add, jnp.add, h, a),
            "max_ih": reference(np.maximum, jnp.maximum, a, h),
        },
    )


def test_maximum_minimum_propagate_nan():
    a = np.array([np.nan, 1, np.nan, -np.inf], np.float32)
    b = np.array([0, np.nan, np.nan, 2], np.float32)
    got = fj.compile(lambda a, b: {"max": fnp.maximum(a, b), "min": fnp.minimum(a, b)})(a, b)
    expect_all(got, {"max": np.maximum(a, b), "min": np.minimum(a, b)})


@pytest.mark.parametrize("dtype", [F32, I32, F16], ids=name_of)
def test_clip_and_where(dtype):
    rng = np.random.default_rng()
    x, y = rand(rng, (3, 4), dtype), rand(rng, (4,), dtype)
    lo, hi = rand(rng, (3, 1), dtype, -2, 0), rand(rng, (4,), dtype, 0, 2)
    cond, icond = rand(rng, (3, 4), BOOL), rand(rng, (3, 1), I32, -1, 1)

    @fj.compile
    def f(x, y, lo, hi, cond, icond):
        return {
            "clip": fnp.clip(x, -1, 1),
            "clip_hi": fnp.clip(x, None, 0.5),
            "clip_lo": fnp.clip(x, -0.5),
            "clip_arrays": fnp.clip(x, lo, hi),
            "where": fnp.where(cond, x, y),
            "where_int_cond": fnp.where(icond, x, y),
            "where_scalars": fnp.where(cond, x, 0.5),
            "where_both": fnp.where(cond, 1, -1),
            "where_mixed": fnp.where(cond, x, np.float32(2)),
        }

    want = {
        "clip": reference(lambda x: np.clip(x, -1, 1), lambda x: jnp.clip(x, -1, 1), x),
        "clip_hi": reference(lambda x: np.clip(x, None, 0.5), lambda x: jnp.clip(x, None, 0.5), x),
        "clip_lo": reference(lambda x: np.clip(x, -0.5, None), lambda x: jnp.clip(x, -0.5), x),
        "clip_arrays": reference(np.clip, jnp.clip, x, lo, hi),
        "where": reference(np.where, jnp.where, cond, x, y),
        "where_int_cond": reference(np.where, jnp.where, icond, x, y),
        "where_scalars": reference(
            lambda c, x: np.where(c, x, 0.5), lambda c, x: jnp.where(c, x, 0.5), cond, x
        ),
        "where_both": reference(
            lambda c: np.where(c, 1, -1).astype(np.int32), lambda c: jnp.where(c, 1, -1), cond
        ),
        "where_mixed": reference(
            lambda c, x: np.where(c, x, 2), lambda c, x: jnp.where(c, x, np.float32(2)), cond, x
        ),
    }
    expect_all(f(x, y, lo, hi, cond, icond), want)


def test_logical_functions_on_non_bools():
    rng = np.random.default_rng()
    a, b = rand(rng, (3, 4), I32, -1, 1), rand(rng, (4,), F32, -1, 1)
    b[:2] = 0
    got = fj.compile(
        lambda a, b: {
            "and": fnp.logical_and(a, b),
            "or": fnp.logical_or(a, b),
            "not": fnp.logical_not(a),
            "and_scalar": fnp.logical_and(b, True),
            "isfinite_int": fnp.isfinite(a),
        }
    )(a, b)
    expect_all(
        got,
        {
            "and": np.logical_and(a, b),
            "or": np.logical_or(a, b),
            "not": np.logical_not(a),
            "and_scalar": np.logical_and(b, True),
            "isfinite_int": np.isfinite(a),
        },
    )


# -- reductions --------------------------------------------------------------------------------
REDUCTIONS = {
    "sum": [F32, F16, BF16, I32, I8, U8, BOOL],
    "mean": [F32, F16, I32, BOOL],
    "max": [F32, BF16, I32, BOOL, U8],
    "min": [F32, F16, I8, BOOL, U32],
    "prod": [F32, F16, I32, I8, U8],
    "argmax": [F32, F16, I32, U8],
    "argmin": [F32, BF16, I32, I8],
    "var": [F32, F16, I32],
    "std": [F32, BF16, I32],
    "all": [BOOL, F32, I32],
    "any": [BOOL, F32, I32],
}
AXES = [None, 0, -1, (0, 2), (2, 0, 1)]


def reduction_input(rng, name: str, dtype, shape=(2, 3, 4)) -> np.ndarray:
    """Multiples of 1/4 below 2 in magnitude (exact sums in every float dtype, ties for the
    arg-reductions); for prod, +-1/2, +-1, +-2 (exact products), for all/any, many zeros."""
    kind = np.dtype(dtype).kind
    if name == "prod":
        values = (
            [-2, -1, -0.5, 0.5, 1, 2] if kind in "fV" else [1, 2] if kind == "u" else [-2, -1, 1, 2]
        )
        return rng.choice(values, shape).astype(dtype)
    if name in ("all", "any") and kind != "b":
        return (rng.random(shape) < 0.8).astype(dtype) * rand(rng, shape, dtype, 1, 3)
    if kind == "u":
        return rng.integers(0, 9, shape).astype(dtype)
    return (rng.integers(-8, 9, shape) / (4 if kind in "fV" else 1)).astype(dtype)


@pytest.mark.parametrize(
    "name,dtype",
    [(n, d) for n, ds in REDUCTIONS.items() for d in ds],
    ids=lambda v: v if isinstance(v, str) else name_of(v),
)
def test_reduction(name, dtype):
    """``fnp.<name>(x, axis, keepdims)`` for axis None, an int, a negative int and tuples."""
    x = reduction_input(np.random.default_rng(), name, dtype)
    arg = name.startswith("arg")
    cases = [
        (axis, keep)
        for axis in AXES
        for keep in (False, True)
        if not (arg and isinstance(axis, tuple))
    ]
    fn, np_fn, jnp_fn = getattr(fnp, name), getattr(np, name), getattr(jnp, name)
    got = fj.compile(
        lambda x: {f"{axis}-{keep}": fn(x, axis, keepdims=keep) for axis, keep in cases}
    )(x)
    want = {
        f"{axis}-{keep}": reference(
            lambda x: np_fn(x, axis=axis, keepdims=keep),
            lambda x: jnp_fn(x, axis=axis, keepdims=keep),
            x,
        )
        for axis, keep in cases
    }
    expect_all(got, want, scale=4 if name in ("var", "std") else 1)


@pytest.mark.parametrize("x64", [False, True], indirect=True)
def test_var_std_ddof_and_dtype_arguments(x64):
    """(``dtype=float64`` is float32 with x64 off, as in jax.numpy.)"""
    rng = np.random.default_rng()
    x, i = rand(rng, (3, 5), F32), rand(rng, (3, 5), I8, -100, 100)
    got = fj.compile(
        lambda x, i: {
            "var_ddof": fnp.var(x, 1, ddof=1),
            "std_ddof": fnp.std(x, ddof=1, keepdims=True),
            "sum_f32": fnp.sum(i, 0, dtype=fnp.float32),
            "sum_i8": fnp.sum(i, dtype=fnp.int8),
            "mean_f16": fnp.mean(x, -1, dtype=fnp.float16),
            "prod_f64": fnp.prod(x, 1, dtype=F64),
            "sum_of_list": fnp.sum(x[0] * 0 + np.array([1, 2, 3, 4, 5], np.float32)),
        }
    )(x, i)
    expect_all(
        got,
        {
            "var_ddof": wide(x).var(1, ddof=1).astype(F32),
            "std_ddof": wide(x).std(ddof=1, keepdims=True).astype(F32),
            "sum_f32": i.sum(0, dtype=np.float32),
            "sum_i8": i.sum(dtype=np.int8),
            "mean_f16": wide(x).mean(-1).astype(F16),
            "prod_f64": wide(x).prod(1).astype(F64 if x64 else F32),
            "sum_of_list": np.float32(15),
        },
        scale=2,
    )


@pytest.mark.parametrize("dtype", [F16, BF16], ids=name_of)
def test_mean_and_var_of_low_precision_accumulate_in_float32(dtype):
    """jax.numpy's mean and var sum float16 and bfloat16 in float32: a float16 sum of these
    would overflow, a bfloat16 one would stop growing."""
    rng = np.random.default_rng()
    big = np.full(4096, 30, dtype)
    x = (np.arange(300) + rng.integers(0, 3, 300)).astype(dtype)
    got = fj.compile(
        lambda big, x: {
            "mean": fnp.mean(big),
            "var": fnp.var(x),
            "std": fnp.std(x),
            "method": x.mean(keepdims=True),
        }
    )(big, x)
    expect_all(
        got,
        {
            "mean": reference(np.mean, jnp.mean, big),
            "var": reference(np.var, jnp.var, x),
            "std": reference(np.std, jnp.std, x),
            "method": reference(
                lambda x: np.mean(x, keepdims=True), lambda x: jnp.mean(x, keepdims=True), x
            ),
        },
    )


@pytest.mark.parametrize("dtype", [F32, I32, I8, BOOL, F16], ids=name_of)
def test_cumsum(dtype):
    x = reduction_input(np.random.default_rng(), "cumsum", dtype, (3, 4))
    if dtype == BOOL:
        x = x != 0
    got = fj.compile(
        lambda x: {
            "None": fnp.cumsum(x),
            "0": fnp.cumsum(x, 0),
            "-1": fnp.cumsum(x, axis=-1),
            "f32": fnp.cumsum(x, 1, dtype=fnp.float32),
        }
    )(x)
    expect_all(
        got,
        {
            "None": reference(np.cumsum, jnp.cumsum, x),
            "0": reference(lambda x: np.cumsum(x, 0), lambda x: jnp.cumsum(x, 0), x),
            "-1": reference(lambda x: np.cumsum(x, -1), lambda x: jnp.cumsum(x, -1), x),
            "f32": np.cumsum(wide(x), 1).astype(np.float32),
        },
    )


# -- shapes ------------------------------------------------------------------------------------
# name: (function of flowjit.numpy or numpy (same signatures), on x of shape (2, 3, 4))
SHAPES = {
    "reshape": lambda m, x: [
        m.reshape(x, (4, 6)),
        m.reshape(x, (-1, 2)),
        m.reshape(x, 24),
        m.reshape(x, (2, 1, 3, 1, 4)),
        m.reshape(x[0, 0, 0], (1, 1)),
    ],
    "transpose": lambda m, x: [
        m.transpose(x),
        m.transpose(x, (1, 0, 2)),
        m.transpose(x, (-1, 0, 1)),
        m.transpose(x[0]),
    ],
    "expand_dims": lambda m, x: [
        m.expand_dims(x, 0),
        m.expand_dims(x, -1),
        m.expand_dims(x, 2),
        m.expand_dims(x, (0, 4)),
        m.expand_dims(x, (-1, 1)),
    ],
    "squeeze": lambda m, x: [
        m.squeeze(x[:1, :, :1]),
        m.squeeze(x[:1], 0),
        m.squeeze(x[:, :1, :1], (1, -1)),
        m.squeeze(x[0, 0, :1]),
    ],
    "broadcast_to": lambda m, x: [
        m.broadcast_to(x, (2, 2, 3, 4)),
        m.broadcast_to(x[:, :1], (2, 5, 4)),
        m.broadcast_to(x[0, 0, 0], (3,)),
        m.broadcast_to(x, x.shape),
    ],
    "concatenate": lambda m, x: [
        m.concatenate([x, x[:1]]),
        m.concatenate([x, x], -1),
        m.concatenate((x[:, :2], x, x[:, :1]), axis=1),
        m.concatenate([x]),
    ],
    "stack": lambda m, x: [
        m.stack([x, x]),
        m.stack([x[0], x[1], x[0]], 1),
        m.stack((x, x), axis=-1),
        m.stack([x[0, 0, 0], x[1, 2, 3]]),
    ],
    "split": lambda m, x: [
        *m.split(x, 2),
        *m.split(x, [1, 3], axis=2),
        *m.split(x, 3, axis=-2),
        *m.split(x, [0, 5, 2], axis=2),
    ],
    "pad": lambda m, x: [
        m.pad(x, 1),
        m.pad(x, ((0, 1), (2, 0), (1, 1))),
        m.pad(x, (1, 2), constant_values=-1.5),
        m.pad(x, ((1,), (0,), (2,))),
    ],
    "flip": lambda m, x: [m.flip(x), m.flip(x, 0), m.flip(x, -1), m.flip(x, (0, 2))],
    "tile": lambda m, x: [
        m.tile(x, 2),
        m.tile(x, (2, 1, 3)),
        m.tile(x, (2, 1, 1, 2)),
        m.tile(x[0, 0], (3, 1)),
        m.tile(x, (1, 2)),
    ],
}


@pytest.mark.parametrize("dtype", [F32, I32, BOOL, BF16], ids=name_of)
@pytest.mark.parametrize("name", list(SHAPES))
def test_shape_functions(name, dtype):
    x = rand(np.random.default_rng(), (2, 3, 4), dtype)
    got = fj.compile(lambda x: SHAPES[name](fnp, x))(x)
    # numpy pads and tiles bfloat16 through float32 (which holds it exactly)
    want = [np.asarray(w).astype(dtype) for w in SHAPES[name](np, wide(x) if dtype == BF16 else x)]
    expect_all(dict(enumerate(got)), dict(enumerate(want)))


def test_concatenate_and_stack_promote():
    rng = np.random.default_rng()
    i, h = rand(rng, (2, 3), I8), rand(rng, (2, 3), F16)
    got = fj.compile(
        lambda i, h: {"concatenate": fnp.concatenate([i, h, i]), "stack": fnp.stack([h, i], axis=1)}
    )(i, h)
    expect_all(
        got,
        {
            "concatenate": reference(
                lambda *xs: np.concatenate(xs), lambda *xs: jnp.concatenate(xs), i, h, i
            ),
            "stack": reference(lambda *xs: np.stack(xs, 1), lambda *xs: jnp.stack(xs, 1), h, i),
        },
    )
