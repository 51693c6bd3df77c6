"""Reductions over axes (sum, prod, max, min, and, or), arg-reductions (argmax, argmin) and
the cumulative reductions (cumsum, cumprod, cummax, cummin, cumlogsumexp). ``axes`` are
normalized by the tracer (sorted, non-negative, unique); the shape rules accept anything
``rules.normalize_axes`` accepts and reject the rest."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..batching import shifted_axis_batch
from ..core import OpDef, register
from ..errors import ShapeError
from ..types import BOOL, TensorType
from .elementwise import max_, min_
from .rules import (
    ANY,
    FLOATS,
    NUMERIC,
    check_arity,
    check_dtype,
    low_precision_ref,
    normalize_axes,
    reduced_shape,
    single_axis,
)

_AXES_ATTRS = {"axes": "ints", "keepdims": "bool"}
_AXIS_ATTRS = {"axis": "int", "keepdims": "bool"}


def _reduce_rule(allowed: tuple[np.dtype, ...], has_identity: bool) -> Callable:
    """Shape rule of a reduction over ``axes``; without an identity (max, min) an empty
    reduced axis has no result."""

    def rule(types: tuple[TensorType, ...], *, axes: tuple[int, ...], keepdims: bool) -> TensorType:
        check_arity(types, 1)
        (x,) = types
        check_dtype(x, allowed)
        axes = normalize_axes(tuple(axes), x.ndim)
        if not has_identity and any(x.shape[d] == 0 for d in axes):
            raise ShapeError(
                f"cannot reduce {x} over axes {axes}: one is empty, and the max or "
                "min of no elements is undefined (numpy raises too); pad or slice "
                "the input so the axis is non-empty"
            )
        return TensorType(reduced_shape(x.shape, axes, keepdims), x.dtype)

    return rule


def _reduce_ref(fn: Callable) -> Callable:
    """``fn`` over ``axes``, but where each result reduces one element (no axes, or axes of
    size 1), that element, as in XLA, which drops such a reduction: a sum of -0.0 alone is
    -0.0 (numpy adds it to 0.0; sums of two or more start from 0.0 in both)."""

    def ref(x: np.ndarray, *, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        axes = normalize_axes(tuple(axes), x.ndim)
        if all(x.shape[d] == 1 for d in axes):
            return x.reshape(reduced_shape(x.shape, axes, keepdims))
        with np.errstate(over="ignore", invalid="ignore"):  # (inf and NaN: results like any other)
            return np.asarray(fn(x, axis=axes, keepdims=keepdims), dtype=x.dtype)

    return low_precision_ref(ref)


def _in_dtype(fn: Callable) -> Callable:
    """``fn`` accumulating in the input dtype: integers wrap as in XLA instead of widening."""
    return lambda x, **kwargs: fn(x, dtype=x.dtype, **kwargs)


def _extremum(fn: Callable, negative_wins: bool) -> Callable:
    """numpy.max or numpy.min (``fn``), ordering -0.0 below 0.0 (IEEE 754-2019, as XLA's
    maximum and minimum): of zeros, max is 0.0 if one of them is and min -0.0 if one of them
    is (numpy's: whichever it meets first)."""

    def reduce(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
        out = fn(x, axis=axis, keepdims=keepdims)
        if x.dtype.kind not in "fV":
            return out
        wins = np.any((x == 0) & (np.signbit(x) == negative_wins), axis=axis, keepdims=keepdims)
        winner = np.array(-0.0 if negative_wins else 0.0, x.dtype)
        return np.where(out == 0, np.where(wins, winner, -winner), out)

    return reduce


def _reduce(
    name: str, fn: Callable, allowed: tuple[np.dtype, ...], has_identity: bool, doc: str
) -> OpDef:
    return register(
        OpDef(
            name,
            _reduce_rule(allowed, has_identity),
            _reduce_ref(fn),
            attrs=dict(_AXES_ATTRS),
            doc=doc,
            batch=shifted_axis_batch("axes"),
        )
    )


reduce_sum = _reduce(
    "reduce_sum",
    _in_dtype(np.sum),
    NUMERIC,
    True,
    "numpy.sum over `axes` in the input dtype (integers wrap)",
)
reduce_prod = _reduce(
    "reduce_prod",
    _in_dtype(np.prod),
    NUMERIC,
    True,
    "numpy.prod over `axes` in the input dtype (integers wrap)",
)
reduce_max = _reduce(
    "reduce_max",
    _extremum(np.max, False),
    ANY,
    False,
    "numpy.max over `axes` (nan propagates; -0.0 < 0.0); bool max is any",
)
reduce_min = _reduce(
    "reduce_min",
    _extremum(np.min, True),
    ANY,
    False,
    "numpy.min over `axes` (nan propagates; -0.0 < 0.0); bool min is all",
)
reduce_and = _reduce("reduce_and", np.all, (BOOL,), True, "numpy.all over `axes` of a bool")
reduce_or = _reduce("reduce_or", np.any, (BOOL,), True, "numpy.any over `axes` of a bool")


def _arg_rule(types: tuple[TensorType, ...], *, axis: int, keepdims: bool) -> TensorType:
    check_arity(types, 1)
    (x,) = types
    check_dtype(x, NUMERIC)
    axis = single_axis(axis, x.ndim)
    if x.shape[axis] == 0:
        raise ShapeError(f"cannot take the arg-extremum of {x} along empty axis {axis}")
    return TensorType(reduced_shape(x.shape, (axis,), keepdims), np.dtype(np.int32))


def _arg_ref(fn: Callable) -> Callable:
    def ref(x: np.ndarray, *, axis: int, keepdims: bool) -> np.ndarray:
        if x.dtype.kind == "V":  # bfloat16: float32 holds it exactly and numpy knows its nan
            x = x.astype(np.float32)
        return fn(x, axis=single_axis(axis, x.ndim), keepdims=keepdims).astype(np.int32)

    return ref


_ARG_DOC = (
    "index (int32) of the first {} along `axis`; a nan counts as the extremum, so the "
    "first nan wins (numpy.{})"
)
argmax = register(
    OpDef(
        "argmax",
        _arg_rule,
        _arg_ref(np.argmax),
        attrs=dict(_AXIS_ATTRS),
        batch=shifted_axis_batch("axis"),
        doc=_ARG_DOC.format("maximum", "argmax"),
    )
)
argmin = register(
    OpDef(
        "argmin",
        _arg_rule,
        _arg_ref(np.argmin),
        attrs=dict(_AXIS_ATTRS),
        batch=shifted_axis_batch("axis"),
        doc=_ARG_DOC.format("minimum", "argmin"),
    )
)


def _cumulative_rule(allowed: tuple[np.dtype, ...]) -> Callable:
    def rule(types: tuple[TensorType, ...], *, axis: int, reverse: bool) -> TensorType:
        check_arity(types, 1)
        (x,) = types
        check_dtype(x, allowed)
        single_axis(axis, x.ndim)
        return x

    return rule


def _cumsum_ref(x: np.ndarray, *, axis: int, reverse: bool) -> np.ndarray:
    """numpy.cumsum, but as XLA's (a windowed reduction from 0.0, dropped for one element):
    along an axis of one element, x; along a longer one, every sum starts from 0.0, so a
    zero sum is 0.0 even of -0.0s (numpy starts from the first element: -0.0)."""
    axis = single_axis(axis, x.ndim)
    if x.shape[axis] == 1:
        return x
    with np.errstate(over="ignore", invalid="ignore"):  # (inf and NaN: results like any other)
        if reverse:
            sums = np.flip(np.cumsum(np.flip(x, axis), axis=axis, dtype=x.dtype), axis)
        else:
            sums = np.cumsum(x, axis=axis, dtype=x.dtype)
    return sums + x.dtype.type(0)  # (-0.0 + 0.0 is 0.0; the rest stays)


def _scan_ref(combine: Callable, identity: float | None = None) -> Callable:
    """The running ``combine(carry, element)`` along ``axis`` (from the end if ``reverse``):
    each result combines an element with all before it (after it), the first element with
    ``identity`` if given (where combining with it may change a zero's sign, as in XLA)."""

    def ref(x: np.ndarray, *, axis: int, reverse: bool) -> np.ndarray:
        axis = single_axis(axis, x.ndim)
        out = np.moveaxis(np.array(x), axis, 0)  # (a copy, its steps along the first axis)
        steps = range(len(out) - 2, -1, -1) if reverse else range(1, len(out))
        with np.errstate(all="ignore"):  # (inf and NaN: results like any other)
            if identity is not None and len(out):
                first = -1 if reverse else 0
                out[first] = combine(np.asarray(identity, out.dtype), out[first])
            for i in steps:
                out[i] = combine(out[i + 1 if reverse else i - 1], out[i])
        return np.moveaxis(out, 0, axis)

    return low_precision_ref(ref)


def _logaddexp(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(exp(a) + exp(b)) as jax computes it: max(a, b) + log1p(exp(-|a - b|)), and a + b
    where a - b is NaN (a NaN, or infinities of one sign)."""
    delta = a - b
    return np.where(np.isnan(delta), a + b, np.maximum(a, b) + np.log1p(np.exp(-np.abs(delta))))


def _cumulative(name: str, ref: Callable, allowed: tuple[np.dtype, ...], doc: str) -> OpDef:
    attrs = {"axis": "int", "reverse": "bool"}
    rule, batch = _cumulative_rule(allowed), shifted_axis_batch("axis")
    return register(OpDef(name, rule, ref, attrs=attrs, doc=doc, batch=batch))


_REVERSE_DOC = "; reverse=True runs from the end (each element with all after it)"
cumsum = _cumulative(
    "cumsum",
    low_precision_ref(_cumsum_ref),
    NUMERIC,
    "numpy.cumsum along `axis` in the input dtype" + _REVERSE_DOC,
)
cumprod = _cumulative(
    "cumprod",
    _scan_ref(np.multiply),
    NUMERIC,
    "numpy.cumprod along `axis` in the input dtype (integers wrap)" + _REVERSE_DOC,
)
cummax = _cumulative(
    "cummax",
    _scan_ref(max_.ref),
    NUMERIC,
    "the running maximum along `axis` (jax.lax.cummax): a NaN propagates to every later "
    "result; -0.0 < 0.0" + _REVERSE_DOC,
)
cummin = _cumulative(
    "cummin",
    _scan_ref(min_.ref),
    NUMERIC,
    "the running minimum along `axis` (jax.lax.cummin): a NaN propagates to every later "
    "result; -0.0 < 0.0" + _REVERSE_DOC,
)
cumlogsumexp = _cumulative(
    "cumlogsumexp",
    _scan_ref(_logaddexp, -np.inf),
    FLOATS,
    "the running log(sum(exp(x))) along `axis` (jax.lax.cumlogsumexp), each step "
    "jax's logaddexp: max(a, b) + log1p(exp(-|a - b|)), or a + b where a - b is NaN" + _REVERSE_DOC,
)


# -- gradient rules (ir/grad.py) -------------------------------------------------------------
@reduce_sum.defvjp
def _reduce_sum_vjp(e, op, g):  # every summed element gets g: broadcast it back
    from .shape import broadcast_to, reshape

    x = op.inputs[0]
    axes = normalize_axes(op.attrs["axes"], x.type.ndim)
    kept = reduced_shape(x.type.shape, axes, keepdims=True)
    if g.type.shape != kept:
        g = e(reshape, g, shape=kept)
    return [g if kept == x.type.shape else e(broadcast_to, g, shape=x.type.shape)]


def _expand(e, g, x, axes):
    """``g`` (a reduction of ``x`` over ``axes``, kept dims or not) broadcast back to x."""
    from .shape import broadcast_to, reshape

    kept = reduced_shape(x.type.shape, axes, keepdims=True)
    if g.type.shape != kept:
        g = e(reshape, g, shape=kept)
    return g if kept == x.type.shape else e(broadcast_to, g, shape=x.type.shape)


@reduce_prod.defvjp
def _reduce_prod_vjp(e, op, g):
    # d prod(x) / dx_i = the product of the others: y / x_i without zeros; with one zero, the
    # product of the non-zeros at the zero and 0 elsewhere; with two or more zeros, 0.
    from .elementwise import and_, convert, div, eq, mul, select

    x = op.inputs[0]
    axes = normalize_axes(op.attrs["axes"], x.type.ndim)
    zero, one = e.constant(0, x.type.dtype), e.constant(1, x.type.dtype)
    is_zero = e(eq, x, zero)
    nonzero = e(select, is_zero, one, x)
    others = e(reduce_prod, nonzero, axes=axes, keepdims=True)
    zeros = e(reduce_sum, e(convert, is_zero, dtype=x.type.dtype), axes=axes, keepdims=True)
    others, zeros = _expand(e, others, x, axes), _expand(e, zeros, x, axes)
    lone_zero = e(and_, e(eq, zeros, one), is_zero)
    partial = e(
        select, e(eq, zeros, zero), e(div, others, nonzero), e(select, lone_zero, others, zero)
    )
    return [e(mul, _expand(e, g, x, axes), partial)]


def _extremum_vjp(e, op, g):
    # As jax: g goes to every element equal to the result, split evenly among them.
    from .elementwise import convert, div, eq, mul

    x = op.inputs[0]
    axes = normalize_axes(op.attrs["axes"], x.type.ndim)
    hit = e(convert, e(eq, x, _expand(e, op.outputs[0], x, axes)), dtype=x.type.dtype)
    count = _expand(e, e(reduce_sum, hit, axes=axes, keepdims=True), x, axes)
    return [e(mul, hit, e(div, _expand(e, g, x, axes), count))]


reduce_max.defvjp(_extremum_vjp)
reduce_min.defvjp(_extremum_vjp)


@cumsum.defvjp
def _cumsum_vjp(e, op, g):  # each x_i is in the sums after it (before it if reversed)
    return [e(cumsum, g, axis=op.attrs["axis"], reverse=not op.attrs["reverse"])]


def _pairs(e, op):
    """For the gradients of the cumulative ops, which pair each element i along the op's axis
    with each result j, on a new axis after it: ``rows(v)`` (v_j at [i, j], for the results
    and their cotangents), ``columns(v)`` (v_i at [i, j], for the elements), the mask of the
    pairs where result j takes in element i (j >= i; j <= i when reversed) and that of the
    diagonal (i == j). They broadcast together to the pairs' shape; the rules are O(n^2)
    along the axis, as XLA's windowed reductions that compute the ops are."""
    from .creation import iota
    from .elementwise import eq, ge, le
    from .shape import reshape

    shape = op.inputs[0].type.shape
    axis = single_axis(op.attrs["axis"], len(shape))
    square = (shape[axis], shape[axis])
    i, j = (e(iota, shape=square, dimension=d, dtype=np.dtype(np.int32)) for d in (0, 1))

    def around(mask):
        return e(reshape, mask, shape=(1,) * axis + square + (1,) * (len(shape) - axis - 1))

    def rows(v):
        return e(reshape, v, shape=shape[:axis] + (1,) + shape[axis:])

    def columns(v):
        return e(reshape, v, shape=shape[: axis + 1] + (1,) + shape[axis + 1 :])

    mask = around(e(le if op.attrs["reverse"] else ge, j, i))
    return axis, rows, columns, mask, around(e(eq, i, j))


@cumprod.defvjp
def _cumprod_vjp(e, op, g):
    # d y_j / d x_i = the product of the x_k that y_j takes in but x_i: the cumulative
    # product of the rows with x_i set to 1. With no division, zeros are exact, as in jax's
    # rule (the derivative of its associative scan).
    from .elementwise import mul, select

    x = op.inputs[0]
    axis, rows, _, mask, diagonal = _pairs(e, op)
    zero, one = e.constant(0, x.type.dtype), e.constant(1, x.type.dtype)
    without = e(select, diagonal, one, rows(x))
    others = e(cumprod, without, axis=axis + 1, reverse=op.attrs["reverse"])
    terms = e(select, mask, e(mul, others, rows(g)), zero)
    return [e(reduce_sum, terms, axes=(axis + 1,), keepdims=False)]


def _cumulative_extremum_vjp(e, op, g):
    # As jax's for distinct values: g_j goes to the element y_j equals. Ties split g_j evenly
    # among the elements it takes in that equal it (jax's split follows its scan's tree).
    from .elementwise import and_, convert, div, eq, mul

    x, y = op.inputs[0], op.outputs[0]
    axis, rows, columns, mask, _ = _pairs(e, op)
    hit = e(convert, e(and_, mask, e(eq, columns(x), rows(y))), dtype=x.type.dtype)
    count = e(reduce_sum, hit, axes=(axis,), keepdims=True)
    share = e(div, rows(g), e(max_, count, e.constant(1, x.type.dtype)))
    return [e(reduce_sum, e(mul, hit, share), axes=(axis + 1,), keepdims=False)]


cummax.defvjp(_cumulative_extremum_vjp)
cummin.defvjp(_cumulative_extremum_vjp)


@cumlogsumexp.defvjp
def _cumlogsumexp_vjp(e, op, g):  # d y_j / d x_i = exp(x_i - y_j) where y_j takes in x_i
    from .elementwise import exp, mul, select, sub

    x, y = op.inputs[0], op.outputs[0]
    axis, rows, columns, mask, _ = _pairs(e, op)
    exponent = e(select, mask, e(sub, columns(x), rows(y)), e.constant(-np.inf, x.type.dtype))
    terms = e(mul, e(exp, exponent), rows(g))
    return [e(reduce_sum, terms, axes=(axis + 1,), keepdims=False)]


for _opdef in (argmax, argmin):
    _opdef.declare_no_vjp("an index: integer-valued, it has no gradient")
for _opdef in (reduce_and, reduce_or):
    _opdef.declare_no_vjp("a bool reduction: its result is not differentiable")
