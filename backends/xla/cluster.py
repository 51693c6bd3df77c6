"""A cluster (a pure graph) as a jax primitive whose lowering emits our StableHLO.

``cluster_p.bind(*args, key=k)`` stands for graph ``CLUSTERS[k]``; under ``jax.jit`` its
lowering rule emits the graph's ops into jax's module (docs/xla-notes.md, path B1). Keys are
never reused, since jax caches lowerings by parameters.

``call_cluster(key, *args)`` binds it so that jax can differentiate it (jax.grad, jax.vjp of
a compiled function): the backward pass is flowjit's own gradient graph of the cluster
(``ir.grad.linearize``), compiled as another cluster. ``jax.vmap`` of a cluster is an error
until flowjit has a batching transform.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, Callable, Sequence

from flowjit.ir import Graph, TracingError
from flowjit.ir.grad import differentiable, linearize

from .jaxshim import (
    Primitive,
    ShapedArray,
    func,
    hlo,
    ir,
    jax,
    make_ir_context,
    register_batching,
    register_lowering,
)
from .lowering import emit_graph, in_lowering_context, ir_type

CLUSTERS: dict[int, Graph] = {}
_keys = itertools.count()

cluster_p = Primitive("flowjit_cluster")
cluster_p.multiple_results = True


def register_cluster(graph: Graph) -> int:
    """Store an immutable cluster graph; returns the key to bind it with."""
    key = next(_keys)
    CLUSTERS[key] = graph
    return key


def _abstract_eval(*avals: ShapedArray, key: int) -> tuple[ShapedArray, ...]:
    return tuple(ShapedArray(v.type.shape, v.type.dtype) for v in CLUSTERS[key].outputs)


def _lower(ctx, *args: ir.Value, key: int) -> Sequence[ir.Value]:
    with in_lowering_context(ctx):
        return emit_graph(CLUSTERS[key], args)


def _batch(args: Sequence[Any], dims: Sequence[Any], *, key: int) -> Any:
    raise TracingError(
        f"jax.vmap of the flowjit function {CLUSTERS[key].name!r}: flowjit has no batching "
        "transform yet. Call it on the whole batch (its ops broadcast like numpy's), loop "
        "over the examples with fj.scan inside a compiled function, or write the per-example "
        "function with jax and call jax.vmap on that"
    )


cluster_p.def_abstract_eval(_abstract_eval)
cluster_p.def_impl(lambda *args, key: jax.jit(lambda *a: cluster_p.bind(*a, key=key))(*args))
register_lowering(cluster_p, _lower)
register_batching(cluster_p, _batch)


def call_cluster(key: int, *args: Any) -> list[Any]:
    """The results of cluster ``key`` on ``args``, bound so that jax can differentiate it."""
    return list(_differentiable(key)(*args))


@functools.cache  # (one per cluster: jax caches traces by the function object)
def _differentiable(key: int) -> Callable[..., tuple]:
    graph = CLUSTERS[key]
    diff_in = [differentiable(v.type) for v in graph.inputs]
    diff_out = [differentiable(v.type) for v in graph.outputs]

    @jax.custom_vjp
    def run(*args: Any) -> tuple:
        return tuple(cluster_p.bind(*args, key=key))

    def forward(*args: Any) -> tuple:
        return run(*args), args

    def backward(args: tuple, cts: tuple) -> tuple:
        # (the joint graph recomputes the forward values it needs: nothing else is saved)
        cts = [ct for ct, d in zip(cts, diff_out) if d]
        grads = iter(call_cluster(_vjp_key(key), *args, *cts))
        return tuple(next(grads) if d else None for d in diff_in)

    run.defvjp(forward, backward)
    return run


@functools.cache
def _vjp_key(key: int) -> int:
    """The key of cluster ``key``'s gradient graph: (inputs, a cotangent per differentiable
    output) -> a cotangent per differentiable input. Made when jax first asks for it, so a
    cluster that cannot be differentiated (a while loop) raises its GradientError then."""
    return register_cluster(linearize(CLUSTERS[key]).joint)


def cluster_stablehlo(graph: Graph) -> str:
    """The graph as a standalone StableHLO module (dumps, golden tests, Lowered.stablehlo)."""
    with make_ir_context(), ir.Location.unknown():
        module = ir.Module.create()
        module.operation.attributes["sym_name"] = ir.StringAttr.get(f"flowjit_{graph.name}")
        with ir.InsertionPoint(module.body):
            fn_type = ir.FunctionType.get(
                [ir_type(v.type) for v in graph.inputs], [ir_type(v.type) for v in graph.outputs]
            )
            fn = func.FuncOp("main", fn_type)
            fn.attributes["sym_visibility"] = ir.StringAttr.get("public")
            block = fn.add_entry_block()
            with ir.InsertionPoint(block):
                func.ReturnOp(emit_graph(graph, list(block.arguments)))
        module.operation.verify()
        return module.operation.get_asm(enable_debug_info=True)


__all__ = ["call_cluster", "cluster_p", "register_cluster", "cluster_stablehlo", "hlo"]
