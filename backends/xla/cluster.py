"""A cluster (a pure graph) as a jax primitive whose lowering emits our StableHLO.

``cluster_p.bind(*args, key=k)`` stands for graph ``CLUSTERS[k]``; under ``jax.jit`` its
lowering rule emits the graph's ops into jax's module (docs/xla-notes.md, path B1). Keys are
never reused, since jax caches lowerings by parameters.
"""

from __future__ import annotations

import itertools
from typing import Sequence

from flowjit.ir import Graph

from .jaxshim import ShapedArray, func, hlo, ir, jax, make_ir_context, Primitive, register_lowering
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


cluster_p.def_abstract_eval(_abstract_eval)
cluster_p.def_impl(lambda *args, key: jax.jit(lambda *a: cluster_p.bind(*a, key=key))(*args))
register_lowering(cluster_p, _lower)


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


__all__ = ["cluster_p", "register_cluster", "cluster_stablehlo", "hlo"]
