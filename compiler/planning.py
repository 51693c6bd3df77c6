"""The runtime's view of a traced and optimized function (runtime/plan.py's Plan): which
variables feed and receive values, and the cluster to run, or for a graph split around host
calls, the steps."""

from __future__ import annotations

from typing import Any

from flowjit.backends.xla import Cluster
from flowjit.ir import Effect, Graph, MeshAxes, Value
from flowjit.ir.ops import host as H
from flowjit.runtime import ClusterStep, HostStep, Plan, TransferStep

from .signature import Signature


def make_plan(graph: Graph, sig: Signature, variables: dict, mesh: Any) -> Plan:
    """The runtime's view of a discharged graph: which variables feed and receive values, and
    the cluster to run (or, for a graph split around host calls, the steps)."""
    by_name = {handle.name: variable for variable, handle in variables.items()}
    slots = graph.state_map or []
    first = lambda pair: pair[0]  # noqa: E731
    reads = sorted(((s.input, by_name[s.name]) for s in slots if s.input is not None), key=first)
    writes = sorted(((s.output, by_name[s.name]) for s in slots if s.output is not None), key=first)
    split = any(op.opdef in (H.cluster, H.transfer, H.host_call) for op in graph.ops)
    steps, results = _steps(graph, mesh) if split else ((), ())
    return Plan(
        None if split else Cluster(graph),
        tuple(t.dtype for t in sig.types),
        state_inputs=tuple(v for _, v in reads),
        state_outputs=tuple(v for _, v in writes),
        steps=steps,
        results=results,
    )


def _steps(graph: Graph, mesh: Any) -> tuple[tuple, tuple[int, ...]]:
    """The runtime steps of a partitioned graph (cluster, transfer and host_call ops), over
    numbered slots; and the slots of the graph's outputs. Clusters marked SPMD run over
    ``mesh`` (the function's)."""
    slot: dict[Value, int] = {v: i for i, v in enumerate(graph.inputs)}
    steps = []
    for op in graph.ops:
        inputs = tuple(slot[v] for v in op.inputs)
        outputs = tuple(range(len(slot), len(slot) + len(op.outputs)))
        slot.update(zip(op.outputs, outputs))
        if op.opdef is H.cluster:
            body = op.attrs["body"]
            program = f"{graph.name}_{body.name}"  # (profiles name it: jit_step_cluster_0)
            cluster = Cluster(body, calls_host=Effect.HOST in op.effects, program=program)
            device, on_mesh = op.device, None
            if isinstance(device, MeshAxes):
                # over the function's mesh; without one (constraints from a sharded variable or
                # an entered mesh) the cluster follows its inputs' shardings
                device, on_mesh = None, None if mesh is None else mesh.jax
            steps.append(ClusterStep(cluster, inputs, outputs, device, on_mesh))
        elif op.opdef is H.transfer:
            steps.append(TransferStep(op.attrs["device"], inputs, outputs))
        else:
            function, name = op.attrs["callback"], op.attrs["name"]
            steps.append(HostStep(function, name, op.loc, inputs, outputs))
    return tuple(steps), tuple(slot[v] for v in graph.outputs)
