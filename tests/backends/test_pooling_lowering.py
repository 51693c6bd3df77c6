"""On CPU, a pooling's gradient (select_and_scatter_add) is lowered as a fold of each window's
elements and selects, and a pooling whose windows tile the input (stride == window) as a
reshape + reduce, instead of XLA's SelectAndScatter and reduce_window (backends/xla/nn.py).
These lowerings must give the reference interpreter's bits (ties, NaN, infinities, signed
zeros, padding, a rest that VALID drops, windows wholly in the padding, overlapping windows,
strides past the window), and XLA's windowed ops' where those keep the reference's order. They
do not always with padding: there XLA:CPU's SelectAndScatter was seen to fold some windows
column by column, so a tie or a NaN sends the gradient elsewhere (docs/ir-format.md)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from opcheck import run_xla

import flowjit as fj
from flowjit.backends.reference import run_graph
from flowjit.backends.xla import nn as xla_nn
from flowjit.ir import Graph, TensorType
from flowjit.ir.ops import nn as N
from flowjit.ir.types import bfloat16

# (operand shape, window, strides, padding)
GEOMETRIES = [
    ((2, 6, 6, 3), (1, 2, 2, 1), (1, 2, 2, 1), (0,) * 8),
    ((2, 5, 7, 3), (1, 2, 2, 1), (1, 2, 2, 1), (0, 0, 1, 0, 0, 1, 0, 0)),
    ((1, 7, 5, 2), (1, 3, 2, 1), (1, 3, 2, 1), (0,) * 8),
    ((9,), (2,), (2,), (3, 0)),  # the first window is all padding
    ((4, 6), (4, 3), (4, 3), (2, 2, 0, 3)),
    # windows that overlap, or leave gaps
    ((2, 7, 7, 3), (1, 3, 3, 1), (1, 2, 2, 1), (0, 0, 1, 1, 1, 1, 0, 0)),
    ((2, 6, 5, 2), (1, 2, 3, 1), (1, 1, 1, 1), (0,) * 8),
    ((11,), (2,), (3,), (4, 1)),
    ((5, 6), (3, 2), (1, 3), (2, 0, 1, 1)),
    ((5, 4), (1, 1), (2, 1), (1, 0, 0, 0)),  # one element per window: nothing is added
]
DTYPES = [np.float32, np.float16, bfloat16, np.float64, np.int32, np.uint8]


def operand(rng, shape, dtype):
    """Values from {-1, 0, 1, 2} (ties everywhere), for floats with -0.0, +-inf and NaN."""
    values = rng.integers(-1, 3, shape).astype(np.float64)
    if np.dtype(dtype).kind in "fV":
        flat = values.reshape(-1)
        spots = rng.choice(flat.size, min(flat.size, 8), replace=False)
        flat[spots] = [-0.0, np.nan, np.inf, -np.inf, np.nan, -0.0, 0.0, np.inf][: len(spots)]
    elif np.dtype(dtype).kind == "u":
        values += 1
    return values.astype(dtype)


def source(rng, shape, dtype):
    """Values with -0.0 (which lands as +0.0: the gradient is added to zeros)."""
    values = rng.integers(-3, 4, shape).astype(np.float64)
    if np.dtype(dtype).kind in "fV":
        values.reshape(-1)[:: max(1, values.size // 3)] = -0.0
    elif np.dtype(dtype).kind == "u":
        values = np.abs(values)
    return values.astype(dtype)


def graph_of(opdef, types, attrs):
    graph = Graph(opdef.name)
    args = [graph.add_input(t) for t in types]
    graph.outputs = list(graph.add(opdef, args, attrs))
    return graph


def bits(array: np.ndarray) -> np.ndarray:
    return array.view(f"u{array.dtype.itemsize}") if array.dtype.kind in "fV" else array


def both_lowerings(monkeypatch, graph, inputs):
    """(folded, windowed) XLA results of ``graph``: lowered for CPU, and as other platforms
    lower it (XLA's windowed ops)."""
    folded = run_xla(graph, inputs)
    monkeypatch.setattr(xla_nn, "FOLDED_POOLING_PLATFORMS", set())
    windowed = run_xla(graph, inputs)
    monkeypatch.setattr(xla_nn, "FOLDED_POOLING_PLATFORMS", {"cpu"})
    return folded[0], windowed[0]


CASES = list(itertools.product(GEOMETRIES, DTYPES))
IDS = [f"{g[0]}-w{g[1]}-s{g[2]}-{np.dtype(d).name}" for g, d in CASES]


@pytest.mark.parametrize("geometry, dtype", CASES, ids=IDS)
def test_select_and_scatter_add_is_the_reference_bit_for_bit(monkeypatch, geometry, dtype):
    shape, window, strides, padding = geometry
    attrs = {"window": window, "strides": strides, "padding": padding}
    x_type = TensorType(shape, dtype)
    out_type = N._reduce_window_rule((x_type,), **attrs)
    graph = graph_of(N.select_and_scatter_add, [out_type, x_type], attrs)
    rng = np.random.default_rng(7)
    inputs = [source(rng, out_type.shape, dtype), operand(rng, shape, dtype)]
    folded, windowed = both_lowerings(monkeypatch, graph, inputs)
    reference = run_graph(graph, inputs)[0]
    np.testing.assert_array_equal(bits(folded), bits(np.asarray(reference)))
    if not any(padding):
        np.testing.assert_array_equal(bits(folded), bits(windowed))


@pytest.mark.parametrize("geometry, dtype", CASES, ids=IDS)
@pytest.mark.parametrize("opdef", [N.reduce_window_max, N.reduce_window_sum], ids=lambda o: o.name)
def test_reduce_window_is_the_reference(monkeypatch, opdef, geometry, dtype):
    shape, window, strides, padding = geometry
    attrs = {"window": window, "strides": strides, "padding": padding}
    inputs = [operand(np.random.default_rng(3), shape, dtype)]
    graph = graph_of(opdef, [TensorType(shape, dtype)], attrs)
    tiled, windowed = both_lowerings(monkeypatch, graph, inputs)
    with np.errstate(invalid="ignore"):  # (inf + -inf in a window)
        reference = np.asarray(run_graph(graph, inputs)[0])
    if opdef is N.reduce_window_max:  # no rounding: every bit (NaN included) agrees
        np.testing.assert_array_equal(bits(tiled), bits(windowed))
        np.testing.assert_array_equal(bits(tiled), bits(reference))
    else:  # a sum's order is XLA's: the values agree, inf - inf = NaN included
        wide = tiled.astype(np.float64)
        np.testing.assert_array_equal(wide, windowed.astype(np.float64))
        np.testing.assert_array_equal(wide, reference.astype(np.float64))


def test_max_pool_training_gradient_matches_reference_with_ties():
    """A compiled max_pool2d gradient on tie-heavy data: the XLA step (tiled on CPU) and the
    reference interpreter route each window's gradient to the same element."""

    def loss_grad(x, w):
        h = fj.nn.max_pool2d(fj.nn.relu(x * w))  # relu: ties at 0 in most windows
        return fj.gradients((h * h).sum(), [x])[0]

    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, (2, 8, 8, 3)).astype(np.float32)
    w = np.float32(1.5)
    step = fj.compile(loss_grad)
    got = np.asarray(step(x, w))
    want = np.asarray(step.lower(x, w).run_reference(x, w)[0])
    np.testing.assert_array_equal(got, want)
    assert np.count_nonzero(got) > 0
