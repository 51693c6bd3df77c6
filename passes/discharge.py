"""discharge_state, the last pass before lowering: a graph with variables becomes a pure
function ``(args, state values) -> (results, new state values)``.

Reads take the variable's current value (its graph input on first use, else the value last
written); writes set it; add/sub writes become ``add``/``sub`` ops. Only variables the graph
reads get an input and only variables it writes get an output; ``state_map`` records both.
"""

from __future__ import annotations

from flowjit.ir import Graph, Op, Value
from flowjit.ir.core import StateHandle, StateSlot
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops import state as S

_UPDATE = {S.assign_add_variable: E.add, S.assign_sub_variable: E.sub}


def discharge_state(graph: Graph) -> tuple[Graph, bool]:
    if not graph.states:
        return graph, False
    out = Graph(graph.name, graph.inputs)
    current: dict[StateHandle, Value] = {}
    input_of: dict[StateHandle, int] = {}
    written: set[StateHandle] = set()
    replace: dict[Value, Value] = {}

    def value_of(handle: StateHandle) -> Value:
        if handle not in current:  # first use reads the value the variable had on entry
            current[handle] = out.add_input(handle.type)
            input_of[handle] = len(out.inputs) - 1
        return current[handle]

    for op in graph.ops:
        inputs = tuple(replace.get(v, v) for v in op.inputs)
        if op.opdef is S.read_variable:
            replace[op.outputs[0]] = value_of(inputs[0])
        elif op.opdef is S.assign_variable:
            current[inputs[0]] = inputs[1]
            written.add(inputs[0])
        elif op.opdef in _UPDATE:
            handle = inputs[0]
            (current[handle],) = out.add(
                _UPDATE[op.opdef], [value_of(handle), inputs[1]], loc=op.loc
            )
            written.add(handle)
        else:
            out.ops.append(
                op if inputs == op.inputs else Op(op.opdef, inputs, op.attrs, op.outputs, op.loc)
            )
    out.outputs = [replace.get(v, v) for v in graph.outputs]
    slots = []
    for handle in graph.states:
        output = None
        if handle in written:
            output = len(out.outputs)
            out.outputs.append(current[handle])
        slots.append(StateSlot(handle.name, input_of.get(handle), output))
    out.state_map = slots
    return out, True
