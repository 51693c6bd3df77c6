"""The trace cache: same signature -> no retrace; a new shape, dtype, structure or static
value -> exactly one retrace; the warning after more than 5 retraces names the argument."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp


def counting(**compile_kwargs):
    calls = []

    def fn(x, *rest, **kw):
        calls.append(1)
        return x * 2

    return fj.compile(fn, **compile_kwargs), calls


def test_same_signature_does_not_retrace():
    f, calls = counting()
    x = np.ones((3,), np.float32)
    for _ in range(4):
        np.testing.assert_allclose(f(x), 2 * x)
    f(np.zeros((3,), np.float32))  # new values, same signature
    f(jnp.ones((3,), jnp.float32))  # a jax array of the same type
    assert len(calls) == 1
    assert f.cache_info() == fj.CacheInfo(hits=5, misses=1, traces=1)


@pytest.mark.parametrize(
    "second",
    [
        np.ones((4,), np.float32),  # new shape
        np.ones((3,), np.int32),  # new dtype
        np.ones((3, 1), np.float32),  # new rank
    ],
)
def test_new_shape_or_dtype_retraces_once(second):
    f, calls = counting()
    f(np.ones((3,), np.float32))
    f(second)
    f(second)
    f(np.ones((3,), np.float32))
    assert len(calls) == 2
    assert f.cache_info().traces == 2


def test_static_value_retraces_once_per_value():
    seen = []

    @fj.compile(static_argnums=1)
    def power(x, n):
        seen.append(n)
        out = x
        for _ in range(n - 1):
            out = out * x
        return out

    x = np.full((2,), 2.0, np.float32)
    np.testing.assert_allclose(power(x, 3), 8.0)
    np.testing.assert_allclose(power(x, 3), 8.0)
    np.testing.assert_allclose(power(x, 4), 16.0)
    assert seen == [3, 4]


def test_static_argnames():
    seen = []

    @fj.compile(static_argnames="mode")
    def f(x, mode="double"):
        seen.append(mode)
        return x * 2 if mode == "double" else x * 3

    x = np.ones((2,), np.float32)
    np.testing.assert_allclose(f(x, mode="double"), 2.0)
    np.testing.assert_allclose(f(x, mode="triple"), 3.0)
    np.testing.assert_allclose(f(x, mode="triple"), 3.0)
    assert seen == ["double", "triple"]


def test_python_scalars_are_float32_and_int32_and_do_not_retrace_by_value():
    f, calls = counting()
    assert f(1.5).dtype == np.float32
    assert float(f(2.5)) == 5.0
    assert f(3).dtype == np.int32
    assert f(True).dtype == np.int32  # bool * 2 is an int, as in jax
    assert len(calls) == 3  # 1.5 and 2.5 share one trace


def test_nested_structures_and_none():
    @fj.compile
    def f(tree):
        return {"sum": tree["a"] + tree["b"][0], "skip": None, "pair": (tree["b"][1], 1.0)}

    tree = {"a": np.ones(2, np.float32), "b": [np.full(2, 2.0, np.float32), np.int32(7)]}
    out = f(tree)
    np.testing.assert_allclose(out["sum"], 3.0)
    assert out["skip"] is None
    assert int(out["pair"][0]) == 7 and float(out["pair"][1]) == 1.0
    tree["extra"] = None  # a new structure retraces
    f(tree)
    assert f.cache_info().traces == 2


def test_retrace_warning_names_the_changed_argument(caplog):
    f, calls = counting()
    with caplog.at_level(logging.WARNING, logger="flowjit"):
        for n in range(1, 7):  # 6 traces = 5 retraces: no warning yet
            f(np.ones((n,), np.float32), np.ones((2,), np.float32))
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        f(np.ones((7,), np.float32), np.ones((2,), np.float32))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "x: shape (6,) -> (7,)" in warnings[0], warnings[0]
    assert len(calls) == 7


def test_retrace_warning_names_a_nested_path(caplog):
    f = fj.compile(lambda a, tree: tree["w"] * a)
    with caplog.at_level(logging.WARNING, logger="flowjit"):
        for n in range(1, 8):
            f(np.float32(1), {"w": np.ones((n,), np.float32)})
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings and "tree['w']: shape (6,) -> (7,)" in warnings[-1], warnings[-1]


def test_every_retrace_is_logged_with_what_changed(caplog):
    @fj.compile(static_argnums=2)
    def step(x, params, n):
        return (x @ params["w"]) * n

    w = {"w": np.ones((784, 10), np.float32)}
    with caplog.at_level(logging.INFO, logger="flowjit"):
        step(np.ones((128, 784), np.float32), w, 1)
        step(np.ones((64, 784), np.float32), w, 1)
        step(np.ones((64, 784), np.float32), {"w": np.ones((784, 10), np.float16)}, 1)
        step(np.ones((64, 784), np.float32), {"w": np.ones((784, 10), np.float16)}, 2)
    retraces = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retracing")]
    assert retraces == [
        "retracing step (trace 2): x: shape (128, 784) -> (64, 784)",
        "retracing step (trace 3): params['w']: dtype f32 -> f16",
        "retracing step (trace 4): n: static value 1 -> 2",
    ]


def test_lowered_and_compiled():
    @fj.compile
    def f(x, w):
        return fnp.tanh(x @ w).sum()

    x, w = np.ones((4, 3), np.float32), np.ones((3, 2), np.float32)
    lowered = f.lower(x, w)
    traced, optimized = lowered.ir("traced"), lowered.ir()
    assert traced.startswith("graph @f(%0: f32[4,3], %1: f32[3,2])")
    assert "dot_general" in optimized and "tanh" in optimized and "reduce_sum" in optimized
    assert fj.ir.print_graph(fj.ir.parse(optimized)) == optimized
    hlo_text = lowered.stablehlo()
    assert "stablehlo.dot_general" in hlo_text and "stablehlo.tanh" in hlo_text
    compiled = lowered.compile()
    np.testing.assert_allclose(compiled(x, w), np.tanh(x @ w).sum(), rtol=1e-6)
    assert "dot" in compiled.hlo() and "tanh" in compiled.hlo()
    assert compiled.cost_analysis()["flops"] > 0
    assert compiled.memory_analysis().argument_size_in_bytes == (12 + 6) * 4
    with pytest.raises(ValueError, match="stage"):
        lowered.ir("bogus")


def test_user_line_reaches_xla_metadata():
    @fj.compile
    def f(x):
        return fnp.exp(x)  # this line is named in the HLO

    import inspect

    line = inspect.getsourcelines(f.fn)[1] + 2
    assert f'test_cache.py":{line}' in f.lower(np.ones(2, np.float32)).stablehlo()
    hlo = f.lower(np.ones(2, np.float32)).compile().hlo()
    assert '"test_cache.py"' in hlo and f"line={line} " in hlo


def test_compiled_takes_the_functions_arguments_static_included():
    f = fj.compile(lambda x, n: x * n, static_argnums=1)
    compiled = f.lower(np.ones(2, np.float32), 3).compile()
    np.testing.assert_allclose(compiled(np.full(2, 2.0, np.float32), 3), 6.0)


def test_backend_choice():
    f = fj.compile(lambda x: x + 1, backend="cpu")
    out = f(np.zeros(2, np.float32))
    assert out.devices() == {jax.devices("cpu")[0]}
    with pytest.raises(ValueError, match="backend 'nonesuch' is not available"):
        fj.compile(lambda x: x, backend="nonesuch")
