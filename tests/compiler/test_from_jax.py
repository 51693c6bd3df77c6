"""fj.from_jax (issue 22, item 1): a jax function called on Tensors inside a compiled function
equals jax's, its gradients equal jax.grad's (first and second order), and the IR it gives
prints, parses back and runs on the reference interpreter. Also the bridge's namespaces
(flowjit.numpy and fj.nn reach all of jax's) and jax code inside a compiled function (item 3)."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp
from flowjit.backends.reference import run_graph
from flowjit.ir import Location, parse, print_graph
from flowjit.ir.ops import creation as Cr
from flowjit.ir.ops import jax_call as J

F32 = np.float32
RNG = np.random.default_rng(0)
X = RNG.random((4, 4), F32) + 0.5


def mixed(x):
    """Primitives flowjit has (iota, select, mul, integer_pow), and a custom_jvp function
    (softmax), which stays jax's, its gradient rule included."""
    return jnp.tril(x) * jnp.sqrt(2 / jnp.pi) + jax.nn.softmax(x, axis=0) + x**3


def test_values_equal_jax_and_the_ir_names_the_jax_function_and_the_line():
    imported = fj.from_jax(mixed)
    step = fj.compile(lambda x: imported(x))
    np.testing.assert_allclose(step(X), mixed(X), rtol=1e-6)
    graph = parse(step.lower(X).ir())
    names = [op.opdef.name for op in graph.ops]
    assert {"select", "mul"} <= set(names)  # (tril's mask, x**3 by squaring: flowjit ops)
    (held,) = [op for op in graph.ops if op.opdef is J.jax_call]
    assert held.attrs["name"] == "mixed: custom_jvp_call"
    line = test_values_equal_jax_and_the_ir_names_the_jax_function_and_the_line.__code__
    assert {(op.loc.file, op.loc.line) for op in graph.ops} == {
        ("test_from_jax.py", line.co_firstlineno + 2)  # (the line calling the imported function)
    }
    # and each imported op also names the line of the jax function it came from
    body = next(i for i, text in enumerate(inspect.getsourcelines(mixed)[0]) if "return" in text)
    came_from = Location("test_from_jax.py", mixed.__code__.co_firstlineno + body)
    assert {op.loc.also for op in graph.ops if op.opdef is not Cr.constant} == {(came_from,)}


def test_the_ir_prints_parses_back_and_runs_on_the_reference_interpreter():
    imported = fj.from_jax(lambda x, n: (jax.nn.softmax(x, axis=0) * n, jnp.argsort(x, axis=1)))

    @fj.compile
    def step(x):
        a, order = imported(x, 3)
        return (a * x).sum(), order

    text = step.lower(X).ir()
    graph = parse(text)
    assert print_graph(graph) == text
    assert any(op.opdef is J.jax_call for op in graph.ops)  # (softmax: held, and parsed back)
    total, order = run_graph(graph, [X])
    want = (np.exp(X) / np.exp(X).sum(axis=0) * 3 * X).sum()
    np.testing.assert_allclose(total, want, rtol=1e-5)
    np.testing.assert_array_equal(order, np.argsort(X, axis=1, kind="stable"))
    np.testing.assert_array_equal(step(X)[1], order)


def loss(f):
    return lambda x: (f(x) ** 2).sum()


@pytest.mark.parametrize(
    "fn",
    [
        mixed,
        lambda x: jax.nn.relu(x - 1.0) * jax.nn.softplus(x),  # custom_jvp functions
        lambda x: jax.nn.logsumexp(x, axis=1) + jnp.cumsum(x, axis=1)[:, -1],
        lambda x: jnp.linalg.inv(x + 4 * jnp.eye(4)),
    ],
    ids=["mixed", "custom_jvp", "logsumexp", "inv"],
)
def test_gradients_equal_jax_grad_first_and_second_order(fn):
    imported = fj.from_jax(fn)
    first = fj.compile(fj.grad(loss(imported)))
    np.testing.assert_allclose(first(X), jax.grad(loss(fn))(X), rtol=2e-5, atol=1e-5)
    second = fj.compile(fj.grad(lambda x: fj.grad(loss(imported))(x).sum()))
    want = jax.grad(lambda x: jax.grad(loss(fn))(x).sum())(X)
    np.testing.assert_allclose(second(X), want, rtol=2e-4, atol=1e-4)


def test_a_third_derivative_is_an_error_naming_the_line():
    imported = fj.from_jax(lambda x: jax.nn.softmax(x, axis=0))
    twice = fj.grad(lambda x: fj.grad(loss(imported))(x).sum())
    third = fj.compile(fj.grad(lambda x: twice(x).sum()))
    with pytest.raises(fj.GradientError, match=r"test_from_jax.py:\d+ .*: jax_call: .*more than 2"):
        third(X)


def test_integer_operands_and_results_have_no_cotangent():
    imported = fj.from_jax(lambda x, i: (jnp.take(x, i, axis=0), i + 1))
    index = np.array([2, 0], np.int32)

    @fj.compile
    def step(x, i):
        return fj.grad(lambda x: (imported(x, i)[0] ** 2).sum())(x)

    want = jax.grad(lambda x: (jnp.take(x, index, axis=0) ** 2).sum())(X)
    np.testing.assert_allclose(step(X, index), want, rtol=1e-6)


