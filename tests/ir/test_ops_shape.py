"""Every shape op, every dtype, on random inputs against numpy; bad shapes and attributes
raise ShapeError / DTypeError naming the shapes."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import OpCase, check_case, check_grad, params, rand

from flowjit.ir import DTypeError, Graph, ShapeError, TensorType
from flowjit.ir.ops import shape as S
from flowjit.ir.ops.rules import ANY


def one(in_shape, **attrs):
    return lambda rng, dt: ([rand(rng, in_shape, dt)], attrs)


def many(*shapes, **attrs):
    return lambda rng, dt: ([rand(rng, s, dt) for s in shapes], attrs)


def with_pad_value(in_shape, **attrs):
    return lambda rng, dt: ([rand(rng, in_shape, dt), rand(rng, (), dt)], attrs)


def np_slice(x, start, limit, strides):
    return x[tuple(slice(a, b, s) for a, b, s in zip(start, limit, strides))]


def np_pad(x, value, low, high):
    return np.pad(x, list(zip(low, high)), constant_values=value)


CASES = [
    OpCase(S.reshape, ANY, one((2, 3, 4), shape=(4, 6)), lambda x, shape: x.reshape(shape)),
    OpCase(
        S.reshape,
        ANY,
        one((6,), shape=(2, 1, 3)),
        lambda x, shape: x.reshape(shape),
        name="reshape_add_dims",
    ),
    OpCase(
        S.reshape,
        ANY,
        one((), shape=(1, 1)),
        lambda x, shape: x.reshape(shape),
        name="reshape_scalar",
    ),
    OpCase(
        S.reshape,
        ANY,
        one((0, 3), shape=(3, 0, 2)),
        lambda x, shape: x.reshape(shape),
        name="reshape_empty",
    ),
    OpCase(S.transpose, ANY, one((2, 3, 4), perm=(2, 0, 1)), lambda x, perm: x.transpose(perm)),
    OpCase(S.transpose, ANY, one((3, 5), perm=(1, 0)), lambda x, perm: x.T, name="transpose_2d"),
    OpCase(
        S.broadcast_to,
        ANY,
        one((3, 1), shape=(2, 3, 4)),
        lambda x, shape: np.broadcast_to(x, shape),
    ),
    OpCase(
        S.broadcast_to,
        ANY,
        one((), shape=(2, 2)),
        lambda x, shape: np.full(shape, x),
        name="broadcast_to_scalar",
    ),
    OpCase(
        S.concatenate,
        ANY,
        many((2, 1, 3), (2, 4, 3), (2, 2, 3), axis=1),
        lambda *xs, axis: np.concatenate(xs, axis),
    ),
    OpCase(
        S.concatenate,
        ANY,
        many((2, 3), (2, 1), axis=-1),
        lambda a, b, axis: np.hstack([a, b]),
        name="concatenate_negative_axis",
    ),
    OpCase(S.concatenate, ANY, many((3,), axis=0), lambda x, axis: x, name="concatenate_one"),
    OpCase(
        S.slice_, ANY, one((5, 6, 3), start=(1, 0, 2), limit=(5, 6, 3), strides=(2, 3, 1)), np_slice
    ),
    OpCase(
        S.slice_,
        ANY,
        one((7, 4), start=(1, 1), limit=(6, 4), strides=(3, 2)),
        np_slice,
        name="slice_strided_inside",
    ),
    OpCase(
        S.slice_,
        ANY,
        one((4, 3), start=(2, 0), limit=(2, 3), strides=(1, 2)),
        np_slice,
        name="slice_empty",
    ),
    OpCase(S.pad, ANY, with_pad_value((2, 3), low=(1, 0), high=(2, 3)), np_pad),
    OpCase(S.pad, ANY, with_pad_value((3,), low=(0,), high=(0,)), np_pad, name="pad_none"),
    OpCase(S.reverse, ANY, one((2, 3, 4), axes=(0, 2)), lambda x, axes: x[::-1, :, ::-1]),
    OpCase(
        S.reverse,
        ANY,
        one((3, 4), axes=(-1,)),
        lambda x, axes: x[:, ::-1],
        name="reverse_negative_axis",
    ),
    OpCase(S.reverse, ANY, one((3,), axes=()), lambda x, axes: x, name="reverse_no_axes"),
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


F32, I32 = np.dtype(np.float32), np.dtype(np.int32)

BAD = [
    (S.reshape, [(2, 3)], {"shape": (4, 2)}, ShapeError, r"cannot reshape \(2, 3\) .* to \(4, 2\)"),
    (S.reshape, [(2, 3)], {"shape": (-1, 3)}, ShapeError, r"shape=\(-1, 3\) has entries below 0"),
    (S.transpose, [(2, 3)], {"perm": (0, 0)}, ShapeError, r"not a permutation .* \(2, 3\)"),
    (S.transpose, [(2, 3)], {"perm": (1, 0, 2)}, ShapeError, "not a permutation"),
    (
        S.broadcast_to,
        [(2, 3)],
        {"shape": (3, 3)},
        ShapeError,
        r"cannot broadcast shape \(2, 3\) to \(3, 3\)",
    ),
    (S.broadcast_to, [(2, 3)], {"shape": (3,)}, ShapeError, "cannot broadcast"),
    (
        S.concatenate,
        [(2, 3), (3, 3)],
        {"axis": 1},
        ShapeError,
        r"cannot concatenate shapes \(2, 3\), \(3, 3\) along axis 1",
    ),
    (S.concatenate, [(2, 3), (2, 3, 1)], {"axis": 0}, ShapeError, "one rank"),
    (S.concatenate, [(), ()], {"axis": 0}, ShapeError, "rank >= 1"),
    (S.concatenate, [(2,)], {"axis": 1}, ShapeError, "axis 1 is out of range"),
    (S.concatenate, [], {"axis": 0}, ShapeError, "at least 1 operand"),
    (
        S.slice_,
        [(4, 3)],
        {"start": (0,), "limit": (4,), "strides": (1,)},
        ShapeError,
        r"start=\(0,\) has 1 entries; expected 2",
    ),
    (
        S.slice_,
        [(4,)],
        {"start": (3,), "limit": (2,), "strides": (1,)},
        ShapeError,
        r"slice 3:2 of axis 0 \(size 4\)",
    ),
    (S.slice_, [(4,)], {"start": (0,), "limit": (5,), "strides": (1,)}, ShapeError, "limit <= 4"),
    (S.slice_, [(4,)], {"start": (0,), "limit": (4,), "strides": (0,)}, ShapeError, "below 1"),
    (S.pad, [(2, 3), (1,)], {"low": (0, 0), "high": (0, 0)}, ShapeError, "must be a scalar"),
    (S.pad, [(2, 3), ()], {"low": (0, -1), "high": (0, 0)}, ShapeError, "below 0"),
    (S.pad, [(2, 3), ()], {"low": (0,), "high": (0, 0)}, ShapeError, "one per dim of"),
    (S.reverse, [(2, 3)], {"axes": (2,)}, ShapeError, "axis 2 is out of range for rank 2"),
    (S.reverse, [(2, 3)], {"axes": (1, -1)}, ShapeError, "repeated axis"),
]


@pytest.mark.parametrize(
    "opdef, shapes, attrs, error, message", BAD, ids=[f"{b[0].name}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_shapes_raise(opdef, shapes, attrs, error, message):
    graph = Graph()
    args = [graph.add_input(TensorType(s, F32)) for s in shapes]
    with pytest.raises(error, match=message):
        graph.add(opdef, args, attrs)


@pytest.mark.parametrize(
    "opdef, attrs", [(S.concatenate, {"axis": 0}), (S.pad, {"low": (0,), "high": (0,)})]
)
def test_mixed_dtypes_raise(opdef, attrs):
    graph = Graph()
    args = [graph.add_input(TensorType((2,), F32)), graph.add_input(TensorType((2,), I32))]
    if opdef is S.pad:
        args[1] = graph.add_input(TensorType((), I32))
    with pytest.raises(DTypeError, match="different dtypes f32, i32"):
        graph.add(opdef, args, attrs)
