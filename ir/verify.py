"""The verifier: checks the invariants every pass must keep."""

from __future__ import annotations

from .core import OPS, Graph, Value, check_attrs
from .errors import FlowjitError, VerifyError


def verify(graph: Graph) -> None:
    """Raise VerifyError unless: each value is defined once before its uses, every op is a
    registered op with valid attributes, and its output types are what its shape rule says."""
    defined: set[Value] = set()

    def define(value: Value, where: str) -> None:
        if value in defined:
            raise VerifyError(f"{where} redefines a value that is already defined")
        defined.add(value)

    for value in graph.inputs:
        define(value, "a graph input")
    for index, op in enumerate(graph.ops):
        name, loc = op.opdef.name, op.loc
        if OPS.get(name) is not op.opdef:
            raise VerifyError(f"op #{index} uses an unregistered op definition", op=name, loc=loc)
        for i, value in enumerate(op.inputs):
            if value not in defined:
                raise VerifyError(
                    f"input {i} of op #{index} is used before it is defined", op=name, loc=loc
                )
        check_attrs(op.opdef, op.attrs, loc)
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
