"""docs/errors.md, row by row: each bad input gets the error the catalog says, with the
user's line where there is one, and changes nothing (variables, the trace cache)."""

from __future__ import annotations

import inspect
import os
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp
from flowjit.backends.xla.cluster import cluster_stablehlo
from flowjit.ir import Graph, OpDef, TensorType

F32 = np.float32
HERE = "test_error_catalog.py"
CATALOG = pathlib.Path(__file__).resolve().parents[2] / "docs" / "errors.md"
X = np.ones(3, np.float32)


def line_of(fn, marker: str) -> int:
    """The line of ``fn``'s source that contains ``marker``."""
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, text in enumerate(lines) if marker in text)


def test_every_row_of_the_catalog_has_a_test_and_every_test_a_row():
    rows = re.findall(r"^\| (E\d+) \|", CATALOG.read_text(), re.MULTILINE)
    tests = {name.split("_")[1].upper() for name in globals() if re.match(r"test_e\d+_", name)}
    assert rows == [f"E{i}" for i in range(1, len(rows) + 1)]  # numbered in order, no gaps
    assert set(rows) == tests


def test_e1_an_argument_that_is_not_an_array():
    f = fj.compile(lambda x, params: x + params["w"])
    with pytest.raises(TypeError, match=r"^args\[1\]\['w'\] is a str, which is not an array"):
        f(X, {"w": "text"})
    assert f.cache_info().traces == 0


def test_e2_wrong_number_of_arguments_or_unknown_keyword():
    def step(x):
        return x

    f = fj.compile(step)
    with pytest.raises(TypeError, match=r"step\(\) takes 1 positional argument but 2 were"):
        f(X, X)
    with pytest.raises(TypeError, match="unexpected keyword argument 'y'"):
        f(X, y=X)


def test_e3_shapes_that_do_not_fit():
    def step(x, w):
        return x @ w  # MATMUL

    with pytest.raises(ValueError) as info:
        fj.compile(step)(np.ones((128, 784), np.float32), np.ones((785, 10), np.float32))
    assert isinstance(info.value, fj.ShapeError)
    assert str(info.value) == (
        f"{HERE}:{line_of(step, '# MATMUL')}: matmul: cannot contract shapes (128, 784) and "
        "(785, 10): 784 != 785"
    )


def test_e4_a_dtype_the_op_does_not_take():
    def step(x, y):
        return x & y  # AND

    with pytest.raises(TypeError) as info:
        fj.compile(step)(X, X)
    assert isinstance(info.value, fj.DTypeError)
    assert str(info.value).startswith(f"{HERE}:{line_of(step, '# AND')}: and: input has dtype f32")


def test_e5_assigning_another_dtype_or_shape_to_a_variable():
    count = fj.Variable(np.zeros(3, np.int32), name="count")

    def step(x):
        count.assign(x)  # ASSIGN

    line = line_of(step, "# ASSIGN")
    with pytest.raises(
        fj.DTypeError,
        match=f"{HERE}:{line}: assign_variable: cannot assign a "
        "value of dtype f32 to variable 'count' of dtype i32",
    ):
        fj.compile(step)(X)
    with pytest.raises(
        fj.ShapeError,
        match=f"{HERE}:{line}: .*value of shape \\(4,\\) to variable 'count' of shape \\(3,\\)",
    ):
        fj.compile(step)(np.ones(4, np.int32))
    np.testing.assert_array_equal(count.value, 0)


def test_e6_python_control_flow_on_a_tensor():
    def step(x):
        if x.sum() > 0:  # IF
            return x
        return -x

    with pytest.raises(fj.TracingError) as info:
        fj.compile(step)(X)
    message = str(info.value)
    assert message.startswith(f"{HERE}:{line_of(step, '# IF')}: bool() of a Tensor")
    assert "fj.cond" in message and "fnp.where" in message and "static_argnums" in message


def test_e7_a_tensor_kept_from_another_trace():
    kept = []

    def keep(x):
        kept.append(x * 2)
        return x

    def use(x):
        return x + kept[0]  # USE

    fj.compile(keep)(X)
    with pytest.raises(fj.TracingError) as info:
        fj.compile(use)(X)
    assert str(info.value).startswith(
        f"{HERE}:{line_of(use, '# USE')}: add: a Tensor from another (finished) trace was used"
    )


