"""``check_nans``: a NaN in a result or a variable's new value raises fj.NaNError naming the
op that made it and the user's line, and undoes the call's variable updates (docs/errors.md,
E11, has the basic case)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp

HERE = "test_check_nans.py"


@pytest.fixture(autouse=True)
def check_nans():
    fj.config.update("check_nans", True)
    yield
    fj.config.update("check_nans", False)


def line_of(fn, marker: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, text in enumerate(lines) if marker in text)


def test_a_nan_only_a_variable_keeps_is_found_and_every_write_undone():
    w = fj.Variable(np.full(2, 4.0, np.float32), name="w")
    steps = fj.Variable(np.zeros((), np.int32), name="steps")

    def step(x):
        steps.assign_add(1)
        w.assign(fnp.sqrt(w - x))  # SQRT
        return fnp.sum(x)

    f = fj.compile(step)
    f(np.full(2, 3.0, np.float32))  # sqrt(1) = 1: fine
    with pytest.raises(fj.NaNError) as info:
        f(np.full(2, 3.0, np.float32))  # sqrt(1 - 3)
    assert str(info.value).startswith(f"{HERE}:{line_of(step, '# SQRT')}: sqrt: produced NaN")
    np.testing.assert_array_equal(w.value, 1.0)
    assert int(steps.value) == 1
    np.testing.assert_array_equal(f(np.zeros(2, np.float32)), 0.0)  # runs on afterwards


def test_a_nan_made_inside_a_loop_names_the_line_in_the_body():
    def body(i, x):
        return x - fnp.log(x)  # BODY

    def step(x):
        return fj.fori_loop(0, 3, body, x)

    with pytest.raises(fj.NaNError) as info:
        fj.compile(step)(np.array([0.5, -1.0], np.float32))
    assert str(info.value).startswith(f"{HERE}:{line_of(body, '# BODY')}: log: produced NaN")


def test_a_nan_argument_is_named_as_such():
    with pytest.raises(fj.NaNError, match="an argument holds NaN \\(at index \\(1,\\)\\)"):
        fj.compile(lambda x: x * 2)(np.array([1.0, np.nan], np.float32))


def test_a_variable_that_held_nan_before_the_call_is_named():
    v = fj.Variable(np.array([np.nan], np.float32), name="bias")
    with pytest.raises(fj.NaNError, match="variable 'bias' held NaN"):
        fj.compile(lambda x: x + v)(np.ones(1, np.float32))


def test_results_without_nan_pass_and_count_as_calls():
    f = fj.compile(lambda x: fnp.log(x))
    np.testing.assert_allclose(f(np.ones(3, np.float32)), 0.0)
    f(np.ones(3, np.float32))
    assert f.cache_info() == fj.CacheInfo(hits=1, misses=1, traces=1)
    np.testing.assert_array_equal(f(np.zeros(1, np.float32)), -np.inf)  # inf is no NaN
