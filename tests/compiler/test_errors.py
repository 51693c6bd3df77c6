"""Bad input gets a clear error naming the user's file and line, the op and the shapes."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp
from flowjit.backends.xla.cluster import cluster_stablehlo
from flowjit.ir import Graph, OpDef, TensorType

HERE = "test_errors.py"


def line_of(fn, marker: str) -> int:
    """The line of ``fn``'s source that contains ``marker``."""
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, text in enumerate(lines) if marker in text)


def test_non_array_argument_names_its_path():
    f = fj.compile(lambda x, params: x + params["w"])
    with pytest.raises(TypeError, match=r"args\[1\]\['w'\] is a str, which is not an array"):
        f(np.ones(2, np.float32), {"w": "oops"})
    with pytest.raises(TypeError, match=r"args\[0\] is a object"):
        f(object(), {"w": np.ones(2, np.float32)})
    # nothing was cached by the failed calls
    np.testing.assert_allclose(f(np.ones(2, np.float32), {"w": np.ones(2, np.float32)}), 2.0)
    assert f.cache_info() == fj.CacheInfo(hits=0, misses=1, traces=1)


def test_matmul_shape_error_names_line_op_and_shapes():
    def step(x, w):
        return x @ w  # MATMUL

    f = fj.compile(step)
    with pytest.raises(ValueError) as info:
        f(np.ones((128, 784), np.float32), np.ones((785, 10), np.float32))
    assert isinstance(info.value, fj.ShapeError)
    line = line_of(step, "# MATMUL")
    assert str(info.value) == (
        f"{HERE}:{line}: matmul: cannot contract shapes (128, 784) and (785, 10): 784 != 785"
    )


def test_broadcast_error_names_line_op_and_shapes():
    def step(x, y):
        return fnp.add(x, y)  # ADD

    with pytest.raises(fj.ShapeError) as info:
        fj.compile(step)(np.ones((3, 4), np.float32), np.ones((5,), np.float32))
    message = str(info.value)
    assert message.startswith(f"{HERE}:{line_of(step, '# ADD')}: add: cannot broadcast shapes")
    assert "(3, 4)" in message and "(5,)" in message


def test_dtype_error_names_line_and_op():
    def step(x, y):
        return x & y  # AND

    with pytest.raises(TypeError) as info:
        fj.compile(step)(np.ones(3, np.float32), np.ones(3, np.float32))
    assert isinstance(info.value, fj.DTypeError)
    assert str(info.value).startswith(f"{HERE}:{line_of(step, '# AND')}: and: input has dtype f32")


def test_reshape_error_names_line():
    def step(x):
        return x.reshape(4, 4)  # RESHAPE

    with pytest.raises(fj.ShapeError, match=rf"^{HERE}:{line_of(step, '# RESHAPE')}: reshape: "):
        fj.compile(step)(np.ones(6, np.float32))


@pytest.mark.parametrize("use", [bool, int, float])
def test_python_control_flow_on_tensor_points_to_cond(use):
    def step(x):
        if use(x.sum() > 0):  # BRANCH
            return x
        return -x

    with pytest.raises(fj.TracingError) as info:
        fj.compile(step)(np.ones(3, np.float32))
    message = str(info.value)
    assert message.startswith(f"{HERE}:{line_of(step, '# BRANCH')}: ")
    assert "fj.cond" in message and "fj.while_loop" in message


def test_if_tensor_directly():
    def step(x):
        if x:  # IF
            return x
        return x

    with pytest.raises(fj.TracingError, match=rf"^{HERE}:{line_of(step, '# IF')}: bool\(\)"):
        fj.compile(step)(np.float32(1))


def test_leaked_tensor_is_caught():
    leaked = []

    @fj.compile
    def keep(x):
        leaked.append(x)
        return x

    @fj.compile
    def use(y):
        return y + leaked[0]  # LEAK

    keep(np.ones(2, np.float32))
    with pytest.raises(fj.TracingError, match="another .*trace"):
        use(np.ones(2, np.float32))


def test_op_the_backend_cannot_lower_is_named():
    # an op defined (not registered) only here: it has a shape rule and a reference, no lowering
    sinc = OpDef("sinc", lambda types: types[0], np.sinc)
    graph = Graph("g")
    x = graph.add_input(TensorType((2,), np.float32))
    graph.outputs = list(graph.add(sinc, [x], loc=fj.ir.Location("model.py", 7)))
    with pytest.raises(fj.LoweringError) as info:
        cluster_stablehlo(graph)
    assert str(info.value).startswith("model.py:7: sinc: the xla backend has no lowering for sinc")


def test_returning_a_non_array_is_named():
    f = fj.compile(lambda x: {"ok": x, "bad": "text"})
    with pytest.raises(TypeError, match=r"returned a str at result\['bad'\]"):
        f(np.ones(2, np.float32))


def test_index_out_of_bounds():
    def step(x):
        return x[5]  # INDEX

    with pytest.raises(IndexError, match="index 5 is out of bounds for axis 0 with size 3"):
        fj.compile(step)(np.ones(3, np.float32))


def test_a_failed_trace_leaves_the_cache_as_it_was():
    @fj.compile
    def f(x, y):
        return x @ y

    good = (np.ones((2, 3), np.float32), np.ones((3, 4), np.float32))
    np.testing.assert_allclose(f(*good), 3.0)
    with pytest.raises(fj.ShapeError):
        f(np.ones((2, 3), np.float32), np.ones((4, 4), np.float32))
    np.testing.assert_allclose(f(*good), 3.0)
    assert f.cache_info() == fj.CacheInfo(hits=1, misses=1, traces=1)
