"""Partitioning: the compilable ops of a discharged graph are grouped into ``cluster`` ops,
one per device and phase, each compiled once as a unit; ``host_call`` ops run between them
(in Python, in program order) and ``transfer`` ops copy values between devices.

First a proposal, plain data: each op gets a phase and a device. Graph inputs are phase 0 on
the default device. A compilable op goes on its ``fj.device`` (else the default) and takes
the latest phase of its inputs, one later for an input from another device. A host call
takes the latest phase of its inputs and of the host call before it (host calls keep their
program order); its results are one phase later, on the default device. A loop whose body
calls the host is ordered among host calls the same way (after the previous one, before the
next, and in a later cluster than another such loop before it).

Then the graph is rebuilt: for each phase, one cluster per device, then the host calls of
that phase. A cluster only uses values of its own device from its own phase or earlier, and
values of other devices or of host calls from earlier phases, so there is no cycle; every op
that waits on no host call and no other device lands in phase 0 (clusters are maximal). A
value used on another device than its own gets one transfer per device. Constants are copied
into each cluster that uses them. A host call inside a loop body stays in its loop (compiled
as a callback); a graph with no host call and no device scope is left as it is.

A graph with ``with_sharding`` ops runs SPMD over their device mesh: its clusters on the
default device are placed on the mesh (``Op.device`` is the constraints' ``MeshAxes``,
printed ``device("mesh(data=4, model=2)")``), so the runtime runs them over the mesh's devices
(a graph left whole runs over the mesh as it is)."""

from __future__ import annotations

import itertools

from flowjit.ir import Effect, Graph, MeshAxes, Op, PassError, Value
from flowjit.ir.ops import host as H
from flowjit.ir.ops import sharding as S


DEFAULT = "default"  # the device the function runs on


PARTITIONED = (H.cluster, H.transfer, H.host_call)  # the ops of a partitioned graph


def partition(graph: Graph) -> tuple[Graph, bool]:
    if all(op.opdef in PARTITIONED for op in graph.ops) or not any(
        Effect.HOST in op.effects or op.device is not None for op in graph.ops
    ):
        return graph, False
    return _apply(graph, propose(graph)), True


def propose(graph: Graph) -> list[tuple[int, str]]:
    """The (phase, device) of each op of ``graph`` (host calls: the default device)."""
    phase: dict[Value, int] = {v: 0 for v in graph.inputs}
    home: dict[Value, str] = {v: DEFAULT for v in graph.inputs}
    placed, last_host, after_host = [], 0, 0  # the last host call's phase, and the next one
    for op in graph.ops:
        if op.opdef is H.host_call:
            p = last_host = max([phase[v] for v in op.inputs] + [last_host])
            device, out_phase = DEFAULT, p + 1
            after_host = p + 1
        else:
            device = op.device or DEFAULT
            p = max((phase[v] + (home[v] != device) for v in op.inputs), default=0)
            # a loop calling the host keeps its place among host calls
            if Effect.HOST in op.effects:
                p = last_host = max(p, after_host)
                after_host = p + 1  # (and runs in a cluster of its own among such loops)
            out_phase = p
        phase.update(dict.fromkeys(op.outputs, out_phase))
        home.update(dict.fromkeys(op.outputs, device))
        placed.append((p, device))
    return placed


def _apply(graph: Graph, placed: list[tuple[int, str]]) -> Graph:
    free = {v: op for op in graph.ops if _is_free(op) for v in op.outputs}
    host_inputs = {v for op in graph.ops if op.opdef is H.host_call for v in op.inputs}
    at_top = host_inputs | set(graph.outputs)  # values a host call or the caller needs
    # A constant is computed at top level only for those; clusters copy it in.
    kept = [
        (op, where)
        for op, where in zip(graph.ops, placed)
        if not _is_free(op) or any(v in at_top for v in op.outputs)
    ]
    made_in = {v: where for op, where in kept if op.opdef is not H.host_call for v in op.outputs}
    exported = at_top & set(made_in)
    for op, where in kept:
        if op.opdef is not H.host_call:
            exported.update(
                v for v in op.inputs if v in made_in and made_in[v] != where and v not in free
            )
    out = graph.derive()
    replace: dict[Value, Value] = {}  # a value made in a cluster -> the cluster op's result
    located: dict[Value, str] = {}  # a cluster op's result -> its device (others: default)
    copies: dict[tuple[Value, str], Value] = {}  # (value, device) -> its transfer there

    def on(value: Value, device: str) -> Value:
        """``value`` where a cluster on ``device`` can use it: transferred there (once per
        device) if it lives on another device."""
        if located.get(value, DEFAULT) == device:
            return value
        if (value, device) not in copies:
            (copies[value, device],) = out.add(H.transfer, [value], {"device": device})
        return copies[value, device]

    devices = list(dict.fromkeys(device for _, (_, device) in kept))
    spmd = spmd_device(graph)  # the default device's clusters run over the mesh, if any
    numbers = itertools.count()  # clusters are numbered in the order they run
    for phase in range(max(p for p, _ in placed) + 1):
        for device in devices:
            ops = [
                o for o, where in kept if where == (phase, device) and o.opdef is not H.host_call
            ]
            if not ops:
                continue
            cluster = _make_cluster(f"cluster_{next(numbers)}", ops, free, exported, replace)
            cluster = cluster.replace(
                inputs=tuple(on(v, device) for v in cluster.inputs),
                device=spmd if device == DEFAULT else device,
            )
            located.update(dict.fromkeys(cluster.outputs, device))
            out.ops.append(cluster)
        for op, (p, _) in kept:
            if p == phase and op.opdef is H.host_call:
                out.ops.append(op.replace(inputs=tuple(replace.get(v, v) for v in op.inputs)))
    out.outputs = [replace.get(v, v) for v in graph.outputs]
    return out


def spmd_device(graph: Graph) -> MeshAxes | None:
    """The mesh of ``graph``'s sharding constraints (all on one mesh), else None."""
    meshes = {op.attrs["mesh"] for op in _all_ops(graph) if op.opdef is S.with_sharding}
    if len(meshes) > 1:
        names = sorted(f"mesh({m})" for m in meshes)
        raise PassError(f"sharding constraints over different meshes: {names}")
    return meshes.pop() if meshes else None


def _all_ops(graph: Graph):
    for op in graph.ops:
        yield op
        for sub in op.subgraphs:
            yield from _all_ops(sub)


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
        copies.append(op.replace(outputs=outputs))
    body.ops = copies + [o.replace(inputs=tuple(as_input.get(v, v) for v in o.inputs)) for o in ops]
    body.outputs = [v for o in ops for v in o.outputs if v in exported]
    results = tuple(Value(v.type) for v in body.outputs)
    replace.update(zip(body.outputs, results))
    inputs = tuple(replace.get(v, v) for v in external)
    return Op(H.cluster, inputs, {"body": body}, results, ops[0].loc)
