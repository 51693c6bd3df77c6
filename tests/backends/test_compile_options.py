"""The XLA compile options flowjit passes per platform (backends/xla/options.py): a compiled
function gets them, and a compiled function called while jax traces another (which jax
allows only without options) still runs."""

from __future__ import annotations

import numpy as np

import flowjit as fj
from flowjit.backends.xla import options
from flowjit.backends.xla.jaxshim import jax


def ynn_fusions(f, *args) -> int:
    return f.lower(*args).compile().hlo().count('"kind":"__ynn_fusion"')


def test_cpu_programs_hand_elementwise_ops_to_ynnpack(monkeypatch):
    x = np.ones((256, 256), np.float32)

    def fn(x):
        return fj.nn.relu(x * 2 + 1).sum(0)

    with_options = ynn_fusions(fj.compile(fn), x)
    monkeypatch.setattr(options, "COMPILER_OPTIONS", {})
    without = ynn_fusions(fj.compile(fn), x)
    assert with_options > without


def test_a_compiled_function_called_inside_jax_jit():
    f = fj.compile(lambda x: x * 2 + 1)
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(f(x), x * 2 + 1)  # the top-level jit (with options)
    got = jax.jit(lambda x: f(x) - 1)(x)  # called while jax traces: a jit without options
    np.testing.assert_array_equal(got, x * 2)
    np.testing.assert_array_equal(f(x + 1), x * 2 + 3)  # the top-level jit again
    assert f.cache_info().traces == 1
