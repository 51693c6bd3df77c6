"""The IR core: values, ops, op definitions and graphs.

Small and flat, in the manner of a jaxpr: a ``Graph`` has typed input ``Value``s, a list of
``Op``s in program order and output values. Each ``Op`` names its ``OpDef`` (the op object,
declared once in ``ir/ops/``), its inputs, attributes, outputs and the user's source line.
Values compare by identity. Subgraphs, where an op needs them, are attributes holding graphs.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .errors import FlowjitError, HostCallError, VerifyError
from .types import JaxModule, MeshAxes, TensorType


@dataclass(frozen=True)
class Location:
    """A user source line; printed ``file.py:12``. An op that stands for several (CSE merged
    them) keeps the others in ``also``."""

    file: str
    line: int
    also: tuple["Location", ...] = ()

    def __str__(self) -> str:
        more = f" (and {', '.join(f'{o.file}:{o.line}' for o in self.also)})" if self.also else ""
        return f"{self.file}:{self.line}{more}"

    @property
    def origins(self) -> tuple["Location", ...]:
        """Every line this location stands for, each without ``also``."""
        return (Location(self.file, self.line), *self.also)

    def merged(self, other: "Location | None") -> "Location":
        """This location, also standing for ``other``'s lines."""
        if other is None:
            return self
        extra = tuple(o for o in other.origins if o not in self.origins)
        return Location(self.file, self.line, self.also + extra) if extra else self


class Value:
    """An SSA value: defined once, by a graph input or an op output. Compared by identity."""

    __slots__ = ("type",)

    def __init__(self, type: TensorType):
        self.type = type

    def __repr__(self) -> str:
        return f"Value({self.type})"


class Effect(enum.Enum):
    """What an op does besides computing its results. No pass drops, merges or reorders an op
    with an effect, and an op has the effects of the ops in its subgraphs too.

    ``READ``: the op reads a variable's current value (its state operand names the variable);
    ``WRITE``: it gives the variable a new value; discharge_state turns both into dataflow.
    ``HOST``: it runs Python on the host, in program order; partitioning cuts the graph there
    and a compiled loop calls back to the host for it."""

    READ = "read"
    WRITE = "write"
    HOST = "host"


# Attribute kinds an OpDef may declare; the verifier, printer and parser share them.
# A "graph" attribute holds a closed subgraph (a branch or loop body): it sees only its own
# inputs, and names the enclosing graph's variables by their names in its own ``state(...)``.
# A "function" attribute holds a Python callable (a host call's function): the graph owns it,
# and it lives as long as the graph. The text form numbers a graph's functions by first
# appearance (``Graph.functions``); ``parse(text, functions=...)`` gives them back.
# A "module" attribute holds a jax computation (ir.types.JaxModule), printed as base64.
ATTR_KINDS = (
    "int",
    "float",
    "bool",
    "str",
    "dtype",
    "ints",
    "optints",
    "array",
    "scalar",
    "types",
    "graph",
    "function",
    "mesh",
    "module",
    "any",
)


