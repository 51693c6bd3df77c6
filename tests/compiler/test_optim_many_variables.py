"""An Adam step over many variables (issue 24, item 5): the state has one step count for all
of them, read and written once a step; the optimized graph grows by the same number of ops for
each variable added (nothing per variable beyond its own update); the slots share their
variable's lock, so a step takes one lock per variable; and the values are optax's."""

from __future__ import annotations

import re

import numpy as np
import optax
import pytest

import flowjit as fj

SIZE = 8
X = np.linspace(-1, 1, SIZE, dtype=np.float32)


def adam_step(n: int):
    """A compiled Adam step over ``n`` fresh variables, the variables, the optimizer and the
    initial values."""
    rng = np.random.default_rng(n)
    values = [rng.standard_normal(SIZE).astype(np.float32) for _ in range(n)]
    variables = [fj.Variable(v, name=f"w{i}") for i, v in enumerate(values)]
    opt = fj.optim.Adam(1e-2)

    @fj.compile
    def step(x):
        loss = sum(((v * x) ** 2).sum() for v in variables)
        opt.apply(fj.gradients(loss, variables), variables)
        return loss

    return step, variables, opt, values


def optimized_ops(n: int) -> int:
    step, *_ = adam_step(n)
    return step.lower(X).passes()[-1].ops_after


def test_one_step_count_read_and_written_once_for_all_variables():
    step, variables, opt, _ = adam_step(100)
    traced = step.lower(X).ir("traced")  # (the first trace makes the state)
    state = opt.variables()
    counts = [v for v in state if v.name.endswith("count")]
    assert len(state) == 2 * len(variables) + 1
    assert len(counts) == 1 and counts[0].shape == ()
    # (the IR names it $w0_count)
    assert len(re.findall(r"read_variable\(\$\w*count\)", traced)) == 1
    assert len(re.findall(r"assign_variable\(\$\w*count,", traced)) == 1


def test_the_optimized_graph_grows_by_the_same_ops_for_each_variable():
    small, medium, large = (optimized_ops(n) for n in (10, 20, 30))
    assert medium - small == large - medium > 0


def test_a_step_takes_one_lock_per_variable():
    step, variables, opt, _ = adam_step(50)
    step(X)
    for v in variables:
        slots = opt.slots(v)
        assert slots["mu"]._lock is slots["nu"]._lock is v._lock
        assert slots["count"]._lock is variables[0]._lock  # (shared: with the first's)
    locks = {id(v._lock) for v in [*variables, *opt.variables()]}
    assert len(locks) == len(variables)


@pytest.mark.parametrize("n", [1, 40])
def test_steps_match_optax(n):
    step, variables, _, values = adam_step(n)
    tx = optax.adam(1e-2)
    params = [np.asarray(v) for v in values]
    state = tx.init(params)

    for _ in range(3):
        step(X)
        grads = [2 * p * X * X for p in params]  # d/dp of ((p x)^2).sum()
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    for v, p in zip(variables, params):
        np.testing.assert_allclose(np.asarray(v), np.asarray(p), rtol=1e-5, atol=1e-6)