def test_e8_returning_something_that_is_not_an_array():
    f = fj.compile(lambda x: {"ok": x, "bad": "text"})
    with pytest.raises(TypeError, match=r"returned a str at result\['bad'\]"):
        f(X)


def test_e9_a_constant_index_past_the_end():
    with pytest.raises(IndexError, match="^index 5 is out of bounds for axis 0 with size 3"):
        fj.compile(lambda x: x[5])(X)


def test_e10_nan_and_inf_are_computed_not_raised():
    out = fj.compile(lambda x: (fnp.log(x - 2), x / 0))(X)
    assert np.isnan(np.asarray(out[0])).all() and np.isposinf(np.asarray(out[1])).all()


def test_e11_check_nans_names_the_op_and_line_and_undoes_the_step():
    w = fj.Variable(np.ones(3, np.float32), name="w")

    def step(x):
        w.assign_add(x)
        return fnp.exp(fnp.log(x - 2))  # LOG

    f = fj.compile(step)
    assert np.isnan(np.asarray(f(X))).all()  # (check_nans off: NaN is a value)
    fj.config.update("check_nans", True)
    try:
        with pytest.raises(FloatingPointError) as info:
            f(X)
        masked = fj.compile(lambda x: fnp.where(x > 2, fnp.log(x - 2), 0.0))
        np.testing.assert_array_equal(masked(X), 0.0)  # a NaN no result holds is not seen
    finally:
        fj.config.update("check_nans", False)
    assert isinstance(info.value, fj.NaNError)
    assert str(info.value).startswith(
        f"{HERE}:{line_of(step, '# LOG')}: log: produced NaN (first at index (0,)) from inputs "
        "without NaN; check_nans is on, so the call's variable updates were undone"
    )
    np.testing.assert_array_equal(w.value, 2.0)  # the first call's update only


def test_e12_a_host_call_that_raises():
    w = fj.Variable(np.zeros(3, np.float32), name="w")

    def boom(x):
        raise ValueError("bad batch")

    def step(x):
        w.assign_add(x)
        fj.host_call(boom, x, result_shape_dtypes=None)  # HOST
        return x

    with pytest.raises(fj.HostCallError) as info:
        fj.compile(step)(X)
    assert str(info.value).startswith(
        f"{HERE}:{line_of(step, '# HOST')}: host_call: the function boom raised ValueError: "
        "bad batch"
    )
    np.testing.assert_array_equal(w.value, 0.0)


def test_e13_a_host_call_that_returns_the_wrong_type():
    def step(x):
        shape = jnp.zeros(4, jnp.float32)
        return fj.host_call(lambda a: a * 2, x, result_shape_dtypes=shape)  # HOST

    with pytest.raises(fj.TypeMismatchError) as info:
        fj.compile(step)(X)
    message = str(info.value)
    assert message.startswith(f"{HERE}:{line_of(step, '# HOST')}:")
    assert "result 0 of the function has shape (3,), but result_shape_dtypes says f32[4]" in message


def test_e14_an_argument_used_again_after_donating_it():
    f = fj.compile(lambda x: x + 1, donate_argnums=0)
    x = jnp.ones(3, jnp.float32)
    f(x)
    with pytest.raises(fj.DonationError, match=r"args\[0\] was donated to an earlier call"):
        f(x)
    np.testing.assert_array_equal(f(jnp.ones(3, jnp.float32)), 2.0)  # the function still works


def test_e15_an_op_the_backend_cannot_lower():
    my_op = OpDef("my_op", lambda types: types[0], np.sinc)  # (not registered: no lowering)
    graph = Graph("g")
    x = graph.add_input(TensorType((2,), np.float32))
    graph.outputs = list(graph.add(my_op, [x], loc=fj.ir.Location("model.py", 7)))
    with pytest.raises(fj.LoweringError, match="^model.py:7: my_op: the xla backend has no "):
        cluster_stablehlo(graph)


