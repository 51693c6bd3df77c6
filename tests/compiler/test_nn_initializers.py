"""fj.nn.initializers is jax.nn.initializers (issue 22, item 2): each initializer, made with
jax's arguments and called on a key from an fj.random.Generator and a shape inside a compiled
function, gives what jax's gives with that key."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import flowjit as fj

# name -> the factory's arguments (None: the name is itself an initializer), the shape
INITIALIZERS = {
    "constant": ((0.5,), (3, 4)),
    "delta_orthogonal": ((), (3, 3, 4, 4)),
    "glorot_normal": ((), (6, 4)),
    "glorot_uniform": ((), (6, 4)),
    "he_normal": ((), (6, 4)),
    "he_uniform": ((), (6, 4)),
    "kaiming_normal": ((), (6, 4)),
    "kaiming_uniform": ((), (6, 4)),
    "lecun_normal": ((), (6, 4)),
    "lecun_uniform": ((), (6, 4)),
    "normal": ((0.02,), (6, 4)),
    "ones": (None, (3, 4)),
    "orthogonal": ((), (4, 4)),
    "truncated_normal": ((0.02,), (6, 4)),
    "uniform": ((0.1,), (6, 4)),
    "variance_scaling": ((2.0, "fan_avg", "uniform"), (6, 4)),
    "xavier_normal": ((), (6, 4)),
    "xavier_uniform": ((), (6, 4)),
    "zeros": (None, (3, 4)),
}


def test_every_initializer_is_listed():
    names = {
        n
        for n in dir(jax.nn.initializers)
        if not n.startswith("_") and not isinstance(getattr(jax.nn.initializers, n), type)
    }
    assert names == set(INITIALIZERS)


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_an_initializer_with_a_generators_key_is_jaxs(name):
    args, shape = INITIALIZERS[name]
    ours, theirs = getattr(fj.nn.initializers, name), getattr(jax.nn.initializers, name)
    if args is not None:
        ours, theirs = ours(*args), theirs(*args)
    g = fj.random.Generator(3)

    @fj.compile
    def init():
        key = g.key()
        return key, ours(key, shape)

    key, got = init()
    want = theirs(key, shape)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
