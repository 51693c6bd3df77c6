"""Host work and placement: ``host_call`` runs a Python function on concrete numpy values,
in program order (it has the ``host`` effect); ``cluster`` holds a pure subgraph compiled as
one unit on one device; ``transfer`` copies a value to a device.

The partition pass groups compilable ops into ``cluster`` ops per device, between the host
calls, with a ``transfer`` wherever a value crosses devices; the runtime then runs each
cluster compiled on its device and each host call in Python, in order. A host call inside a
loop body stays in its loop, compiled as a callback.

    %3: f32[4] = host_call(%1, %2) {callback=0, name="normalize", result_types=[f32[4]]}
    %4: f32[4] = transfer(%3) {device="cpu:1"}
    %5, %6 = cluster(%0, %4) {body=graph @cluster_1(...) { ... }} device("cpu:1")

The Python functions live in ``CALLBACKS`` (the IR names them by key), kept for the life of
the process."""

from __future__ import annotations

from typing import Callable

from ..core import Graph, OpDef, register
from ..errors import ShapeError
from .control import check_types

HOST = "host"
CALLBACKS: dict[int, Callable] = {}


def register_callback(fn: Callable) -> int:
    key = len(CALLBACKS)
    CALLBACKS[key] = fn
    return key


def _host_call_rule(types, callback: int, name: str, result_types):
    return tuple(result_types)


def _host_call_ref(*arrays, callback: int, name: str, result_types):
    fn = CALLBACKS.get(callback)
    if fn is None:
        raise ShapeError(f"host_call {name!r}: no callback {callback} in this process")
    return tuple(fn(*arrays))


host_call = register(
    OpDef(
        "host_call",
        _host_call_rule,
        _host_call_ref,
        attrs={"callback": "int", "name": "str", "result_types": "types"},
        effects=frozenset({HOST}),
        no_vjp="a Python function on the host has no gradient rule",
        doc="the results of the Python function CALLBACKS[callback] on the operands' values",
    )
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
        doc="x, copied to device ('default': where the function runs)",
    )
)

__all__ = ["CALLBACKS", "HOST", "cluster", "host_call", "register_callback", "transfer"]
