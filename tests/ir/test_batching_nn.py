"""Batching rules of ir/ops/nn.py (conv2d, the windowed reductions and their gradient,
select_and_scatter_add): ``fj.vmap`` of the op, compiled with XLA, against jax run on one
example at a time and stacked, for each set of batched operands, batch sizes 1 and 3 and
several attribute settings; the rules are vectorized (one op for the batch, no loop); and the
per-example gradients of a small conv net against ``jax.vmap(jax.grad(...))``."""

from __future__ import annotations

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flowjit.compiler.trace import emit
from flowjit.ir.ops import nn as N
from jax import lax
from opcheck import rand

import flowjit as fj

HIGHEST = lax.Precision.HIGHEST
SIZES = [1, 3]


def operand_sets(count: int) -> list[tuple[bool, ...]]:
    """Every non-empty choice of batched operands among ``count``."""
    return [flags for flags in itertools.product([False, True], repeat=count) if any(flags)]


def flags_id(names: tuple[str, ...]):
    return lambda flags: "+".join(n for n, f in zip(names, flags) if f)


def batched_args(rng, shapes, flags, size, make):
    """An operand per shape: stacked along a new first axis for ``size`` examples where
    flagged, one shared by all of them otherwise."""
    return [make(rng, (size, *s) if f else s) for s, f in zip(shapes, flags)]


def per_example(fn, args, flags, size):
    """``fn`` (a jax function) run on example i's operands for each i, stacked."""
    return np.stack(
        [np.asarray(fn(*(a[i] if f else a for a, f in zip(args, flags)))) for i in range(size)]
    )


def vmapped(opdef, args, flags, attrs):
    """``opdef`` on one example, fj.vmap-ed over the flagged operands inside fj.compile."""
    in_axes = tuple(0 if f else None for f in flags)
    example = lambda *xs: emit(opdef, list(xs), **attrs)
    return np.asarray(fj.compile(lambda *xs: fj.vmap(example, in_axes=in_axes)(*xs))(*args))


def traced_ops(fn, *args) -> list[str]:
    """The op names of ``fn``'s traced graph, in order."""
    text = fj.compile(fn).lower(*args).ir("traced")
    return re.findall(r"= ([a-z_0-9]+)\b", text)


# -- conv2d -----------------------------------------------------------------------------------
# (x shape NHWC, kernel shape HWIO, attributes)
CONVS = {
    "plain": ((2, 5, 5, 3), (3, 3, 3, 4), {}),
    "stride_padding": ((1, 6, 7, 2), (3, 2, 2, 3), {"strides": (2, 3), "padding": (1, 2, 0, 1)}),
    "rhs_dilation": ((2, 7, 6, 2), (2, 3, 2, 2), {"padding": (1, 1, 1, 1), "rhs_dilation": (2, 2)}),
    "lhs_dilation": ((1, 3, 4, 2), (2, 2, 2, 3), {"padding": (1, 1, 2, 0), "lhs_dilation": (2, 3)}),
    "groups": ((2, 4, 4, 4), (2, 2, 2, 6), {"feature_group_count": 2}),
    "groups_strided": (
        (2, 6, 5, 6),
        (3, 2, 2, 9),
        {"feature_group_count": 3, "strides": (2, 1), "padding": (1, 0, 0, 1)},
    ),
    "depthwise": ((1, 4, 5, 3), (3, 3, 1, 3), {"padding": (1, 1, 1, 1), "feature_group_count": 3}),
    "negative_padding": ((1, 6, 6, 1), (2, 2, 1, 2), {"padding": (-1, 0, 0, -2)}),
}


def conv_attrs(**given) -> dict:
    attrs = {
        "strides": (1, 1),
        "padding": (0, 0, 0, 0),
        "lhs_dilation": (1, 1),
        "rhs_dilation": (1, 1),
        "feature_group_count": 1,
    }
    return {**attrs, **given}


def jax_conv(x, w, strides, padding, lhs_dilation, rhs_dilation, feature_group_count):
    return lax.conv_general_dilated(
        x,
        w,
        strides,
        list(zip(padding[0::2], padding[1::2])),
        lhs_dilation,
        rhs_dilation,
        ("NHWC", "HWIO", "NHWC"),
        feature_group_count,
        precision=HIGHEST,
    )


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("flags", operand_sets(2), ids=flags_id(("x", "w")))
@pytest.mark.parametrize("name", CONVS)
def test_conv2d_batch(name, flags, size):
    x_shape, w_shape, given = CONVS[name]
    attrs = conv_attrs(**given)
    rng = np.random.default_rng()
    args = batched_args(rng, (x_shape, w_shape), flags, size, lambda r, s: rand(r, s, np.float32))
    got = vmapped(N.conv2d, args, flags, attrs)
    want = per_example(lambda x, w: jax_conv(x, w, **attrs), args, flags, size)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("flags", operand_sets(2), ids=flags_id(("x", "w")))
