"""Host work and placement: ``host_call`` runs a Python function on concrete numpy values,
in program order (it has the effect ``Effect.HOST``); ``cluster`` holds a pure subgraph
compiled as one unit on one device; ``transfer`` copies a value to a device.

The partition pass groups compilable ops into ``cluster`` ops per device, between the host
calls, with a ``transfer`` wherever a value crosses devices; the runtime then runs each
cluster compiled on its device and each host call in Python, in order. A host call inside a
loop body stays in its loop, compiled as a callback.

    %3: f32[4] = host_call(%1, %2) {callback=0, name="normalize", result_types=[f32[4]]}
    %4: f32[4] = transfer(%3) {device="cpu:1"}
    %5, %6 = cluster(%0, %4) {body=graph @cluster_1(...) { ... }} device("cpu:1")

A host call's ``callback`` attribute is the Python function itself: the graph that traced it
owns it (no process-wide table), and it lives as long as the graphs, clusters and compiled
programs that hold it. The text form prints it as its number among the graph's functions."""

from __future__ import annotations

from typing import Callable

from ..batching import batch_graph, loop_batch, shifted_axis_batch
from ..core import Effect, Graph, OpDef, register
from ..errors import GradientError, ShapeError
from ..grad import differentiable
from .control import check_types


def _host_call_rule(types, callback: Callable, name: str, result_types):
    return tuple(result_types)


def _host_call_ref(*arrays, callback: Callable, name: str, result_types):
    return tuple(callback(*arrays))


host_call = register(
    OpDef(
        "host_call",
        _host_call_rule,
        _host_call_ref,
        attrs={"callback": "function", "name": "str", "result_types": "types"},
        effects=frozenset({Effect.HOST}),
        doc="the results of the Python function callback on the operands' values",
        batch=loop_batch,  # (the function takes one example's values: called once for each)
    )
)


@host_call.defvjp
def _host_call_vjp(emit, op, *cts):
    """A Python function has no gradient: where one would flow through it, a GradientError
    (never zeros), as jax's pure_callback."""
    if not any(differentiable(v.type) and emit.is_active(v) for v in op.inputs):
        return [None] * len(op.inputs)  # (nothing differentiated reaches it)
    raise GradientError(
        f"cannot differentiate through the host call {op.attrs['name']!r}: flowjit cannot see "
        "inside a Python function. If no gradient should flow through it, pass "
        "fj.stop_gradient(x) to it; to give it a gradient, compute the same thing with "
        "flowjit ops, or wrap it in a custom gradient (fj.custom_vjp, once it exists)",
        op="host_call",
        loc=op.loc,
    )


def _cluster_rule(types, body: Graph):
    check_types("body input", tuple(v.type for v in body.inputs), types, "operand")
    return tuple(v.type for v in body.outputs)


def _cluster_ref(*arrays, body: Graph, run):
    return tuple(run(body, arrays))


cluster = register(
    OpDef(
        "cluster",
        _cluster_rule,
        _cluster_ref,
        attrs={"body": "graph"},
        no_vjp="clusters are formed after gradients are taken",
        doc="the results of body (a pure subgraph compiled as one unit) on the operands",
    )
)


def _transfer_rule(types, device: str):
    if len(types) != 1:
        raise ShapeError(f"transfer takes one value, got {len(types)}")
    return types[0]


transfer = register(
    OpDef(
        "transfer",
        _transfer_rule,
        lambda x, device: x.copy(),
        attrs={"device": "str"},
        no_vjp="transfers are placed after gradients are taken",
        batch=shifted_axis_batch(),  # (the batch is copied as a whole)
        doc="x, copied to device ('default': where the function runs)",
    )
)

__all__ = ["cluster", "host_call", "transfer"]


@cluster.defbatch
def _cluster_batch(e, op, args, batched):  # (jax.vmap of a compiled function's cluster)
    body, flags = batch_graph(op.attrs["body"], batched, e.size)
    out = e(cluster, *args, body=body)
    return (out if isinstance(out, tuple) else (out,)), flags
