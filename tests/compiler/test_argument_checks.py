"""The front end's checks of its arguments (docs/errors.md, E24-E28): what they reject beyond the
catalog's examples, and what they must keep taking (numpy ints, negative positions, arrays as
shapes, Tensor loop bounds)."""

from __future__ import annotations

import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp

F32 = np.float32
X = np.arange(6, dtype=F32).reshape(2, 3)
LABELS = np.array([0, 2], np.int32)


@pytest.mark.parametrize(
    "fn, want",
    [
        (lambda x: x.sum(axis=np.int64(1)), X.sum(axis=1)),
        (lambda x: fnp.max(x, axis=[0, 1]), X.max()),
        (lambda x: fnp.transpose(x, (-1, 0)), X.T),
        (lambda x: x.reshape(np.array([3, 2])), X.reshape(3, 2)),
        (lambda x: x.reshape(np.int64(6)), X.reshape(6)),
        (lambda x: fnp.full(np.int64(2), 7.0), np.full(2, 7.0)),
        (lambda x: fnp.round(x / 7, np.int64(2)), np.round(X / 7, 2)),
        (lambda x: fnp.stack([x, x], axis=-1), np.stack([X, X], axis=-1)),
        (lambda x: fj.nn.one_hot(LABELS, 3, axis=0), np.eye(3, dtype=F32)[LABELS].T),
        (lambda x: fj.fori_loop(np.int32(0), np.int32(2), lambda i, c: c + 1, x), X + 2),
        (lambda x: fj.grad(lambda a, b: (a * b).sum(), argnums=-1)(x, 2 * x), X),
        (lambda x: fj.grad(lambda a, b: (a * b).sum(), argnums=[0, 1])(x, x)[1], X),
    ],
)
def test_arguments_that_are_taken(fn, want):
    np.testing.assert_allclose(fj.compile(fn)(X), want, rtol=1e-6)


def test_a_conv_stride_or_pool_window_may_be_a_pair():
    x = np.ones((1, 4, 4, 1), F32)
    out = fj.compile(lambda x: fj.nn.conv2d(x, np.ones((1, 1, 1, 1), F32), stride=(2, 1)))(x)
    assert out.shape == (1, 2, 4, 1)
    assert fj.compile(lambda x: fj.nn.max_pool2d(x, window=[2, 2]))(x).shape == (1, 2, 2, 1)


def test_loop_bounds_may_be_integer_tensors():
    loop = fj.compile(lambda x, n: fj.fori_loop(0, n, lambda i, c: c * 2, x))
    np.testing.assert_allclose(loop(X, np.int32(3)), X * 8)


@pytest.mark.parametrize(
    "fn, error, message",
    [
        (lambda x: x.sum(axis=1.0), fj.ArgumentError, "sum: axis must be an int or a tuple"),
        (lambda x: fnp.transpose(x, (0, 2)), fj.ShapeError, "transpose: axis 2 is out of range"),
        (lambda x: fnp.expand_dims(x, "0"), fj.ArgumentError, "expand_dims: axis must be an int"),
        (lambda x: fnp.flip(x, axis=None), None, None),
        (lambda x: fj.nn.softmax(x, axis="rows"), fj.ArgumentError, "axis must be an int"),
        (
            lambda x: fj.nn.one_hot(LABELS, 3, axis=5),
            fj.ShapeError,
            "one_hot: axis 5 is out of range for rank 2",
        ),
        (lambda x: fnp.zeros((-1, 2)), fj.ArgumentError, "shape must be an int or a tuple of"),
        (lambda x: x.reshape(2, 1.5), fj.ArgumentError, "reshape: shape must be an int or a"),
        (lambda x: x.reshape(-2, -3), fj.ArgumentError, "got -2"),
        (lambda x: fnp.round(x, True), fj.ArgumentError, "decimals must be an int in"),
        (lambda x: fnp.round(x, 1.5), fj.ArgumentError, "got 1.5"),
        (lambda x: fnp.stack([]), fj.ArgumentError, "stack: needs at least one array"),
        (lambda x: fj.nn.max_pool2d(x[None, :, :, None], 0), fj.ArgumentError, "window must"),
        (
            lambda x: fj.nn.conv2d(x[None, :, :, None], np.ones((1, 1, 1, 1), F32), stride=(1,)),
            fj.ArgumentError,
            r"conv2d: stride must be an int >= 1 or a pair of them, got \(1,\)",
        ),
        (
            lambda x: fj.fori_loop(0, x[0, 0], lambda i, c: c, x),
            fj.DTypeError,
            r"upper must be an int or an integer scalar Tensor, got Tensor\(f32\[\]\)",
        ),
        (
            lambda x: fj.fori_loop(0, LABELS, lambda i, c: c, x),
            fj.ShapeError,
            "upper must be an int or an integer scalar Tensor",
        ),
    ],
)
def test_arguments_that_are_refused_name_the_line(fn, error, message):
    if error is None:  # (a valid call among them: the others fail for their argument only)
        np.testing.assert_allclose(fj.compile(fn)(X), X[::-1, ::-1])
        return
    with pytest.raises(error, match=message) as info:
        fj.compile(fn)(X)
    assert str(info.value).startswith("test_argument_checks.py:")