@pytest.fixture
def saved(tmp_path):
    w = fj.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="w")
    b = fj.Variable(np.ones(3, np.float32), name="b")
    path = tmp_path / "model.safetensors"
    fj.save(path, [w, b])
    return path, w, b


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_e16_a_corrupt_checkpoint(saved, damage):
    path, w, b = saved
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:-5]
    elif damage == "flip":
        data[-3] ^= 0xFF
    else:
        data = bytearray(b"not a checkpoint at all")
    path.write_bytes(bytes(data))
    w.set_value(np.zeros((2, 3), np.float32))
    with pytest.raises(fj.CheckpointError, match="model.safetensors"):
        fj.restore(path, [w, b])
    np.testing.assert_array_equal(w.value, 0.0)  # unchanged
    np.testing.assert_array_equal(b.value, 1.0)


def test_e16_the_fix_restores_an_older_step(tmp_path):
    w = fj.Variable(np.zeros(3, np.float32), name="w")
    ckpt = fj.Checkpoint(tmp_path / "run", [w], max_to_keep=3)
    for step in (1, 2):
        w.assign(np.full(3, step, np.float32))
        ckpt.save(step)
    ckpt.wait_until_finished()
    latest = pathlib.Path(ckpt.path(2))
    data = max((p for p in (latest / "state").rglob("*") if p.is_file()), key=os.path.getsize)
    data.write_bytes(data.read_bytes()[:-5])  # cut short
    with pytest.raises(fj.CheckpointError, match=str(latest)):
        ckpt.restore()
    assert ckpt.steps() == [1, 2] and ckpt.restore(ckpt.steps()[0]) == 1
    np.testing.assert_array_equal(w.value, 1.0)


def test_e17_a_checkpoint_that_does_not_fit_the_variables(saved):
    path, w, _ = saved
    other = fj.Variable(np.zeros((3, 2), np.float32), name="w")
    with pytest.raises(
        fj.CheckpointError,
        match=r"'w': the checkpoint holds f32\[2,3\] but the variable is f32\[3,2\]",
    ):
        fj.restore(path, [other])
    missing = fj.Variable(np.zeros(3, np.float32), name="gamma")
    with pytest.raises(fj.CheckpointError, match="gamma"):
        fj.restore(path, [missing])
    np.testing.assert_array_equal(other.value, 0.0)


def test_e18_a_sharding_spec_that_does_not_fit_the_mesh():
    import jax

    mesh = fj.Mesh(jax.devices()[:1], ("data",))
    with pytest.raises(fj.ShardingError, match=r"fj.P\('dta'\) names axis 'dta', which the mesh"):
        fj.compile(lambda x: x, mesh=mesh, in_shardings=fj.P("dta"))


def test_e19_malformed_ir_text():
    text = "graph @g(%0: f32[2]) {\n  %1: f32[2] = add(%0, %9)\n  return %1\n}\n"
    with pytest.raises(fj.ParseError, match="line 2, column 24: value %9 is used before"):
        fj.ir.parse(text)


def test_e20_the_gradient_of_an_integer_value():
    def step(x):
        return fj.grad(lambda y: fnp.sum(y))(x)  # GRAD

    def non_scalar(x):
        return fj.gradients(x * 2, [x])  # NONSCALAR

    for fn, x, marker, error, want in [
        (step, np.ones(3, np.int32), "# GRAD", fj.DTypeError, "a float y, got a Tensor i32[]"),
        (non_scalar, X, "# NONSCALAR", fj.ShapeError, "a scalar y, got a Tensor f32[3]"),
    ]:
        with pytest.raises(error) as info:
            fj.compile(fn)(x)
        assert str(info.value).startswith(
            f"{HERE}:{line_of(fn, marker)}: gradients: gradients needs {want}; "
        )


def test_e21_a_gradient_through_a_host_call():
    def loss(x):
        stats = fj.host_call(np.tanh, x, result_shape_dtypes=fj.ShapeDtype((3,), F32))  # HOST
        return (stats * x).sum()

    with pytest.raises(fj.GradientError) as info:
        fj.grad(loss)(np.ones(3, F32))
    assert str(info.value).startswith(
        f"{HERE}:{line_of(loss, '# HOST')}: host_call: cannot differentiate through the host "
        "call 'tanh'"
    )
    # the fix the row gives: no gradient through it
    fixed = lambda x: (  # noqa: E731
        fj.host_call(np.tanh, fj.stop_gradient(x), result_shape_dtypes=fj.ShapeDtype((3,), F32))
        * x
    ).sum()
    np.testing.assert_allclose(fj.grad(fixed)(np.ones(3, F32)), np.tanh(np.ones(3)), rtol=1e-6)


