"""Variables: program order, persistence across calls, donation, eager use, bad input."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp
from flowjit.runtime import plan as runtime_plan


def line_of(fn, marker: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, text in enumerate(lines) if marker in text)


def test_linear_regression_converges_to_least_squares():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 4)).astype(np.float32)
    true_w = np.array([1.5, -2.0, 0.5, 3.0], np.float32)
    y = (x @ true_w + 0.7 + 0.01 * rng.standard_normal(256)).astype(np.float32)
    w = fj.Variable(np.zeros(4, np.float32), name="w")
    b = fj.Variable(0.0, name="b")

    @fj.compile
    def step(x, y, lr):
        error = x @ w + b - y  # hand-written gradients of the mean squared error
        w.assign_sub(lr * 2 * (x.T @ error) / x.shape[0])
        b.assign_sub(lr * 2 * error.mean())
        return (error * error).mean()

    for _ in range(600):
        loss = step(x, y, 0.1)
    design = np.concatenate([x, np.ones((256, 1), np.float32)], axis=1).astype(np.float64)
    solution = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(np.asarray(w), solution[:4], atol=1e-4)
    np.testing.assert_allclose(float(b.value), solution[4], atol=1e-4)
    assert float(loss) < 1e-3
    assert step.cache_info().traces == 1


def program(w, n, x, xp):
    """Reads and writes interleaved; ``xp`` is numpy outside, flowjit.numpy inside."""
    first = w * 2 + x
    w.assign(first)
    second = xp.sum(w) + n
    w.assign_add(x)
    n.assign_sub(1)
    third = w * 1
    w.assign(w * w)
    n.assign(n * 3)
    return first, second, third, w * 1, n + 0


def test_program_order_matches_eager_execution():
    x = np.array([1.0, 2.0, 3.0], np.float32)
    eager_w, eager_n = fj.Variable(np.full(3, 0.5, np.float32)), fj.Variable(7)
    traced_w, traced_n = fj.Variable(np.full(3, 0.5, np.float32)), fj.Variable(7)
    step = fj.compile(lambda x: program(traced_w, traced_n, x, fnp))
    for _ in range(3):
        want = program(eager_w, eager_n, x, np)
        got = step(x)
        for g, e in zip(got, want):
            np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(traced_w), np.asarray(eager_w), rtol=1e-6)
        assert int(traced_n.value) == int(eager_n.value)


def test_donation_updates_in_place():
    w = fj.Variable(np.zeros(1024, np.float32), name="w")
    c = fj.Variable(np.ones(16, np.float32), name="c")  # read only: not donated

    @fj.compile
    def step(g):
        w.assign_sub(g * c.sum())

    g = np.ones(1024, np.float32)
    step(g)
    before, c_before = w.value, c.value
    step(g)
    assert before.is_deleted() and not c_before.is_deleted()
    np.testing.assert_allclose(np.asarray(w), -32.0)
    stats = step.lower(g).compile().memory_analysis()
    assert stats.alias_size_in_bytes == 1024 * 4  # exactly the written variable


def test_variables_created_during_the_first_trace_persist():
    w = fj.Variable(np.ones(3, np.float32), name="w")
    slots = {}

    @fj.compile
    def step(g):
        if "m" not in slots:  # an optimizer slot, created once while tracing
            slots["m"] = fj.Variable(np.zeros(3, np.float32), name="m")
        m = slots["m"]
        m.assign(m * 0.5 + g)
        w.assign_sub(m)
        return m * 1

    for _ in range(3):
        step(np.ones(3, np.float32))
    assert step.cache_info().traces == 1 and len(slots) == 1
    np.testing.assert_allclose(np.asarray(slots["m"]), 1.75)  # 1, 1.5, 1.75
    np.testing.assert_allclose(np.asarray(w), 1 - 1 - 1.5 - 1.75)


def test_eager_reads_and_writes():
    w = fj.Variable([1.0, 2.0], name="w")
    assert w.dtype == np.float32 and w.shape == (2,) and w.name == "w"
    w.assign_add(1.0)
    np.testing.assert_array_equal(np.asarray(w), [2.0, 3.0])
    w.assign(np.array([5.0, 6.0], np.float32))
    w.assign_sub(np.array([1.0, 1.0], np.float32))
    np.testing.assert_array_equal(w.value, [4.0, 5.0])
    np.testing.assert_array_equal(w + 1, [5.0, 6.0])
    assert float(w.sum()) == 9.0 and w.T.shape == (2,)


def test_wrong_shape_or_dtype_assign_names_variable_and_line():
    w = fj.Variable(np.zeros((2, 3), np.float32), name="weights")

    def bad_shape(x):
        w.assign(x)  # ASSIGN
        return x

    with pytest.raises(fj.ShapeError) as info:
        fj.compile(bad_shape)(np.zeros((3, 2), np.float32))
    assert str(info.value).startswith(f"test_variables.py:{line_of(bad_shape, '# ASSIGN')}: ")
    assert "variable 'weights' of shape (2, 3)" in str(info.value)

    def bad_dtype(x):
        w.assign_add(x)  # ADD
        return x

    with pytest.raises(fj.DTypeError) as info:
        fj.compile(bad_dtype)(np.zeros((2, 3), np.int32))
    assert str(info.value).startswith(f"test_variables.py:{line_of(bad_dtype, '# ADD')}: ")
    assert "'weights' of dtype f32" in str(info.value)
    with pytest.raises(fj.ShapeError, match="'weights'"):
        w.assign(np.zeros(4, np.float32))  # eagerly too
    np.testing.assert_array_equal(np.asarray(w), np.zeros((2, 3)))  # unchanged by the failures


def test_passing_a_variable_as_an_argument_is_explained():
    w = fj.Variable(np.zeros(2, np.float32), name="w")
    with pytest.raises(TypeError, match="args\\[0\\] is the variable 'w': variables are captured"):
        fj.compile(lambda v: v * 2)(w)


def test_np_asarray_of_a_variable_inside_a_trace_is_refused():
    w = fj.Variable(np.zeros(2, np.float32), name="w")
    with pytest.raises(fj.TracingError, match="would bake its current value"):
        fj.compile(lambda x: x + np.asarray(w))(np.zeros(2, np.float32))


def test_steps_in_flight_are_bounded():
    w = fj.Variable(np.zeros(8, np.float32))

    @fj.compile
    def step():
        w.assign_add(1.0)

    previous = fj.config.max_steps_in_flight
    try:
        fj.config.update("max_steps_in_flight", 2)
        for _ in range(20):
            step()
            assert len(runtime_plan._in_flight) <= 2  # steps queued
        assert float(w.value[0]) == 20.0
    finally:
        fj.config.update("max_steps_in_flight", previous)
    with pytest.raises(ValueError, match="max_steps_in_flight must be an int >= 1"):
        fj.config.update("max_steps_in_flight", 0)
    with pytest.raises(KeyError, match="unknown flowjit setting"):
        fj.config.update("no_such_setting", 1)


def test_a_function_that_writes_a_variable_another_trace_only_reads():
    w = fj.Variable(np.ones(2, np.float32), name="w")

    @fj.compile(static_argnums=0)
    def f(write, x):
        if write:
            w.assign(x)
        return w + 0

    np.testing.assert_array_equal(f(False, np.zeros(2, np.float32)), [1, 1])
    np.testing.assert_array_equal(f(True, np.full(2, 5.0, np.float32)), [5, 5])
    np.testing.assert_array_equal(f(False, np.zeros(2, np.float32)), [5, 5])  # passes through
    np.testing.assert_array_equal(np.asarray(w), [5, 5])


def test_run_reference_agrees_with_xla_and_writes_nothing():
    w = fj.Variable(np.array([1.0, 2.0], np.float32), name="w")

    @fj.compile
    def step(x):
        w.assign(w * x + 1)
        return fnp.tanh(w).sum()

    x = np.array([0.5, -1.0], np.float32)
    results, new_state = step.lower(x).run_reference(x)
    np.testing.assert_array_equal(np.asarray(w), [1.0, 2.0])  # nothing written back
    xla = step(x)
    np.testing.assert_allclose(results, xla, rtol=1e-6)
    np.testing.assert_allclose(new_state[w], np.asarray(w), rtol=1e-6)
