"""dot_general for every numeric dtype: matmul, batched matmul, vector dot, outer product and
an einsum with several contracting dims and a batch dim that is not leading."""

from __future__ import annotations

import numpy as np
import pytest
from jax import lax
from ml_dtypes import bfloat16
from opcheck import OpCase, check_case, check_grad, jitted, params, rand

from flowjit.ir import DTypeError, Graph, ShapeError, TensorType
from flowjit.ir.grad import backward
from flowjit.ir.ops import linalg as L
from flowjit.ir.ops.rules import FLOATS, NUMERIC


def dot(lhs_shape, rhs_shape, lc=(), rc=(), lb=(), rb=()):
    """Operands small enough that no integer dtype overflows: |sum| <= 4 * K <= 127 for K <= 31."""

    def make(rng, dt):
        return (
            [rand(rng, lhs_shape, dt, -2, 2), rand(rng, rhs_shape, dt, -2, 2)],
            {"lhs_contracting": lc, "rhs_contracting": rc, "lhs_batch": lb, "rhs_batch": rb},
        )

    return make


def einsum(spec):
    return lambda a, b, **dims: np.einsum(spec, a, b)


CASES = [
    OpCase(
        L.dot_general, NUMERIC, dot((3, 4), (4, 5), (1,), (0,)), einsum("mk,kn->mn"), name="matmul"
    ),
    OpCase(
        L.dot_general,
        NUMERIC,
        dot((4, 3), (4, 5), (0,), (0,)),
        einsum("km,kn->mn"),
        name="matmul_transposed_lhs",
    ),
    OpCase(
        L.dot_general,
        NUMERIC,
        dot((2, 3, 4), (2, 4, 5), (2,), (1,), (0,), (0,)),
        einsum("bmk,bkn->bmn"),
        name="batched_matmul",
    ),
    OpCase(L.dot_general, NUMERIC, dot((6,), (6,), (0,), (0,)), einsum("k,k->"), name="vector_dot"),
    OpCase(L.dot_general, NUMERIC, dot((3,), (4,)), einsum("m,n->mn"), name="outer"),
    # einsum "pbmq,qnbp->bmn": two contracting dims in opposite orders, batch dim in the middle
    OpCase(
        L.dot_general,
        NUMERIC,
        dot((3, 2, 4, 5), (5, 6, 2, 3), (0, 3), (3, 0), (1,), (2,)),
        einsum("pbmq,qnbp->bmn"),
        name="einsum",
    ),
    OpCase(
        L.dot_general,
        NUMERIC,
        dot((2, 3), (3, 2), (-1,), (-2,)),
        einsum("mk,kn->mn"),
        name="matmul_negative_dims",
    ),
    # attention's projections: a (in, heads, depth) kernel, and back from (heads, depth)
    OpCase(
        L.dot_general,
        NUMERIC,
        dot((2, 3, 4), (4, 2, 3), (2,), (0,)),
        einsum("bsd,dhk->bshk"),
        name="heads_projection",
    ),
    OpCase(
        L.dot_general,
        NUMERIC,
        dot((2, 3, 2, 3), (2, 3, 4), (2, 3), (0, 1)),
        einsum("bshk,hkd->bsd"),
        name="heads_output",
    ),
]


# -- edge values: what jax.jit gives is the meaning (docs/ir-format.md, "Edge values") -------
def signed_zero_products(lhs_shape, rhs_shape, lc=(), rc=(), lb=(), rb=(), negative=False):
    """Operands mostly zeros of either sign times +-1 and +-2 (now and then a zero, an
    infinity or NaN), so that many results sum products that are all -0.0; with
    ``negative``, -0.0s times 1s: every product is -0.0."""

    def make(rng, dt):
        lhs = rng.choice([-0.0, 0.0, 1.0, np.inf], size=lhs_shape, p=[0.5, 0.3, 0.1, 0.1])
        rhs = rng.choice([1.0, -1.0, 2.0, 0.0, np.nan], size=rhs_shape, p=[0.4, 0.3, 0.1, 0.1, 0.1])
        if negative:
            lhs, rhs = np.full(lhs_shape, -0.0), np.ones(rhs_shape)
        return [lhs.astype(dt), rhs.astype(dt)], dims(lc, rc, lb, rb)

    return make


def jax_dot_general(a, b, lhs_contracting, rhs_contracting, lhs_batch, rhs_batch):
    dimension_numbers = ((lhs_contracting, rhs_contracting), (lhs_batch, rhs_batch))
    return lax.dot_general(a, b, dimension_numbers, precision=lax.Precision.HIGHEST)


def edge_case(name, *shapes_and_dims, negative=False) -> OpCase:
    make = signed_zero_products(*shapes_and_dims, negative=negative)
    return OpCase(L.dot_general, FLOATS, make, jitted(jax_dot_general), name, edges=True)


