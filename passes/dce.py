"""Dead code elimination: drop ops none of whose outputs is used, unless they have effects."""

from __future__ import annotations

from flowjit.ir import Graph


def dce(graph: Graph) -> tuple[Graph, bool]:
    live = set(graph.outputs)
    kept = []
    for op in reversed(graph.ops):
        if op.effects or any(v in live for v in op.outputs):
            kept.append(op)
            live.update(op.inputs)
    if len(kept) == len(graph.ops):
        return graph, False
    out = graph.derive()
    out.ops = kept[::-1]
    out.outputs = list(graph.outputs)
    return out, True