def test_a_traced_value_where_a_python_int_is_needed_says_to_make_it_static():
    step = fj.compile(lambda x, n: fj.nn.one_hot(x, n))
    with pytest.raises(fj.ArgumentError, match=r"got Tensor\(i32\[\]\); it must be known when"):
        step(LABELS, np.int32(3))
    static = fj.compile(lambda x, n: fj.nn.one_hot(x, n), static_argnums=1)
    np.testing.assert_array_equal(static(LABELS, 3), np.eye(3, dtype=F32)[LABELS])


def test_argnums_of_a_function_with_star_args_are_checked_at_the_call():
    grad = fj.grad(lambda *xs: xs[0].sum(), argnums=3)  # (cannot tell here)
    with pytest.raises(fj.ArgumentError, match="argnums=3 is out of range: <lambda> was called "):
        grad(X)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"static_argnums": (0, 4)}, r"static_argnums=\(0, 4\) is out of range: .* takes 1 "),
        ({"donate_argnums": 1.0}, r"donate_argnums must be an int or a sequence of ints"),
        ({"passes": ["CSE"]}, "if you meant 'cse', write 'cse' in passes"),
    ],
)
def test_compile_options_are_checked_where_the_function_is_compiled(options, message):
    with pytest.raises(fj.ArgumentError, match=message) as info:
        fj.compile(lambda x: x, **options)
    assert str(info.value).startswith("test_argument_checks.py:")


@pytest.mark.parametrize(
    "disabled, message",
    [
        (["discharge_state"], "pass discharge_state cannot be turned off: lowering needs it"),
        (["constant_fold"], "if you meant 'fold_constants', write 'fold_constants' in"),
        (["no_such_pass"], r"the pipeline has \[.*'partition'\]"),
    ],
)
def test_disabled_passes_are_checked_at_the_call_that_compiles(disabled, message):
    f = fj.compile(lambda x: x * 2)
    saved = fj.config.disabled_passes
    fj.config.update("disabled_passes", disabled)
    try:
        with pytest.raises(ValueError, match=message) as info:
            f(X)
    finally:
        fj.config.update("disabled_passes", saved)
    assert isinstance(info.value, fj.ArgumentError)
    assert str(info.value).startswith("test_argument_checks.py:")
    assert ("if you meant" in str(info.value)) == (disabled == ["constant_fold"])
    np.testing.assert_allclose(f(X), 2 * X)  # nothing was cached by the failed call


def test_host_call_result_types_name_what_they_hold():
    with pytest.raises(fj.ArgumentError, match=r"holds 3; give each result as fj.ShapeDtype"):
        fj.host_call(np.sum, X, result_shape_dtypes=[3])
    with pytest.raises(fj.ArgumentError, match=r"scalar int32, use fj.ShapeDtype\(\(\), 'int32'"):
        fj.compile(lambda x: fj.host_call(np.sum, x, result_shape_dtypes=(np.int32,)))(X)
    none = fj.compile(lambda x: fj.host_call(lambda a: None, x, result_shape_dtypes=None))
    assert none(X) is None


def test_a_variable_name_may_be_none_but_not_a_number():
    assert fj.Variable(1.0).name.startswith("Variable_")
    assert fj.Variable(1.0, name="w", dtype=np.int32).dtype == np.int32
    with pytest.raises(TypeError, match="name must be a str"):
        fj.Variable(1.0, name=("w",))
