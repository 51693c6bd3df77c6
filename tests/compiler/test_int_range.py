"""Integers never wrap silently on their way into a dtype (issue 20, item 9). A Python int or
int64 data that does not fit the integer dtype it would take is an fj.IntegerOverflowError (an
OverflowError, as jax raises for a Python int it cannot convert) naming the argument, variable
or line; with jax_enable_x64 on, a Python int that needs 64 bits is int64 instead, as in
jax.jit. A Python float assigned to an int variable is an fj.DTypeError, as any other dtype
mismatch of an assignment (docs/errors.md, E5)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp

HERE = "test_int_range.py"
BIG = 2**40  # fits int64, not int32
HUGE = 2**64  # fits neither
I32, F32 = np.int32, np.float32
BOTH_MODES = pytest.mark.parametrize("x64", [False, True], indirect=True)


def line_of(fn, marker: str) -> int:
    """The line of ``fn``'s source that contains ``marker``."""
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, text in enumerate(lines) if marker in text)


def test_the_error_is_an_overflow_error_of_flowjit():
    assert issubclass(fj.IntegerOverflowError, OverflowError)
    assert issubclass(fj.IntegerOverflowError, fj.FlowjitError)


# -- arguments -----------------------------------------------------------------------------
@BOTH_MODES
def test_a_python_int_argument_beyond_int32(x64):
    f = fj.compile(lambda x: x + 1)
    if x64:  # as jax.jit: a Python int is int64, whatever its value
        out = f(BIG)
        assert out.dtype == np.int64 and int(out) == BIG + 1
    else:
        with pytest.raises(fj.IntegerOverflowError, match=rf"args\[0\].*{BIG}.*i32"):
            f(BIG)
    assert int(f(5)) == 6  # (the failed call left nothing behind)


@BOTH_MODES
def test_a_python_int_argument_beyond_int64_names_its_path(x64):
    f = fj.compile(lambda p: p["n"] + 1)
    with pytest.raises(OverflowError, match=rf"args\[0\]\['n'\].*{HUGE}") as info:
        f({"n": HUGE})
    assert isinstance(info.value, fj.IntegerOverflowError)


def test_int64_data_argument_beyond_int32_with_x64_off_on_the_step_by_step_path():
    # (a function with a host call runs step by step, where flowjit sees the argument)
    result = fj.ShapeDtype((2,), I32)
    f = fj.compile(lambda x: fj.host_call(np.negative, x, result_shape_dtypes=result))
    with pytest.raises(fj.IntegerOverflowError, match=rf"args\[0\] \(int64 data\).*{BIG}"):
        f(np.array([1, BIG], np.int64))
    fits = np.array([1, 2**31 - 1], np.int64)
    np.testing.assert_array_equal(np.asarray(f(fits)), [-1, 1 - 2**31])


def test_int64_data_argument_beyond_int32_with_x64_off_in_eager_mode():
    f = fj.compile(lambda x: x * 2)
    fj.config.update("eager", True)
    try:
        with pytest.raises(fj.IntegerOverflowError, match=rf"args\[0\] \(int64 data\).*-{BIG}"):
            f(np.array([-BIG, 3], np.int64))
    finally:
        fj.config.update("eager", False)


# -- constants in a traced function --------------------------------------------------------
@BOTH_MODES
def test_a_python_int_meeting_an_int32_tensor_must_fit_it(x64):
    def f(x):
        return x + BIG  # ADD

    # (jax.jit wraps it silently with x64 on: 1 + 2**40 -> 1 in int32)
    with pytest.raises(fj.IntegerOverflowError) as info:
        fj.compile(f)(np.int32(1))
    assert str(info.value).startswith(f"{HERE}:{line_of(f, '# ADD')}: ")
    assert f"{BIG} does not fit i32" in str(info.value)
    assert float(fj.compile(f)(np.float32(1))) == float(np.float32(BIG + 1))  # floats take it


