"""Every ``fj.nn`` function of API.md section 2 but dropout, through ``fj.compile``, against
jax.nn / jax.lax (run in float64 on the same inputs, rounded to the result dtype) or numpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from frontcheck import expect_all
from opcheck import assert_matches, rand

import flowjit as fj
import flowjit.numpy as fnp

F16, BF16, F32 = fnp.float16, fnp.bfloat16, fnp.float32
name_of = lambda d: np.dtype(d).name  # noqa: E731 (pytest ids)


def f64(x) -> np.ndarray:
    return np.asarray(x, np.float64)


# -- activations -------------------------------------------------------------------------------
ACTIVATIONS = {
    "relu": (fj.nn.relu, jax.nn.relu),
    "sigmoid": (fj.nn.sigmoid, jax.nn.sigmoid),
    "silu": (fj.nn.silu, jax.nn.silu),
    "softplus": (fj.nn.softplus, jax.nn.softplus),
    "gelu": (fj.nn.gelu, jax.nn.gelu),
    "gelu_tanh": (
        lambda x: fj.nn.gelu(x, approximate=True),
        lambda x: jax.nn.gelu(x, approximate=True),
    ),
    "gelu_erf": (
        lambda x: fj.nn.gelu(x, approximate=False),
        lambda x: jax.nn.gelu(x, approximate=False),
    ),
}


@pytest.mark.parametrize("dtype", [F32, F16, BF16], ids=name_of)
def test_activations(dtype):
    """On random inputs and on large ones, where a naive formula overflows."""
    x = rand(np.random.default_rng(), (4, 6), dtype, -5, 5)
    x[0] = [-60, -20, 0, 20, 60, -0.0]
    got = fj.compile(lambda x: {name: fn(x) for name, (fn, _) in ACTIVATIONS.items()})(x)
    want = {name: np.asarray(ref(f64(x))).astype(dtype) for name, (_, ref) in ACTIVATIONS.items()}
    expect_all(got, want, scale=2)


def test_relu_keeps_integers():
    x = rand(np.random.default_rng(), (5,), np.int32)
    got = fj.compile(lambda x: {"relu": fj.nn.relu(x), "sigmoid": fj.nn.sigmoid(x)})(x)
    expect_all(
        got,
        {
            "relu": np.asarray(jax.nn.relu(x)),
            "sigmoid": np.asarray(jax.nn.sigmoid(f64(x))).astype(np.float32),
        },
    )


# -- softmax family ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F32, F16, BF16], ids=name_of)
def test_softmax_log_softmax_logsumexp(dtype):
    rng = np.random.default_rng()
    x = rand(rng, (3, 4, 5), dtype, -4, 4)
    big = np.array([[1000, 999, -1000], [0, -np.inf, 1], [-np.inf, -np.inf, -np.inf]], dtype)

    @fj.compile
    def f(x, big):
        return {
            "softmax": fj.nn.softmax(x),
            "softmax0": fj.nn.softmax(x, axis=0),
            "softmax02": fj.nn.softmax(x, axis=(0, 2)),
            "log_softmax": fj.nn.log_softmax(x),
            "log_softmax1": fj.nn.log_softmax(x, axis=1),
            "logsumexp": fj.nn.logsumexp(x),
            "logsumexp-1": fj.nn.logsumexp(x, axis=-1),
            "logsumexp_keep": fj.nn.logsumexp(x, axis=(0, 1), keepdims=True),
            "softmax_big": fj.nn.softmax(big[:2]),
            "log_softmax_big": fj.nn.log_softmax(big[:2]),
            "logsumexp_big": fj.nn.logsumexp(big, axis=1),
        }

    w, wb = f64(x), f64(big)
    want = {
        "softmax": jax.nn.softmax(w),
        "softmax0": jax.nn.softmax(w, axis=0),
        "softmax02": jax.nn.softmax(w, axis=(0, 2)),
        "log_softmax": jax.nn.log_softmax(w),
        "log_softmax1": jax.nn.log_softmax(w, axis=1),
        "logsumexp": jax.nn.logsumexp(w),
        "logsumexp-1": jax.nn.logsumexp(w, axis=-1),
        "logsumexp_keep": jax.nn.logsumexp(w, axis=(0, 1), keepdims=True),
        "softmax_big": jax.nn.softmax(wb[:2]),
        "log_softmax_big": jax.nn.log_softmax(wb[:2]),
        "logsumexp_big": jax.nn.logsumexp(wb, axis=1),
    }
    expect_all(f(x, big), {k: np.asarray(v).astype(dtype) for k, v in want.items()}, scale=2)


def test_softmax_of_integers_is_float32():
    x = rand(np.random.default_rng(), (2, 5), np.int32)
    got = fj.compile(lambda x: {"softmax": fj.nn.softmax(x), "logsumexp": fj.nn.logsumexp(x, 1)})(x)
    expect_all(
        got,
        {
            "softmax": np.asarray(jax.nn.softmax(f64(x))).astype(np.float32),
            "logsumexp": np.asarray(jax.nn.logsumexp(f64(x), 1)).astype(np.float32),
        },
    )


def test_one_hot():
    rng = np.random.default_rng()
    labels = rng.integers(-1, 6, (2, 3)).astype(np.int32)  # -1 and 5 are out of range: all zeros

    @fj.compile
    def f(labels):
        return {
            "default": fj.nn.one_hot(labels, 5),
            "int32": fj.nn.one_hot(labels, 5, fnp.int32),
            "bf16": fj.nn.one_hot(labels[0], 4, dtype=fnp.bfloat16),
            "axis0": fj.nn.one_hot(labels, 5, axis=0),
            "axis1": fj.nn.one_hot(labels, 3, axis=1),
        }

    want = {
        "default": jax.nn.one_hot(labels, 5, dtype=jnp.float32),
        "int32": jax.nn.one_hot(labels, 5, dtype=jnp.int32),
        "bf16": jax.nn.one_hot(labels[0], 4, dtype=jnp.bfloat16),
        "axis0": jax.nn.one_hot(labels, 5, dtype=jnp.float32, axis=0),
        "axis1": jax.nn.one_hot(labels, 3, dtype=jnp.float32, axis=1),
    }
    expect_all(f(labels), {k: np.asarray(v) for k, v in want.items()})


@pytest.mark.parametrize("dtype", [F32, F16], ids=name_of)
def test_softmax_cross_entropy(dtype):
    """Per-example losses: -log_softmax(logits)[label], for one and two batch dims."""
    rng = np.random.default_rng()
    logits, labels = rand(rng, (2, 3, 7), dtype, -5, 5), rng.integers(0, 7, (2, 3))
    logits[0, 0] = [90, -90, 0, 1, 2, 3, 4]  # would overflow a naive exp

    @fj.compile
    def f(logits, labels):
        return {
            "2d": fj.nn.softmax_cross_entropy(logits[0], labels[0]),
            "3d": fj.nn.softmax_cross_entropy(logits, labels),
            "uint8_labels": fj.nn.softmax_cross_entropy(logits[1], labels[1].astype(fnp.uint8)),
        }

    logp = np.asarray(jax.nn.log_softmax(f64(logits)))
    loss = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    expect_all(
        f(logits, labels.astype(np.int32)),
        {
            "2d": loss[0].astype(dtype),
            "3d": loss.astype(dtype),
            "uint8_labels": loss[1].astype(dtype),
        },
        scale=2,
    )


def test_softmax_cross_entropy_gradient_sums_the_classes_once():
    """The gradient (softmax - one-hot label, scaled) sums over the classes once, in the
    forward pass's exp; the label's cotangent is scattered, not summed again (as optax's)."""
    logits = np.zeros((4, 5, 11), np.float32)
    labels = np.zeros((4, 5), np.int32)

    @fj.compile
    def grad_of(logits, labels):
        return fj.grad(lambda x: fj.nn.softmax_cross_entropy(x, labels).mean())(logits)

    graph = fj.ir.parse(grad_of.lower(logits, labels).ir())
    over_classes = [
        op
        for op in graph.ops
        if op.opdef.name == "reduce_sum" and op.inputs[0].type.shape == logits.shape
    ]
    assert len(over_classes) == 1
    want = jax.grad(lambda x: optax.softmax_cross_entropy_with_integer_labels(x, labels).mean())
    np.testing.assert_allclose(np.asarray(grad_of(logits, labels)), want(logits), rtol=1e-6)


# -- convolution and pooling -------------------------------------------------------------------
CONV = [  # (input shape, weight shape, stride, padding, dilation)
    ((2, 7, 6, 3), (3, 3, 3, 4), 1, "SAME", 1),
    ((2, 7, 6, 3), (3, 3, 3, 4), 1, "VALID", 1),
    ((1, 7, 6, 2), (3, 2, 2, 5), 2, "SAME", 1),
    ((1, 8, 7, 2), (2, 3, 2, 3), (2, 1), "VALID", 1),
    ((1, 9, 8, 2), (3, 3, 2, 2), 1, "SAME", 2),
    ((2, 9, 9, 1), (2, 3, 1, 3), (1, 2), "VALID", (2, 1)),
    ((1, 6, 6, 3), (1, 1, 3, 2), 1, "SAME", 1),
    ((1, 5, 6, 2), (4, 4, 2, 1), 3, "SAME", (1, 2)),
    ((1, 6, 7, 2), (3, 3, 2, 2), 1, ((1, 0), (2, 1)), 1),
]


@pytest.mark.parametrize(
    "xs,ws,stride,padding,dilation",
    CONV,
    ids=[
        f"{c[0][1]}x{c[0][2]}-k{c[1][0]}x{c[1][1]}-s{c[2]}-{c[3]}-d{c[4]}".replace(" ", "")
        for c in CONV
    ],
)
def test_conv2d(xs, ws, stride, padding, dilation):
    rng = np.random.default_rng()
    x, w = rand(rng, xs, F32), rand(rng, ws, F32)
    got = np.asarray(
        fj.compile(
            lambda x, w: fj.nn.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
        )(x, w)
    )
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    want = jax.lax.conv_general_dilated(
        f64(x),
        f64(w),
        pair(stride),
        padding,
        rhs_dilation=pair(dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    assert_matches(got, np.asarray(want).astype(np.float32), got.dtype, 4, "conv2d")


def test_conv2d_in_low_precision_and_of_integers():
    rng = np.random.default_rng()
    x, w = rand(rng, (1, 5, 5, 2), F16), rand(rng, (3, 3, 2, 2), F16)
    xi = rand(rng, (1, 5, 5, 2), np.int32)
    got = fj.compile(
        lambda x, w, xi: {
            "f16": fj.nn.conv2d(x, w),
            "int_x": fj.nn.conv2d(xi, w.astype(fnp.float32), padding="VALID"),
        }
    )(x, w, xi)
    dn = ("NHWC", "HWIO", "NHWC")
    expect_all(
        got,
        {
            "f16": np.asarray(
                jax.lax.conv_general_dilated(f64(x), f64(w), (1, 1), "SAME", dimension_numbers=dn)
            ).astype(F16),
            "int_x": np.asarray(
                jax.lax.conv_general_dilated(f64(xi), f64(w), (1, 1), "VALID", dimension_numbers=dn)
            ).astype(F32),
        },
        scale=4,
    )


POOL = [  # (input shape, window, stride, padding)
    ((2, 6, 6, 3), 2, None, "VALID"),
    ((1, 7, 7, 2), 3, 2, "VALID"),
    ((1, 7, 6, 2), 3, 2, "SAME"),
    ((2, 5, 8, 1), (2, 3), (1, 2), "VALID"),
    ((1, 5, 5, 2), 2, 1, "SAME"),
    ((1, 6, 5, 1), (3, 2), None, "SAME"),
]


def window_reduce(x: np.ndarray, init, op, window, stride, padding) -> np.ndarray:
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    window = pair(window)
    stride = window if stride is None else pair(stride)
    return np.asarray(jax.lax.reduce_window(x, init, op, (1, *window, 1), (1, *stride, 1), padding))


@pytest.mark.parametrize(
    "xs,window,stride,padding",
    POOL,
    ids=[f"{p[0][1]}x{p[0][2]}-w{p[1]}-s{p[2]}-{p[3]}".replace(" ", "") for p in POOL],
)
def test_pooling(xs, window, stride, padding):
    """max_pool2d against jax.lax.reduce_window; avg_pool2d is the window sum over the number
    of cells of the window inside the input (padded cells are not counted)."""
    rng = np.random.default_rng()
    x, xi = rand(rng, xs, F32), rand(rng, xs, np.int32)

    @fj.compile
    def f(x, xi):
        return {
            "max": fj.nn.max_pool2d(x, window, stride, padding),
            "max_int": fj.nn.max_pool2d(xi, window=window, stride=stride, padding=padding),
            "avg": fj.nn.avg_pool2d(x, window, stride, padding),
            "avg_f16": fj.nn.avg_pool2d(x.astype(fnp.float16), window, stride, padding),
        }

    args = (window, stride, padding)
    total = window_reduce(f64(x), 0.0, jax.lax.add, *args)
    count = window_reduce(np.ones_like(f64(x)), 0.0, jax.lax.add, *args)
    total16 = window_reduce(f64(x.astype(F16)), 0.0, jax.lax.add, *args)
    expect_all(
        f(x, xi),
        {
            "max": window_reduce(x, -np.inf, jax.lax.max, *args),
            "max_int": window_reduce(xi, np.int32(np.iinfo(np.int32).min), jax.lax.max, *args),
            "avg": (total / count).astype(F32),
            "avg_f16": (total16 / count).astype(F16),
        },
        scale=2,
    )


def test_avg_pool2d_of_integers_is_float32():
    xi = rand(np.random.default_rng(), (1, 4, 4, 1), np.int32)
    got = np.asarray(fj.compile(lambda x: fj.nn.avg_pool2d(x))(xi))
    want = f64(xi).reshape(1, 2, 2, 2, 2, 1).mean((2, 4)).astype(np.float32)
    assert_matches(got, want, got.dtype, 1, "avg_pool2d of int32")


# -- layer norm --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F32, F16, BF16], ids=name_of)
def test_layer_norm(dtype):
    rng = np.random.default_rng()
    x = rand(rng, (2, 3, 8), dtype, -3, 5)
    scale, bias = rand(rng, (8,), dtype, 0.5, 2), rand(rng, (8,), dtype)
    x[0, 0] = 1.5  # a constant row: zero variance, so eps matters

    @fj.compile
    def f(x, scale, bias):
        return {
            "full": fj.nn.layer_norm(x, scale, bias),
            "plain": fj.nn.layer_norm(x),
            "eps": fj.nn.layer_norm(x, scale, bias, eps=0.5),
            "scale_only": fj.nn.layer_norm(x, scale=scale),
        }

    def ref(x, scale=None, bias=None, eps=1e-5):
        w = f64(x)
        mean, var = w.mean(-1, keepdims=True), w.var(-1, keepdims=True)
        out = (w - mean) / np.sqrt(var + eps)
        out = out * f64(scale) if scale is not None else out
        return (out + f64(bias) if bias is not None else out).astype(dtype)

    expect_all(
        f(x, scale, bias),
        {
            "full": ref(x, scale, bias),
            "plain": ref(x),
            "eps": ref(x, scale, bias, 0.5),
            "scale_only": ref(x, scale),
        },
        scale=4,
    )


@pytest.mark.parametrize("dtype, ulp", [(F16, 2.0**-10), (BF16, 2.0**-7)], ids=["f16", "bf16"])
def test_layer_norm_of_low_precision_data_is_computed_in_float32(dtype, ulp):
    """Rows of mean 5 and deviation 3: centered in bfloat16 they lose most of their bits (the
    result was off by 100% of a value); in float32, as flax's LayerNorm, they are within one
    unit in the last place of the float64 result."""
    rng = np.random.default_rng(24)
    x = (rng.standard_normal((16, 256)) * 3 + 5).astype(dtype)
    got = np.asarray(fj.compile(lambda x: fj.nn.layer_norm(x))(x))
    assert got.dtype == dtype
    w = f64(x)
    want = (w - w.mean(-1, keepdims=True)) / np.sqrt(w.var(-1, keepdims=True) + 1e-5)
    relative = np.abs(f64(got) - want) / np.maximum(np.abs(want), 1e-3)
    assert relative.max() <= ulp, relative.max() / ulp


class MaskGenerator:
    """A stand-in for fj.random.Generator (issue 3) that hands out a fixed mask, so dropout's
    own arithmetic can be checked exactly."""

    def __init__(self, mask: np.ndarray):
        self.mask, self.requests = mask, []

    def bernoulli(self, p, shape):
        self.requests.append((p, shape))
        return fnp.asarray(self.mask)


def test_dropout_masks_and_rescales():
    x = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    mask = np.array([[True, False, True], [False, False, True]])
    gen = MaskGenerator(mask)

    @fj.compile
    def f(x):
        return {
            "train": fj.nn.dropout(x, 0.25, gen),
            "eval": fj.nn.dropout(x, 0.25, gen, deterministic=True),
            "none": fj.nn.dropout(x, 0.0, gen),
            "all": fj.nn.dropout(x, 1.0, gen),
        }

    out = f(x)
    np.testing.assert_allclose(out["train"], np.where(mask, x / 0.75, 0), rtol=1e-6)
    np.testing.assert_array_equal(out["eval"], x)
    np.testing.assert_array_equal(out["none"], x)
    np.testing.assert_array_equal(out["all"], np.zeros_like(x))
    assert gen.requests == [(0.75, (2, 3))]  # keep probability 1 - rate, the input's shape


def test_dropout_rejects_bad_rates_and_masks():
    gen = MaskGenerator(np.ones((3,), bool))
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\], got 1.5"):
        fj.compile(lambda x: fj.nn.dropout(x, 1.5, gen))(np.ones(3, np.float32))
    with pytest.raises(fj.ShapeError, match="needs a bool mask of shape"):
        fj.compile(lambda x: fj.nn.dropout(x, 0.5, gen))(np.ones(4, np.float32))


def test_relu_gradient_at_zero_is_zero_as_in_jax():
    x = np.array([-1.0, 0.0, 2.0], np.float32)
    got = fj.compile(fj.grad(lambda v: fj.nn.relu(v).sum()))(x)
    np.testing.assert_array_equal(
        np.asarray(got), np.asarray(jax.grad(lambda v: jax.nn.relu(v).sum())(x))
    )
    np.testing.assert_array_equal(np.asarray(got), [0.0, 0.0, 1.0])
