"""A graph as Graphviz ``dot`` text: one node per op (its name, result types and source
line), one edge per use; a subgraph (a loop body, a branch, a cluster) is drawn as a box
inside its op."""

from __future__ import annotations

import json

from .core import Graph, Op, Value
from .printer import device_text


def to_dot(graph: Graph) -> str:
    lines = [f"digraph {json.dumps(graph.name)} {{", "  node [shape=box, fontname=monospace];"]
    counter = iter(range(1 << 30))
    _emit(graph, lines, counter, "  ")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _label(op: Op) -> str:
    types = ", ".join(str(v.type) for v in op.outputs)
    where = f"\n{op.loc}" if op.loc else ""
    device = f"\non {device_text(op.device)}" if op.device else ""
    return f"{op.opdef.name}{': ' + types if types else ''}{device}{where}"


def _emit(graph: Graph, lines: list[str], counter, indent: str) -> None:
    node: dict[Value, str] = {}
    for i, value in enumerate(graph.inputs):
        name = f"n{next(counter)}"
        node[value] = name
        lines.append(
            f"{indent}{name} [label={json.dumps(f'input {i}: {value.type}')}, shape=oval];"
        )
    for op in graph.ops:
        name = f"n{next(counter)}"
        lines.append(f"{indent}{name} [label={json.dumps(_label(op))}];")
        for value in op.inputs:
            if value in node:
                lines.append(f"{indent}{node[value]} -> {name};")
        node.update(dict.fromkeys(op.outputs, name))
        for key in op.opdef.graph_attrs:
            lines.append(f"{indent}subgraph cluster_{next(counter)} {{")
            lines.append(f"{indent}  label={json.dumps(f'{op.opdef.name} {key}')};")
            _emit(op.attrs[key], lines, counter, indent + "  ")
            lines.append(f"{indent}}}")
    out = f"n{next(counter)}"
    lines.append(f'{indent}{out} [label="return", shape=oval];')
    for value in graph.outputs:
        if value in node:
            lines.append(f"{indent}{node[value]} -> {out};")
