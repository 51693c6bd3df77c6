"""The paths a compiled function's calls take (compiler/api.py's Route): a pure function, one
that comes to use variables, one with host calls; and what Lowered/Compiled do on each."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj

F32 = np.float32


def test_a_donated_argument_of_a_function_with_variables_is_named():
    """The stateful entry donates the argument too: using it again names it, as for a pure
    function (docs/errors.md, E14)."""
    total = fj.Variable(np.zeros(3, F32), name="total")

    @fj.compile(donate_argnums=0)
    def f(x):
        total.assign_add(x)
        return x * 2

    x = jnp.ones(3, jnp.float32)
    f(x)
    with pytest.raises(fj.DonationError, match=r"args\[0\] was donated to an earlier call"):
        f(x)
    np.testing.assert_array_equal(np.asarray(total), np.ones(3, F32))  # (the refused call: no)
    np.testing.assert_array_equal(f(jnp.ones(3, jnp.float32)), np.full(3, 2.0, F32))
    np.testing.assert_array_equal(np.asarray(total), np.full(3, 2.0, F32))


def test_a_function_that_comes_to_use_variables_after_pure_calls():
    """A signature traced later may use variables the earlier ones did not: the function
    moves to its stateful entry, and the earlier signature still gives its results."""
    count = fj.Variable(np.zeros((), F32), name="count")

    @fj.compile(static_argnums=1)
    def f(x, counting):
        if counting:
            count.assign_add(1.0)
        return x + 1

    np.testing.assert_array_equal(f(np.ones(2, F32), False), np.full(2, 2.0, F32))
    np.testing.assert_array_equal(f(np.ones(2, F32), True), np.full(2, 2.0, F32))
    np.testing.assert_array_equal(f(np.ones(2, F32), False), np.full(2, 2.0, F32))
    assert float(np.asarray(count)) == 1.0
    compiled = f.lower(np.ones(2, F32), True).compile()
    np.testing.assert_array_equal(compiled(np.ones(2, F32), True), np.full(2, 2.0, F32))
    assert float(np.asarray(count)) == 2.0  # (a Compiled call updates the variables too)
    assert f.cache_info().misses == 2


def test_a_function_with_host_calls_and_variables_runs_step_by_step():
    seen = []
    total = fj.Variable(np.zeros(2, F32), name="total")

    def record(a):
        seen.append(np.asarray(a).copy())
        return a

    @fj.compile
    def f(x):
        y = fj.host_call(record, x * 2, result_shape_dtypes=jnp.zeros(2, jnp.float32))
        total.assign_add(y)
        return y + 1

    np.testing.assert_array_equal(f(np.ones(2, F32)), np.full(2, 3.0, F32))
    np.testing.assert_array_equal(f(np.ones(2, F32)), np.full(2, 3.0, F32))
    assert len(seen) == 2
    np.testing.assert_array_equal(np.asarray(total), np.full(2, 4.0, F32))
    lowered = f.lower(np.ones(2, F32))
    assert "host_call" in lowered.ir()
    with pytest.raises(fj.LoweringError, match="has host calls"):
        lowered.compile()
