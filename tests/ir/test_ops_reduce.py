"""Every reduction, arg-reduction and cumulative op, every dtype it claims, against numpy."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from opcheck import OpCase, add_op, check_case, check_grad, jitted, params, rand

from flowjit.ir import DTypeError, ShapeError, TensorType
from flowjit.ir.ops import reduce as R
from flowjit.ir.ops.rules import ANY, FLOATS, INTS, NUMERIC

BOOLS = (np.bool_,)


def quarters(
    rng: np.random.Generator, shape: tuple[int, ...], dt, low: float = -3, high: float = 3
) -> np.ndarray:
    """Random data whose sums are exact in every dtype (floats are multiples of 1/4), so the
    order in which XLA adds cannot matter."""
    x = rand(rng, shape, dt, low, high)
    return (np.round(x.astype(np.float64) * 4) / 4).astype(dt) if np.dtype(dt).kind in "fV" else x


def with_nans(x: np.ndarray) -> np.ndarray:
    """``x`` (3 rows) with nans in row 0 (twice: the first must win) and row 2, none in row 1."""
    if x.dtype.kind not in "fV":
        return x
    x = x.copy()
    x[0, 1], x[0, 3], x[2, 0] = np.nan, np.nan, np.nan
    return x


def reduction(shape, axes, keepdims, low=-3, high=3, nans=False):
    def make(rng, dt):
        x = quarters(rng, shape, dt, low, high)
        return [with_nans(x) if nans else x], {"axes": axes, "keepdims": keepdims}

    return make


def along(shape, low=-3, high=3, nans=False, **attrs):
    def make(rng, dt):
        x = quarters(rng, shape, dt, low, high)
        return [with_nans(x) if nans else x], attrs

    return make


def distinct(shape, axes, keepdims):
    """Inputs without ties (0.5 apart), where max and min are differentiable."""

    def make(rng, dt):
        size = int(np.prod(shape))
        x = (rng.permutation(size).reshape(shape) - size / 2) / 2
        return [x.astype(dt)], {"axes": axes, "keepdims": keepdims}

    return make


def prod_with_zeros(rng, dt):
    """Rows with no zero, one zero and two zeros: each branch of reduce_prod's gradient."""
    x = rand(rng, (3, 5), dt, 0.5, 2)
    x[1, 2] = x[2, 0] = x[2, 3] = 0
    return [x], {"axes": (1,), "keepdims": False}


def np_reduce(fn):
    return lambda x, axes, keepdims: fn(x, axis=axes, keepdims=keepdims)


def np_arg(fn):
    return lambda x, axis, keepdims: fn(x, axis=axis, keepdims=keepdims)


def np_cumsum(x, axis, reverse):
    if not reverse:
        return np.cumsum(x, axis=axis)
    # suffix sum: the total minus the prefix before each element
    return np.sum(x, axis=axis, keepdims=True) - np.cumsum(x, axis=axis) + x


def np_scan(ufunc):
    """The running ``ufunc`` along ``axis`` (numpy's accumulate), from the end if reversed."""

    def scan(x, axis, reverse):
        if not reverse:
            return ufunc.accumulate(x, axis=axis)
        return np.flip(ufunc.accumulate(np.flip(x, axis), axis=axis), axis)

    return scan


def distinct_along(shape, **attrs):
    """Inputs without ties (0.5 apart), where the running max and min are differentiable."""

    def make(rng, dt):
        size = int(np.prod(shape))
        x = (rng.permutation(size).reshape(shape) - size / 2) / 2
        return [x.astype(dt)], attrs

    return make


def cumprod_with_zeros(rng, dt):
    """Rows with no zero, one zero and two zeros: each case of cumprod's gradient."""
    x = rand(rng, (3, 5), dt, 0.5, 2) * np.where(rng.random((3, 5)) < 0.5, 1, -1).astype(dt)
    x[1, 2] = x[2, 0] = x[2, 3] = 0
    return [x], {"axis": 1, "reverse": False}


