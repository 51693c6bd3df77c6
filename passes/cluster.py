"""Clustering around host work: the compilable ops of a discharged graph are grouped into
``cluster`` ops (each compiled once, as one unit) between its ``host_call`` ops, which the
runtime runs in Python in program order.

First a proposal, plain data: each op gets a phase. Graph inputs are phase 0; a compilable op
takes the latest phase of its inputs; a host call takes the latest phase of its inputs and
of the host call before it (host calls keep their program order), and its results are one
phase later. Then the graph is rebuilt: phase k's compilable ops form cluster k, run before
the host calls of phase k. A cluster only uses values of earlier phases, so there is no cycle,
and every op that does not wait on a host call lands in cluster 0 (the clusters are maximal:
one more than the longest chain of host calls). A host call inside a loop body stays in its
loop (compiled as an in-graph callback)."""

from __future__ import annotations

from flowjit.ir import Graph, Op, Value
from flowjit.ir.ops import host as H


def form_clusters(graph: Graph) -> tuple[Graph, bool]:
    if not any(op.opdef is H.host_call for op in graph.ops):
        return graph, False
    return _apply(graph, propose_phases(graph)), True


def propose_phases(graph: Graph) -> list[int]:
    """The phase of each op of ``graph`` (see the module docstring)."""
    phase: dict[Value, int] = {}
    phases, last_host = [], 0
    for op in graph.ops:
        p = max((phase.get(v, 0) for v in op.inputs), default=0)
        if op.opdef is H.host_call:
            p = last_host = max(p, last_host)
        phase.update((v, p + (op.opdef is H.host_call)) for v in op.outputs)
        phases.append(p)
    return phases


def _apply(graph: Graph, phases: list[int]) -> Graph:
    # Constants (pure ops without inputs) are copied into each cluster that uses them rather
    # than passed between clusters; they are computed once at top level only for host calls
    # and results.
    free = {v: op for op in graph.ops if _is_free(op) for v in op.outputs}
    host_inputs = {v for op in graph.ops if op.opdef is H.host_call for v in op.inputs}
    at_top = host_inputs | set(graph.outputs)
    placed = [
        (op, p)
        for op, p in zip(graph.ops, phases)
        if not _is_free(op) or any(v in at_top for v in op.outputs)
    ]
    home = {v: p for op, p in placed if op.opdef is not H.host_call for v in op.outputs}
    exported = set(at_top) & set(home)  # made in a cluster, used by a host call or returned
    for op, p in placed:
        if op.opdef is not H.host_call:
            exported.update(v for v in op.inputs if v in home and home[v] != p and v not in free)
    out = graph.derive()
    replace: dict[Value, Value] = {}  # a value made in a cluster -> the cluster op's result
    for k in range(max(phases) + 1):
        ops = [op for op, p in placed if p == k and op.opdef is not H.host_call]
        if ops:
            out.ops.append(_make_cluster(f"cluster_{k}", ops, free, exported, replace))
        for op, p in placed:
            if p == k and op.opdef is H.host_call:
                inputs = tuple(replace.get(v, v) for v in op.inputs)
                out.ops.append(Op(op.opdef, inputs, op.attrs, op.outputs, op.loc))
    out.outputs = [replace.get(v, v) for v in graph.outputs]
    return out


def _is_free(op: Op) -> bool:
    return not op.inputs and not op.effects and not op.subgraphs


def _make_cluster(
    name: str, ops: list[Op], free: dict[Value, Op], exported: set[Value], replace: dict
) -> Op:
    """A cluster op computing ``ops``: its inputs are the values they use from outside
    (constants are copied in instead), its results those of ``exported`` they make (each
    recorded in ``replace``)."""
    defined = {v for op in ops for v in op.outputs}
    outside = [v for op in ops for v in op.inputs if v not in defined]
    external = list(dict.fromkeys(v for v in outside if v not in free))
    body = Graph(name, [Value(v.type) for v in external])
    as_input = dict(zip(external, body.inputs))
    copies = []
    for op in dict.fromkeys(free[v] for v in outside if v in free):
        outputs = tuple(Value(v.type) for v in op.outputs)
        as_input.update(zip(op.outputs, outputs))
        copies.append(Op(op.opdef, (), op.attrs, outputs, op.loc))
    body.ops = copies + [
        Op(o.opdef, tuple(as_input.get(v, v) for v in o.inputs), o.attrs, o.outputs, o.loc)
        for o in ops
    ]
    body.outputs = [v for o in ops for v in o.outputs if v in exported]
    results = tuple(Value(v.type) for v in body.outputs)
    replace.update(zip(body.outputs, results))
    inputs = tuple(replace.get(v, v) for v in external)
    return Op(H.cluster, inputs, {"body": body}, results, ops[0].loc)
