"""Running a pass inside the subgraphs of control-flow ops (branches and loop bodies are
closed graphs, so a pass treats each on its own)."""

from __future__ import annotations

from typing import Callable

from flowjit.ir import Graph, Op

Pass = Callable[[Graph], tuple[Graph, bool]]


def in_subgraphs(op: Op, p: Pass) -> Op | None:
    """``op`` with ``p`` applied to each of its subgraphs, or None if none changed."""
    attrs, changed = dict(op.attrs), False
    for name in op.opdef.graph_attrs:
        attrs[name], changed_here = p(op.attrs[name])
        changed = changed or changed_here
    return op.replace(attrs=attrs) if changed else None


def count_ops(graph: Graph) -> int:
    """Ops in ``graph``, counting those in subgraphs too."""
    return sum(1 + sum(count_ops(sub) for sub in op.subgraphs) for op in graph.ops)
