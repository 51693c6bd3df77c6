"""Reductions over axes (sum, prod, max, min, and, or), arg-reductions (argmax, argmin) and
the scan cumsum. ``axes`` are normalized by the tracer (sorted, non-negative, unique); the
shape rules accept anything ``rules.normalize_axes`` accepts and reject the rest."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..core import OpDef, register
from ..errors import ShapeError
from ..types import BOOL, TensorType
from .rules import (
    ANY,
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
        doc=_ARG_DOC.format("maximum", "argmax"),
    )
)
argmin = register(
    OpDef(
        "argmin",
        _arg_rule,
        _arg_ref(np.argmin),
        attrs=dict(_AXIS_ATTRS),
        doc=_ARG_DOC.format("minimum", "argmin"),
    )
)


def _cumsum_rule(types: tuple[TensorType, ...], *, axis: int, reverse: bool) -> TensorType:
    check_arity(types, 1)
    (x,) = types
    check_dtype(x, NUMERIC)
    single_axis(axis, x.ndim)
    return x


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


cumsum = register(
    OpDef(
        "cumsum",
        _cumsum_rule,
        low_precision_ref(_cumsum_ref),
        attrs={"axis": "int", "reverse": "bool"},
        doc="numpy.cumsum along `axis` in the input dtype; reverse=True gives "
        "the suffix sums (each element plus all after it)",
    )
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


for _opdef in (argmax, argmin):
    _opdef.declare_no_vjp("an index: integer-valued, it has no gradient")
for _opdef in (reduce_and, reduce_or):
    _opdef.declare_no_vjp("a bool reduction: its result is not differentiable")
