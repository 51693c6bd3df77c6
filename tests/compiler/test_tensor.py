"""fj.Tensor's operators, properties and methods (API.md section 2) through ``fj.compile``,
against numpy on fresh random inputs. Values come from numpy (in float64, rounded to the
result dtype); result dtypes come from jax.numpy's promotion with its default 32-bit types."""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from frontcheck import expect_all, jax_dtype, wide
from opcheck import rand

import flowjit as fj
import flowjit.numpy as fnp

F16, BF16, F32, F64 = fnp.float16, fnp.bfloat16, fnp.float32, fnp.float64
I8, I32, I64, U8, U32, BOOL = fnp.int8, fnp.int32, fnp.int64, fnp.uint8, fnp.uint32, fnp.bool_


# -- properties --------------------------------------------------------------------------------
def test_properties():
    seen = {}

    @fj.compile
    def f(x, s):
        seen.update(
            shape=x.shape,
            dtype=x.dtype,
            ndim=x.ndim,
            size=x.size,
            len=len(x),
            s_shape=s.shape,
            s_ndim=s.ndim,
            s_size=s.size,
            s_dtype=s.dtype,
            T=x.T.shape,
        )
        return x

    x = rand(np.random.default_rng(), (2, 3, 4), F16)
    np.testing.assert_array_equal(np.asarray(f(x, np.int32(3))), x)
    assert seen == dict(
        shape=(2, 3, 4),
        dtype=F16,
        ndim=3,
        size=24,
        len=2,
        s_shape=(),
        s_ndim=0,
        s_size=1,
        s_dtype=I32,
        T=(4, 3, 2),
    )
    assert all(type(d) is int for d in seen["shape"]) and isinstance(seen["dtype"], np.dtype)


@pytest.mark.parametrize("convert", [bool, int, float])
def test_python_control_flow_on_a_tensor_raises(convert):
    def branchy(x):
        return x if convert(x.sum()) else -x

    with pytest.raises(fj.TracingError, match=r"test_tensor\.py:\d+: .*fj\.cond") as info:
        fj.compile(branchy)(np.ones(3, np.float32))
    assert "fj.while_loop" in str(info.value)


# -- binary operators --------------------------------------------------------------------------
OPERATORS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
}


