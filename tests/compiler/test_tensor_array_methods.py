"""A Tensor has jax.Array's methods (issue 22, item 2): those flowjit does not define itself
come through fj.from_jax, with jax's arguments and results; ``t.at[...]`` updates as jax's."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj

RNG = np.random.default_rng(0)
X = RNG.random((3, 4)).astype(np.float32)
I = np.array([2, 0], np.int32)

CALLS = {
    "at_set": lambda x, i: x.at[i, 1].set(5.0),
    "at_add": lambda x, i: x.at[:, 0].add(x[:, 1]),
    "at_max": lambda x, i: x.at[i].max(0.5),
    "at_get": lambda x, i: x.at[i].get(),
    "at_subtract": lambda x, i: x.at[1:].subtract(1.0),
    "at_apply": lambda x, i: x.at[0].apply(lambda v: v * 3),
    "clip": lambda x, i: x.clip(0.2, 0.8),
    "cumsum": lambda x, i: x.cumsum(axis=1),
    "cumprod": lambda x, i: x.cumprod(axis=0),
    "sort": lambda x, i: x.sort(axis=0),
    "argsort": lambda x, i: x.argsort(),
    "round": lambda x, i: x.round(2),
    "ravel": lambda x, i: x.ravel(),
    "swapaxes": lambda x, i: x.swapaxes(0, 1),
    "take": lambda x, i: x.take(i, axis=1),
    "dot": lambda x, i: x.dot(x.T),
    "mT": lambda x, i: x.mT,
    "repeat": lambda x, i: x.repeat(2, axis=0),
    "diagonal": lambda x, i: x.diagonal(),
    "trace": lambda x, i: x.trace(),
    "ptp": lambda x, i: x.ptp(axis=1),
    "searchsorted": lambda x, i: x[0].sort().searchsorted(x[1]),
    "nonzero": lambda x, i: (x > 0.5).nonzero(size=12)[1],
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_tensor_method_equals_jax_arrays(name):
    got = fj.compile(CALLS[name])(X, I)
    want = CALLS[name](jnp.asarray(X), jnp.asarray(I))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)


def test_item_gives_the_value_in_eager_mode_and_says_why_not_when_compiled():
    with pytest.raises(fj.TracingError, match="item"):
        fj.compile(lambda x: x[0, 0].item())(X)
    fj.config.update("eager", True)
    try:
        got = fj.compile(lambda x: x[0, 0].item() + 1)(X)
    finally:
        fj.config.update("eager", False)
    assert got == pytest.approx(float(X[0, 0]) + 1)