@dataclass(frozen=True, eq=False)
class OpDef:
    """Everything about one op, declared once and side by side.

    ``shape_rule(in_types, **attrs)`` returns the output TensorType(s) or raises ShapeError /
    DTypeError; ``ref(*arrays, **attrs)`` is the numpy meaning of the op (the semantics; an
    op with subgraphs also gets ``run(graph, arrays) -> arrays`` from the interpreter);
    ``vjp`` is the gradient rule or ``no_vjp`` says why there is none; ``jvp`` is the
    forward-mode rule (see ``defjvp``; an op with a ``vjp`` and no ``jvp`` gets its tangents by
    transposing the vjp rule, ir/forward.py); ``batch`` is the batching rule (see
    ``defbatch``); ``effects`` is empty for pure ops. ``attrs`` maps attribute name -> kind.
    ``broadcasts``: its operands broadcast numpy-style (binary elementwise ops, select), so a
    size-1 operand need not be broadcast first. ``state_operand``: for a state op (one that
    reads or writes a variable), the index of the operand that is the variable's handle; None
    for every other op. The verifier, the parser, discharge_state and the interpreters find
    the variable there, and nowhere else may an op take a handle. ``discharge`` is a state
    op's rule for discharge_state (see ``defdischarge``), ``lift`` a control-flow op's rule
    for lift_state (see ``deflift``).
    """

    name: str
    shape_rule: Callable[..., Any]
    ref: Callable[..., Any]
    attrs: dict[str, str] = field(default_factory=dict)
    effects: frozenset[Effect] = frozenset()
    vjp: Callable[..., Any] | None = None
    no_vjp: str | None = None
    doc: str = ""
    broadcasts: bool = False
    state_operand: int | None = None
    discharge: Callable[..., Any] | None = None
    lift: Callable[..., Any] | None = None
    jvp: Callable[..., Any] | None = None
    batch: Callable[..., Any] | None = None

    def __repr__(self) -> str:
        return f"OpDef({self.name})"

    def defvjp(self, rule: Callable[..., Any]) -> Callable[..., Any]:
        """Attach the gradient rule (a decorator, written right below the op's declaration):
        ``rule(emit, op, *output_cotangents) -> input cotangents`` (None for zero), building
        the gradient with ``emit`` (ir/grad.py)."""
        if self.vjp is not None or self.no_vjp is not None:
            raise ValueError(f"{self.name} already has a gradient rule (or says why not)")
        object.__setattr__(self, "vjp", rule)
        return rule

    def defjvp(self, rule: Callable[..., Any]) -> Callable[..., Any]:
        """Attach the forward-mode rule (a decorator, written below the op's declaration):
        ``rule(emit, op, *input_tangents) -> output tangents`` (None for zero), building the
        tangents with ``emit`` (ir/grad.py) after ``op``, which is already in the graph."""
        if self.jvp is not None:
            raise ValueError(f"{self.name} already has a forward-mode rule")
        object.__setattr__(self, "jvp", rule)
        return rule

    def defbatch(self, rule: Callable[..., Any]) -> Callable[..., Any]:
        """Attach the batching rule (a decorator, written below the op's declaration):
        ``rule(emit, op, args, batched) -> (results, results_batched)``. ``op`` is the op of
        one example (its types have no batch axis); ``args`` are its operands in the batched
        graph, those flagged in ``batched`` with the batch axis first (size ``emit.size``),
        the others shared by every example. Build with ``emit`` (ir/batching.py)."""
        if self.batch is not None:
            raise ValueError(f"{self.name} already has a batching rule")
        object.__setattr__(self, "batch", rule)
        return rule

    def declare_no_vjp(self, reason: str) -> None:
        """Say why the op has no gradient rule (gradients stop at it, as in jax)."""
        if self.vjp is not None or self.no_vjp is not None:
            raise ValueError(f"{self.name} already has a gradient rule (or says why not)")
        object.__setattr__(self, "no_vjp", reason)

    def defdischarge(self, rule: Callable[..., Any]) -> Callable[..., Any]:
        """Attach a state op's discharge rule (a decorator, written below the op's declaration):
        ``rule(emit, op, current, *operands) -> (results, new value)`` builds with ``emit``
        (ir/grad.py) the plain dataflow that stands for ``op``. ``current`` is the variable's
        value before the op (None unless the op has the READ effect), ``operands`` are the
        op's other inputs; ``results`` replace the op's results, and ``new value`` is the
        variable's value after it (None unless the op has the WRITE effect)."""
        if self.state_operand is None or self.discharge is not None:
            raise ValueError(f"{self.name} is not a state op, or already has a discharge rule")
        object.__setattr__(self, "discharge", rule)
        return rule

    def deflift(self, rule: Callable[..., Any]) -> Callable[..., Any]:
        """Attach a control-flow op's rule for lift_state, which makes an op whose subgraphs use
        variables pure: ``rule(op, reads, writes, values, discharge) -> (new op, new values)``.
        ``reads`` are the handles of the variables the subgraphs use, ``writes`` those of them
        they write, ``values`` the reads' values before the op; ``discharge(subgraph, handles,
        written)`` gives the subgraph discharged, taking the values of ``handles`` after its
        inputs and giving the new values of ``written`` after its results. The new op keeps
        ``op``'s results and gives the written variables' new values (``new values``) too."""
        if not self.graph_attrs or self.lift is not None:
            raise ValueError(f"{self.name} has no subgraphs, or already has a lift rule")
        object.__setattr__(self, "lift", rule)
        return rule

    @functools.cached_property  # (read for every op by every pass; attrs never change)
    def graph_attrs(self) -> tuple[str, ...]:
        """Names of the attributes that hold subgraphs (control-flow ops)."""
        return tuple(name for name, kind in self.attrs.items() if kind == "graph")

    def infer(
        self, in_types: tuple[TensorType, ...], attrs: dict[str, Any]
    ) -> tuple[TensorType, ...]:
        """Output types of this op; always a tuple."""
        out = self.shape_rule(tuple(in_types), **attrs)
        return out if isinstance(out, tuple) else (out,)


