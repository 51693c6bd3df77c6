"""jax_call on random inputs against numpy expressions written here: a module holding
f(x, y) = (x * y, sin(x)), exported by jax.export, and its first VJP (derivative=1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from opcheck import OpCase, check_case, params, rand

from flowjit.ir import JaxModule, TensorType
from flowjit.ir.ops import jax_call as J


def _f(x, y):
    return x * y, jnp.sin(x)


_SPEC = jax.ShapeDtypeStruct((2, 3), np.float32)
_EXPORTED = jax.export.export(jax.jit(_f), platforms=["cpu", "cuda", "tpu"])(_SPEC, _SPEC)
# as a parsed graph holds it: bytes only, loaded by the backend when it runs
MODULE = JaxModule(_EXPORTED.serialize(vjp_order=JaxModule.MAX_DERIVATIVE))
T = TensorType((2, 3), np.float32)


def call_case(rng, dt):
    attrs = {"name": "_f", "derivative": 0, "result_types": (T, T), "module": MODULE}
    return [rand(rng, (2, 3), dt), rand(rng, (2, 3), dt)], attrs


def vjp_case(rng, dt):
    attrs = {"name": "_f", "derivative": 1, "result_types": (T, T), "module": MODULE}
    return [rand(rng, (2, 3), dt) for _ in range(4)], attrs


CASES = [
    OpCase(J.jax_call, (np.float32,), call_case, lambda x, y, **_: (x * y, np.sin(x))),
    OpCase(
        J.jax_call,
        (np.float32,),
        vjp_case,
        lambda x, y, a, b, **_: (a * y + b * np.cos(x), a * x),  # (the cotangents of x, y)
        name="jax_call_vjp",
    ),
]


@pytest.mark.parametrize("case, dtype", params(CASES))
def test_op_against_numpy(case, dtype):
    check_case(case, dtype)
