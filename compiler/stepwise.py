"""A compiled function's calls run step by step (it has host calls, runtime/steps.py):
compiled clusters, transfers and host calls over the call's values, outside any jax.jit."""

from __future__ import annotations

from typing import Any

from flowjit.backends.xla.jaxshim import jax, jnp, trace_state_clean
from flowjit.ir import TracingError
from flowjit.runtime import HostStep, run_plan
from flowjit.runtime.interrupts import hold_interrupts, release_interrupts

from .trace_cache import TraceRecord


def refuse_under_jax(name: str, what: str, why: str, also: str = "", **where: Any) -> None:
    """Function ``name`` does ``what`` (writes Variables, calls the host) and was called while
    jax traces (jax.jit, jax.grad, ...): refused before any variable is read or changed."""
    raise TracingError(
        f"{name} {what} and was called inside a jax transformation (jax.jit, "
        f"jax.grad, jax.vmap, ...), {why}. Call it outside jax's transformations{also}",
        **where,
    )


def call_steps(name: str, mesh: Any, record: TraceRecord, leaves: list) -> Any:
    """A call of function ``name`` run step by step, on its dynamic argument ``leaves``:
    variables are read before and rebound after all steps, so a failing step changes none of
    them. Over ``mesh``, the arguments, results and new variable values are placed as their
    shardings say (each cluster runs SPMD on the shardings of its inputs)."""
    plan = record.plan
    host = next((s for s in plan.steps if isinstance(s, HostStep)), None)
    if host is not None and not trace_state_clean():
        refuse_under_jax(
            name,
            f"calls the host function {host.name}",
            "where its Python function would get no values",
            op="host_call",
            loc=host.where,
        )
    leaves = [
        jnp.asarray(x) if s is None else jax.device_put(x, s)
        for x, s in zip(leaves, record.in_shardings)
    ]
    if mesh is not None:
        for variable in plan.state_inputs:
            variable.place_on(mesh, name)
    # the variables are held through every step, host calls included: a host call that
    # calls a compiled function on them (in this thread) does not wait, another thread does
    with plan.variable_locks:
        state = {v: v._checked() for v in plan.state_inputs}
        outs, new_values = run_plan(plan, leaves, state)
        placed = {
            v: x if v.sharding is None else jax.device_put(x, v.sharding)
            for v, x in new_values.items()
        }
        held = hold_interrupts()  # (all rebound, or none: runtime/interrupts.py)
        try:
            for variable, value in placed.items():
                variable._rebind(value, name)
        finally:
            if held:
                release_interrupts()
    outs = [x if s is None else jax.device_put(x, s) for x, s in zip(outs, record.out_shardings)]
    return jax.tree_util.tree_unflatten(record.out_treedef, outs)