@BOTH_MODES
@pytest.mark.parametrize(
    "dtype, value", [(np.int8, 300), (np.uint8, 256), (np.uint32, -1), (np.int16, -40000)]
)
def test_a_python_int_meeting_a_narrower_int_must_fit_it(x64, dtype, value):
    with pytest.raises(fj.IntegerOverflowError, match=f"{value} does not fit"):
        fj.compile(lambda x: x + value)(np.ones(2, dtype))
    fits = np.iinfo(dtype).max - 1
    out = fj.compile(lambda x: x + fits)(np.ones(2, dtype))
    np.testing.assert_array_equal(np.asarray(out), [fits + 1] * 2)


@BOTH_MODES
def test_a_python_int_constant_alone(x64):
    def f():
        return fnp.asarray(BIG) - 1  # CONST

    if x64:
        out = fj.compile(f)()
        assert out.dtype == np.int64 and int(out) == BIG - 1
    else:
        with pytest.raises(fj.IntegerOverflowError) as info:
            fj.compile(f)()
        assert str(info.value).startswith(f"{HERE}:{line_of(f, '# CONST')}: ")
        assert "jax_enable_x64" in str(info.value)  # (says how to get int64)


@BOTH_MODES
def test_fori_loop_bounds_beyond_int32(x64):
    def f(x):
        return fj.fori_loop(BIG, BIG + 3, lambda i, c: c + i, x)  # LOOP

    if x64:  # the loop's index is int64
        assert int(fj.compile(f)(np.int64(0))) == 3 * BIG + 3
    else:  # (before: numpy's OverflowError, naming nothing)
        with pytest.raises(fj.IntegerOverflowError) as info:
            fj.compile(f)(np.int32(0))
        assert str(info.value).startswith(
            f"{HERE}:{line_of(f, '# LOOP')}: fj.fori_loop's bounds: the integer {BIG + 3} does "
            "not fit i32"
        )


def test_int64_numpy_constant_beyond_int32_with_x64_off():
    offsets = np.array([0, BIG])

    def f(x):
        return x + offsets  # OFFSETS

    with pytest.raises(fj.IntegerOverflowError) as info:
        fj.compile(f)(np.zeros(2, I32))
    assert str(info.value).startswith(f"{HERE}:{line_of(f, '# OFFSETS')}: ")


@BOTH_MODES
def test_a_requested_int32_fill_must_fit(x64):
    with pytest.raises(fj.IntegerOverflowError, match=f"{BIG} does not fit i32"):
        fj.compile(lambda: fnp.full(3, BIG, np.int32))()


# -- variables -----------------------------------------------------------------------------
@BOTH_MODES
@pytest.mark.parametrize("initial", [BIG, [1, BIG], -BIG], ids=["int", "list", "negative"])
def test_a_variable_from_python_ints_beyond_int32(x64, initial):
    if x64:
        v = fj.Variable(initial, name="count")
        assert v.dtype == np.int64
        want = [initial] if isinstance(initial, int) else initial
        assert np.asarray(v).reshape(-1).tolist() == want
    else:
        with pytest.raises(fj.IntegerOverflowError) as info:
            fj.Variable(initial, name="count")  # NEW
        message = str(info.value)
        line = line_of(test_a_variable_from_python_ints_beyond_int32, "# NEW")
        assert message.startswith(f"{HERE}:{line}: ") and "variable 'count'" in message
    assert fj.Variable(3).dtype == np.int32  # (an int that fits stays int32 in either mode)


@BOTH_MODES
def test_a_variable_beyond_int64_or_its_requested_dtype(x64):
    with pytest.raises(fj.IntegerOverflowError, match=f"{HUGE}"):
        fj.Variable(HUGE)
    with pytest.raises(fj.IntegerOverflowError, match=f"{BIG} does not fit i32"):
        fj.Variable(BIG, dtype=np.int32)
    with pytest.raises(fj.IntegerOverflowError, match="300 does not fit i8"):
        fj.Variable(np.array([1, 300]), dtype=np.int8)