CASES = [
    OpCase(R.reduce_sum, NUMERIC, reduction((3, 4, 5), (0, 2), False), np_reduce(np.sum)),
    OpCase(
        R.reduce_sum,
        NUMERIC,
        reduction((3, 4), (1,), True),
        np_reduce(np.sum),
        name="reduce_sum_keepdims",
    ),
    OpCase(
        R.reduce_sum,
        NUMERIC,
        reduction((2, 3), (), False),
        np_reduce(np.sum),
        name="reduce_sum_no_axes",
    ),
    OpCase(
        R.reduce_sum,
        NUMERIC,
        reduction((0, 3), (0,), False),
        np_reduce(np.sum),
        name="reduce_sum_empty",
    ),
    OpCase(
        R.reduce_sum,
        INTS,
        reduction((4, 6), (0, 1), False, 0, 100),
        np_reduce(np.sum),
        name="reduce_sum_wraps",
    ),
    OpCase(
        R.reduce_prod,
        NUMERIC,
        reduction((2, 3, 4), (1, 2), True, 0.5, 2),
        np_reduce(np.prod),
        tol_scale=2,
    ),
    OpCase(
        R.reduce_prod,
        INTS,
        reduction((3, 6), (1,), False, 0, 9),
        np_reduce(np.prod),
        name="reduce_prod_wraps",
    ),
    OpCase(R.reduce_prod, FLOATS, prod_with_zeros, np_reduce(np.prod), name="reduce_prod_zeros"),
    OpCase(
        R.reduce_max,
        ANY,
        reduction((3, 4, 5), (0, 2), False),
        np_reduce(np.max),
        grad_make=distinct((3, 4, 5), (0, 2), False),
    ),
    OpCase(
        R.reduce_max,
        ANY,
        reduction((3, 4), (0, 1), True),
        np_reduce(np.max),
        name="reduce_max_all",
        grad_make=distinct((3, 4), (0, 1), True),
    ),
    OpCase(
        R.reduce_max,
        FLOATS,
        reduction((3, 5), (1,), False, nans=True),
        np_reduce(np.max),
        name="reduce_max_nan",
        grad_make=distinct((3, 5), (1,), False),
    ),
    OpCase(
        R.reduce_min,
        ANY,
        reduction((3, 4, 5), (1,), False),
        np_reduce(np.min),
        grad_make=distinct((3, 4, 5), (1,), False),
    ),
    OpCase(
        R.reduce_min,
        ANY,
        reduction((3, 4), (0, 1), True),
        np_reduce(np.min),
        name="reduce_min_all",
        grad_make=distinct((3, 4), (0, 1), True),
    ),
    OpCase(
        R.reduce_min,
        FLOATS,
        reduction((3, 5), (1,), True, nans=True),
        np_reduce(np.min),
        name="reduce_min_nan",
        grad_make=distinct((3, 5), (1,), True),
    ),
    OpCase(
        R.reduce_max,
        ANY,
        reduction((0, 3), (1,), False),
        np_reduce(np.max),
        name="reduce_max_no_rows",
    ),
    OpCase(R.reduce_and, BOOLS, reduction((4, 3, 2), (1, 2), False), np_reduce(np.all)),
    OpCase(
        R.reduce_and,
        BOOLS,
        reduction((0, 3), (0,), True),
        np_reduce(np.all),
        name="reduce_and_empty",
    ),
    OpCase(R.reduce_or, BOOLS, reduction((4, 3, 2), (0, 2), True), np_reduce(np.any)),
    OpCase(
        R.reduce_or,
        BOOLS,
        reduction((3, 0), (1,), False),
        np_reduce(np.any),
        name="reduce_or_empty",
    ),
    # narrow ranges make ties common: the first index must win
    OpCase(R.argmax, NUMERIC, along((3, 7, 4), -1, 1, axis=1, keepdims=False), np_arg(np.argmax)),
    OpCase(
        R.argmax,
        NUMERIC,
        along((5, 3), -1, 1, axis=-2, keepdims=True),
        np_arg(np.argmax),
        name="argmax_keepdims",
    ),
    OpCase(
        R.argmax,
        FLOATS,
        along((3, 5), nans=True, axis=1, keepdims=False),
        np_arg(np.argmax),
        name="argmax_nan",
    ),
    OpCase(
        R.argmax,
        NUMERIC,
        along((0, 3), axis=1, keepdims=False),
        np_arg(np.argmax),
        name="argmax_no_rows",
    ),
    OpCase(R.argmin, NUMERIC, along((3, 7, 4), -1, 1, axis=2, keepdims=False), np_arg(np.argmin)),
    OpCase(
        R.argmin,
        NUMERIC,
        along((5, 3), -1, 1, axis=0, keepdims=True),
        np_arg(np.argmin),
        name="argmin_keepdims",
    ),
    OpCase(
        R.argmin,
        FLOATS,
        along((3, 5), nans=True, axis=-1, keepdims=False),
        np_arg(np.argmin),
        name="argmin_nan",
    ),
    OpCase(R.cumsum, NUMERIC, along((3, 6), axis=1, reverse=False), np_cumsum),
    OpCase(
        R.cumsum, NUMERIC, along((4, 2, 3), axis=0, reverse=True), np_cumsum, name="cumsum_reverse"
    ),
    OpCase(
        R.cumsum, INTS, along((2, 9), 0, 100, axis=-1, reverse=True), np_cumsum, name="cumsum_wraps"
    ),
    OpCase(R.cumsum, NUMERIC, along((0, 3), axis=0, reverse=False), np_cumsum, name="cumsum_empty"),
    OpCase(R.cumprod, NUMERIC, along((3, 5), -2, 2, axis=1, reverse=False), np_scan(np.multiply)),
    OpCase(
        R.cumprod,
        NUMERIC,
        along((4, 2, 3), -2, 2, axis=0, reverse=True),
        np_scan(np.multiply),
        name="cumprod_reverse",
    ),
    OpCase(
        R.cumprod,
        INTS,
        along((2, 9), 0, 100, axis=-1, reverse=False),
        np_scan(np.multiply),
        name="cumprod_wraps",
    ),
    OpCase(R.cumprod, FLOATS, cumprod_with_zeros, np_scan(np.multiply), name="cumprod_zeros"),
    OpCase(
        R.cumprod,
        NUMERIC,
        along((0, 3), axis=0, reverse=False),
        np_scan(np.multiply),
        name="cumprod_empty",
    ),
]
CASES += [
    case
    for opdef, ufunc in ((R.cummax, np.maximum), (R.cummin, np.minimum))
    for case in (
        OpCase(
            opdef,
            NUMERIC,
            along((3, 7), axis=1, reverse=False),
            np_scan(ufunc),
            grad_make=distinct_along((3, 7), axis=1, reverse=False),
        ),
        OpCase(
            opdef,
            NUMERIC,
            along((4, 3, 2), axis=-3, reverse=True),
            np_scan(ufunc),
            name=f"{opdef.name}_reverse",
            grad_make=distinct_along((4, 3, 2), axis=-3, reverse=True),
        ),
        OpCase(
            opdef,
            FLOATS,
            along((3, 5), nans=True, axis=1, reverse=False),
            np_scan(ufunc),
            name=f"{opdef.name}_nan",
            grad_make=distinct_along((3, 5), axis=1, reverse=False),
        ),
    )
]
CASES += [
    OpCase(R.cumlogsumexp, FLOATS, along((3, 6), axis=1, reverse=False), np_scan(np.logaddexp)),
    OpCase(
        R.cumlogsumexp,
        FLOATS,
        along((5, 2, 3), -30, 30, axis=0, reverse=True),
        np_scan(np.logaddexp),
        name="cumlogsumexp_reverse",
    ),
]



