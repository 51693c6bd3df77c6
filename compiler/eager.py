"""Eager mode (``fj.config.update("eager", True)``, API.md section 10): a compiled function
runs op by op on concrete values, each op by the reference interpreter's ``run_op``, so
``print``, ``pdb`` and a Python ``if`` on a Tensor work while debugging; results equal
compiled mode.

The function is still traced (so gradients, control flow and variables work the same), but
into an ``EagerGraph``, which runs each op as it is added: every Tensor has a value. Writes
to variables happen at once; if the call then fails (an error, Ctrl-C), the variables it wrote
get their values from before the call back, as in compiled mode (docs/errors.md).
A loop or branch that uses variables is added in the form
``lift_state`` gives it (reads before, writes after), as gradients need."""

from __future__ import annotations

from typing import Any

import numpy as np

from flowjit.backends.reference import run_graph, run_op
from flowjit.ir import Effect, FlowjitError, Graph, OpDef, TensorType, Value
from flowjit.ir.core import Op, StateHandle
from flowjit.passes import lift_state

from .trace import TraceContext, outside_traces


class EagerGraph(Graph):
    """A graph that computes each op when it is added; ``env`` holds every value."""

    def __init__(self, name: str):
        super().__init__(name)
        self.env: dict[Value, np.ndarray] = {}
        self.cells: dict[StateHandle, Any] = {}  # a handle -> the variable it stands for
        # id(variable) -> (variable, its value before the call's first write to it)
        self.before: dict[int, tuple[Any, Any]] = {}

    def add(self, opdef: OpDef, inputs, attrs=None, loc=None, device=None) -> tuple[Value, ...]:
        outs = super().add(opdef, inputs, attrs, loc, device)
        op = self.ops.pop()
        if any(sub.states for sub in op.subgraphs):
            alone = Graph(self.name)
            alone.states, alone.ops = self.states, [op]
            ops = lift_state(alone)[0].ops
        else:
            ops = [op]
        for each in ops:
            self.ops.append(each)
            self._run(each)
        return outs

    def _run(self, op: Op) -> None:
        if any(v not in self.env for v in op.inputs):
            self._catch_up()
        try:
            with np.errstate(all="ignore"), outside_traces():
                run_op(op, self.env, run_graph)  # (add made its subgraphs pure: no variables)
        except FlowjitError as err:
            raise err.with_context(op=op.opdef.name, loc=op.loc) from None
        if Effect.WRITE in op.opdef.effects:
            handle = op.state_handle
            cell = self.cells[handle]
            self.before.setdefault(id(cell), (cell, cell._value))
            cell.set_value(self.env[handle])  # the write happens now

    def _catch_up(self) -> None:
        """Compute the results of ops changed after they ran: a gradient rule may extend a
        forward op to give more results (a scan saving its per-step values), and those are
        computed by running the op again (a pure op: the same results)."""
        for op in self.ops:
            if op.outputs and any(v not in self.env for v in op.outputs):
                self._run(op)


class EagerContext(TraceContext):
    """A trace context whose graph runs as it is built."""

    eager = True

    def __init__(self, name: str):
        super().__init__(name)
        self.graph = EagerGraph(name)

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        if exc[0] is not None:  # the call failed: undo its writes (set_value made new arrays)
            for cell, value in self.graph.before.values():
                cell._rebind(value, cell._writer)

    def handle(self, variable: Any) -> StateHandle:
        known = variable in self.variables
        handle = super().handle(variable)
        if not known:  # the variable's value as of its first use in this call
            self.graph.env[handle] = np.asarray(variable._ready())
            self.graph.cells[handle] = variable
        return handle

    def feed(self, array: np.ndarray, type_: TensorType):
        """An input Tensor holding ``array``."""
        tensor = self.input(type_)
        self.graph.env[tensor._value] = np.asarray(array, type_.dtype).reshape(type_.shape)
        return tensor

    def value_of(self, value: Value) -> np.ndarray:
        return self.graph.env[value]
