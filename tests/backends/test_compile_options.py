"""The XLA compile options flowjit passes per platform and program (backends/xla/options.py):
on CPU, a program with a convolution gets them and one without does not; a compiled function
called while jax traces another (where jax takes no options) still runs."""

from __future__ import annotations

import numpy as np

import flowjit as fj
from flowjit.backends.xla import options
from flowjit.backends.xla.jaxshim import jax

X = np.linspace(-1, 1, 8 * 16 * 16 * 8, dtype=np.float32).reshape(8, 16, 16, 8)
K = np.linspace(-1, 1, 3 * 3 * 8 * 16, dtype=np.float32).reshape(3, 3, 8, 16) / 8


def conv_net(x, k):
    return fj.nn.max_pool2d(fj.nn.relu(fj.nn.conv2d(x, k) + 1.0)).sum()


def dense_net(x, k):
    return fj.nn.relu(x.reshape(8, -1)[:, :1152] @ k.reshape(1152, 1) + 1.0).sum()


def ynn_fusions(f, *args) -> int:
    return f.lower(*args).compile().hlo().count('"kind":"__ynn_fusion"')


def test_only_programs_with_a_convolution_take_the_options(monkeypatch):
    with_conv = ynn_fusions(fj.compile(conv_net), X, K)
    dense = ynn_fusions(fj.compile(dense_net), X, K)
    monkeypatch.setattr(options, "COMPILER_OPTIONS", {})
    without_conv = ynn_fusions(fj.compile(conv_net), X, K)
    assert with_conv > without_conv  # the bias add and the reduce join YNNPACK's fusions
    assert dense == ynn_fusions(fj.compile(dense_net), X, K)  # no options: the same program


def test_a_function_takes_the_options_after_its_first_trace():
    f = fj.compile(conv_net)
    want = float(f.lower(X, K).run_reference(X, K)[0])
    np.testing.assert_allclose(float(f(X, K)), want, rtol=1e-5)
    np.testing.assert_allclose(float(f(X, K)), want, rtol=1e-5)
    assert f.cache_info().traces == 1  # (the jax trace was redone; flowjit's was not)


def test_a_compiled_function_called_inside_jax_jit():
    f = fj.compile(conv_net)
    want = float(f(X, K))
    got = jax.jit(lambda x: f(x, K) + 1)(X)  # called while jax traces: entries without options
    np.testing.assert_allclose(float(got), want + 1, rtol=1e-5)
    g = fj.compile(conv_net)  # the first call inside jax.jit, then one outside
    np.testing.assert_allclose(float(jax.jit(lambda x: g(x, K))(X)), want, rtol=1e-5)
    np.testing.assert_allclose(float(g(X, K)), want, rtol=1e-5)
    assert f.cache_info().traces == g.cache_info().traces == 1


def test_a_program_with_a_grouped_convolution_takes_xlas_defaults(monkeypatch):
    """(whose YNNPACK runs grouped convolutions; the option's list does not have them)"""
    def grouped_outside_ynnpack(f) -> int:  # (one that YNNPACK runs is inside a fusion)
        hlo = f.lower(X, K).compile().hlo()
        entry = hlo[hlo.index("ENTRY") :].splitlines()
        return sum(" convolution(" in line and "feature_group_count" in line for line in entry)

    def per_example_kernel_gradients(x, k):  # (a convolution with a group per example)
        loss = lambda x, k: (fj.nn.conv2d(x[None], k) ** 2).sum()  # noqa: E731
        return fj.vmap(fj.grad(loss, argnums=1), in_axes=(0, None))(x, k)

    assert grouped_outside_ynnpack(fj.compile(per_example_kernel_gradients)) == 0
    monkeypatch.setattr(options, "_grouped_convolution", lambda op: False)
    assert grouped_outside_ynnpack(fj.compile(per_example_kernel_gradients)) == 1
