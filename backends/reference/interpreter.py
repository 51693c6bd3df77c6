"""Runs a graph op by op with each op's numpy reference implementation. ``run_op`` is the one
place that executes an op on numpy values: ``run_graph`` and eager mode (compiler/eager.py)
both call it."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from flowjit.ir import Effect, Graph, Op, Value
from flowjit.backends.xla.jax_call import call_module
from flowjit.ir.ops.control import Run


Observer = Callable[[Op, list, list], None]


def run_graph(
    graph: Graph,
    args: Sequence[np.ndarray],
    state: dict[str, np.ndarray] | None = None,
    observe: Observer | None = None,
) -> list[np.ndarray]:
    """Evaluate ``graph`` on concrete numpy arrays; results have the graph's output types.
    A graph that declares variables reads and updates ``state`` (name -> array) in order.
    ``observe(op, inputs, results)`` is called after each op, in subgraphs too (a write's
    result is the variable's new value)."""
    env = {}
    for value, arg in zip(graph.inputs, args, strict=True):
        env[value] = np.asarray(arg, dtype=value.type.dtype).reshape(value.type.shape)
    if graph.states:
        if state is None or any(h.name not in state for h in graph.states):
            missing = [h.name for h in graph.states if state is None or h.name not in state]
            raise ValueError(f"run_graph needs the values of variables {missing}")
        for handle in graph.states:
            env[handle] = np.asarray(state[handle.name], handle.type.dtype).reshape(
                handle.type.shape
            )
    handles = {h.name: h for h in graph.states}

    def run(sub: Graph, sub_args: Sequence[np.ndarray]) -> list[np.ndarray]:
        """A subgraph, reading and writing this graph's variables (by name)."""
        sub_state = {h.name: env[handles[h.name]] for h in sub.states}
        outs = run_graph(sub, sub_args, sub_state, observe)
        for name, value in sub_state.items():
            env[handles[name]] = value
        return outs

    for op in graph.ops:
        inputs = [env[v] for v in op.inputs]
        results = run_op(op, env, run)
        if observe is not None:
            observe(op, inputs, results)
    for handle in graph.states:
        state[handle.name] = env[handle]
    return [env[v] for v in graph.outputs]


def run_op(op: Op, env: dict[Value, np.ndarray], run: Run) -> list[np.ndarray]:
    """Run ``op`` on the values of its inputs in ``env`` with its reference implementation (an
    op with subgraphs runs them with ``run``) and store its results in ``env``, each of its
    output's type; a write op stores the variable's new value under the variable's handle
    instead. Returns what it stored."""
    extra = {"run": run} if op.opdef.graph_attrs else {}
    if "module" in op.opdef.attrs.values():  # (a jax computation: run with jax)
        extra["call_module"] = call_module
    out = op.opdef.ref(*(env[v] for v in op.inputs), **op.attrs, **extra)
    if Effect.WRITE in op.opdef.effects:
        handle = op.state_handle
        env[handle] = np.asarray(out, handle.type.dtype)
        return [env[handle]]
    outs = out if isinstance(out, tuple) else (out,)
    for value, result in zip(op.outputs, outs, strict=True):
        env[value] = np.asarray(result, dtype=value.type.dtype).reshape(value.type.shape)
    return [env[v] for v in op.outputs]
