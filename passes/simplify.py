"""Algebraic simplification: a table of local rewrite rules, each with its algebra in a
comment, run over the graph in program order (and inside subgraphs). An op is rewritten
until no rule applies, with a loop guard. Only pure ops are touched.

A rule ``rule(op, find) -> Value | (opdef, inputs, attrs) | None`` either forwards the op's
result to an existing value or replaces the op by a single op on existing values; the
driver accepts a replacement only if it gives the op's own result type. ``find`` looks up
the op that produced a value. The ops a rewrite leaves unused are dce's to drop."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from flowjit.ir import Graph, Op, OpDef, Value
from flowjit.ir.core import OPS, check_attrs
from flowjit.ir.ops import creation as Cr
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops import shape as S

from .subgraphs import in_subgraphs

GUARD = 16  # rewrites of one op before the driver stops (a rule table bug, not a user's)

Find = Callable[[Value], "Op | None"]
Rewrite = "Value | tuple[OpDef, list[Value], dict[str, Any]] | None"


def _splat(value: Value, find: Find) -> Any:
    """The one element of a constant whose elements are all equal, zeros of one sign
    (None otherwise)."""
    op = find(value)
    if op is None or op.opdef is not Cr.constant or op.attrs["value"].size == 0:
        return None
    array = op.attrs["value"].reshape(-1)
    first = array[0]
    same = np.all(array == first) and np.all(_negative(array) == _negative(first))
    return first.item() if bool(same) else None


def _negative(x: Any) -> Any:
    """The sign bit (of floats; False for other numbers: they have one zero)."""
    x = np.asarray(x)
    return np.signbit(x.astype(np.float64)) if x.dtype.kind in "fV" else np.zeros(x.shape, bool)


def _made_by(value: Value, opdef: OpDef, find: Find) -> Op | None:
    op = find(value)
    return op if op is not None and op.opdef is opdef else None


def _neutral(element: float, positions: tuple[int, ...]) -> Callable[[Op, Find], Rewrite]:
    """x op e -> x (at the given operand positions), when the result has x's type. A float
    zero is neutral only with ``element``'s sign; an integer zero always."""

    def rule(op: Op, find: Find) -> Rewrite:
        for i in positions:
            other = op.inputs[1 - i]
            splat = _splat(op.inputs[i], find)
            if splat is None or splat != element or other.type != op.outputs[0].type:
                continue
            if isinstance(splat, int) or _negative(splat) == _negative(element):
                return other
        return None

    return rule


def _same_type(op: Op, find: Find) -> Rewrite:
    # reshape(x, x.shape) -> x;  broadcast_to(x, x.shape) -> x;  convert(x, x.dtype) -> x
    return op.inputs[0] if op.inputs[0].type == op.outputs[0].type else None


def _forward(op: Op, find: Find) -> Rewrite:
    # stop_gradient(x) -> x  (gradients are taken while tracing, before any pass)
    return op.inputs[0]


def _double_negation(op: Op, find: Find) -> Rewrite:
    # -(-x) -> x
    inner = _made_by(op.inputs[0], E.neg, find)
    return inner.inputs[0] if inner is not None else None


def _transpose(op: Op, find: Find) -> Rewrite:
    # transpose(x, identity) -> x;  transpose(transpose(x, p), q) -> transpose(x, p[q])
    perm = op.attrs["perm"]
    if perm == tuple(range(len(perm))):
        return op.inputs[0]
    inner = _made_by(op.inputs[0], S.transpose, find)
    if inner is None:
        return None
    composed = tuple(inner.attrs["perm"][i] for i in perm)
    return S.transpose, [inner.inputs[0]], {"perm": composed}


def _chain(opdef: OpDef) -> Callable[[Op, Find], Rewrite]:
    """reshape(reshape(x, a), b) -> reshape(x, b); the same for broadcast_to (a broadcast of
    a broadcast is one broadcast)."""

    def rule(op: Op, find: Find) -> Rewrite:
        inner = _made_by(op.inputs[0], opdef, find)
        return (opdef, [inner.inputs[0]], op.attrs) if inner is not None else None

    return rule