# A sum of one product is that product (-0.0 stays); of more, a zero sum is 0.0. (Not
# [1, K] x [K, N] with N <= 4, whose zero sign XLA:CPU leaves to the kernel it picks.)
EDGE_CASES = [
    edge_case("dot_edges_outer", (4,), (3,)),
    edge_case("dot_edges_one_term", (4, 1), (1, 3), (1,), (0,)),
    edge_case("dot_edges_one_term_batched", (2, 3, 1), (2, 1, 4), (2,), (1,), (0,), (0,)),
    edge_case("dot_edges_vector_one_term", (1,), (1,), (0,), (0,)),
    edge_case("dot_edges_many_terms", (4, 3), (3, 5), (1,), (0,)),
    edge_case("dot_edges_vector", (5,), (5,), (0,), (0,)),
    # (XLA computes some dots of such constants as -0.0 at compile time)
    edge_case("dot_edges_vector_negative", (3,), (3,), (0,), (0,), negative=True),
    edge_case("dot_edges_negative", (2, 3), (3, 2), (1,), (0,), negative=True),
    edge_case("dot_edges_no_terms", (3, 0), (0, 2), (1,), (0,)),
]


@pytest.mark.parametrize("case, dtype", params(CASES + EDGE_CASES))
def test_op_against_numpy(case, dtype):
    check_case(case, dtype)


def dims(lc=(), rc=(), lb=(), rb=()):
    return {"lhs_contracting": lc, "rhs_contracting": rc, "lhs_batch": lb, "rhs_batch": rb}


BAD = [
    (
        (128, 784),
        (785, 10),
        dims((1,), (0,)),
        r"cannot contract shapes \(128, 784\) and \(785, 10\): 784 != 785",
    ),
    (
        (2, 3, 4),
        (5, 4, 6),
        dims((2,), (1,), (0,), (0,)),
        r"cannot batch shapes \(2, 3, 4\) and \(5, 4, 6\): 2 != 5",
    ),
    ((3, 4), (4, 5), dims((1,), ()), r"lhs_contracting=\(1,\) and rhs_contracting=\(\) must have"),
    ((3, 4), (4, 5), dims((), (), (0,), ()), "lhs_batch=.* and rhs_batch=.* must have"),
    ((3, 4), (4, 5), dims((2,), (0,)), r"lhs contracting and batch dims \(2,\) are out of range"),
    ((3, 4), (4, 5), dims((1,), (-3,)), r"rhs .* out of range for rhs shape \(4, 5\)"),
    ((), (4,), dims((0,), (0,)), r"out of range for lhs shape \(\)"),
    ((4, 4), (4, 4), dims((1,), (0,), (1,), (1,)), r"lhs .* \(1, 1\) repeat an axis"),
]


@pytest.mark.parametrize("lhs, rhs, attrs, message", BAD)
def test_bad_shapes_raise(lhs, rhs, attrs, message):
    graph = Graph()
    args = [graph.add_input(TensorType(s, np.float32)) for s in (lhs, rhs)]
    with pytest.raises(ShapeError, match=message):
        graph.add(L.dot_general, args, attrs)


@pytest.mark.parametrize(
    "lhs, rhs, message",
    [
        (np.float32, np.float16, "different dtypes f32, f16"),
        (np.bool_, np.bool_, "dtype bool; expected one of"),
    ],
)
def test_bad_dtypes_raise(lhs, rhs, message):
    graph = Graph()
    args = [graph.add_input(TensorType((2,), lhs)), graph.add_input(TensorType((2,), rhs))]
    with pytest.raises(DTypeError, match=message):
        graph.add(L.dot_general, args, dims((0,), (0,)))


GRAD_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


@pytest.mark.parametrize("case, dtype", [p for p in params(CASES) if p.values[1] in GRAD_DTYPES])
def test_gradient(case, dtype):
    check_grad(case, dtype)


@pytest.mark.parametrize(
    "lhs, rhs, attrs",
    [
        ((8, 3, 4), (4, 5), dims((2,), (0,))),  # a dense layer: activations . kernel
        ((4, 3), (4, 5), dims((0,), (0,))),  # a transposed lhs
        ((8, 3, 4), (4, 2, 3), dims((2,), (0,))),  # heads_projection
        ((8, 3, 2, 3), (2, 3, 4), dims((2, 3), (0, 1))),  # heads_output
    ],
)
def test_gradient_of_a_kernel_has_no_transpose(lhs, rhs, attrs):
    """In bfloat16 each operand's cotangent is one dot_general already in the operand's axis
    order: a transpose after a bfloat16 product (summed in float32, then rounded) stays in
    XLA's program as a pass over the kernel's gradient. In float32 the kernel's is jax's
    (the product of g with the activations, transposed where needed), which XLA folds."""
    for dtype in (bfloat16, np.dtype(np.float32)):
        graph = Graph()
        a, b = (graph.add_input(TensorType(s, dtype)) for s in (lhs, rhs))
        (out,) = graph.add(L.dot_general, [a, b], attrs)
        ct = graph.add_input(out.type)
        forward = list(graph.ops)
        cts = backward(graph, forward, {out: ct})
        added = [op.opdef for op in graph.ops[len(forward) :]]
        assert (cts[a].type, cts[b].type) == (a.type, b.type)
        if dtype == bfloat16:
            assert added == [L.dot_general] * 2
        else:  # (jax's form: the second product in g's order, where it differs a transpose)
            assert added.count(L.dot_general) == 2 and len(added) <= 4, added