def test_pytrees_of_tensors_and_variables_and_static_arguments():
    w = fj.Variable(np.ones((4, 2), F32), name="w")

    def layer(params, x, *, scale, bias):
        return {"y": jnp.tanh(x @ params["w"]) * scale + bias, "n": x.shape[0]}

    imported = fj.from_jax(layer)

    @fj.compile
    def step(x):
        out = imported({"w": w}, x, scale=2.0, bias=np.arange(2, dtype=F32))
        return out["y"], out["n"]

    y, n = step(X)
    np.testing.assert_allclose(y, np.tanh(X @ np.ones((4, 2), F32)) * 2 + np.arange(2), rtol=1e-6)
    assert int(n) == 4


def test_outside_a_compiled_function_it_is_the_jax_function():
    w = fj.Variable(X, name="w")
    np.testing.assert_allclose(fj.from_jax(mixed)(w), mixed(X), rtol=1e-6)


def program(np_, nn):
    """One program written against a numpy namespace and an nn one (flowjit's or jax's)."""

    def run(x):
        a = np_.tril(x) + np_.roll(x, 1, axis=0) + np_.moveaxis(x, 0, 1) + np_.logaddexp(x, x)
        b = np_.linalg.inv(x + 4 * np_.eye(4))
        c = nn.leaky_relu(x - 0.5) + nn.glu(np_.concatenate([x, x], axis=1))
        d = np_.einsum("...ij,jk,kl->...il", x, x, x)
        return a + b + c + d, np_.searchsorted(np_.sort(x[0]), x[1])

    return run


def test_flowjit_numpy_and_nn_reach_every_jax_name():
    got, want = fj.compile(program(fnp, fj.nn))(X), program(jnp, jax.nn)(X)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5)
    assert fnp.pi == np.pi and fnp.newaxis is None and fnp.ndarray is jnp.ndarray
    with pytest.raises(AttributeError, match="flowjit.numpy has no attribute 'not_a_name'"):
        fnp.not_a_name  # noqa: B018


def test_jax_code_that_builds_constants_gives_constants():
    @fj.compile
    def step(x):
        return x * jnp.sqrt(2 / jnp.pi) * jnp.tril(jnp.ones((4, 4))) + jnp.arange(4)

    want = X * np.sqrt(2 / np.pi) * np.tril(np.ones((4, 4))) + np.arange(4)
    np.testing.assert_allclose(step(X), want, rtol=1e-6)


def test_a_jax_function_called_on_a_tensor_is_an_error_naming_the_line():
    step = fj.compile(lambda x: jnp.tanh(x) + 1)
    with pytest.raises(fj.TracingError) as caught:
        step(X)
    message = str(caught.value)
    code = test_a_jax_function_called_on_a_tensor_is_an_error_naming_the_line.__code__
    assert message.startswith(f"test_from_jax.py:{code.co_firstlineno + 1}: ")
    assert "use the flowjit.numpy or fj.nn function" in message.lower()
    assert "fj.from_jax(fn)" in message


def test_an_error_jax_raises_tracing_it_names_the_users_line():
    def bad(x):
        return x @ jnp.ones((3, 3))  # (x is 4x4)

    step = fj.compile(lambda x: fj.from_jax(bad)(x))
    with pytest.raises(fj.TracingError, match=r"test_from_jax.py:\d+: jax could not trace .*bad"):
        step(X)


def test_adding_a_literal_zero_is_the_value_as_under_jax_jit():
    """``nu + eps_root`` with eps_root = 0.0 (optax's Adam): jax.jit gives nu itself, -0.0
    included (XLA drops the zero), and so does the import, with no op and no barrier."""
    x = np.array([-0.0, 0.0, 1.5, -2.0], np.float32)
    fn = lambda x: (x + 0.0, 0.0 + x, x - 0.0)
    step = fj.compile(fj.from_jax(fn))
    for got, want in zip(step(x), jax.jit(fn)(x)):
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
        np.testing.assert_array_equal(got, want)
    assert [op.opdef.name for op in parse(step.lower(x).ir()).ops] == []


def test_a_literal_used_many_times_is_one_constant():
    """jax repeats a scalar literal at each use (optax's b1 for every parameter); the import
    makes one constant of each value (-0.0 and 0.0 apart), as CSE would."""
    fn = lambda xs: [x * 0.25 + x * 0.25 - x * -0.0 + 0.0 * x for x in xs]
    xs = [X + i for i in range(5)]
    step = fj.compile(fj.from_jax(fn))
    for got, want in zip(step(xs), fn(xs)):
        np.testing.assert_array_equal(got, want)
    constants = [
        op.attrs["value"].item()
        for op in parse(step.lower(xs).ir("traced")).ops
        if op.opdef is Cr.constant
    ]
    assert sorted(constants) == [-0.0, 0.0, 0.25]
    assert sorted(np.signbit(constants)) == [False, False, True]