def test_e22_a_per_example_variable_write_inside_vmap():
    w = fj.Variable(np.zeros(3, F32), name="w")

    def per_row(row):
        w.assign(row)  # WRITE
        return row * 2

    rows = np.arange(6, dtype=F32).reshape(2, 3)
    with pytest.raises(fj.BatchingError) as info:
        fj.vmap(per_row)(rows)
    assert str(info.value).startswith(
        f"{HERE}:{line_of(per_row, '# WRITE')}: assign_variable: fj.vmap: the write to "
        "variable $w gives it a different value for each example"
    )
    np.testing.assert_array_equal(np.asarray(w), np.zeros(3))  # nothing written
    # the fix the row gives: reduce over the batch, and write outside fj.vmap
    fixed = fj.compile(lambda rows: w.assign(fj.vmap(lambda r: r * 2)(rows).mean(axis=0)))
    fixed(rows)
    np.testing.assert_allclose(np.asarray(w), rows.mean(0) * 2)


def test_e23_a_function_that_writes_variables_under_a_jax_transformation():
    w = fj.Variable(np.ones(3, F32), name="w")

    @fj.compile
    def step(x):
        w.assign_sub(x)
        return x

    with pytest.raises(fj.TracingError, match="^step writes the Variables 'w' and was called"):
        jax.jit(step)(np.ones(3, F32))
    np.testing.assert_array_equal(np.asarray(w.value), np.ones(3))  # no variable changed


def _errors_in_both_modes(fn, *args) -> list:
    """The FlowjitErrors ``fj.compile(fn)(*args)`` raises traced, then in eager mode."""
    errors = []
    for eager in (False, True):
        fj.config.update("eager", eager)
        try:
            with pytest.raises(fj.FlowjitError) as info:
                fj.compile(fn)(*args)
        finally:
            fj.config.update("eager", False)
        errors.append(info.value)
    return errors


def _check_errors(cases, *args) -> None:
    """For each ``(fn, marker, error class, message)``: ``fn`` compiled (and eager) on ``args``
    raises that error, its message that one at the line of ``fn`` holding ``marker``."""
    for fn, marker, error, message in cases:
        for err in _errors_in_both_modes(fn, *args):
            assert type(err) is error
            assert str(err) == f"{HERE}:{line_of(fn, marker)}: {message}"


def test_e24_an_axis_or_argnums_that_is_not_an_int_in_range():
    def by_name(x):
        return x.sum(axis="a")  # NAME

    def past_the_end(x):
        return fnp.argmax(x, axis=1)  # PAST

    def gradient(x):
        return fj.grad(lambda y: (y * y).sum(), argnums=5)(x)  # GRAD

    _check_errors(
        [
            (
                by_name,
                "# NAME",
                fj.ArgumentError,
                "sum: axis must be an int or a tuple of ints, got 'a'; axes are positions, fixed "
                "when the function is traced: if you meant the last axis, use axis=-1",
            ),
            (past_the_end, "# PAST", fj.ShapeError, "argmax: axis 1 is out of range for rank 1"),
            (
                gradient,
                "# GRAD",
                fj.ArgumentError,
                "argnums=5 is out of range: <lambda> takes 1 positional argument (y), numbered "
                "from 0; if you meant the last one, use argnums=0",
            ),
        ],
        X,
    )

    # given where the function is made, they name that line
    def loss(x, scale):
        return (x * scale).sum()

    def grad_of_loss():
        return fj.grad(loss, argnums=2)  # GRAD_OF_LOSS

    def compile_loss():
        return fj.compile(loss, static_argnums="scale")  # COMPILE

    for make, marker, message in [
        (
            grad_of_loss,
            "# GRAD_OF_LOSS",
            "argnums=2 is out of range: loss takes 2 positional arguments (x, scale), numbered "
            "from 0; if you meant the last one, use argnums=1",
        ),
        (
            compile_loss,
            "# COMPILE",
            "static_argnums must be an int or a sequence of ints (positions from 0), got "
            "'scale'; if you meant the argument 'scale', use static_argnames='scale'",
        ),
    ]:
        with pytest.raises(TypeError) as info:  # (and a ValueError: Python raises either)
            make()
        assert isinstance(info.value, fj.ArgumentError) and isinstance(info.value, ValueError)
        assert str(info.value) == f"{HERE}:{line_of(make, marker)}: {message}"
    # the fixes the messages give
    np.testing.assert_allclose(fj.grad(loss, argnums=1)(X, 2.0), X.sum())
    np.testing.assert_allclose(fj.compile(loss, static_argnames="scale")(X, scale=2.0), 6.0)
    np.testing.assert_allclose(fj.compile(lambda x: x.sum(axis=-1))(X), 3.0)


