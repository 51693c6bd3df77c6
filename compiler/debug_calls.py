"""The debugging modes' calls of a compiled function (docs/debugging.md): eager mode, which
runs the function op by op on concrete values, and ``check_nans``, which looks for NaN after a
compiled call and names the op that made it."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from flowjit.backends.xla.jaxshim import jax, jnp
from flowjit.runtime.sharding import entered

from .eager import EagerContext
from .nan_check import has_nan, nan_origin
from .trace_cache import TraceCache


def call_eagerly(cache: TraceCache, args: tuple, kwargs: dict) -> Any:
    """Eager mode: run the function op by op on concrete values (compiler/eager.py)."""
    sig = cache.spec.signature(args, kwargs)
    leaves = cache.spec.dynamic_leaves(args, kwargs)
    with entered(cache.mesh), EagerContext(cache.name) as ctx:
        tensors = [ctx.feed(np.asarray(x), t) for x, t in zip(leaves, sig.types, strict=True)]
        outputs, out_treedef = cache.call_fn(tensors, sig, args, kwargs)
        results = [jnp.asarray(ctx.value_of(v)) for v in outputs]
    return jax.tree_util.tree_unflatten(out_treedef, results)


def call_checking_nans(
    cache: TraceCache, call: Callable[[tuple, dict], Any], args: tuple, kwargs: dict
) -> Any:
    """``call(args, kwargs)``, the compiled call, with ``check_nans`` on (docs/errors.md,
    E11): the arguments and every variable the trace uses are copied to the host first; if a
    result or a new variable value holds NaN, the variables the call wrote get their old
    values back and the traced graph runs again on the reference interpreter to name the op
    that made it."""
    record, leaves = cache.prepare(args, kwargs)  # (traces a new signature first)
    inputs = [np.array(x) for x in leaves]  # (copies: the call may donate the arguments)
    before = {var: np.array(v.value) for var, v in record.variables.items()}
    out = call(args, kwargs)
    written = {id(v) for v in record.plan.state_outputs}
    where = [f"result {i}" for i, x in enumerate(jax.tree_util.tree_leaves(out)) if has_nan(x)]
    where += [
        f"variable {var!r}"
        for var, v in record.variables.items()
        if id(v) in written and has_nan(v.value)
    ]
    if where:
        for var, v in record.variables.items():
            if id(v) in written:
                v.set_value(before[var])
        raise nan_origin(cache.name, record.traced, inputs, before, where[0])
    return out
