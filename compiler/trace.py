"""The tracing context: while a function is traced, every Tensor operation appends an op to
the context's graph, stamped with the user's source line."""

from __future__ import annotations

import contextlib
import re
import threading
from typing import Any, Iterator, Sequence

import numpy as np

from flowjit.ir import Graph, Location, OpDef, TensorType, TracingError, Value
from flowjit.ir.core import StateHandle
from flowjit.ir.ops import creation, elementwise

from .location import user_location


class _PerThread(threading.local):
    """What a thread is tracing: each thread traces on its own (threads may call compiled
    functions at once)."""

    def __init__(self) -> None:
        self.stack: list[TraceContext] = []  # the trace contexts entered, innermost last
        self.devices: list[str] = []  # the devices of the enclosing fj.device scopes
        self.imported_from: Location | None = None  # the jax code an op being emitted is of


_THREAD = _PerThread()


@contextlib.contextmanager
def imported_from(origin: Location | None):
    """Ops emitted inside stand for ``origin`` too (a line of the jax code fj.from_jax brought
    in), after the user's line: ``loc("train.py":12, "layers.py":37)``."""
    saved, _THREAD.imported_from = _THREAD.imported_from, origin
    try:
        yield
    finally:
        _THREAD.imported_from = saved


def device_scopes() -> list[str]:
    """This thread's enclosing fj.device scopes' devices, innermost last."""
    return _THREAD.devices


class TraceContext:
    """Owns the graph under construction. Tensors remember the context that made them, so a
    Tensor that escapes its trace (kept in a global, say) is caught when used again."""

    def __init__(self, name: str, parent: "TraceContext | None" = None):
        self.graph = Graph(name)
        self.variables: dict[Any, StateHandle] = {}  # variable object -> its handle here
        # A branch or loop body is traced in a child context: it names variables as its parent
        # does, and Tensors of enclosing traces it uses become inputs of its graph.
        self.parent = parent
        self.captured: dict[Value, Value] = {}  # a parent graph's value -> input of this graph

    def handle(self, variable: Any) -> StateHandle:
        """The graph's handle for ``variable``, declared on first use (names made unique)."""
        if variable not in self.variables and self.parent is not None:
            name = self.parent.handle(variable).name
            self.variables[variable] = self.graph.add_state(name, variable.type)
        if variable not in self.variables:
            taken = {h.name for h in self.graph.states}
            base = re.sub(r"[^A-Za-z0-9_.]", "_", variable.name) or "var"
            name, k = base, 1
            while name in taken:
                name, k = f"{base}_{k}", k + 1
            self.variables[variable] = self.graph.add_state(name, variable.type)
        return self.variables[variable]

    def capture(self, tensor: Any, op: str | None = None) -> Value:
        """``tensor``'s value in this graph: its own, or, for a Tensor of an enclosing trace,
        an input of this graph that receives it (made once)."""
        if tensor._trace is self:
            return tensor._value
        if self.parent is None:
            raise TracingError(
                "a Tensor from another (finished) trace was used: it leaked out of "
                "the function that created it; return it instead of storing it",
                op=op,
                loc=user_location(),
            )
        outer = self.parent.capture(tensor, op)
        if outer not in self.captured:
            self.captured[outer] = self.graph.add_input(outer.type)
        return self.captured[outer]

    def find(self, tensor: Any) -> Value | None:
        """``tensor``'s value in this graph without capturing it: its own, the input that
        received it from an enclosing trace, or None where this graph never used it."""
        if tensor._trace is self:
            return tensor._value
        if self.parent is None:
            return self.capture(tensor)  # (raises: the Tensor leaked out of its trace)
        outer = self.parent.find(tensor)
        return None if outer is None else self.captured.get(outer)

    def __enter__(self) -> "TraceContext":
        _THREAD.stack.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _THREAD.stack.pop()

    def input(self, type_: TensorType):
        from .tensor import Tensor

        return Tensor(self.graph.add_input(type_), self)


@contextlib.contextmanager
def outside_traces() -> Iterator[None]:
    """Run concrete work (eager mode's kernels, and the host calls among them) as if this
    thread traced nothing: a compiled function a host call's Python function calls then
    runs on its values instead of being inlined into the trace."""
    saved, _THREAD.stack = _THREAD.stack, []
    try:
        yield
    finally:
        _THREAD.stack = saved


def tracing() -> bool:
    return bool(_THREAD.stack)


def current() -> TraceContext:
    stack = _THREAD.stack
    if not stack:
        raise TracingError(
            "flowjit.numpy functions work on Tensors inside a function compiled with "
            "@fj.compile; outside one, use numpy or jax.numpy",
            loc=user_location(),
        )
    return stack[-1]


def emit(opdef: OpDef, inputs: Sequence[Any], **attrs: Any):
    """Append ``opdef`` to the current graph; returns a Tensor (or a tuple for multi-output ops).
    Inputs must already be Tensors of the current trace."""
    from .tensor import Tensor

    ctx = current()
    values = []
    for x in inputs:
        if isinstance(x, StateHandle):  # a state op's variable (see compiler/variable.py)
            values.append(x)
            continue
        if not isinstance(x, Tensor):
            raise TypeError(f"internal: emit({opdef.name}) got {type(x).__name__}")
        values.append(ctx.capture(x, opdef.name))
    devices = _THREAD.devices
    device = devices[-1] if devices else None
    loc = user_location()
    if _THREAD.imported_from is not None and loc is not None:
        loc = loc.merged(_THREAD.imported_from)
    outs = ctx.graph.add(opdef, values, attrs, loc, device)
    tensors = tuple(Tensor(v, ctx) for v in outs)
    return tensors[0] if len(tensors) == 1 else tensors


def constant(value: Any, dtype: Any = None):
    """A Tensor holding a literal array."""
    array = np.asarray(value, dtype=dtype)
    if array.dtype == np.float64 and dtype is None and not isinstance(value, np.ndarray):
        array = array.astype(np.float32)  # Python floats are float32, as in API.md section 1
    return emit(creation.constant, [], value=array)


def convert(x, dtype: Any):
    dtype = np.dtype(dtype)
    return x if x.dtype == dtype else emit(elementwise.convert, [x], dtype=dtype)
