"""discharge_state, the last pass before lowering: a graph with variables becomes a pure
function ``(args, state values) -> (results, new state values)``.

First ``lift_state`` makes control-flow ops pure, by each op's lift rule (``OpDef.deflift``,
beside the op in ir/ops/control.py): a branch or loop body that uses variables is discharged
itself, and the variables' values are threaded through the op (as operands, loop
carries and results) between a ``read_variable`` before it and an ``assign_variable`` after
it. Then each state op becomes dataflow by its discharge rule (``OpDef.defdischarge``, beside
the op in ir/ops/state.py): an op that reads a variable gets its current value (its graph input
on first use, else the value last written), and one that writes it gives its new value. Only
variables the graph reads get an input and only variables it writes get an output;
``state_map`` records both.
"""

from __future__ import annotations

from flowjit.ir import Effect, Graph, Op, Value
from flowjit.ir.core import StateHandle, StateSlot
from flowjit.ir.grad import Emit
from flowjit.ir.ops import state as S


def discharge_state(graph: Graph) -> tuple[Graph, bool]:
    if not graph.states:
        return graph, False
    graph, _ = lift_state(graph)
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
        handle, i = op.state_handle, op.opdef.state_operand
        if handle is None:
            out.ops.append(op if inputs == op.inputs else op.replace(inputs=inputs))
            continue
        before = value_of(handle) if Effect.READ in op.opdef.effects else None
        emit = Emit(out, op.loc, op.device)
        results, after = op.opdef.discharge(emit, op, before, *inputs[:i], *inputs[i + 1 :])
        replace.update(zip(op.outputs, results, strict=True))
        if after is not None:
            current[handle] = after
            written.add(handle)
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


def lift_state(graph: Graph) -> tuple[Graph, bool]:
    """Make every control-flow op of ``graph`` pure (its subgraphs discharged), reading the
    variables its subgraphs use just before it and assigning those they write just after it.
    The op keeps its result values (uses need no rewriting) and gains the written variables'
    new values as results."""
    if not any(_uses_state(op) for op in graph.ops):
        return graph, False
    out = graph.derive()
    for op in graph.ops:
        if not _uses_state(op):
            out.ops.append(op)
            continue
        # (a subgraph may declare a variable it does not use: _open drops the declaration)
        reads = [h for h in graph.states if _accesses(op, h.name, {Effect.READ, Effect.WRITE})]
        writes = [h for h in reads if _accesses(op, h.name, {Effect.WRITE})]
        values = [out.add(S.read_variable, [h], None, op.loc, op.device)[0] for h in reads]
        lifted, new_results = op.opdef.lift(op, reads, writes, values, _open)
        out.ops.append(lifted)
        for handle, value in zip(writes, new_results):
            out.add(S.assign_variable, [handle, value], None, op.loc, op.device)
    out.outputs = list(graph.outputs)
    return out, True


def _uses_state(op: Op) -> bool:
    """Whether a subgraph of ``op`` declares variables (nested ones are declared in it too)."""
    return any(sub.states for sub in op.subgraphs)


def _accesses(op: Op, name: str, effects: set[Effect]) -> bool:
    """Whether a state op with one of ``effects`` on the variable ``name`` is in ``op``'s
    subgraphs (at any depth)."""
    for inner in (o for sub in op.subgraphs for o in sub.ops):
        handle = inner.state_handle
        if handle is not None:
            if inner.opdef.effects & effects and handle.name == name:
                return True
        elif _accesses(inner, name, effects):
            return True
    return False


def _open(sub: Graph, reads: list[StateHandle], writes: list[StateHandle]) -> Graph:
    """``sub`` discharged, with inputs ``sub.inputs + reads`` and results ``sub.outputs +
    writes`` (a variable it does not write passes its value through)."""
    pure, _ = discharge_state(sub)
    slots = {s.name: s for s in pure.state_map or []}
    out = Graph(sub.name, pure.inputs[: len(sub.inputs)])
    out.ops = pure.ops
    read_values = {}
    for handle in reads:
        slot = slots.get(handle.name)
        value = pure.inputs[slot.input] if slot and slot.input is not None else Value(handle.type)
        read_values[handle.name] = value
        out.inputs.append(value)
    out.outputs = list(pure.outputs[: len(sub.outputs)])
    for handle in writes:
        slot = slots.get(handle.name)
        written = slot is not None and slot.output is not None
        out.outputs.append(pure.outputs[slot.output] if written else read_values[handle.name])
    return out