# -- edge values: what jax.jit gives is the meaning (docs/ir-format.md, "Edge values") -------
def signed_zeros(shape, negative: float, **attrs):
    """Zeros of both signs, a ``negative`` share of them -0.0, now and then 1, -1 (sums that
    cancel to a zero), an infinity or NaN: many reduced slices are all -0.0, others mix."""
    values = np.array([-0.0, 0.0, 1.0, -1.0, np.inf, -np.inf, np.nan])
    rest = (1 - negative) * 0.7
    odds = [negative, rest] + [(1 - negative - rest) / 5] * 5

    def make(rng, dt):
        return [rng.choice(values, size=shape, p=odds).astype(dt)], attrs

    return make


def edge_case(opdef, shape, fn, name, negative=0.8, **attrs) -> OpCase:
    make = signed_zeros(shape, negative, **attrs)
    return OpCase(opdef, FLOATS, make, jitted(fn), f"{opdef.name}_edges_{name}", edges=True)


def jnp_reduce(fn):
    return lambda x, axes, keepdims: fn(x, axis=axes, keepdims=keepdims)


def jax_cumulative(fn):
    return lambda x, axis, reverse: fn(x, axis=axis, reverse=reverse)


jax_cumsum = jax_cumulative(lax.cumsum)


EDGE_CASES = [
    # a sum of one element is that element (-0.0 stays); of more, a zero sum is 0.0
    edge_case(R.reduce_sum, (6, 3), jnp_reduce(jnp.sum), "many", axes=(1,), keepdims=False),
    edge_case(R.reduce_sum, (4, 3), jnp_reduce(jnp.sum), "no_axes", axes=(), keepdims=False),
    edge_case(R.reduce_sum, (6, 1, 3), jnp_reduce(jnp.sum), "one", axes=(1,), keepdims=True),
    edge_case(R.reduce_sum, (1, 5, 1), jnp_reduce(jnp.sum), "ones", axes=(0, 2), keepdims=False),
    edge_case(R.reduce_sum, (8, 5), jnp_reduce(jnp.sum), "all", axes=(0, 1), keepdims=True),
    # (all -0.0: XLA computes such a constant's sums as -0.0 at compile time)
    edge_case(R.reduce_sum, (2, 3), jnp_reduce(jnp.sum), "negative", 1, axes=(1,), keepdims=False),
    edge_case(R.reduce_prod, (6, 3), jnp_reduce(jnp.prod), "many", axes=(1,), keepdims=False),
    edge_case(R.cumsum, (6, 3), jax_cumsum, "many", axis=1, reverse=False),
    edge_case(R.cumsum, (3, 6), jax_cumsum, "reverse", axis=0, reverse=True),
    edge_case(R.cumsum, (6, 1), jax_cumsum, "one", axis=1, reverse=False),
    edge_case(R.cumsum, (2, 3), jax_cumsum, "negative", 1, axis=1, reverse=False),
]
# the other cumulative ops: nans propagate, -0.0 < 0.0, inf - inf and inf * 0 as jax.jit has them
EDGE_CASES += [
    edge_case(opdef, shape, jax_cumulative(fn), name, 0.45, axis=axis, reverse=reverse)
    for opdef, fn in (
        (R.cumprod, lax.cumprod),
        (R.cummax, lax.cummax),
        (R.cummin, lax.cummin),
        (R.cumlogsumexp, lax.cumlogsumexp),
    )
    for shape, axis, reverse, name in [
        ((6, 4), 1, False, "many"),
        ((5, 3), 0, True, "reverse"),
        ((6, 1), 1, False, "one"),
    ]
]
# max and min order -0.0 below 0.0: of zeros, max is 0.0 if one is, min -0.0 if one is
EDGE_CASES += [
    edge_case(opdef, shape, jnp_reduce(fn), name, 0.45, axes=axes, keepdims=keepdims)
    for opdef, fn in ((R.reduce_max, jnp.max), (R.reduce_min, jnp.min))
    for shape, axes, keepdims, name in [
        ((6, 3), (1,), False, "many"),
        ((3, 2, 4), (0, 2), True, "keepdims"),
        ((6, 1), (1,), False, "one"),
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


@pytest.mark.parametrize("name", ["max", "min"])
def test_extremum_gradient_splits_ties_like_jax(name):
    import jax
    import jax.numpy as jnp

    import flowjit as fj
    import flowjit.numpy as fnp

    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-1.0, 5.0, -1.0, 4.0]])
    w = np.array([1.0, -2.0, 3.0])
    got = fj.grad(lambda x: fnp.sum(getattr(fnp, name)(x, axis=1) * w))(x)
    want = jax.grad(lambda x: jnp.sum(getattr(jnp, name)(x, axis=1) * w))(x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)


