"""conv2d and the windowed reductions against numpy computations written independently of the
reference implementation: convolution by im2col with explicit input indices, windowed
reductions by a loop over output positions."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from opcheck import OpCase, check_case, check_grad, params, rand

from flowjit.ir import DTypeError, Graph, ShapeError, TensorType
from flowjit.ir.ops import nn as N
from flowjit.ir.ops.rules import FLOATS, NUMERIC


def out_count(size, lhs_dilation, low, high, span, stride):
    """How many windows of ``span`` fit, ``stride`` apart, in the dilated and padded axis."""
    padded = (size - 1) * lhs_dilation + 1 + low + high if size else low + high
    return len(range(0, padded - span + 1, stride))


def taps(size, kernel, stride, low, high, lhs_dilation, rhs_dilation):
    """For output position o and kernel tap i: the input index it reads and whether that is a
    real element (not padding and not a hole of the lhs dilation)."""
    count = out_count(size, lhs_dilation, low, high, (kernel - 1) * rhs_dilation + 1, stride)
    pos = np.arange(count)[:, None] * stride + np.arange(kernel)[None, :] * rhs_dilation - low
    index = pos // lhs_dilation
    valid = (pos >= 0) & (pos % lhs_dilation == 0) & (index < size)
    return np.where(valid, index, 0), valid


def conv_numpy(x, w, strides, padding, lhs_dilation, rhs_dilation, feature_group_count):
    h_index, h_valid = taps(
        x.shape[1], w.shape[0], strides[0], *padding[:2], lhs_dilation[0], rhs_dilation[0]
    )
    w_index, w_valid = taps(
        x.shape[2], w.shape[1], strides[1], *padding[2:], lhs_dilation[1], rhs_dilation[1]
    )
    # im2col: patches[n, oh, ow, i, j, c] = x[n, h_index[oh, i], w_index[ow, j], c] or 0
    patches = x[:, h_index[:, None, :, None], w_index[None, :, None, :], :]
    patches = patches * (h_valid[:, None, :, None] & w_valid[None, :, None, :])[..., None]
    groups, cg, og = feature_group_count, w.shape[2], w.shape[3] // feature_group_count
    return np.concatenate(
        [
            np.einsum(
                "nhwijc,ijco->nhwo",
                patches[..., g * cg : (g + 1) * cg],
                w[..., g * og : (g + 1) * og],
            )
            for g in range(groups)
        ],
        axis=-1,
    )


def conv(
    x_shape,
    w_shape,
    strides=(1, 1),
    padding=(0, 0, 0, 0),
    lhs_dilation=(1, 1),
    rhs_dilation=(1, 1),
    groups=1,
):
    def make(rng, dt):
        return (
            [rand(rng, x_shape, dt), rand(rng, w_shape, dt)],
            {
                "strides": strides,
                "padding": padding,
                "lhs_dilation": lhs_dilation,
                "rhs_dilation": rhs_dilation,
                "feature_group_count": groups,
            },
        )

    return make


def window_numpy(reduction):
    def expected(x, window, strides, padding):
        low, high = padding[0::2], padding[1::2]
        shape = [
            out_count(d, 1, lo, hi, k, s)
            for d, lo, hi, k, s in zip(x.shape, low, high, window, strides)
        ]
        # wide accumulators; integer sums wrap when cast back, as the op's do
        out = np.zeros(shape, np.float64 if x.dtype.kind == "f" else np.int64)
        for index in itertools.product(*map(range, shape)):
            starts = [o * s - lo for o, s, lo in zip(index, strides, low)]
            inside = x[tuple(slice(max(a, 0), max(a + k, 0)) for a, k in zip(starts, window))]
            pads = inside.size < np.prod(window)  # the window reaches into the padding
            if reduction == "sum":
                out[index] = inside.sum(dtype=out.dtype)
            else:
                least = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
                out[index] = np.max(inside, initial=least) if pads else inside.max()
        return out.astype(x.dtype)

    return expected


def pool(x_shape, window, strides, padding, low=-3, high=3):
    return lambda rng, dt: (
        [rand(rng, x_shape, dt, low, high)],
        {"window": window, "strides": strides, "padding": padding},
    )


CONV_CASES = [
    OpCase(
        N.conv2d, FLOATS, conv((2, 5, 5, 3), (3, 3, 3, 4)), conv_numpy, name="conv2d", tol_scale=4
    ),  # 27-term sums: float32 rounding of the partial sums adds up
    OpCase(
        N.conv2d,
        FLOATS,
        conv((1, 6, 7, 2), (3, 2, 2, 3), strides=(2, 3), padding=(1, 2, 0, 1)),
        conv_numpy,
        name="conv2d_stride_padding",
    ),
    OpCase(
        N.conv2d,
        FLOATS,
        conv((1, 7, 6, 2), (2, 3, 2, 2), padding=(1, 1, 1, 1), rhs_dilation=(2, 2)),
        conv_numpy,
        name="conv2d_rhs_dilation",
    ),
    OpCase(
        N.conv2d,
        FLOATS,
        conv((1, 3, 4, 2), (2, 2, 2, 3), padding=(1, 1, 2, 0), lhs_dilation=(2, 3)),
        conv_numpy,
        name="conv2d_lhs_dilation",
    ),
    OpCase(
        N.conv2d,
        FLOATS,
        conv((2, 4, 4, 4), (2, 2, 2, 6), groups=2),
        conv_numpy,
        name="conv2d_groups",
    ),
    OpCase(
        N.conv2d,
        FLOATS,
        conv((1, 4, 5, 3), (3, 3, 1, 3), padding=(1, 1, 1, 1), groups=3),
        conv_numpy,
        name="conv2d_depthwise",
    ),
    OpCase(
        N.conv2d,
        FLOATS,
        conv((1, 6, 6, 1), (2, 2, 1, 2), padding=(-1, 0, 0, -2)),
        conv_numpy,
        name="conv2d_negative_padding",
    ),
    OpCase(
        N.conv2d,
        FLOATS,
        conv((1, 2, 2, 1), (3, 3, 1, 1), strides=(2, 2)),
        conv_numpy,
        name="conv2d_empty_output",
    ),
]

WINDOW_CASES = [
    case
    for opdef, reduction in ((N.reduce_window_max, "max"), (N.reduce_window_sum, "sum"))
    for case in (
        OpCase(
            opdef,
            NUMERIC,
            pool((1, 6, 6, 2), (1, 2, 2, 1), (1, 2, 2, 1), (0,) * 8),
            window_numpy(reduction),
            name=f"{opdef.name}_pool",
        ),
        OpCase(
            opdef,
            NUMERIC,
            pool((2, 5, 5, 3), (1, 3, 3, 1), (1, 2, 2, 1), (0, 0, 1, 1, 1, 1, 0, 0)),
            window_numpy(reduction),
            name=f"{opdef.name}_padded_overlapping",
        ),
        # the first window lies wholly in the padding: max gives -inf (the least integer)
        OpCase(
            opdef,
            NUMERIC,
            pool((7,), (3,), (2,), (3, 2)),
            window_numpy(reduction),
            name=f"{opdef.name}_1d",
        ),
        OpCase(
            opdef,
            NUMERIC,
            pool((3, 4), (3, 2), (1, 1), (0, 0, 0, 0), low=-100, high=100),
            window_numpy(reduction),
            name=f"{opdef.name}_full_range",
        ),
        # windows that tile the input (stride == window), lowered as reshape + reduce on CPU:
        # with padding, with a rest that VALID drops, and a window wholly in the padding
        OpCase(
            opdef,
            NUMERIC,
            pool((2, 5, 7, 3), (1, 2, 2, 1), (1, 2, 2, 1), (0, 0, 1, 0, 0, 1, 0, 0)),
            window_numpy(reduction),
            name=f"{opdef.name}_tiled_padded",
        ),
        OpCase(
            opdef,
            NUMERIC,
            pool((1, 7, 5, 2), (1, 3, 2, 1), (1, 3, 2, 1), (0,) * 8),
            window_numpy(reduction),
            name=f"{opdef.name}_tiled_rest",
        ),
        OpCase(
            opdef,
            NUMERIC,
            pool((5,), (2,), (2,), (3, 0)),
            window_numpy(reduction),
            name=f"{opdef.name}_tiled_1d",
        ),
    )
]


@pytest.mark.parametrize("case, dtype", params(CONV_CASES + WINDOW_CASES))
def test_op_against_numpy(case, dtype):
    check_case(case, dtype)


def conv_attrs(
    strides=(1, 1), padding=(0, 0, 0, 0), lhs_dilation=(1, 1), rhs_dilation=(1, 1), groups=1
):
    return {
        "strides": strides,
        "padding": padding,
        "lhs_dilation": lhs_dilation,
        "rhs_dilation": rhs_dilation,
        "feature_group_count": groups,
    }


def window_attrs(window, strides, padding):
    return {"window": window, "strides": strides, "padding": padding}


BAD = [
    (
        N.conv2d,
        [(1, 5, 5, 3), (3, 3, 2, 4)],
        conv_attrs(),
        ShapeError,
        r"input \(1, 5, 5, 3\) \(NHWC\) with kernel \(3, 3, 2, 4\) .* input channels 3 must equal",
    ),
    (
        N.conv2d,
        [(1, 5, 5, 4), (3, 3, 2, 3)],
        conv_attrs(groups=2),
        ShapeError,
        "out-channels 3 must be divisible by 2",
    ),
    (
        N.conv2d,
        [(1, 5, 5, 3), (3, 3, 3, 4)],
        conv_attrs(groups=0),
        ShapeError,
        "feature_group_count=0",
    ),
    (N.conv2d, [(5, 5, 3), (3, 3, 3, 4)], conv_attrs(), ShapeError, r"rank 4 .* \(5, 5, 3\)"),
    (N.conv2d, [(1, 5, 5, 3), (0, 3, 3, 4)], conv_attrs(), ShapeError, "empty window"),
    (
        N.conv2d,
        [(1, 5, 5, 3), (3, 3, 3, 4)],
        conv_attrs(strides=(1,)),
        ShapeError,
        r"strides=\(1,\) has 1 entries; expected 2",
    ),
    (
        N.conv2d,
        [(1, 5, 5, 3), (3, 3, 3, 4)],
        conv_attrs(rhs_dilation=(0, 1)),
        ShapeError,
        "below 1",
    ),
    (
        N.conv2d,
        [(1, 5, 5, 3), (3, 3, 3, 4)],
        conv_attrs(padding=(1, 1)),
        ShapeError,
        "low_h, high_h, low_w, high_w",
    ),
    (
        N.reduce_window_max,
        [(4, 4)],
        window_attrs((2,), (1, 1), (0,) * 4),
        ShapeError,
        r"window=\(2,\) has 1 entries; expected 2 \(one per dim of \(4, 4\)\)",
    ),
    (
        N.reduce_window_sum,
        [(4, 4)],
        window_attrs((2, 2), (1, 1), (0,) * 2),
        ShapeError,
        "low and high per dim",
    ),
    (N.reduce_window_sum, [(4, 4)], window_attrs((2, 2), (0, 1), (0,) * 4), ShapeError, "below 1"),
    (
        N.reduce_window_max,
        [(4, 4)],
        window_attrs((2, 2), (1, 1), (0, 0, -1, 0)),
        ShapeError,
        "below 0",
    ),
]


@pytest.mark.parametrize(
    "opdef, shapes, attrs, error, message", BAD, ids=[f"{b[0].name}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_shapes_raise(opdef, shapes, attrs, error, message):
    graph = Graph()
    args = [graph.add_input(TensorType(s, np.float32)) for s in shapes]
    with pytest.raises(error, match=message):
        graph.add(opdef, args, attrs)


@pytest.mark.parametrize(
    "opdef, dtypes, attrs, message",
    [
        (N.conv2d, (np.int32, np.int32), conv_attrs(), "dtype i32; expected one of f16"),
        (N.conv2d, (np.float32, np.float16), conv_attrs(), "different dtypes f32, f16"),
        (
            N.reduce_window_sum,
            (np.bool_,),
            window_attrs((1,) * 4, (1,) * 4, (0,) * 8),
            "dtype bool; expected one of",
        ),
    ],
)
def test_bad_dtypes_raise(opdef, dtypes, attrs, message):
    graph = Graph()
    args = [graph.add_input(TensorType((1, 3, 3, 1), dt)) for dt in dtypes]
    with pytest.raises(DTypeError, match=message):
        graph.add(opdef, args, attrs)


def select_and_scatter_numpy(source, operand, window, strides, padding):
    """Pad with -inf, take each window's np.argmax (the first largest), add the source there,
    then drop the padding (a window wholly in the padding adds nowhere)."""
    low, high = padding[0::2], padding[1::2]
    wide = np.float64 if operand.dtype.kind in "fV" else np.int64
    padded = np.pad(operand.astype(np.float64), list(zip(low, high)), constant_values=-np.inf)
    out = np.zeros(padded.shape, wide)
    for index in np.ndindex(source.shape):
        corner = [o * s for o, s in zip(index, strides)]
        block = padded[tuple(slice(c, c + k) for c, k in zip(corner, window))]
        at = np.unravel_index(np.argmax(block), block.shape)
        out[tuple(c + a for c, a in zip(corner, at))] += source[index]
    inner = out[tuple(slice(lo, lo + d) for lo, d in zip(low, operand.shape))]
    return inner.astype(source.dtype)


def scatter(operand_shape, window, strides, padding):
    def make(rng, dt):
        source_shape = tuple(
            out_count(d, 1, padding[2 * i], padding[2 * i + 1], window[i], strides[i])
            for i, d in enumerate(operand_shape)
        )
        # distinct operand values: the largest of each window is unique
        values = rng.permutation(np.prod(operand_shape)).reshape(operand_shape) % 100 - 50
        operand = values.astype(dt) if np.dtype(dt).kind in "fVi" else (values + 50).astype(dt)
        return (
            [rand(rng, source_shape, dt, 0, 3), operand],
            {"window": window, "strides": strides, "padding": padding},
        )

    return make


def ge_selection_numpy(source, operand, window, strides, padding):
    """XLA's SelectAndScatter with a GE select, NaN included: each window's elements (not
    the padding) are folded with ``keep the one so far if it is >= the next``, and the
    source is added at the survivor."""
    low = padding[0::2]
    out = np.zeros(operand.shape, np.float64)
    for index in np.ndindex(source.shape):
        spots = [
            at
            for offset in np.ndindex(*window)
            if all(
                0
                <= (
                    at := tuple(o * s + k - lo for o, s, k, lo in zip(index, strides, offset, low))
                )[d]
                < operand.shape[d]
                for d in range(operand.ndim)
            )
        ]
        if spots:
            chosen = functools.reduce(lambda a, b: a if operand[a] >= operand[b] else b, spots)
            out[chosen] += source[index]
    return out.astype(source.dtype)


def with_nans(make):
    """``make`` with a NaN and an infinity or two in the operand."""

    def nans(rng, dt):
        (source, operand), attrs = make(rng, dt)
        operand = operand.copy()
        flat = operand.reshape(-1)
        flat[rng.choice(flat.size, 3, replace=False)] = [np.nan, np.inf, -np.inf]
        return [source, operand], attrs

    return nans


def tied(make):
    """``make`` with operand values drawn from {0, 1, 2}: most windows have tied maxima."""

    def ties(rng, dt):
        (source, operand), attrs = make(rng, dt)
        return [source, rng.integers(0, 3, operand.shape).astype(operand.dtype)], attrs

    return ties


SCATTER_CASES = [
    OpCase(
        N.select_and_scatter_add,
        FLOATS,
        with_nans(scatter((7,), (3,), (2,), (3, 2))),
        ge_selection_numpy,
        name="select_and_scatter_add_nan",
    ),
    OpCase(
        N.select_and_scatter_add,
        NUMERIC,
        scatter((2, 5, 5, 3), (1, 3, 3, 1), (1, 2, 2, 1), (0, 0, 1, 1, 1, 1, 0, 0)),
        select_and_scatter_numpy,
        name="select_and_scatter_add",
    ),
    OpCase(
        N.select_and_scatter_add,
        NUMERIC,
        scatter((7,), (3,), (2,), (3, 2)),
        select_and_scatter_numpy,
        name="select_and_scatter_add_1d",
    ),
    # windows that tile the operand (stride == window), lowered as selects on CPU
    OpCase(
        N.select_and_scatter_add,
        NUMERIC,
        tied(scatter((2, 6, 6, 3), (1, 2, 2, 1), (1, 2, 2, 1), (0,) * 8)),
        ge_selection_numpy,
        name="select_and_scatter_add_tiled_ties",
    ),
    OpCase(
        N.select_and_scatter_add,
        NUMERIC,
        tied(scatter((2, 5, 7, 3), (1, 3, 2, 1), (1, 3, 2, 1), (0, 0, 1, 0, 0, 1, 0, 0))),
        ge_selection_numpy,
        name="select_and_scatter_add_tiled_padded_ties",
    ),
    OpCase(
        N.select_and_scatter_add,
        FLOATS,
        with_nans(scatter((3, 7, 5), (1, 2, 2), (1, 2, 2), (0, 0, 0, 1, 1, 0))),
        ge_selection_numpy,
        name="select_and_scatter_add_tiled_nan",
    ),
    OpCase(
        N.select_and_scatter_add,
        NUMERIC,
        scatter((5,), (2,), (2,), (3, 0)),
        select_and_scatter_numpy,
        name="select_and_scatter_add_tiled_1d",
    ),
]


@pytest.mark.parametrize("case, dtype", params(SCATTER_CASES))
def test_select_and_scatter_add_against_numpy(case, dtype):
    check_case(case, dtype)


def distinct(make):
    """``make``'s inputs with the values replaced by distinct ones 0.05 apart, so each window
    has one clear maximum (finite differences of max need that); windows wholly in the padding
    (whose max is -inf) get a real element by trimming the low padding."""

    def grad_make(rng, dt):
        (x,), attrs = make(rng, dt)
        x = (rng.permutation(x.size).reshape(x.shape) * 0.05 - 2).astype(dt)
        padding = list(attrs["padding"])
        for i in range(x.ndim):
            padding[2 * i] = min(padding[2 * i], attrs["window"][i] - 1)
        return [x], {**attrs, "padding": tuple(padding)}

    return grad_make


for case in WINDOW_CASES:
    if case.opdef is N.reduce_window_max:
        case.grad_make = distinct(case.make)

GRAD_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


@pytest.mark.parametrize(
    "case, dtype",
    [p for p in params(CONV_CASES + WINDOW_CASES) if p.values[1] in GRAD_DTYPES],
)
def test_gradient(case, dtype):
    check_grad(case, dtype)


def test_second_order_max_pool_gradient_says_unsupported():
    import flowjit as fj

    def pooled_grad_norm(x):
        (gx,) = fj.gradients(fj.nn.max_pool2d(x, 2).sum(), [x])  # a select_and_scatter_add
        return fj.gradients((gx * gx).sum(), [x])[0]

    with pytest.raises(ShapeError, match="select_and_scatter_add.*second-order"):
        fj.compile(pooled_grad_norm)(np.ones((1, 4, 4, 1), np.float32))
