"""The verifier: checks the invariants every pass must keep."""

from __future__ import annotations

from .core import OPS, Graph, Value, check_attrs
from .errors import FlowjitError, VerifyError


def verify(graph: Graph, enclosing: Graph | None = None) -> None:
    """Raise VerifyError unless: each value is defined once before its uses, every op is a
    registered op with valid attributes, and its output types are what its shape rule says.
    Subgraphs are verified too; the variables they name must be the enclosing graph's."""
    defined: set[Value] = set()

    def define(value: Value, where: str) -> None:
        if value in defined:
            raise VerifyError(f"{where} redefines a value that is already defined")
        defined.add(value)

    for value in graph.inputs:
        define(value, "a graph input")
    handles = set(graph.states)
    if len(handles) != len(graph.states) or len({h.name for h in graph.states}) != len(handles):
        raise VerifyError("the graph declares a variable twice")
    if enclosing is not None:
        outer = {h.name: h.type for h in enclosing.states}
        for handle in graph.states:
            if outer.get(handle.name) != handle.type:
                raise VerifyError(
                    f"subgraph @{graph.name} uses variable ${handle.name}: {handle.type}, which "
                    "the enclosing graph does not declare with that type"
                )
        if graph.state_map is not None:
            raise VerifyError(f"subgraph @{graph.name} cannot have a state_map")
    if graph.state_map is not None:
        if graph.states:
            raise VerifyError("a discharged graph (with a state_map) cannot declare state")
        for slot in graph.state_map:
            if slot.input is not None and not 0 <= slot.input < len(graph.inputs):
                raise VerifyError(
                    f"state_map: ${slot.name} reads input {slot.input}, which "
                    "the graph does not have"
                )
            if slot.output is not None and not 0 <= slot.output < len(graph.outputs):
                raise VerifyError(
                    f"state_map: ${slot.name} writes output {slot.output}, which "
                    "the graph does not have"
                )
    for index, op in enumerate(graph.ops):
        name, loc = op.opdef.name, op.loc
        if OPS.get(name) is not op.opdef:
            raise VerifyError(f"op #{index} uses an unregistered op definition", op=name, loc=loc)
        for i, value in enumerate(op.inputs):
            is_state_input = i == op.opdef.state_operand
            if is_state_input != (value in handles):
                what = (
                    "must be a declared variable handle"
                    if is_state_input
                    else ("is a variable handle; read it with read_variable first")
                )
                raise VerifyError(f"input {i} of op #{index} {what}", op=name, loc=loc)
            if value in handles:
                continue
            if value not in defined:
                raise VerifyError(
                    f"input {i} of op #{index} is used before it is defined", op=name, loc=loc
                )
        check_attrs(op.opdef, op.attrs, loc)
        for sub in op.subgraphs:
            try:
                verify(sub, graph)
            except VerifyError as err:
                raise VerifyError(f"in op #{index}: {err}", op=name, loc=loc) from None
        try:
            expected = op.opdef.infer(tuple(v.type for v in op.inputs), op.attrs)
        except FlowjitError as err:
            raise VerifyError(f"op #{index}: {err.detail}", op=name, loc=loc) from None
        got = tuple(v.type for v in op.outputs)
        if expected != got:
            raise VerifyError(
                f"op #{index} has output types {', '.join(map(str, got))} but its "
                f"shape rule gives {', '.join(map(str, expected))}",
                op=name,
                loc=loc,
            )
        for value in op.outputs:
            define(value, f"op #{index}")
    for i, value in enumerate(graph.outputs):
        if value not in defined:
            raise VerifyError(f"graph output {i} is not defined in the graph")