F32 = np.dtype(np.float32)


@pytest.mark.parametrize(
    "axes, match",
    [((2,), "out of range"), ((-3,), "out of range"), ((0, 0), "repeated"), ((1, -1), "repeated")],
)
def test_bad_axes_are_shape_errors(axes, match):
    with pytest.raises(ShapeError, match=match):
        add_op(R.reduce_sum, [((2, 3), F32)], axes=axes, keepdims=False)


def test_max_of_empty_axis_is_a_shape_error():
    with pytest.raises(ShapeError, match="one is empty"):
        add_op(R.reduce_max, [((2, 0), F32)], axes=(1,), keepdims=False)
    with pytest.raises(ShapeError, match="empty axis"):
        add_op(R.argmin, [((0, 3), F32)], axis=0, keepdims=False)
    (out,) = add_op(R.reduce_min, [((0, 3), F32)], axes=(1,), keepdims=True)
    assert out.type == TensorType((0, 1), F32)


@pytest.mark.parametrize(
    "opdef, dtype, attrs",
    [
        (R.reduce_sum, np.bool_, {"axes": (0,), "keepdims": False}),
        (R.reduce_and, np.float32, {"axes": (0,), "keepdims": False}),
        (R.argmax, np.bool_, {"axis": 0, "keepdims": False}),
        (R.cumsum, np.bool_, {"axis": 0, "reverse": False}),
    ],
)
def test_unclaimed_dtypes_are_dtype_errors(opdef, dtype, attrs):
    with pytest.raises(DTypeError, match="expected one of"):
        add_op(opdef, [((3,), dtype)], **attrs)


def test_single_axis_ops_reject_scalars_and_bad_axes():
    with pytest.raises(ShapeError, match="rank >= 1"):
        add_op(R.argmax, [((), F32)], axis=0, keepdims=False)
    with pytest.raises(ShapeError, match="out of range"):
        add_op(R.cumsum, [((2, 3), F32)], axis=2, reverse=False)
    with pytest.raises(ShapeError, match="1 operand"):
        add_op(R.reduce_or, [((2,), np.bool_)] * 2, axes=(0,), keepdims=False)
