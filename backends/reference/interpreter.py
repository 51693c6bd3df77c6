"""Runs a graph op by op with each op's numpy reference implementation."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from flowjit.ir import Effect, Graph, Op


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
        extra = {"run": run} if op.opdef.graph_attrs else {}
        inputs = [env[v] for v in op.inputs]
        out = op.opdef.ref(*inputs, **op.attrs, **extra)
        if Effect.WRITE in op.opdef.effects:
            handle = op.state_handle
            env[handle] = np.asarray(out, handle.type.dtype)
            if observe is not None:
                observe(op, inputs, [env[handle]])
            continue
        outs = out if isinstance(out, tuple) else (out,)
        for value, result in zip(op.outputs, outs, strict=True):
            env[value] = np.asarray(result, dtype=value.type.dtype).reshape(value.type.shape)
        if observe is not None:
            observe(op, inputs, [env[v] for v in op.outputs])
    for handle in graph.states:
        state[handle.name] = env[handle]
    return [env[v] for v in graph.outputs]
