"""Dead code elimination: drop ops none of whose outputs is used, unless they have effects;
inside subgraphs too (a subgraph keeps its results, which its op's signature fixes)."""

from __future__ import annotations

from flowjit.ir import Graph

from .subgraphs import in_subgraphs


def dce(graph: Graph) -> tuple[Graph, bool]:
    live = set(graph.outputs)
    kept = []
    nested = False  # whether a subgraph changed
    for op in reversed(graph.ops):
        if op.effects or any(v in live for v in op.outputs):
            if op.subgraphs:
                new = in_subgraphs(op, dce)
                op, nested = (new, True) if new is not None else (op, nested)
            kept.append(op)
            live.update(op.inputs)
    if len(kept) == len(graph.ops) and not nested:
        return graph, False
    out = graph.derive()
    out.ops = kept[::-1]
    out.outputs = list(graph.outputs)
    return out, True
