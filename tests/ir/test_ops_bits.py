"""Shifts and bitcasts, every dtype they claim, against numpy and Python's integers."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import OpCase, add_op, check_case, params, rand, run_xla

from flowjit.backends.reference import run_graph
from flowjit.ir import DTypeError, Graph, ShapeError, TensorType
from flowjit.ir.ops import bits as B
from flowjit.ir.ops.rules import FLOATS, INTS, NUMERIC
from flowjit.ir.types import bfloat16


def _full_range(rng: np.random.Generator, shape: tuple[int, ...], dt) -> np.ndarray:
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)


def shift_inputs(rng, dt):
    """Operands of every sign against amounts below, at and beyond the width (and, for signed
    dtypes, negative ones, which XLA reads as huge unsigned amounts)."""
    width = 8 * np.dtype(dt).itemsize
    x = np.concatenate([np.array([0, 1, -1, 5]).astype(dt), _full_range(rng, (4,), dt)])
    amounts = [0, 1, width - 1, width, width + 1, int(rng.integers(2, width - 1))]
    if np.dtype(dt).kind == "i":
        amounts.append(-1)
    return [x, np.array(amounts).astype(dt).reshape(-1, 1)], {}


def _python_shift(kind: str):
    """The expected shift, computed elementwise on Python's unbounded integers."""

    def shift(x: np.ndarray, amount: np.ndarray) -> np.ndarray:
        x, amount = np.broadcast_arrays(x, amount)
        width = 8 * x.dtype.itemsize
        modulus = 2**width
        out = []
        for a, n in zip(x.flat, amount.flat):
            bits, n = int(a) % modulus, int(n) % modulus  # two's complement; amount unsigned
            if kind == "left":
                r = (bits << n) % modulus if n < width else 0
            elif kind == "logical":
                r = bits >> n if n < width else 0
            else:
                signed = bits - modulus if bits >= modulus // 2 else bits
                r = (signed >> min(n, width - 1)) % modulus
            out.append(r)
        unsigned = np.array(out, dtype=f"u{x.dtype.itemsize}").reshape(x.shape)
        return unsigned.view(x.dtype)

    return shift


def _widths(itemsize: int) -> tuple:
    return tuple(d for d in NUMERIC if d.itemsize == itemsize)


def bitcast_inputs(to: np.dtype):
    """Float bit patterns (of the source or, for an int source, of a float of its width) and
    full-range integers, so both directions see meaningful and arbitrary bits."""

    def make(rng, dt):
        floats = [d for d in _widths(np.dtype(dt).itemsize) if d in FLOATS]
        if np.dtype(dt) in FLOATS:
            x = rand(rng, (3, 4), dt, -1e3, 1e3)
        elif floats:
            x = rand(rng, (3, 4), floats[0], -1e3, 1e3).view(dt)
        else:
            x = _full_range(rng, (3, 4), dt)
        return [x], {"dtype": to}

    return make


# for floats, the harness passes float64 operands; narrowing them back is exact
BITCASTS = [
    OpCase(
        B.bitcast_convert,
        (src,),
        bitcast_inputs(to),
        lambda x, dtype, src=src: x.astype(src).view(dtype),
        name=f"bitcast_{src.name}_to_{to.name}",
    )
    for src in NUMERIC
    for to in _widths(src.itemsize)
]

CASES = [
    OpCase(B.shift_left, INTS, shift_inputs, _python_shift("left")),
    OpCase(B.shift_right_logical, INTS, shift_inputs, _python_shift("logical")),
    OpCase(B.shift_right_arithmetic, INTS, shift_inputs, _python_shift("arithmetic")),
] + BITCASTS


@pytest.mark.parametrize("case, dtype", params(CASES))
def test_op_against_numpy(case, dtype):
    check_case(case, dtype)


@pytest.mark.parametrize(
    "x, dtype, bits",
    [
        (np.array([1.0, -2.0], np.float32), np.uint32, [0x3F800000, 0xC0000000]),
        (np.array([1.0, -0.0], np.float64), np.uint64, [0x3FF0000000000000, 2**63]),
        (np.array([1.0, -2.0], bfloat16), np.int16, [0x3F80, -0x4000]),
        (np.array([1.0, np.inf], np.float16), np.int16, [0x3C00, 0x7C00]),
    ],
)
def test_bitcast_gives_ieee_bits_on_both_backends(x, dtype, bits):
    graph = Graph("g")
    graph.outputs = list(
        graph.add(
            B.bitcast_convert, [graph.add_input(TensorType(x.shape, x.dtype))], {"dtype": dtype}
        )
    )
    for got in (run_graph(graph, [x])[0], run_xla(graph, [x])[0]):
        np.testing.assert_array_equal(got, np.array(bits, dtype))


def test_shifts_broadcast_and_keep_the_dtype():
    (out,) = add_op(B.shift_left, [((2, 1, 4), np.uint32), ((3, 1), np.uint32)])
    assert out.type.shape == (2, 3, 4) and out.type.dtype == np.uint32


@pytest.mark.parametrize(
    "opdef, types, attrs, error, message",
    [
        (B.shift_left, [((2,), np.float32)] * 2, {}, DTypeError, "expected one of i8"),
        (B.shift_right_logical, [((2,), np.bool_)] * 2, {}, DTypeError, "has dtype bool"),
        (
            B.shift_right_arithmetic,
            [((2,), np.int32), ((2,), np.uint32)],
            {},
            DTypeError,
            "different dtypes i32, u32",
        ),
        (B.shift_left, [((2,), np.int8), ((3,), np.int8)], {}, ShapeError, "cannot broadcast"),
        (
            B.bitcast_convert,
            [((2,), np.float32)],
            {"dtype": np.float64},
            DTypeError,
            r"cannot bitcast f32 \(32 bits\) to f64 \(64 bits\)",
        ),
        (B.bitcast_convert, [((2,), np.bool_)], {"dtype": np.uint8}, DTypeError, "dtype bool"),
        (B.bitcast_convert, [((2,), np.uint8)], {"dtype": np.bool_}, DTypeError, "to bool"),
    ],
)
def test_bad_operands_raise(opdef, types, attrs, error, message):
    with pytest.raises(error, match=message):
        add_op(opdef, types, **attrs)
