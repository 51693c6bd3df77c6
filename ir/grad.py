"""What gradient rules build with: an emitter that appends ops to the graph being
differentiated, plus the helpers rules share (zeros, constants, undoing a broadcast). The
discharge rules of state ops (``OpDef.defdischarge``) build with the same emitter.

A rule is ``rule(emit, op, *cts) -> sequence of input cotangents`` where ``cts`` are the
cotangents of the op's outputs (None means zero) and each returned entry is a Value of the
input's type, or None (zero, or the input is not differentiable).

A sweep knows which values are *active*: those that may carry a derivative of what is
differentiated (found forward from it, through ops with a gradient rule). An op none of whose
inputs is active is skipped, and a rule may ask ``emit.is_active(v)``: a loop or branch
differentiates its body with respect to its active inputs only, and an op with no gradient
(a host call) raises only when a derivative would really flow through it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .core import Graph, Location, Op, OpDef, Value, check_attrs
from .types import TensorType, is_float


class Emit:
    """Appends ops to ``graph`` at ``loc`` (the op being differentiated or discharged keeps its
    user line)."""

    def __init__(
        self,
        graph: Graph,
        loc: Location | None = None,
        device: str | None = None,
        active: set[Value] | None = None,
    ):
        self.graph, self.loc, self.device = graph, loc, device
        self.active = active  # None: every value may carry a derivative

    def is_active(self, value: Value) -> bool:
        """Whether ``value`` may carry a derivative of what the sweep differentiates."""
        return self.active is None or value in self.active

    def __call__(self, opdef: OpDef, *inputs: Value, **attrs: Any) -> Any:
        outs = self.graph.add(opdef, list(inputs), attrs, self.loc, self.device)
        return outs[0] if len(outs) == 1 else outs

    def extend(self, op: Op, **attrs: Any) -> tuple[Value, ...]:
        """Replace ``op``, already in the graph, by the same op with ``attrs`` changed so that
        it gives more results: its results keep their values (their uses stand) and the new
        ones, which come last, are returned. (A scan's gradient has its forward loop save
        the per-step values the backward loop needs.)"""
        attrs = check_attrs(op.opdef, {**op.attrs, **attrs}, op.loc)
        types = op.opdef.infer(tuple(v.type for v in op.inputs), attrs)
        n = len(op.outputs)
        assert types[:n] == tuple(v.type for v in op.outputs), "extend must keep the results"
        extra = tuple(Value(t) for t in types[n:])
        new = op.replace(attrs=attrs, outputs=op.outputs + extra)
        index = next(i for i, other in enumerate(self.graph.ops) if other is op)
        self.graph.ops[index] = new
        return extra

    def constant(self, value: Any, dtype: np.dtype) -> Value:
        from .ops import creation as C

        return self(C.constant, value=np.asarray(value, dtype))

    def zeros(self, t: TensorType) -> Value:
        from .ops import shape as S

        zero = self.constant(0, t.dtype)
        return zero if not t.shape else self(S.broadcast_to, zero, shape=t.shape)

    def unbroadcast(self, ct: Value, t: TensorType) -> Value:
        """Sum ``ct`` (of a broadcast result's shape) back to ``t``'s shape: the cotangent of an
        operand that numpy broadcasting stretched."""
        from .ops import reduce as R
        from .ops import shape as S

        shape = ct.type.shape
        if shape == t.shape:
            return ct
        lead = len(shape) - len(t.shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, d in enumerate(t.shape) if d == 1 and shape[lead + i] != 1
        )
        summed = self(R.reduce_sum, ct, axes=axes, keepdims=False) if axes else ct
        return summed if summed.type.shape == t.shape else self(S.reshape, summed, shape=t.shape)


def differentiable(t: TensorType) -> bool:
    return is_float(t.dtype)


def active_values(ops: Sequence[Op], sources: Sequence[Value]) -> set[Value]:
    """``sources`` and the results of ``ops`` (in order) that may carry a derivative of them:
    differentiable results of ops with a gradient rule that take an active input."""
    active = set(sources)
    for op in ops:
        if op.opdef.vjp is not None and any(v in active for v in op.inputs):
            active.update(v for v in op.outputs if differentiable(v.type))
    return active


def backward(
    graph: Graph,
    ops: Sequence[Op],
    cts: dict[Value, Value],
    wrt: Sequence[Value] | None = None,
) -> dict[Value, Value]:
    """Reverse-mode sweep: walk ``ops`` (ops of ``graph``) backwards, appending to ``graph``
    the gradient ops of each op's rule. ``cts`` maps values to their cotangents (seeded with
    the result's); it is filled in and returned. Ops without a rule stop the gradient. With
    ``wrt``, only derivatives with respect to those values are wanted: ops that no active
    value reaches are skipped."""
    from .core import StateHandle
    from .ops import elementwise as E

    active = None if wrt is None else active_values(ops, wrt)
    start = len(graph.ops)  # (the gradient's ops are appended from here)
    sums: set[Value] = set()  # cotangents summed from several uses
    for op in reversed(ops):
        out_cts = [cts.get(v) for v in op.outputs]
        if op.opdef.vjp is None or all(c is None for c in out_cts):
            continue
        if active is not None and not any(v in active for v in op.inputs):
            continue
        in_cts = op.opdef.vjp(Emit(graph, op.loc, op.device, active), op, *out_cts)
        for value, ct in zip(op.inputs, in_cts, strict=True):
            if ct is None or isinstance(value, StateHandle) or not differentiable(value.type):
                continue
            previous = cts.get(value)
            if previous is None:
                cts[value] = ct
            else:  # (a partial sum is used once, by the next add: _compute_once leaves it)
                cts[value] = graph.add(E.add, [previous, ct], None, op.loc, op.device)[0]
                sums.add(cts[value])
    _compute_once(graph, start, sums, cts)
    return cts


# A summed cotangent at least this large that the gradient uses more than once is computed
# once (_compute_once); smaller ones XLA may recompute in each use, which costs less than a
# round trip through memory.
MATERIALIZE_MIN_ELEMENTS = 2**16


def _compute_once(graph: Graph, start: int, sums: set[Value], cts: dict[Value, Value]) -> None:
    """Put each large cotangent of ``sums`` that ops of the gradient (``graph.ops[start:]``)
    use more than once behind an ``optimization_barrier``, so that it is computed once.
    Otherwise XLA fuses the sum into each use, and along a residual stream, whose cotangent
    each layer sums from its two branches and uses in both, every layer recomputes the
    terms of all the layers above it: a 6-layer GPT's gradient read 13% more memory than
    jax's, its fusions taking up to 13 of the stream's arrays."""
    from .ops import remat as RM

    uses: dict[Value, int] = {}
    for op in graph.ops[start:]:
        for v in op.inputs:
            if v in sums:
                uses[v] = uses.get(v, 0) + 1
    hidden = {v for v, n in uses.items() if n > 1 and v.type.size >= MATERIALIZE_MIN_ELEMENTS}
    if not hidden:
        return
    renamed: dict[Value, Value] = {}
    ops = []
    for op in graph.ops[start:]:
        if any(v in renamed for v in op.inputs):
            op = op.replace(inputs=tuple(renamed.get(v, v) for v in op.inputs))
        ops.append(op)
        for v in op.outputs:
            if v in hidden:
                barrier = Op(RM.optimization_barrier, (v,), {}, (Value(v.type),), op.loc, op.device)
                ops.append(barrier)
                renamed[v] = barrier.outputs[0]
    graph.ops[start:] = ops
    for value, ct in cts.items():
        cts[value] = renamed.get(ct, ct)


@dataclass
class Linearized:
    """A pure subgraph ``g`` split for reverse mode (what scan and cond differentiate).

    ``forward`` is a copy of g (inputs and outputs in g's order) in which ops that save
    values for their own backward pass (a nested scan) may give more results; ``residuals``
    are the values of ``forward`` (its inputs or op results) the backward pass needs.
    ``backward``: (residuals, a cotangent per differentiable output of g) -> a cotangent per
    differentiable input of g. ``joint`` computes both at once: (g's inputs, the output
    cotangents) -> the input cotangents, recomputing the forward values."""

    forward: Graph
    backward: Graph
    joint: Graph
    residuals: list[Value]  # values of forward, in backward's input order


def linearize(g: Graph, active: Sequence[bool] | None = None) -> Linearized:
    """``g`` split for reverse mode; with ``active`` (a flag per input of g), derivatives
    are wanted with respect to the flagged inputs only (the others' cotangents are zeros)."""
    scratch = _clone(g)
    n_fwd, n_in = len(scratch.ops), len(scratch.inputs)
    cts: dict[Value, Value] = {}
    ct_inputs = []
    for out in scratch.outputs:
        if differentiable(out.type):
            ct = Value(out.type)
            ct_inputs.append(ct)
            previous = cts.get(out)
            cts[out] = ct if previous is None else _add(scratch, previous, ct)
    flagged = (
        scratch.inputs
        if active is None
        else [v for v, a in zip(scratch.inputs, active, strict=True) if a]
    )
    backward(scratch, scratch.ops[:n_fwd], cts, flagged)
    emit = Emit(scratch)
    wrt = [v for v in scratch.inputs[:n_in] if differentiable(v.type)]
    results = [cts[v] if v in cts else emit.zeros(v.type) for v in wrt]
    joint = Graph(f"{g.name}_vjp", scratch.inputs[:n_in] + ct_inputs)
    joint.ops, joint.outputs = live_ops(scratch.ops, results), results
    # Values computed from no input at all (constants) are recomputed, not saved.
    free_ops, free = [], set()
    for op in scratch.ops[:n_fwd]:
        if not op.subgraphs and all(v in free for v in op.inputs):
            free_ops.append(op)
            free.update(op.outputs)
    fwd_values = set(scratch.inputs[:n_in]).union(*(op.outputs for op in scratch.ops[:n_fwd]))
    bwd_ops = live_ops(free_ops + scratch.ops[n_fwd:], results)
    needed = [v for op in bwd_ops for v in op.inputs] + results
    residuals = list(dict.fromkeys(v for v in needed if v in fwd_values - free))
    bwd = Graph(f"{g.name}_bwd", residuals + ct_inputs)
    bwd.ops, bwd.outputs = bwd_ops, results
    forward = Graph(g.name, scratch.inputs[:n_in])
    forward.ops, forward.outputs = scratch.ops[:n_fwd], scratch.outputs
    return Linearized(forward, bwd, joint, residuals)


def _add(graph: Graph, a: Value, b: Value) -> Value:
    from .ops import elementwise as E

    return graph.add(E.add, [a, b])[0]


def _clone(g: Graph) -> Graph:
    """A copy of the pure graph ``g`` with fresh values."""
    copy = Graph(g.name, [Value(v.type) for v in g.inputs])
    mapping = dict(zip(g.inputs, copy.inputs))
    for op in g.ops:
        outputs = tuple(Value(v.type) for v in op.outputs)
        mapping.update(zip(op.outputs, outputs))
        copy.ops.append(op.replace(inputs=tuple(mapping[v] for v in op.inputs), outputs=outputs))
    copy.outputs = [mapping[v] for v in g.outputs]
    return copy


def live_ops(ops: Sequence[Op], results: Sequence[Value]) -> list[Op]:
    """The ops among ``ops`` that ``results`` depend on (pure subgraphs only), in order."""
    live, kept = set(results), []
    for op in reversed(ops):
        if any(v in live for v in op.outputs):
            kept.append(op)
            live.update(op.inputs)
    return kept[::-1]