# The one registry of op definitions. Keyed by name only so the parser can find an op by the
# name it reads; every other table (lowerings, gradients) is keyed by the OpDef object itself.
OPS: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    if opdef.name in OPS:
        raise ValueError(f"op {opdef.name!r} is declared twice")
    for kind in opdef.attrs.values():
        assert kind in ATTR_KINDS, kind
    OPS[opdef.name] = opdef
    return opdef


def check_attrs(opdef: OpDef, attrs: dict[str, Any], loc: Location | None = None) -> dict[str, Any]:
    """Validate ``attrs`` against the op's schema and return them in canonical form
    (schema order, sequences as tuples, floats as float, dtypes as np.dtype)."""
    unknown = set(attrs) - set(opdef.attrs)
    missing = set(opdef.attrs) - set(attrs)
    if unknown or missing:
        what = (
            f"unknown attributes {sorted(unknown)}"
            if unknown
            else f"missing attributes {sorted(missing)}"
        )
        raise VerifyError(f"{what}; expected {list(opdef.attrs)}", op=opdef.name, loc=loc)
    out = {}
    for name, kind in opdef.attrs.items():
        try:
            out[name] = _canonical_attr(kind, attrs[name])
        except (TypeError, ValueError) as err:
            raise VerifyError(
                f"attribute {name}={attrs[name]!r} is not a valid {kind}: {err}",
                op=opdef.name,
                loc=loc,
            ) from None
    return out


def _canonical_attr(kind: str, value: Any) -> Any:
    if kind == "int":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError("expected an int")
        return int(value)
    if kind == "float":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise TypeError("expected a float")
        return float(value)
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError("expected a bool")
        return bool(value)
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError("expected a string")
        return value
    if kind == "dtype":
        return TensorType((), value).dtype
    if kind in ("ints", "optints"):
        if value is None and kind == "optints":
            return None
        return tuple(_canonical_attr("int", v) for v in value)
    if kind == "array":
        if not isinstance(value, (np.ndarray, np.generic)):
            raise TypeError("expected a numpy array")
        value = np.asarray(value)
        TensorType(value.shape, value.dtype)
        return value
    if kind == "scalar":
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            return float(value)
        raise TypeError("expected a Python scalar")
    if kind == "types":
        if not all(isinstance(t, TensorType) for t in value):
            raise TypeError("expected a list of tensor types")
        return tuple(value)
    if kind == "graph":
        if not isinstance(value, Graph):
            raise TypeError("expected a Graph")
        return value
    if kind == "function":
        if not callable(value) or isinstance(value, type):
            raise TypeError("expected a Python function")
        return value
    if kind == "module":
        if isinstance(value, str):  # (its text, base64, names one too)
            return JaxModule.parse(value)
        if not isinstance(value, JaxModule):
            raise TypeError("expected a JaxModule or its base64 text")
        return value
    if kind == "mesh":
        if isinstance(value, str):  # (its text, "data=4, model=2", names one too)
            return MeshAxes.parse(value)
        if not isinstance(value, MeshAxes):
            raise TypeError("expected a MeshAxes or its text")
        return value
    return value


class Op:
    """One node: ``outputs = opdef(inputs, **attrs)`` at ``loc``, on ``device`` (a name such
    as ``"cpu:1"`` from a ``fj.device`` scope; a MeshAxes for a cluster that runs SPMD over
    the function's mesh; None: wherever the function runs).

    ``effects`` are the op definition's, plus those of the ops in its subgraphs: a loop whose
    body writes a variable writes it."""

    __slots__ = ("opdef", "inputs", "attrs", "outputs", "loc", "device", "effects")

    def __init__(
        self,
        opdef: OpDef,
        inputs: tuple[Value, ...],
        attrs: dict[str, Any],
        outputs: tuple[Value, ...],
        loc: Location | None = None,
        device: str | MeshAxes | None = None,
    ):
        self.opdef, self.inputs, self.attrs = opdef, tuple(inputs), dict(attrs)
        self.outputs, self.loc, self.device = tuple(outputs), loc, device
        self.effects = opdef.effects.union(
            *(inner.effects for graph in self.subgraphs for inner in graph.ops)
        )

    def replace(self, **changes: Any) -> "Op":
        """A copy with some fields changed (opdef, inputs, attrs, outputs, loc, device): what
        passes build when they rewrite an op, keeping its location and device."""
        fields = {"opdef": self.opdef, "inputs": self.inputs, "attrs": self.attrs}
        fields.update(outputs=self.outputs, loc=self.loc, device=self.device)
        fields.update(changes)
        return Op(**fields)

    @property
    def state_handle(self) -> "StateHandle | None":
        """The handle of the variable a state op reads or writes: its operand
        ``opdef.state_operand`` (the verifier checks that it is a handle). None for other ops."""
        index = self.opdef.state_operand
        return None if index is None else self.inputs[index]

    @property
    def subgraphs(self) -> tuple["Graph", ...]:
        names = self.opdef.graph_attrs  # (most ops have none; passes ask for every op)
        return tuple([self.attrs[name] for name in names]) if names else ()

    def __repr__(self) -> str:
        return f"Op({self.opdef.name}, loc={self.loc})"


