"""Runs a graph op by op with each op's numpy reference implementation."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flowjit.ir import Graph


def run_graph(graph: Graph, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Evaluate ``graph`` on concrete numpy arrays; results have the graph's output types."""
    env = {}
    for value, arg in zip(graph.inputs, args, strict=True):
        env[value] = np.asarray(arg, dtype=value.type.dtype).reshape(value.type.shape)
    for op in graph.ops:
        out = op.opdef.ref(*(env[v] for v in op.inputs), **op.attrs)
        outs = out if isinstance(out, tuple) else (out,)
        for value, result in zip(op.outputs, outs, strict=True):
            env[value] = np.asarray(result, dtype=value.type.dtype).reshape(value.type.shape)
    return [env[v] for v in graph.outputs]