def test_conv2d_batch_is_one_conv(flags):
    """The whole batch in one conv2d, whichever operands are batched: no loop over it."""
    x_shape, w_shape, given = CONVS["groups"]
    attrs = conv_attrs(**given)
    args = batched_args(None, (x_shape, w_shape), flags, 3, lambda r, s: np.ones(s, np.float32))
    in_axes = tuple(0 if f else None for f in flags)
    example = lambda x, w: emit(N.conv2d, [x, w], **attrs)
    ops = traced_ops(lambda *xs: fj.vmap(example, in_axes=in_axes)(*xs), *args)
    assert ops.count("conv2d") == 1 and "scan" not in ops, ops


def test_conv2d_batch_of_no_examples():
    x, w = np.ones((0, 1, 4, 4, 2), np.float32), np.ones((0, 2, 2, 2, 3), np.float32)
    example = lambda x, w: emit(N.conv2d, [x, w], **conv_attrs())
    got = fj.compile(lambda x, w: fj.vmap(example)(x, w))(x, w)
    assert got.shape == (0, 1, 3, 3, 3)


def test_conv2d_batch_on_another_axis():
    """in_axes other than 0: the batch axis is moved first before the rule sees it."""
    rng = np.random.default_rng()
    x, w = rand(rng, (2, 5, 5, 4, 4), np.float32), rand(rng, (3, 3, 4, 2, 4), np.float32)
    attrs = conv_attrs(padding=(1, 1, 0, 0), feature_group_count=2)
    example = lambda x, w: emit(N.conv2d, [x, w], **attrs)
    got = fj.compile(lambda x, w: fj.vmap(example, in_axes=(3, 2))(x, w))(x, w)
    want = np.stack([jax_conv(x[:, :, :, i], w[:, :, i], **attrs) for i in range(4)])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# -- windowed reductions ------------------------------------------------------------------------
# (x shape, window, strides, padding)
WINDOWS = {
    "pool": ((1, 6, 6, 2), (1, 2, 2, 1), (1, 2, 2, 1), (0,) * 8),
    "padded_overlapping": ((2, 5, 5, 3), (1, 3, 3, 1), (1, 2, 2, 1), (0, 0, 1, 1, 1, 1, 0, 0)),
    "window_over_n": ((3, 4, 4, 1), (2, 2, 2, 1), (1, 2, 2, 1), (0, 1, 0, 0, 0, 0, 0, 0)),
    "1d": ((7,), (3,), (2,), (2, 1)),
    "tiled_padded": ((2, 5, 7, 3), (1, 2, 2, 1), (1, 2, 2, 1), (0, 0, 1, 0, 0, 1, 0, 0)),
}
REDUCTIONS = {
    N.reduce_window_max: (
        lax.max,
        lambda dtype: -np.inf if dtype.kind == "f" else np.iinfo(dtype).min,
    ),
    N.reduce_window_sum: (lax.add, lambda dtype: 0),
}


def window_pairs(padding):
    return list(zip(padding[0::2], padding[1::2]))


def window_counts(shape, window, strides, padding) -> tuple[int, ...]:
    """The shape of the windows (a pooling's result, its gradient's source), from jax."""
    pool = lambda o: lax.reduce_window(o, 0.0, lax.add, window, strides, window_pairs(padding))
    return jax.eval_shape(pool, jax.ShapeDtypeStruct(shape, np.float32)).shape


