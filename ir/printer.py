"""The IR text form. Deterministic: values are numbered in definition order.

    graph @step(%0: f32[3], %1: f32[]) state($w: f32[3]) {
      %2: f32[3] = read_variable($w) loc("train.py":4)
      %3: f32[3] = add(%0, %2) loc("train.py":5)
      assign_variable($w, %3) loc("train.py":6)
      %4: f32[] = reduce_sum(%3) {axes=[0], keepdims=false} loc("train.py":7)
      return %4
    }

Variables appear as handles ``$name`` declared by ``state(...)``; after discharge_state the
header says where each went instead: ``state_map($w: in=2 out=0)``.

A host call's Python function prints as its number among the graph's functions
(``graph.functions()``): ``callback=0``.

``parse(print_graph(g))`` prints back to the same text (a tested invariant), and
``parse(print_graph(g), functions=g.functions())`` is ``g`` again, its functions included.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from .core import Graph, Value
from .types import JaxModule, MeshAxes, TensorType, dtype_name


def print_graph(graph: Graph, *, locs: bool = True) -> str:
    numbers = {id(f): i for i, f in enumerate(graph.functions())}
    return _print(graph, locs, "", numbers) + "\n"


def _print(graph: Graph, locs: bool, indent: str, functions: dict[int, int]) -> str:
    """The graph's text, without the final newline; its lines are indented by ``indent``
    (a subgraph is printed inside its op's attributes, its values numbered from %0).
    ``functions`` numbers the Python functions of the whole printed graph, by id."""
    names: dict[Value, str] = {h: f"${h.name}" for h in graph.states}

    def name(v: Value) -> str:
        if v not in names:
            names[v] = f"%{len(names) - len(graph.states)}"
        return names[v]

    args = ", ".join(f"{name(v)}: {v.type}" for v in graph.inputs)
    header = f"graph @{graph.name}({args})"
    if graph.states:
        header += " state(" + ", ".join(f"${h.name}: {h.type}" for h in graph.states) + ")"
    if graph.state_map is not None:
        slots = (
            f"${s.name}: in={format_attr(s.input)} out={format_attr(s.output)}"
            for s in graph.state_map
        )
        header += " state_map(" + ", ".join(slots) + ")"
    lines = [header + " {"]
    for op in graph.ops:
        ins = ", ".join(names.get(v, "%<undefined>") for v in op.inputs)
        outs = ", ".join(f"{name(v)}: {v.type}" for v in op.outputs)
        text = (
            f"{indent}  {outs} = {op.opdef.name}({ins})"
            if outs
            else f"{indent}  {op.opdef.name}({ins})"
        )
        if op.attrs:
            attrs = []
            for key, value in op.attrs.items():
                kind = op.opdef.attrs.get(key)
                if kind == "graph":
                    attrs.append(_print(value, locs, indent + "    ", functions))
                elif kind == "function":
                    attrs.append(str(functions[id(value)]))
                else:
                    attrs.append(format_attr(value))
            text += " {" + ", ".join(f"{k}={a}" for k, a in zip(op.attrs, attrs)) + "}"
        if op.device is not None:
            text += f" device({json.dumps(device_text(op.device))})"
        if locs and op.loc is not None:
            where = ", ".join(f"{json.dumps(o.file)}:{o.line}" for o in op.loc.origins)
            text += f" loc({where})"
        lines.append(text)
    rets = ", ".join(names.get(v, "%<undefined>") for v in graph.outputs)
    lines.append(f"{indent}  return {rets}".rstrip())
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def device_text(device: str | MeshAxes) -> str:
    """How an op's device prints: its name, or ``mesh(data=4, model=2)`` for a mesh."""
    return f"mesh({device})" if isinstance(device, MeshAxes) else device


def format_attr(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, np.dtype):
        return dtype_name(value)
    if isinstance(value, TensorType):
        return str(value)
    if isinstance(value, (MeshAxes, JaxModule)):
        return json.dumps(str(value))
    if isinstance(value, tuple):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    if isinstance(value, np.ndarray):
        elements = ", ".join(format_attr(v) for v in _flat_python(value))
        return f"dense({TensorType(value.shape, value.dtype)}, [{elements}])"
    raise TypeError(f"cannot print attribute value {value!r}")


def _format_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    return repr(x)  # shortest repr that reads back exactly; 'inf' and '-inf' included


def _flat_python(array: np.ndarray) -> list[Any]:
    """Elements as Python bool/int/float; bfloat16 and friends go through float."""
    flat = array.reshape(-1)
    if array.dtype.kind in "biu":
        return [v.item() for v in flat]
    return [float(v) for v in flat]