def _broadcast_of_reshaped_scalar(op: Op, find: Find) -> Rewrite:
    # broadcast_to(reshape(s, [1, ..]), shape) -> broadcast_to(s, shape)  for a scalar s
    inner = _made_by(op.inputs[0], S.reshape, find)
    if inner is not None and inner.inputs[0].type.shape == ():
        return S.broadcast_to, [inner.inputs[0]], op.attrs
    return None


def _operand_broadcast(op: Op, find: Find) -> Rewrite:
    # a + broadcast_to(s, a.shape) -> a + s  (and every broadcasting op: operands broadcast
    # themselves; the driver checks the result keeps its shape)
    inputs = list(op.inputs)
    for i, value in enumerate(inputs):
        inner = _made_by(value, S.broadcast_to, find)
        if inner is not None and inner.inputs[0].type.size == 1:
            candidate = inputs[:i] + [inner.inputs[0]] + inputs[i + 1 :]
            if _infers(op.opdef, candidate, op.attrs, op.outputs[0].type):
                return op.opdef, candidate, op.attrs
    return None


def _constant_predicate(op: Op, find: Find) -> Rewrite:
    # select(true, a, b) -> a;  select(false, a, b) -> b
    splat = _splat(op.inputs[0], find)
    if splat is None:
        return None
    chosen = op.inputs[1] if splat else op.inputs[2]
    return chosen if chosen.type == op.outputs[0].type else None


RULES: dict[OpDef, list[Callable[[Op, Find], Rewrite]]] = {
    # x + -0.0 -> x, -0.0 + x -> x, x - 0.0 -> x; not x + 0.0 (-0.0 + 0.0 is 0.0) nor
    # x - -0.0 (-0.0 - -0.0 is 0.0): those keep their op (backends/xla/elementwise.py)
    E.add: [_neutral(-0.0, (0, 1))],
    E.sub: [_neutral(0.0, (1,))],
    E.mul: [_neutral(1, (0, 1))],  # x * 1 -> x, 1 * x -> x
    E.div: [_neutral(1, (1,))],  # x / 1 -> x
    E.pow_: [_neutral(1, (1,))],  # x ** 1 -> x
    E.neg: [_double_negation],
    E.convert: [_same_type],
    E.stop_gradient: [_forward],
    E.select: [_constant_predicate],
    S.transpose: [_transpose],
    S.reshape: [_same_type, _chain(S.reshape)],
    S.broadcast_to: [_same_type, _chain(S.broadcast_to), _broadcast_of_reshaped_scalar],
}
for _opdef in OPS.values():
    if _opdef.broadcasts:
        RULES.setdefault(_opdef, []).append(_operand_broadcast)


def _infers(opdef: OpDef, inputs: list[Value], attrs: dict, want) -> bool:
    try:
        return opdef.infer(tuple(v.type for v in inputs), attrs) == (want,)
    except Exception:  # a rule's candidate the shape rule rejects is simply not taken
        return False


def _rewrite(op: Op, find: Find) -> "Value | Op | None":
    for rule in RULES.get(op.opdef, ()):
        result = rule(op, find)
        if result is None:
            continue
        if isinstance(result, Value):
            return result
        opdef, inputs, attrs = result
        attrs = check_attrs(opdef, attrs, op.loc)
        if _infers(opdef, inputs, attrs, op.outputs[0].type):
            return op.replace(opdef=opdef, inputs=tuple(inputs), attrs=attrs)
    return None


def simplify(graph: Graph) -> tuple[Graph, bool]:
    out = graph.derive()
    replace: dict[Value, Value] = {}
    producer: dict[Value, Op] = {}
    changed = False
    for op in graph.ops:
        inputs = tuple(replace.get(v, v) for v in op.inputs)
        current = op if inputs == op.inputs else op.replace(inputs=inputs)
        if op.subgraphs:
            current = in_subgraphs(current, simplify) or current
        if not op.effects and len(op.outputs) == 1:
            for _ in range(GUARD):
                result = _rewrite(current, producer.get)
                if result is None:
                    break
                if isinstance(result, Value):
                    replace[op.outputs[0]] = result
                    current = None
                    break
                current = result
        if current is not op:
            changed = True
        if current is not None:
            out.ops.append(current)
            producer.update((v, current) for v in current.outputs)
    out.outputs = [replace.get(v, v) for v in graph.outputs]
    return (out, True) if changed else (graph, False)