def left_operand(rng, op: str, dtype, shape) -> np.ndarray:
    """Left operands on which ``op`` is exact or well conditioned in every dtype."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fV":
        if op in ("//", "%"):  # (2k+1)/16 over a power of two is never an integer
            return ((2 * rng.integers(-24, 25, shape) + 1) / 16).astype(dtype)
        return rand(rng, shape, dtype, 0.5, 2) if op == "**" else rand(rng, shape, dtype)
    if op == "**":
        return rand(rng, shape, dtype, 0, 3)
    return rand(rng, shape, dtype, 0 if dtype.kind == "u" else -9, 9)


def right_operand(rng, op: str, dtype, shape) -> np.ndarray:
    """Right operands: nonzero divisors (powers of two for float // and %), small exponents."""
    dtype = np.dtype(dtype)
    floating = dtype.kind in "fV"
    if op in ("/", "//", "%"):
        if floating and op != "/":
            return rng.choice([-2, -1, -0.5, 0.5, 1, 2], shape).astype(dtype)
        magnitude = rand(rng, shape, dtype, 1, 4)
        if dtype.kind == "u":
            return magnitude
        return np.where(rng.random(shape) < 0.5, -magnitude, magnitude).astype(dtype)
    if op == "**":
        return rand(rng, shape, dtype, -2, 2) if floating else rand(rng, shape, dtype, 0, 3)
    return left_operand(rng, op, dtype, shape)


# Per operator, (a Python scalar on the right, a Python scalar on the left), in the domains above
SCALARS = {
    "+": (2, -1.5),
    "-": (3, 0.5),
    "*": (3, -1.5),
    "/": (4, -2.5),
    "//": (2, -0.5),
    "%": (3, 0.5),
    "**": (2, 2),
}

PAIRS = [
    (F32, F32),
    (I32, I32),
    (F16, F16),
    (BF16, BF16),
    (I32, F32),
    (I8, U8),
    (F16, I32),
    (U8, U8),
    (BF16, F16),
    (F32, F64),
    (I64, I32),
]


@pytest.mark.parametrize("ta,tb", PAIRS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", list(OPERATORS))
def test_binary_operator(op, ta, tb):
    """``a op b`` broadcasting (3,1,4) with (2,4); a Python scalar on either side; a numpy
    array on either side (numpy defers to the Tensor's reflected operator)."""
    fn = OPERATORS[op]
    right, left = SCALARS[op]
    rng = np.random.default_rng()
    a, b = left_operand(rng, op, ta, (3, 1, 4)), right_operand(rng, op, tb, (2, 4))
    np_left, np_right = left_operand(rng, op, ta, (4,)), right_operand(rng, op, tb, (4,))

    @fj.compile
    def f(a, b):
        return {
            "a.b": fn(a, b),
            "a.scalar": fn(a, right),
            "scalar.b": fn(left, b),
            "a.numpy": fn(a, np_right),
            "numpy.b": fn(np_left, b),
        }

    got = f(a, b)
    with np.errstate(all="ignore"):
        want = {
            "a.b": (fn(wide(a), wide(b)), jax_dtype(fn, a, b)),
            "a.scalar": (fn(wide(a), right), jax_dtype(lambda a: fn(a, right), a)),
            "scalar.b": (fn(left, wide(b)), jax_dtype(lambda b: fn(left, b), b)),
            "a.numpy": (fn(wide(a), wide(np_right)), jax_dtype(fn, a, np_right)),
            "numpy.b": (fn(wide(np_left), wide(b)), jax_dtype(fn, np_left, b)),
        }
    expect_all(got, {k: np.asarray(v).astype(d) for k, (v, d) in want.items()})


@pytest.mark.parametrize(
    "ta,tb",
    [(F32, F32), (I32, I32), (I32, F32), (F16, F16), (I8, I8)],
    ids=lambda d: np.dtype(d).name,
)
def test_matmul_operator(ta, tb):
    rng = np.random.default_rng()
    a, b, v = rand(rng, (2, 3, 4), ta), rand(rng, (4, 5), tb), rand(rng, (4,), tb)
    m = rand(rng, (2, 3), ta)  # a numpy matrix on the left of @

    @fj.compile
    def f(a, b, v):
        return {
            "a@b": a @ b,
            "a@v": a @ v,
            "v@b": v @ b,
            "v@v": v @ v,
            "np@a": m @ a[0],
            "a@np": a[:, 0] @ b,
        }

    want = {
        "a@b": (wide(a) @ wide(b), jax_dtype(jnp.matmul, a, b)),
        "a@v": (wide(a) @ wide(v), jax_dtype(jnp.matmul, a, v)),
        "v@b": (wide(v) @ wide(b), jax_dtype(jnp.matmul, v, b)),
        "v@v": (wide(v) @ wide(v), jax_dtype(jnp.matmul, v, v)),
        "np@a": (wide(m) @ wide(a[0]), jax_dtype(jnp.matmul, m, a[0])),
        "a@np": (wide(a[:, 0]) @ wide(b), jax_dtype(jnp.matmul, a[:, 0], b)),
    }
    expect_all(f(a, b, v), {k: np.asarray(w).astype(d) for k, (w, d) in want.items()}, scale=4)


# -- unary operators, comparisons, bitwise -----------------------------------------------------
@pytest.mark.parametrize("dtype", [F32, F16, BF16, I32, I8, F64], ids=lambda d: np.dtype(d).name)
def test_negative_and_abs(dtype):
    x = rand(np.random.default_rng(), (3, 4), dtype)
    got = fj.compile(lambda x: {"neg": -x, "abs": abs(x), "pos": +x, "neg_abs": -abs(x)})(x)
    expect_all(got, {"neg": -x, "abs": np.abs(x), "pos": x, "neg_abs": -np.abs(x)})


@pytest.mark.parametrize("dtype", [BOOL, I32, U8, I8, U32], ids=lambda d: np.dtype(d).name)
def test_invert(dtype):
    x = rand(np.random.default_rng(), (3, 4), dtype, 0, 200)
    expect_all(fj.compile(lambda x: {"~": ~x})(x), {"~": ~x})


COMPARISONS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@pytest.mark.parametrize(
    "ta,tb",
    [(F32, F32), (I32, I32), (I32, F32), (F16, I8), (BF16, F32), (BOOL, BOOL), (U8, I8)],
    ids=lambda d: np.dtype(d).name,
)
def test_comparisons(ta, tb):
    """Elementwise bool results, broadcasting, with Python scalars and numpy arrays on either
    side; small integer values so that equal elements occur."""
    rng = np.random.default_rng()
    a, b, c = (
        rng.integers(0, 3, shape).astype(t)
        for shape, t in (((3, 1, 4), ta), ((2, 4), tb), ((4,), tb))
    )  # small integers: ties are likely

    @fj.compile
    def f(a, b):
        out = {}
        for name, fn in COMPARISONS.items():
            out.update(
                {
                    f"a{name}b": fn(a, b),
                    f"a{name}1": fn(a, 1),
                    f"1{name}b": fn(1, b),
                    f"a{name}1.5": fn(a, 1.5),
                    f"np{name}b": fn(c, b),
                }
            )
        return out

    want = {}
    for name, fn in COMPARISONS.items():
        want.update(
            {
                f"a{name}b": fn(wide(a), wide(b)),
                f"a{name}1": fn(wide(a), 1),
                f"1{name}b": fn(1, wide(b)),
                f"a{name}1.5": fn(wide(a), 1.5),
                f"np{name}b": fn(wide(c), wide(b)),
            }
        )
    expect_all(f(a, b), want)


BITWISE = {"&": operator.and_, "|": operator.or_, "^": operator.xor}


@pytest.mark.parametrize(
    "ta,tb",
    [(BOOL, BOOL), (I32, I32), (U8, U8), (I8, U8), (BOOL, I32)],
    ids=lambda d: np.dtype(d).name,
)
def test_bitwise_operators(ta, tb):
    rng = np.random.default_rng()
    a, b = rand(rng, (3, 1, 4), ta, 0, 100), rand(rng, (2, 4), tb, 0, 100)
    c = rand(rng, (4,), ta, 0, 100)  # a numpy array on the left
    scalar = True if ta == BOOL else 6

    @fj.compile
    def f(a, b):
        out = {}
        for name, fn in BITWISE.items():
            out.update(
                {
                    f"a{name}b": fn(a, b),
                    f"a{name}s": fn(a, scalar),
                    f"s{name}a": fn(scalar, a),
                    f"np{name}b": fn(c, b),
                }
            )
        return out

    want = {}
    for name, fn in BITWISE.items():
        want.update(
            {
                f"a{name}b": (fn(a, b), jax_dtype(fn, a, b)),
                f"a{name}s": (fn(a, scalar), jax_dtype(lambda a: fn(a, scalar), a)),
                f"s{name}a": (fn(scalar, a), jax_dtype(lambda a: fn(scalar, a), a)),
                f"np{name}b": (fn(c, b), jax_dtype(fn, c, b)),
            }
        )
    expect_all(f(a, b), {k: np.asarray(v).astype(d) for k, (v, d) in want.items()})


# -- dtype promotion ---------------------------------------------------------------------------
PROMOTED = [BOOL, I8, U8, I32, U32, F16, BF16, F32]


@pytest.mark.parametrize("x64", [False, True], indirect=True)
def test_promotion_of_array_pairs(x64):
    """``a + b`` for every pair of dtypes lands on jax's promotion lattice; 64-bit types stay
    64-bit with x64 on and are 32-bit with it off, as in jax."""
    rng = np.random.default_rng()
    xs = {np.dtype(d).name: rand(rng, (2,), d, 0, 3) for d in PROMOTED + [I64, F64]}
    pairs = [(p, q) for p in xs for q in xs if not (p == q == "bool")]
    got = fj.compile(lambda xs: {f"{p}+{q}": xs[p] + xs[q] for p, q in pairs})(xs)
    want = {
        f"{p}+{q}": (wide(xs[p]) + wide(xs[q])).astype(jax_dtype(operator.add, xs[p], xs[q]))
        for p, q in pairs
    }
    expect_all(got, want)


# Python scalars are weak: they lift an integer Tensor to float32 or a bool one to int32, and
# never widen a Tensor of their own kind
WEAK = [
    ("f16 + 1.0", F16, lambda x: x + 1.0, F16),
    ("bf16 * 2", BF16, lambda x: x * 2, BF16),
    ("i32 / i32", I32, lambda x: x / x, F32),
    ("i8 / 2", I8, lambda x: x / 2, F32),
    ("i32 * 2.5", I32, lambda x: x * 2.5, F32),
    ("i8 + 1", I8, lambda x: x + 1, I8),
    ("u8 - 1", U8, lambda x: x - 1, U8),
    ("bool + 1", BOOL, lambda x: x + 1, I32),
    ("bool * 1.5", BOOL, lambda x: x * 1.5, F32),
    ("bool & True", BOOL, lambda x: x & True, BOOL),
    ("f16 // 2", F16, lambda x: x // 2, F16),
    ("u8 ** 2", U8, lambda x: x**2, U8),
    ("i32 < 1.5", I32, lambda x: x < 1.5, BOOL),
    ("i64 / i64", I64, lambda x: x / x, F64),
    ("f64 * 2.0", F64, lambda x: x * 2.0, F64),
    ("2.0 - i8", I8, lambda x: 2.0 - x, F32),
    ("f16 + np.f32", F16, lambda x: x + np.float32(1), F32),
    ("i8 + np.i32", I8, lambda x: x + np.int32(1), I32),
]


@pytest.mark.parametrize("name,dtype,fn,result", WEAK, ids=[w[0] for w in WEAK])
def test_weak_python_scalars(name, dtype, fn, result):
    x = rand(np.random.default_rng(), (3,), dtype, 1, 3)
    assert jax_dtype(fn, x) == result, "the table disagrees with jax"
    with np.errstate(all="ignore"):
        want = np.asarray(fn(wide(x))).astype(result)
    expect_all({name: fj.compile(fn)(x)}, {name: want})


# -- methods -----------------------------------------------------------------------------------
def test_shape_methods():
    x = rand(np.random.default_rng(), (2, 3, 4), F32)

    @fj.compile
    def f(x):
        return {
            "T": x.T,
            "reshape_args": x.reshape(4, 6),
            "reshape_tuple": x.reshape((3, -1)),
            "reshape_list": x.reshape([-1]),
            "reshape_int": x.reshape(24),
            "transpose": x.transpose(),
            "transpose_args": x.transpose(1, 0, 2),
            "transpose_tuple": x.transpose((2, 0, 1)),
            "transpose_neg": x.transpose(-1, 0, 1),
            "T_of_2d": x[0].T,
            "flatten": x.flatten(),
            "squeeze": x[:1].squeeze(0),
        }

    expect_all(
        f(x),
        {
            "T": x.T,
            "reshape_args": x.reshape(4, 6),
            "reshape_tuple": x.reshape((3, -1)),
            "reshape_list": x.reshape([-1]),
            "reshape_int": x.reshape(24),
            "transpose": x.transpose(),
            "transpose_args": x.transpose(1, 0, 2),
            "transpose_tuple": x.transpose((2, 0, 1)),
            "transpose_neg": x.transpose(-1, 0, 1),
            "T_of_2d": x[0].T,
            "flatten": x.flatten(),
            "squeeze": x[:1].squeeze(0),
        },
    )


ASTYPE = [
    (F32, BF16),
    (F32, F16),
    (F32, I8),
    (F32, U8),
    (F32, I32),
    (F32, BOOL),
    (F32, F64),
    (F32, I64),
    (I32, F32),
    (I32, BOOL),
    (I32, U8),
    (BOOL, F32),
    (BOOL, I32),
    (BF16, F32),
    (F16, BF16),
    (F64, F32),
    (I8, I32),
    (U8, F16),
]


@pytest.mark.parametrize(
    "src",
    [  # (a conversion to a 64-bit type needs x64: test_astype_follows_x64 checks it without)
        pytest.param(s, marks=[pytest.mark.x64] if any(t.itemsize == 8 for t in targets) else [])
        for s in sorted({s for s, _ in ASTYPE}, key=str)
        for targets in [[t for u, t in ASTYPE if u == s]]
    ],
    ids=str,
)
def test_astype(src):
    """``x.astype(t)``: floats to ints truncate toward zero (values in range), anything to bool
    is ``!= 0``."""
    targets = [t for s, t in ASTYPE if s == src]
    x = rand(np.random.default_rng(), (3, 4), src, -20, 20)
    x.flat[:3] = 0  # zeros for the conversions to bool
    with_unsigned = np.abs(wide(x)).astype(src)  # conversions to unsigned get no negatives
    got = fj.compile(
        lambda x, u: {np.dtype(t).name: (u if t.kind == "u" else x).astype(t) for t in targets}
    )(x, with_unsigned)
    want = {
        np.dtype(t).name: (wide(with_unsigned) if t.kind == "u" else wide(x)).astype(t)
        for t in targets
    }
    expect_all(got, want)


@pytest.mark.parametrize("x64", [False, True], indirect=True)
def test_astype_follows_x64(x64):
    """``x.astype(float64)`` is float64 with x64 on and float32 with it off, as jax.numpy's."""
    x = rand(np.random.default_rng(), (4,), F32)
    fn = lambda x: {"f64": x.astype(F64), "i64": x.astype(I64)}  # noqa: E731
    by_jax = jax.jit(fn)(x)
    assert by_jax["f64"].dtype == (F64 if x64 else F32)
    expect_all(fj.compile(fn)(x), {k: wide(x).astype(v.dtype) for k, v in by_jax.items()})


def test_astype_accepts_dtype_spellings():
    x = rand(np.random.default_rng(), (4,), F32)
    got = fj.compile(
        lambda x: {
            "fnp.bfloat16": x.astype(fnp.bfloat16),
            "np.int32": x.astype(np.int32),
            "str": x.astype("float16"),
            "fnp.bool": x.astype(fnp.bool),
            "python int": x.astype(int),
            "python float": x.astype(float),
        }
    )(x)
    assert {k: np.asarray(v).dtype for k, v in got.items()} == {
        "fnp.bfloat16": BF16,
        "np.int32": I32,
        "str": F16,
        "fnp.bool": BOOL,
        "python int": jax_dtype(lambda x: x.astype(int), x),
        "python float": jax_dtype(lambda x: x.astype(float), x),
    }
    np.testing.assert_array_equal(np.asarray(got["fnp.bfloat16"]), x.astype(BF16))


AXES = [None, 0, -1, (0, 2), (), 1]
REDUCTIONS = ["sum", "mean", "max", "min", "argmax", "argmin"]


@pytest.mark.parametrize("dtype", [F32, I32, F16, BF16, BOOL, I8], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("method", REDUCTIONS)
def test_reduction_methods(method, dtype):
    """``x.method(axis, keepdims)`` for axis None, int, negative, tuple and (); integer inputs
    have ties, which arg-reductions break toward the first index."""
    if method.startswith("arg") and dtype == BOOL:
        dtype = U8
    rng = np.random.default_rng()
    # multiples of 1/4 below 2 in magnitude: every partial sum is exact in every float dtype
    x = (rng.integers(-8, 9, (2, 3, 4)) / (4 if dtype.kind in "fV" else 1)).astype(dtype)
    cases = [
        (axis, keep)
        for axis in AXES
        for keep in (False, True)
        if not (method.startswith("arg") and not isinstance(axis, (int, type(None))))
    ]

    @fj.compile
    def f(x):
        return {
            f"{axis}-{keep}": getattr(x, method)(axis=axis, keepdims=keep) for axis, keep in cases
        }

    def numpy_ref(axis, keep):
        out = getattr(np, method)(wide(x), axis=axis, keepdims=keep)
        jfn = getattr(jnp, method)
        return np.asarray(out).astype(jax_dtype(lambda v: jfn(v, axis=axis, keepdims=keep), x))

    expect_all(f(x), {f"{axis}-{keep}": numpy_ref(axis, keep) for axis, keep in cases})


def test_more_methods():
    rng = np.random.default_rng()
    x, b = rand(rng, (3, 4), F32, 0.5, 1.5), rand(rng, (3, 4), BOOL)

    @fj.compile
    def f(x, b):
        return {
            "prod": x.prod(0),
            "var": x.var(1),
            "std": x.std(keepdims=True),
            "all": b.all(0),
            "any": b.any(1, keepdims=True),
            "bool_sum": b.sum(),
            "bool_mean": b.mean(0),
        }

    expect_all(
        f(x, b),
        {
            "prod": x.prod(0),
            "var": wide(x).var(1).astype(F32),
            "std": wide(x).std(keepdims=True).astype(F32),
            "all": b.all(0),
            "any": b.any(1, keepdims=True),
            "bool_sum": b.sum().astype(I32),
            "bool_mean": b.mean(0).astype(F32),
        },
        scale=2,
    )
