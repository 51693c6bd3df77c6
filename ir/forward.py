"""Forward-mode autodiff as a graph transformation: the tangent sweep.

``forward(graph, ops, tangents)`` walks ``ops`` (the last ops of ``graph``) in program order
and, after each op that gets a tangent on some input, builds the tangents of its results. A
rule is ``rule(emit, op, *input_tangents) -> output tangents`` (``OpDef.jvp``, declared with
``defjvp`` below the op's gradient rule); None is a zero tangent, on either side.

An op with a gradient rule and no forward rule gets its tangents by *transposing* its
gradient rule, which is exact: the rule, called with placeholder cotangents ``p`` of its
results, gives its operands' cotangents ``A^T p``, linear in ``p``. A reverse sweep over just
the ops the rule built, seeded with the operands' tangents ``t`` for those cotangents, gives
``d <A^T p, t> / d p = A t``: the results' tangents. The placeholders and whatever computed
only from them are dead code afterwards (DCE drops them). An op with neither rule (a
comparison, an integer op, ``stop_gradient``) gives zero tangents, as in jax; values that are
not floats never carry a tangent.

Control-flow ops have their own rules (ir/ops/control.py): each is *replaced* by the same op
over its subgraphs' forward sweeps (``jvp_subgraph``), which computes the results and their
tangents in one loop or branch. So that the replacement may take operands built after the op,
the sweep rebuilds the op list: each op is put back followed by the ops of its rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .core import Graph, Op, Value, check_attrs
from .grad import Emit, backward, differentiable


def forward(graph: Graph, ops: Sequence[Op], tangents: dict[Value, Value]) -> dict[Value, Value]:
    """Append to ``graph`` the tangents of the results of ``ops`` (the last ops of
    ``graph``, in order). ``tangents`` maps values to their tangents (seeded with the inputs');
    a copy, filled in with every value's tangent that is not zero, is returned."""
    tangents = dict(tangents)
    ops = list(ops)
    if not ops:
        return tangents
    start = len(graph.ops) - len(ops)
    if start < 0 or any(a is not b for a, b in zip(graph.ops[start:], ops)):
        raise ValueError("forward: ops must be the last ops of the graph, in order")
    del graph.ops[start:]
    for op in ops:
        graph.ops.append(op)
        ins = [tangents.get(v) if differentiable(v.type) else None for v in op.inputs]
        if all(t is None for t in ins):
            continue
        outs = jvp_of(op, ins, Emit(graph, op.loc, op.device))
        for value, tangent in zip(op.outputs, outs, strict=True):
            if tangent is not None and differentiable(value.type):
                assert tangent.type == value.type, (op.opdef.name, tangent.type, value.type)
                tangents[value] = tangent
    return tangents


def jvp_of(op: Op, tangents: Sequence[Value | None], emit: Emit) -> Sequence[Value | None]:
    """The tangents of ``op``'s results (None: zero) given its operands' (``tangents``), by
    its forward rule, by transposing its gradient rule, or zeros where it has neither."""
    if op.opdef.jvp is not None:
        return op.opdef.jvp(emit, op, *tangents)
    if op.opdef.vjp is not None:
        return _transposed_vjp(op, tangents, emit)
    return [None] * len(op.outputs)


def transposed_vjp(emit: Emit, op: Op, *tangents: Value | None) -> list[Value | None]:
    """The forward rule of an op whose tangents are its gradient rule transposed: what every
    op with a gradient rule and no forward rule gets. An op with subgraphs declares it to say
    so (custom_vjp_call: forward mode then agrees with the user's backward function)."""
    return _transposed_vjp(op, tangents, emit)


def _transposed_vjp(op: Op, tangents: Sequence[Value | None], emit: Emit) -> list[Value | None]:
    graph = emit.graph
    if not any(differentiable(v.type) for v in op.outputs):
        return [None] * len(op.outputs)  # (a float to int conversion)
    placeholders = [emit.zeros(v.type) if differentiable(v.type) else None for v in op.outputs]
    active = {v for v, t in zip(op.inputs, tangents) if t is not None}
    start = len(graph.ops)
    rule_emit = Emit(graph, op.loc, op.device, active)
    cts_in = op.opdef.vjp(rule_emit, op, *placeholders)
    rule_ops = graph.ops[start:]
    seeds: dict[Value, Value] = {}
    for ct, t in zip(cts_in, tangents, strict=True):
        if ct is None or t is None:
            continue
        seeds[ct] = t if ct not in seeds else emit(_add(), seeds[ct], t)
    wrt = [p for p in placeholders if p is not None]
    found = backward(graph, rule_ops, seeds, wrt)
    return [None if p is None else found.get(p) for p in placeholders]


def _add():
    from .ops import elementwise as E

    return E.add


def flows(ops: Sequence[Op], sources: Sequence[Value]) -> set[Value]:
    """``sources`` and the results of ``ops`` (in order) that may get a tangent from them:
    float results of ops with a forward or gradient rule that take such a value."""
    reached = set(sources)
    for op in ops:
        has_rule = op.opdef.jvp is not None or op.opdef.vjp is not None
        if has_rule and any(v in reached for v in op.inputs):
            reached.update(v for v in op.outputs if differentiable(v.type))
    return reached


def tangent_outputs(g: Graph, flags: Sequence[bool]) -> list[bool]:
    """Which results of subgraph ``g`` may get a tangent when its inputs flagged do."""
    reached = flows(g.ops, [v for v, f in zip(g.inputs, flags, strict=True) if f])
    return [v in reached for v in g.outputs]


def jvp_subgraph(g: Graph, flags: Sequence[bool], out_flags: Sequence[bool]) -> Graph:
    """``g``'s forward sweep as a closed subgraph: inputs ``(*g's inputs, *a tangent per
    flagged input)``, results ``(*g's results, *a tangent per flagged result)`` (zeros where
    none reaches it). Flagged inputs and results must be floats. ``g``'s ops are taken over
    (not copied): the new graph stands for ``g``, which its op then no longer holds."""
    tangent_in = [Value(v.type) for v, f in zip(g.inputs, flags, strict=True) if f]
    out = Graph(f"{g.name}_jvp", [*g.inputs, *tangent_in])
    out.states = list(g.states)
    out.ops = list(g.ops)
    seeds = dict(zip([v for v, f in zip(g.inputs, flags) if f], tangent_in))
    found = forward(out, out.ops, seeds)
    emit = Emit(out)
    tangent_out = [
        found[v] if v in found else emit.zeros(v.type)
        for v, f in zip(g.outputs, out_flags, strict=True)
        if f
    ]
    out.outputs = [*g.outputs, *tangent_out]
    return out


def replace(
    emit: Emit, op: Op, inputs: Sequence[Value], results: Sequence[Value | None], **attrs: Any
) -> tuple[Value, ...]:
    """Put in ``op``'s place the same op with new ``inputs`` and ``attrs`` changed; its results
    are ``results`` where given (``op``'s own, so that their uses stand) and fresh values
    where None. The new op goes last in ``emit.graph``: only ops that do not use ``op``'s
    results may follow ``op`` (in a sweep, those its rule built). Returns its results."""
    graph = emit.graph
    index = next(i for i, other in enumerate(graph.ops) if other is op)
    del graph.ops[index]
    attrs = check_attrs(op.opdef, {**op.attrs, **attrs}, op.loc)
    types = op.opdef.infer(tuple(v.type for v in inputs), attrs)
    outputs = tuple(Value(t) if r is None else r for r, t in zip(results, types, strict=True))
    assert all(r is None or r.type == t for r, t in zip(results, types)), op.opdef.name
    graph.ops.append(op.replace(inputs=tuple(inputs), attrs=attrs, outputs=outputs))
    return outputs
