"""Every jax.random distribution from an fj.random.Generator (issue 22, item 4): ``g.key()`` hands
jax code a fresh key from the generator's stream, and ``g.<distribution>(...)`` draws with one,
inside and outside compiled functions. With the same key a draw is jax's (integers exactly,
floats to rounding: flowjit compiles the float math of a sampler itself); and the generator's
draws have the distribution's mean."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj

# name -> (arguments after the key, the distribution's mean, or None if not checked)
DISTRIBUTIONS = {
    "ball": ((3,), None),
    "bernoulli": ((0.3, (4000,)), 0.3),
    "beta": ((2.0, 3.0, (4000,)), 0.4),
    "binomial": ((10.0, 0.3, (4000,)), 3.0),
    "bits": (((5,),), None),
    "categorical": ((jnp.log(jnp.array([0.2, 0.3, 0.5])), -1, (4000,)), 1.3),
    "cauchy": (((6,),), None),
    "chisquare": ((3.0, (4000,)), 3.0),
    "choice": ((10, (4,), False), None),
    "dirichlet": ((jnp.array([1.0, 2.0, 3.0]), (4000,)), None),
    "double_sided_maxwell": ((0.0, 1.0, (4000,)), 0.0),
    "exponential": (((4000,),), 1.0),
    "f": ((4.0, 6.0, (4000,)), 1.5),
    "gamma": ((2.0, (4000,)), 2.0),
    "generalized_normal": ((2.0, (4000,)), 0.0),
    "geometric": ((0.25, (4000,)), 4.0),
    "gumbel": (((4000,),), 0.5772),
    "laplace": (((4000,),), 0.0),
    "loggamma": ((2.0, (6,)), None),
    "logistic": (((4000,),), 0.0),
    "lognormal": ((0.5, (4000,)), float(np.exp(0.125))),
    "maxwell": (((4000,),), 2 * np.sqrt(2 / np.pi)),
    "multinomial": ((20.0, jnp.array([0.2, 0.3, 0.5])), None),
    "multivariate_normal": ((jnp.zeros(2), jnp.eye(2), (4000,)), 0.0),
    "normal": (((4000,),), 0.0),
    "orthogonal": ((3,), None),
    "pareto": ((3.0, (4000,)), 1.5),
    "permutation": ((6,), None),
    "poisson": ((3.0, (4000,)), 3.0),
    "rademacher": (((4000,),), 0.0),
    "randint": (((4000,), 0, 10), 4.5),
    "rayleigh": ((1.0, (4000,)), float(np.sqrt(np.pi / 2))),
    "t": ((5.0, (4000,)), 0.0),
    "triangular": ((0.0, 1.0, 3.0, (4000,)), 4 / 3),
    "truncated_normal": ((-1.0, 2.0, (4000,)), None),
    "uniform": (((4000,),), 0.5),
    "wald": ((1.0, (4000,)), 1.0),
    "weibull_min": ((1.0, 2.0, (4000,)), float(np.sqrt(np.pi) / 2)),
}


def test_every_jax_random_distribution_is_listed():
    from flowjit.compiler.random_api import _NOT_DISTRIBUTIONS

    names = {n for n in dir(jax.random) if not n.startswith("_")} - _NOT_DISTRIBUTIONS
    assert names == set(DISTRIBUTIONS)


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_a_draw_with_the_generators_key_is_jaxs(name):
    args, mean = DISTRIBUTIONS[name]
    g = fj.random.Generator(7)
    sample = fj.from_jax(getattr(jax.random, name))

    @fj.compile
    def draw():
        key = g.key()
        return key, sample(key, *args), getattr(g, name)(*args)

    key, got, drawn = draw()
    want = getattr(jax.random, name)(key, *args)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    assert np.shape(drawn) == np.shape(want)
    if mean is not None:  # the generator's own draw (with the next key) has the right mean
        values = np.asarray(drawn, np.float64)
        spread = max(float(np.std(values)), 1e-3) / np.sqrt(values.size)
        assert abs(values.mean() - mean) < 6 * spread, (values.mean(), mean)


def test_keys_advance_the_stream_inside_and_outside_compiled_functions():
    g = fj.random.Generator(0)
    first = np.asarray(g.key())
    second = np.asarray(fj.compile(lambda: g.key())())
    assert first.dtype == np.uint32 and first.shape == (2,)
    assert not np.array_equal(first, second)
    again = fj.random.Generator(0)
    np.testing.assert_array_equal(np.asarray(again.key()), first)
    with pytest.raises(AttributeError, match="not a distribution"):
        g.split  # noqa: B018