def test_a_variable_from_int64_data_beyond_int32_with_x64_off():
    with pytest.raises(fj.IntegerOverflowError, match=f"{BIG} does not fit i32"):
        fj.Variable(np.array([BIG, 0], np.int64), name="ids")
    v = fj.Variable(np.array([2**31 - 1, -(2**31)], np.int64))  # (fits: int32, as jax takes it)
    assert v.dtype == np.int32
    np.testing.assert_array_equal(np.asarray(v), [2**31 - 1, -(2**31)])


def _assign_now(v, method, value):
    getattr(v, method)(value)


def _assign_compiled(v, method, value):
    fj.compile(lambda: getattr(v, method)(value))()


ASSIGNS = pytest.mark.parametrize("how", [_assign_now, _assign_compiled], ids=["eager", "compiled"])


@ASSIGNS
@pytest.mark.parametrize("method", ["assign", "assign_add", "assign_sub"])
def test_a_python_float_into_an_int_variable_is_a_dtype_error(how, method):
    v = fj.Variable(np.array([1, 2], I32), name="count")
    with pytest.raises(fj.DTypeError, match=r"Python float 1\.7 to variable 'count' of dtype i32"):
        how(v, method, 1.7)
    np.testing.assert_array_equal(np.asarray(v), [1, 2])  # unchanged
    with pytest.raises(fj.DTypeError, match="variable 'flag' of dtype bool"):
        how(fj.Variable(np.array([True]), name="flag"), "assign", 2)


@ASSIGNS
def test_a_python_int_into_a_float_variable_or_a_bool_into_an_int_one_is_fine(how):
    w = fj.Variable(np.zeros(2, F32), name="w")
    how(w, "assign", 3)
    np.testing.assert_array_equal(np.asarray(w), [3.0, 3.0])
    n = fj.Variable(np.zeros(2, I32), name="n")
    how(n, "assign_add", True)
    np.testing.assert_array_equal(np.asarray(n), [1, 1])


@ASSIGNS
def test_a_python_int_that_does_not_fit_the_variable(how):
    v = fj.Variable(np.array([1, 2], I32), name="count")
    with pytest.raises(fj.IntegerOverflowError, match=f"variable 'count'.*{BIG} does not fit i32"):
        how(v, "assign", BIG)
    small = fj.Variable(np.zeros(2, np.int8), name="small")
    with pytest.raises(fj.IntegerOverflowError, match="200 does not fit i8"):
        how(small, "assign_add", 200)
    np.testing.assert_array_equal(np.asarray(v), [1, 2])


def test_int64_data_assigned_now_must_fit_the_variable_with_x64_off():
    v = fj.Variable(np.array([1, 2], I32), name="count")
    with pytest.raises(fj.IntegerOverflowError, match=f"variable 'count'.*{BIG}"):
        v.assign(np.array([0, BIG], np.int64))
    v.assign(np.array([7, 8], np.int64))  # (fits)
    np.testing.assert_array_equal(np.asarray(v), [7, 8])


# -- host calls ----------------------------------------------------------------------------
def _returns(value):
    return lambda x: value


@BOTH_MODES
@pytest.mark.parametrize("where", ["between clusters", "in a loop body"])
@pytest.mark.parametrize("result", [np.array(BIG, np.int64), BIG], ids=["int64", "python-int"])
def test_a_host_call_result_that_does_not_fit_its_int32_type(x64, where, result):
    def call(x):
        return fj.host_call(_returns(result), x, result_shape_dtypes=fj.ShapeDtype((), I32))  # HC

    def step(x):
        if where == "between clusters":
            return call(x)
        return fj.fori_loop(0, 2, lambda i, c: call(c), x)

    with pytest.raises(fj.IntegerOverflowError) as info:
        fj.compile(step)(np.int32(0))
    message = str(info.value)
    assert message.startswith(f"{HERE}:{line_of(call, '# HC')}: host_call: result 0")
    assert f"{BIG} does not fit i32" in message
    fits = _returns(np.int64(-7))
    f = fj.compile(lambda x: fj.host_call(fits, x, result_shape_dtypes=fj.ShapeDtype((), I32)))
    assert int(f(np.int32(0))) == -7
