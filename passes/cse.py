"""Common subexpression elimination: a pure op with the same op, inputs and attributes as an
earlier one is replaced by it (in subgraphs too, each on its own). Ops with effects are never
merged."""

from __future__ import annotations

from typing import Any

import numpy as np

from flowjit.ir import Graph, Op, Value, print_graph

from .subgraphs import in_subgraphs


def _attr_key(value: Any) -> Any:
    if isinstance(value, Graph):  # subgraphs are closed: equal text and functions, equal meaning
        return ("graph", print_graph(value, locs=False), tuple(map(id, value.functions())))
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, float) and value != value:
        return ("nan",)
    if isinstance(value, tuple):
        return tuple(_attr_key(v) for v in value)
    return (type(value).__name__, value)


def cse(graph: Graph) -> tuple[Graph, bool]:
    seen: dict[Any, int] = {}  # an op's key -> the index in out.ops of the op kept for it
    replace: dict[Value, Value] = {}
    out = graph.derive()
    nested = False  # whether a subgraph changed
    for op in graph.ops:
        if op.subgraphs:
            new = in_subgraphs(op, cse)
            op, nested = (new, True) if new is not None else (op, nested)
        inputs = tuple(replace.get(v, v) for v in op.inputs)
        if op.effects:
            out.ops.append(op.replace(inputs=inputs))
            continue
        key = (
            op.opdef,
            op.device,
            tuple(id(v) for v in inputs),
            tuple((k, _attr_key(v)) for k, v in op.attrs.items()),
        )
        if key in seen:  # merged: the kept op stands for this one's line too
            index = seen[key]
            kept = out.ops[index]
            replace.update(zip(op.outputs, kept.outputs))
            if kept.loc is not None and op.loc is not None:
                out.ops[index] = kept.replace(loc=kept.loc.merged(op.loc))
            continue
        new = op if inputs == op.inputs else op.replace(inputs=inputs)
        seen[key] = len(out.ops)
        out.ops.append(new)
    out.outputs = [replace.get(v, v) for v in graph.outputs]
    return (out, True) if replace or nested else (graph, False)