class MissingFunction:
    """A host call's function in a graph parsed from text without it (text cannot hold Python
    functions): calling it is an error that says how to give it back."""

    def __init__(self, number: int):
        self.number = number

    def __call__(self, *arrays: Any) -> Any:
        raise HostCallError(
            f"this graph was parsed from text, which holds no Python functions: function "
            f"{self.number} is missing. Parse it with parse(text, functions=[...]), the "
            "functions in the order graph.functions() lists them"
        )

    def __repr__(self) -> str:
        return f"MissingFunction({self.number})"


class StateHandle(Value):
    """A variable's handle in a graph: a typed value that only state ops (read_variable,
    assign_variable, ...) take as input. Printed ``$name``."""

    __slots__ = ("name",)

    def __init__(self, name: str, type: TensorType):
        super().__init__(type)
        self.name = name

    def __repr__(self) -> str:
        return f"StateHandle(${self.name}: {self.type})"


@dataclass(frozen=True)
class StateSlot:
    """Where discharge_state put one variable: its value's graph input index (None if the
    graph never reads it) and its new value's output index (None if never written)."""

    name: str
    input: int | None
    output: int | None


class Graph:
    """Typed inputs, ops in program order, outputs. ``name`` is for printing and dumps.

    ``states`` are the handles of the variables the graph reads or writes (ordered effects);
    after discharge_state there are none, and ``state_map`` says where each variable went."""

    def __init__(self, name: str = "main", inputs: list[Value] | None = None):
        # the text form names a graph @name: characters it cannot read become "_"
        self.name = re.sub(r"[^A-Za-z0-9_.]", "_", name) or "graph"
        self.inputs: list[Value] = list(inputs or [])
        self.ops: list[Op] = []
        self.outputs: list[Value] = []
        self.states: list[StateHandle] = []
        self.state_map: list[StateSlot] | None = None

    def derive(self) -> "Graph":
        """An empty graph with this one's name, inputs and state declarations (for passes
        that rebuild the op list)."""
        out = Graph(self.name, self.inputs)
        out.states, out.state_map = list(self.states), self.state_map
        return out

    def add_state(self, name: str, type: TensorType) -> StateHandle:
        handle = StateHandle(name, type)
        self.states.append(handle)
        return handle

    def add_input(self, type: TensorType) -> Value:
        value = Value(type)
        self.inputs.append(value)
        return value

    def add(
        self,
        opdef: OpDef,
        inputs: tuple[Value, ...] | list[Value],
        attrs: dict[str, Any] | None = None,
        loc: Location | None = None,
        device: str | MeshAxes | None = None,
    ) -> tuple[Value, ...]:
        """Append an op, inferring its output types; errors carry the op name and ``loc``."""
        attrs = check_attrs(opdef, attrs or {}, loc)
        try:
            out_types = opdef.infer(tuple(v.type for v in inputs), attrs)
        except FlowjitError as err:
            raise err.with_context(op=opdef.name, loc=loc) from None
        op = Op(opdef, tuple(inputs), attrs, tuple(Value(t) for t in out_types), loc, device)
        self.ops.append(op)
        return op.outputs

    def functions(self) -> list[Callable]:
        """The Python functions this graph's ops hold ("function" attributes), in subgraphs
        too, once each, in order of first appearance: the numbers the text form gives them."""
        found: dict[int, Callable] = {}
        for op in self.ops:
            for name, value in op.attrs.items():
                kind = op.opdef.attrs.get(name)
                if kind == "graph":
                    held = value.functions()
                elif kind == "function":
                    held = [value]
                else:
                    continue
                for function in held:
                    found.setdefault(id(function), function)
        return list(found.values())

    def __str__(self) -> str:
        from .printer import print_graph

        return print_graph(self)