@pytest.mark.parametrize("dtype", [np.float32, np.int32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", WINDOWS)
@pytest.mark.parametrize("opdef", REDUCTIONS, ids=lambda op: op.name)
def test_reduce_window_batch(opdef, name, size, dtype):
    shape, window, strides, padding = WINDOWS[name]
    combine, init = REDUCTIONS[opdef]
    attrs = {"window": window, "strides": strides, "padding": padding}
    rng = np.random.default_rng()
    (x,) = batched_args(rng, (shape,), (True,), size, lambda r, s: rand(r, s, dtype))
    got = vmapped(opdef, [x], (True,), attrs)

    def reference(x):
        start = np.asarray(init(x.dtype), x.dtype)
        return lax.reduce_window(x, start, combine, window, strides, window_pairs(padding))

    want = per_example(reference, [x], (True,), size)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def jax_select_and_scatter_add(source, operand, window, strides, padding):
    """jax's gradient of a max pooling: the source goes to each window's largest element."""
    pool = lambda o: lax.reduce_window(o, -np.inf, lax.max, window, strides, window_pairs(padding))
    return jax.vjp(pool, operand)[1](source)[0]


def distinct(rng, shape):
    """Values that differ within every window (ties would make the selection a matter of
    tie-breaking, tested in test_ops_nn.py), in float32."""
    count = int(np.prod(shape))
    return (rng.permutation(count).reshape(shape) % 997 - 400).astype(np.float32) / 8


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("flags", operand_sets(2), ids=flags_id(("source", "operand")))
@pytest.mark.parametrize("name", WINDOWS)
def test_select_and_scatter_add_batch(name, flags, size):
    shape, window, strides, padding = WINDOWS[name]
    attrs = {"window": window, "strides": strides, "padding": padding}
    windows = window_counts(shape, window, strides, padding)
    rng = np.random.default_rng()
    source = rand(rng, (size, *windows) if flags[0] else windows, np.float32, 0, 3)
    operand = distinct(rng, (size, *shape) if flags[1] else shape)
    got = vmapped(N.select_and_scatter_add, [source, operand], flags, attrs)
    want = per_example(
        lambda s, o: jax_select_and_scatter_add(s, o, **attrs), [source, operand], flags, size
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opdef", [*REDUCTIONS, N.select_and_scatter_add], ids=lambda op: op.name)
def test_window_batch_is_one_op(opdef):
    shape, window, strides, padding = WINDOWS["padded_overlapping"]
    attrs = {"window": window, "strides": strides, "padding": padding}
    args = [np.ones((3, *shape), np.float32)]
    if opdef is N.select_and_scatter_add:
        args.insert(0, np.ones((3, *window_counts(*WINDOWS["padded_overlapping"])), np.float32))
    example = lambda *xs: emit(opdef, list(xs), **attrs)
    ops = traced_ops(lambda *xs: fj.vmap(example)(*xs), *args)
    assert ops.count(opdef.name) == 1 and "scan" not in ops, ops


# -- per-example gradients of a conv net ---------------------------------------------------------
# conv 3x3 (SAME) + relu + max pool 2x2, a grouped conv 2x2 (stride 1, VALID) + relu + average
# pool 2x2, dense; per-example cross-entropy. One example is (H, W, C) and a label.
H, W, C, C1, C2, CLASSES, GROUPS = 8, 8, 2, 4, 6, 5, 2


def init_params(rng) -> dict:
    return {
        "w1": rand(rng, (3, 3, C, C1), np.float32, -0.5, 0.5),
        "b1": rand(rng, (C1,), np.float32, -0.1, 0.1),
        "w2": rand(rng, (2, 2, C1 // GROUPS, C2), np.float32, -0.5, 0.5),
        "b2": rand(rng, (C2,), np.float32, -0.1, 0.1),
        "dense": rand(rng, (C2, CLASSES), np.float32, -0.5, 0.5),
    }


def fj_loss(params, x, label):
    h = fj.nn.conv2d(x.reshape(1, H, W, C), params["w1"], padding="SAME") + params["b1"]
    h = fj.nn.max_pool2d(fj.nn.relu(h), 2)  # 1, 4, 4, C1
    h = emit(
        N.conv2d,
        [h, params["w2"]],
        **conv_attrs(padding=(0, 0, 0, 0), feature_group_count=GROUPS),
    )
    h = fj.nn.avg_pool2d(fj.nn.relu(h + params["b2"]), 3)  # 1, 1, 1, C2
    logits = h.reshape(1, -1) @ params["dense"]
    # (one-hot: take_along_axis, which fj.nn.softmax_cross_entropy uses, is not batched here)
    return -(fj.nn.one_hot(label, CLASSES) * fj.nn.log_softmax(logits[0])).sum()


def jax_loss(params, x, label):
    h = jax_conv(x[None], params["w1"], **conv_attrs(padding=(1, 1, 1, 1))) + params["b1"]
    h = jax.nn.relu(h)
    h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    h = jax_conv(h, params["w2"], **conv_attrs(feature_group_count=GROUPS))
    h = jax.nn.relu(h + params["b2"])
    h = lax.reduce_window(h, 0.0, lax.add, (1, 3, 3, 1), (1, 3, 3, 1), "VALID") / 9
    logits = jnp.matmul(h.reshape(1, -1), params["dense"], precision=HIGHEST)
    return -jax.nn.log_softmax(logits)[0, label]


@pytest.mark.parametrize("size", [3])  # (a batch of one: the rules' own tests above)
def test_per_example_gradients_of_a_conv_net(size):
    rng = np.random.default_rng()
    params = init_params(rng)
    xs = rand(rng, (size, H, W, C), np.float32)
    labels = rng.integers(0, CLASSES, size).astype(np.int32)
    per_example_grad = fj.vmap(fj.grad(fj_loss), in_axes=(None, 0, 0))
    grads = fj.compile(per_example_grad)(params, xs, labels)
    with jax.default_matmul_precision("highest"):
        want = jax.vmap(jax.grad(jax_loss), in_axes=(None, 0, 0))(params, xs, labels)
    assert set(grads) == set(want)
    for key in want:
        assert grads[key].shape == (size, *params[key].shape), key
        np.testing.assert_allclose(grads[key], want[key], rtol=1e-4, atol=1e-5, err_msg=key)
    # vectorized: no rule fell back to a loop over the examples
    assert "scan" not in traced_ops(per_example_grad, params, xs, labels)
