"""sort, argsort and top_k, every dtype they claim, against numpy: ties and nans included."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import OpCase, check_case, check_grad, params, rand

from flowjit.ir import Graph, ShapeError, TensorType
from flowjit.ir.ops import sort as S
from flowjit.ir.ops.rules import ANY, FLOATS


def tied(rng: np.random.Generator, shape: tuple[int, ...], dt, nans: bool = False) -> np.ndarray:
    """Whole numbers in [-2, 2] (so many elements tie), with some nans if asked. Long rows
    catch an unstable sort: XLA:CPU happens to keep short ones in order anyway."""
    x = rand(rng, shape, dt, -2, 2)
    if np.dtype(dt).kind not in "fV":
        return x
    x = np.round(x.astype(np.float64))
    if nans:
        x.reshape(-1)[rng.choice(x.size, size=max(3, x.size // 20), replace=False)] = np.nan
    return x.astype(dt)


def along(shape, nans=False, **attrs):
    return lambda rng, dt: ([tied(rng, shape, dt, nans)], attrs)


def distinct(shape, **attrs):
    """Inputs without ties (0.5 apart) for gradient checks: sorting is smooth only there."""

    def make(rng, dt):
        size = int(np.prod(shape))
        x = (rng.permutation(size).reshape(shape) - size / 2) / 2
        return [x.astype(dt)], attrs

    return make


def descending_order(x, axis):
    """Indices sorting ``x`` from largest to smallest, nans first, ties by position (the
    stable ascending order of the negated values, with nans mapped below everything)."""
    xf = x.astype(np.float64)
    return np.argsort(np.where(np.isnan(xf), -np.inf, -xf), axis=axis, kind="stable")


def np_sort(x, axis, descending):
    return np.flip(np.sort(x, axis=axis), axis) if descending else np.sort(x, axis=axis)


def np_argsort(x, axis, descending):
    return descending_order(x, axis) if descending else np.argsort(x, axis=axis, kind="stable")


def np_top_k(x, k):
    order = descending_order(x, -1)[..., :k]
    return np.take_along_axis(x, order, -1), order


CASES = [
    OpCase(
        S.sort,
        ANY,
        along((3, 9), axis=1, descending=False),
        np_sort,
        grad_make=distinct((3, 9), axis=1, descending=False),
    ),
    OpCase(
        S.sort,
        ANY,
        along((8, 2, 3), axis=0, descending=True),
        np_sort,
        name="sort_descending",
        grad_make=distinct((8, 2, 3), axis=0, descending=True),
    ),
    OpCase(
        S.sort,
        FLOATS,
        along((4, 200), nans=True, axis=-1, descending=False),
        np_sort,
        name="sort_nan",
        grad_make=distinct((4, 20), axis=-1, descending=False),
    ),
    OpCase(
        S.sort,
        FLOATS,
        along((4, 200), nans=True, axis=1, descending=True),
        np_sort,
        name="sort_nan_descending",
        grad_make=distinct((4, 20), axis=1, descending=True),
    ),
    OpCase(S.sort, ANY, along((0, 3), axis=0, descending=False), np_sort, name="sort_empty"),
    OpCase(S.argsort, ANY, along((3, 500), axis=-1, descending=False), np_argsort),
    OpCase(
        S.argsort,
        ANY,
        along((2, 300, 3), axis=1, descending=True),
        np_argsort,
        name="argsort_descending",
    ),
    OpCase(
        S.argsort,
        FLOATS,
        along((4, 200), nans=True, axis=1, descending=False),
        np_argsort,
        name="argsort_nan",
    ),
    OpCase(
        S.argsort,
        FLOATS,
        along((200, 4), nans=True, axis=0, descending=True),
        np_argsort,
        name="argsort_nan_descending",
    ),
    OpCase(S.top_k, ANY, along((3, 9), k=4), np_top_k, grad_make=distinct((3, 9), k=4)),
    OpCase(
        S.top_k,
        ANY,
        along((2, 2, 5), k=5),
        np_top_k,
        name="top_k_all",
        grad_make=distinct((2, 2, 5), k=5),
    ),
    OpCase(S.top_k, ANY, along((6,), k=0), np_top_k, name="top_k_none"),
    OpCase(
        S.top_k,
        FLOATS,
        along((4, 100), nans=True, k=30),
        np_top_k,
        name="top_k_nan",
        grad_make=distinct((4, 40), k=30),
    ),
]


@pytest.mark.parametrize("case, dtype", params(CASES))
def test_op_against_numpy(case, dtype):
    check_case(case, dtype)


GRAD_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


@pytest.mark.parametrize(
    "case, dtype",
    [p for p in params(CASES) if p.values[0].opdef.vjp is not None and p.values[1] in GRAD_DTYPES],
)
def test_gradient(case, dtype):
    check_grad(case, dtype)


def add(opdef, shape, dtype=np.float32, **attrs):
    graph = Graph("g")
    return graph.add(opdef, [graph.add_input(TensorType(shape, dtype))], attrs)


def test_output_types():
    assert add(S.argsort, (2, 3), np.uint8, axis=0, descending=True)[0].type == TensorType(
        (2, 3), np.int32
    )
    values, indices = add(S.top_k, (2, 5), np.int16, k=2)
    assert values.type == TensorType((2, 2), np.int16)
    assert indices.type == TensorType((2, 2), np.int32)


@pytest.mark.parametrize("k", [-1, 6])
def test_top_k_out_of_range_is_a_shape_error(k):
    with pytest.raises(ShapeError, match=r"k=-?\d+ is out of range .* \[0, 5\]"):
        add(S.top_k, (2, 5), k=k)


def test_bad_axes_and_ranks_are_shape_errors():
    with pytest.raises(ShapeError, match="out of range"):
        add(S.sort, (2, 5), axis=2, descending=False)
    with pytest.raises(ShapeError, match="rank >= 1"):
        add(S.argsort, (), axis=0, descending=False)
    with pytest.raises(ShapeError, match="rank >= 1"):
        add(S.top_k, (), k=0)