def test_e25_an_int_parameter_that_is_not_an_int_in_range():
    def rounding(x):
        return fnp.round(x, 400)  # ROUND

    def convolution(x):
        return fj.nn.conv2d(x.reshape(1, 3, 1, 1), np.ones((1, 1, 1, 1), F32), stride=0)  # CONV

    def classes(x):
        return fj.nn.one_hot(x.astype(fnp.int32), -1)  # ONE_HOT

    def loop(x):
        return fj.fori_loop(0, 2.5, lambda i, c: c + 1, x)  # LOOP

    _check_errors(
        [
            (
                rounding,
                "# ROUND",
                fj.ArgumentError,
                "round: decimals must be an int in [-38, 38], got 400 (10**decimals must be a "
                "finite f32; f32 keeps about 6 significant digits)",
            ),
            (
                convolution,
                "# CONV",
                fj.ArgumentError,
                "conv2d: stride must be an int >= 1 or a pair of them, got 0; if you meant the "
                "smallest stride, use stride=1",
            ),
            (
                classes,
                "# ONE_HOT",
                fj.ArgumentError,
                "one_hot: num_classes must be an int >= 1, got -1; it is the number of classes "
                "(the labels run from 0 to num_classes - 1)",
            ),
            (
                loop,
                "# LOOP",
                fj.DTypeError,
                "fj.fori_loop: upper must be an int or an integer scalar Tensor, got 2.5; "
                "convert it: int(upper) for a Python number, upper.astype(fnp.int32) for a "
                "Tensor",
            ),
        ],
        X,
    )
    fixed = fj.compile(lambda x: fj.fori_loop(0, int(2.5), lambda i, c: c + 1, x))
    np.testing.assert_allclose(fixed(X), 3.0)


def test_e26_a_shape_that_is_not_ints_or_no_arrays_to_join():
    def reshape(x):
        return x.reshape(None)  # RESHAPE

    def join(x):
        return fnp.concatenate([])  # JOIN

    _check_errors(
        [
            (
                reshape,
                "# RESHAPE",
                fj.ArgumentError,
                "reshape: shape must be an int or a tuple of ints >= -1, got None (-1 stands for "
                "the dimension worked out from the size); if you meant to flatten, use "
                ".reshape(-1)",
            ),
            (
                join,
                "# JOIN",
                fj.ArgumentError,
                "concatenate: needs at least one array, got none (the result's shape and dtype "
                "come from them); if the list can be empty, handle that case before the call "
                "(for an empty result, use fnp.zeros((0, ...)))",
            ),
        ],
        X,
    )


def test_e27_the_wrong_kind_of_argument_to_an_api_function():
    def compile_a_number():
        return fj.compile(3)  # COMPILE

    def name_a_variable():
        return fj.Variable(1.0, name=3)  # VARIABLE

    for make, marker, message in [
        (
            compile_a_number,
            "# COMPILE",
            "fj.compile takes the function to compile, got 3; its options are keywords: if you "
            "meant static_argnums=3, use @fj.compile(static_argnums=3)",
        ),
        (
            name_a_variable,
            "# VARIABLE",
            "a Variable's name must be a str (it names the variable in checkpoints and "
            "messages), got 3; if you meant the name '3', use name='3'",
        ),
    ]:
        with pytest.raises(fj.ArgumentError) as info:
            make()
        assert str(info.value) == f"{HERE}:{line_of(make, marker)}: {message}"

    def host(x):
        return fj.host_call(np.sin, x, result_shape_dtypes="f32")  # HOST

    message = (
        "host_call: result_shape_dtypes must be a pytree of fj.ShapeDtype (or "
        "jax.ShapeDtypeStruct), or None for no result, but holds 'f32'; if you meant a scalar "
        "float32, use fj.ShapeDtype((), 'float32')"
    )
    _check_errors([(host, "# HOST", fj.ArgumentError, message)], X)
    with pytest.raises(fj.ArgumentError) as info:
        host(X)  # (outside a compiled function too)
    assert str(info.value) == f"{HERE}:{line_of(host, '# HOST')}: {message}"
    fixed = fj.host_call(np.sum, X, result_shape_dtypes=fj.ShapeDtype((), "float32"))
    np.testing.assert_allclose(fixed, 3.0)


