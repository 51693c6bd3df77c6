"""Helpers for front-end tests: jax's result dtypes, widened numpy references, and comparing
every output of a compiled function at once."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from opcheck import assert_matches


def jax_dtype(fn, *args) -> np.dtype:
    """The dtype of ``fn(*args)`` under jax.numpy's promotion with its default 32-bit types;
    with a 64-bit argument and jax_enable_x64 on, in jax's 64-bit mode (flowjit keeps the
    64-bit types it is given then; with x64 off they are 32-bit, as in jax)."""
    x64 = jax.config.jax_enable_x64 and any(np.dtype(a.dtype).itemsize == 8 for a in args)
    with jax.enable_x64(x64):
        return np.dtype(jax.eval_shape(fn, *[jnp.asarray(a) for a in args]).dtype)


def wide(x) -> np.ndarray:
    """``x`` in float64 or int64 (exact for every dtype; numpy then computes in 64 bits, and
    wraps like the narrow type when the result is cast back)."""
    x = np.asarray(x)
    return (
        x.astype(np.float64)
        if x.dtype.kind in "fV"
        else x.astype(np.int64)
        if x.dtype.kind in "iu"
        else x
    )


def expect_all(got: dict, want: dict, scale: float = 1.0) -> None:
    """Compare every entry (shape, dtype, values; a tuple entry item by item) and report all
    mismatches together."""
    assert set(got) == set(want), f"outputs {sorted(got)} != {sorted(want)}"
    errors = []
    for name, w in want.items():
        pairs = zip(got[name], w) if isinstance(w, tuple) else [(got[name], w)]
        for i, (g, w_i) in enumerate(pairs):
            g = np.asarray(g)
            try:
                assert_matches(g, np.asarray(w_i), g.dtype, scale, f"{name}[{i}]")
            except AssertionError as err:
                errors.append(f"{name}: {err}")
    assert not errors, "\n".join(errors)


def reference(np_fn, jnp_fn, *args, **kwargs) -> np.ndarray:
    """``np_fn`` on the widened ``args``, rounded to the dtype jax.numpy gives ``jnp_fn``."""
    with np.errstate(all="ignore"):
        value = np.asarray(np_fn(*[wide(a) for a in args], **kwargs))
    return value.astype(jax_dtype(lambda *xs: jnp_fn(*xs, **kwargs), *args))
