"""``tensor[key]`` through ``fj.compile`` against numpy's indexing of the same array: ints,
negative ints, slices (negative starts, negative steps), None, ..., integer arrays (numpy arrays,
lists, traced integer Tensors), several integer arrays (adjacent or not, broadcasting)."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import assert_matches, rand

import flowjit as fj
import flowjit.numpy as fnp

SHAPE = (4, 5, 6)

BASIC = [
    2,
    -1,
    -4,
    (1, -2),
    (1, 2, 3),
    (-4, -5, -6),
    np.int64(3),
    (np.int32(-1), 2),
    slice(None),
    slice(1, 3),
    slice(-3, None),
    slice(None, -2),
    slice(None, None, 2),
    slice(None, None, -1),
    slice(-2, 0, -1),
    slice(3, None, -2),
    slice(-1, -5, -3),
    slice(-100, 100),
    slice(1, 100, 3),
    slice(3, 1),
    slice(None, None, 7),
    (slice(None), slice(-2, None), slice(None, None, -2)),
    (slice(1, -1), 0, slice(4, 0, -1)),
    None,
    (None, 1),
    (1, None),
    (None, None, slice(None, 2)),
    (slice(None), None, -1, None),
    Ellipsis,
    (Ellipsis, 1),
    (1, Ellipsis),
    (Ellipsis, -1, 2),
    (2, Ellipsis, slice(None, None, -1)),
    (Ellipsis, None),
    (None, Ellipsis, None, 3),
    (1, Ellipsis, 2, 3),
]

ARRAYS = [
    np.array([0, -1, 2]),
    [3, 0],
    np.array([[0, 1], [2, -3]]),
    (slice(None), np.array([1, -1])),
    (Ellipsis, np.array([5, 0, 5])),
    (np.array([0, 3]), np.array([2, -4])),
    (np.array([0, 1]), slice(None), np.array([2, -1])),
    (slice(1, 3), [0, 4], [1, 2]),
    (np.array([[0], [3]]), np.array([0, 2, 4])),
    (1, slice(None), np.array([0, 2])),
    (slice(None), 1, np.array([0, 2])),
    (np.array([0, 1]), 1),
    (np.array([0, 1]), slice(None), 1),
    (np.array([3, 2, 1]), np.array([4, 0, 1]), np.array([5, 5, 0])),
    (-1, [2, 3], -2),
    (np.array(2), slice(None, None, -1)),
    np.array([1, 1, 1, 0], np.uint8),
    (slice(None, None, -1), np.array([[1, 0]], np.int64)),
    (np.array([0, 2]), None),
    (None, Ellipsis, [1, 0]),
    (np.array([0, 1]), None, np.array([1, 2])),
    (1, None, slice(None), [0, 2]),
    ([1, 2], None, 0),
    (None, [0, 3], [1, 4], None),
]


def key_id(key) -> str:
    return repr(key).replace(" ", "").replace("array(", "a(").replace("slice(", "s(")


@pytest.mark.parametrize("key", BASIC + ARRAYS, ids=key_id)
def test_constant_key(key):
    x = rand(np.random.default_rng(), SHAPE, np.float32)
    got = np.asarray(fj.compile(lambda x: x[key])(x))
    assert_matches(got, x[key], got.dtype, 1.0, f"x[{key_id(key)}]")


@pytest.mark.parametrize("dtype", [np.int32, np.bool_, fnp.bfloat16, np.float16, np.uint8], ids=str)
def test_other_dtypes(dtype):
    x = rand(np.random.default_rng(), SHAPE, dtype)
    keys = [(1, slice(None, None, -2)), (Ellipsis, np.array([0, -1])), (None, -1, 2)]
    got = fj.compile(lambda x: [x[k] for k in keys])(x)
    for k, g in zip(keys, got):
        g = np.asarray(g)
        assert_matches(g, x[k], g.dtype, 1.0, f"x[{key_id(k)}]")


# The index arrays arrive as traced int32 Tensors (arguments), not constants.
TRACED = {
    "x[i]": lambda x, i, j: x[i],
    "x[:,i]": lambda x, i, j: x[:, i],
    "x[...,j]": lambda x, i, j: x[..., j],
    "x[i,j]": lambda x, i, j: x[i, j],
    "x[i,:,j]": lambda x, i, j: x[i, :, j],
    "x[i,1:3]": lambda x, i, j: x[i, 1:3],
    "x[::-1,j,i]": lambda x, i, j: x[::-1, j, i],
    "x[i[0]]": lambda x, i, j: x[i[0]],
    "x[i[1],j]": lambda x, i, j: x[i[1], j],
    "x[2,i]": lambda x, i, j: x[2, i],
    "x[i,2,j]": lambda x, i, j: x[i, 2, j],
    "x[i][:,j]": lambda x, i, j: x[i][:, j],
    "x[None,i,::2]": lambda x, i, j: x[None, i, ::2],
    "x[1,None,j,i]": lambda x, i, j: x[1, None, j, i],
}


@pytest.mark.parametrize("name", list(TRACED))
def test_traced_integer_tensors(name):
    """Traced indices, negative ones included; ``i`` indexes axis 0 (size 4), ``j`` any axis of
    size >= 5, and they broadcast together (shape (3,) each)."""
    rng = np.random.default_rng()
    x = rand(rng, SHAPE, np.float32)
    i, j = rng.integers(-4, 4, 3).astype(np.int32), rng.integers(-5, 5, 3).astype(np.int32)
    fn = TRACED[name]
    got = np.asarray(fj.compile(fn)(x, i, j))
    assert_matches(got, fn(x, i, j), got.dtype, 1.0, name)


def test_integer_array_of_unsigned_and_int64_dtypes():
    rng = np.random.default_rng()
    x = rand(rng, SHAPE, np.float32)
    u, w = rng.integers(0, 4, (2, 2)).astype(np.uint32), rng.integers(-6, 6, 3).astype(np.int64)
    got = fj.compile(lambda x, u, w: (x[u], x[:, :, w], x[u, 1]))(x, u, w)
    for g, want, what in zip(got, (x[u], x[:, :, w], x[u, 1]), ("x[u]", "x[:,:,w]", "x[u,1]")):
        g = np.asarray(g)
        assert_matches(g, want, g.dtype, 1.0, what)


@pytest.mark.parametrize("key", [4, -5, (0, 5), (0, 0, -7), (1, 2, 3, 0)], ids=key_id)
def test_out_of_range_int_or_too_many_indices_raise_index_error(key):
    with pytest.raises(IndexError):
        fj.compile(lambda x: x[key])(np.zeros(SHAPE, np.float32))


def test_two_ellipses_raise_index_error():
    with pytest.raises(IndexError, match="single ellipsis"):
        fj.compile(lambda x: x[..., 0, ...])(np.zeros(SHAPE, np.float32))