def test_e28_a_misspelt_pass_name():
    f = fj.compile(lambda x: x + 1)

    def call():
        return f(X)  # CALL

    saved = fj.config.disabled_passes
    fj.config.update("disabled_passes", ["cse_pass"])
    try:
        with pytest.raises(fj.ArgumentError) as info:
            call()
    finally:
        fj.config.update("disabled_passes", saved)
    assert str(info.value) == (
        f"{HERE}:{line_of(call, '# CALL')}: no pass named 'cse_pass' to turn off; the pipeline "
        "has ['fold_constants', 'simplify', 'cse', 'dce', 'discharge_state', 'partition']; if "
        "you meant 'cse', write 'cse' in disabled_passes"
    )
    assert f.cache_info().traces == 0

    def decorate():
        return fj.compile(lambda x: x, passes=["fold_constant"])  # DECORATE

    with pytest.raises(fj.ArgumentError) as info:
        decorate()
    assert str(info.value) == (
        f"{HERE}:{line_of(decorate, '# DECORATE')}: no pass named 'fold_constant': passes takes "
        "a list of pass functions or pass names (fold_constants, simplify, cse, dce, "
        "discharge_state, partition); if you meant 'fold_constants', write 'fold_constants' in "
        "passes"
    )


@pytest.mark.parametrize("x64", [False, True], indirect=True)
def test_e29_an_integer_that_does_not_fit_its_type(x64):
    f = fj.compile(lambda x: x + 1)
    if x64:  # as in jax: the Python int is int64
        assert int(f(2**40)) == 2**40 + 1
        return
    with pytest.raises(fj.IntegerOverflowError) as info:
        f(2**40)
    assert str(info.value).startswith(
        "args[0] (a Python int): the integer 1099511627776 does not fit i32 (-2147483648 to "
        "2147483647) and would wrap around;"
    )
    assert isinstance(info.value, OverflowError) and f.cache_info().traces == 0

    def make():
        return fj.Variable(2**40, name="count")  # VARIABLE

    with pytest.raises(fj.IntegerOverflowError) as info:
        make()
    assert str(info.value).startswith(
        f"{HERE}:{line_of(make, '# VARIABLE')}: the initial value of variable 'count': the "
        "integer 1099511627776 does not fit i32"
    )
    assert "jax_enable_x64" in str(info.value)

    def step(x):
        return x + 2**40  # CONSTANT

    with pytest.raises(fj.IntegerOverflowError, match=f"^{HERE}:{line_of(step, '# CONSTANT')}:"):
        fj.compile(step)(np.int32(1))


def test_e30_a_variable_whose_value_is_gone():
    w = fj.Variable(X, name="w")
    other = fj.Variable(X, name="other")

    @fj.compile
    def train(x):
        other.assign_add(x)
        w.assign_add(x)

    train(X)
    w.value.delete()
    for use in (lambda: np.asarray(w), lambda: train(X), lambda: w.assign_add(X)):
        with pytest.raises(fj.VariableError) as info:
            use()
        assert str(info.value).startswith(
            "variable 'w' has no value: its buffer was deleted (by .delete() on its value, or "
            "by passing variable.value to a jax function that donates its arguments). Restore a "
            "checkpoint (fj.Checkpoint(...).restore()) or assign it a new value"
        )
    np.testing.assert_array_equal(np.asarray(other), 2 * X)  # the refused step changed nothing
    w.assign(X)
    train(X)
    np.testing.assert_array_equal(np.asarray(w), 2 * X)
