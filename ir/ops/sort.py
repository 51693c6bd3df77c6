"""Sorting along an axis: sort, argsort and top_k. Every sort is stable. Ascending order puts
nans last (numpy); descending order is its exact reverse on values, so nans come first, while
equal elements keep their original order (jax.numpy.argsort(descending=True))."""

from __future__ import annotations

import numpy as np

from ..batching import shifted_axis_batch
from ..core import OpDef, register
from ..errors import ShapeError
from ..types import TensorType
from .rules import ANY, check_arity, check_dtype, single_axis

_SORT_ATTRS = {"axis": "int", "descending": "bool"}
INDEX = np.dtype(np.int32)


def sort_order(x: np.ndarray, axis: int, descending: bool) -> np.ndarray:
    """The indices that stably sort ``x`` along ``axis`` (numpy's order: nans last)."""
    axis = single_axis(axis, x.ndim)
    keys = x.astype(np.float32) if x.dtype.kind == "V" else x  # bfloat16: numpy's nan order
    if not descending:
        return np.argsort(keys, axis=axis, kind="stable")
    # Reversed, sorted ascending, reversed back: descending, and ties in their original order.
    flipped = np.argsort(np.flip(keys, axis), axis=axis, kind="stable")
    return x.shape[axis] - 1 - np.flip(flipped, axis)


def _sort_rule(types: tuple[TensorType, ...], *, axis: int, descending: bool) -> TensorType:
    check_arity(types, 1)
    check_dtype(types[0], ANY)
    single_axis(axis, types[0].ndim)
    return types[0]


def _sort_ref(x: np.ndarray, *, axis: int, descending: bool) -> np.ndarray:
    return np.take_along_axis(x, sort_order(x, axis, descending), single_axis(axis, x.ndim))


sort = register(
    OpDef(
        "sort",
        _sort_rule,
        _sort_ref,
        attrs=dict(_SORT_ATTRS),
        batch=shifted_axis_batch("axis"),
        doc="numpy.sort along `axis` (nans last); descending=True is the reverse (nans first)",
    )
)


def _argsort_rule(types: tuple[TensorType, ...], *, axis: int, descending: bool) -> TensorType:
    return TensorType(_sort_rule(types, axis=axis, descending=descending).shape, INDEX)


def _argsort_ref(x: np.ndarray, *, axis: int, descending: bool) -> np.ndarray:
    return sort_order(x, axis, descending).astype(INDEX)


argsort = register(
    OpDef(
        "argsort",
        _argsort_rule,
        _argsort_ref,
        attrs=dict(_SORT_ATTRS),
        batch=shifted_axis_batch("axis"),
        doc="int32 indices that sort along `axis`, stably: equal elements keep "
        "their order, also when descending; nans as in sort",
    )
)


def _top_k_rule(types: tuple[TensorType, ...], *, k: int) -> tuple[TensorType, TensorType]:
    check_arity(types, 1)
    (x,) = types
    check_dtype(x, ANY)
    single_axis(-1, x.ndim)
    if not 0 <= k <= x.shape[-1]:
        raise ShapeError(
            f"k={k} is out of range for {x}: it must be in [0, {x.shape[-1]}], the "
            "size of the last axis (move the axis last to take top_k along another)"
        )
    shape = (*x.shape[:-1], k)
    return TensorType(shape, x.dtype), TensorType(shape, INDEX)


def _top_k_ref(x: np.ndarray, *, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = sort_order(x, -1, descending=True)[..., :k]
    return np.take_along_axis(x, order, -1), order.astype(INDEX)


top_k = register(
    OpDef(
        "top_k",
        _top_k_rule,
        _top_k_ref,
        attrs={"k": "int"},
        batch=shifted_axis_batch(),  # (along the last axis: the batch axis is not it)
        doc="the k largest elements along the last axis, largest first, and their "
        "int32 indices, as jax.lax.top_k: ties give the lower index first; "
        "every nan counts as largest (jax ranks a nan with the sign bit set "
        "smallest)",
    )
)


# -- gradient rules (ir/grad.py) -------------------------------------------------------------
@sort.defvjp
def _sort_vjp(e, op, g):
    # sort(x) = take_along_axis(x, p) for the sorting permutation p: g goes back through
    # p's inverse, argsort(p) (ties are equal values, so which of them gets which g is moot).
    from .index import take_along_axis

    axis = op.attrs["axis"]
    order = e(argsort, op.inputs[0], axis=axis, descending=op.attrs["descending"])
    inverse = e(argsort, order, axis=axis, descending=False)
    return [e(take_along_axis, g, inverse, axis=axis)]


@top_k.defvjp
def _top_k_vjp(e, op, g, _):  # the values' g scattered to where top_k found them
    from .index import take_along_axis_transpose

    if g is None:
        return [None]
    return [take_along_axis_transpose(e, g, op.outputs[1], op.inputs[0].type, -1)]


argsort.declare_no_vjp("indices: integer-valued, they have no gradient")
