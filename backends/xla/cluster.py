"""A cluster (a pure graph) as a jax primitive whose lowering emits our StableHLO.

A ``Cluster`` is a value: the graph, whether it calls the host, and what running it needs
(its XLA compile options per platform, its jitted form, its gradient). ``cluster_p.bind(*args,
cluster=c)`` carries it as the primitive's parameter, as jax's ``jit_p`` carries its jaxpr: no
side table. Parameters are compared by identity (jax caches lowerings by parameters, so a new
trace's cluster is never confused with an old one), and what jax caches is what keeps a
cluster alive; a dropped compiled function's clusters go with its traces. (A cluster run
alone under a program name is also in a weak table by that name, for profiles.)

``call_cluster(cluster, *args)`` binds it so that jax can differentiate it (jax.grad, jax.vjp
of a compiled function): the backward pass is flowjit's own gradient graph of the cluster
(``ir.grad.linearize``), compiled as another cluster. ``jax.vmap`` of a cluster runs the
cluster's graph batched by flowjit's own batching rules (``ir.batching``), as another cluster.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any, Callable, Sequence

from flowjit.ir import Effect, Graph
from flowjit.ir.batching import batch_graph
from flowjit.ir.grad import differentiable, linearize
from flowjit.ir.ops.jax_call import jax_call

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
from .lowering import LoweringContext, emit_graph, ir_type
from .options import compiler_options


_NOT_MADE = object()
# XLA module name -> the cluster running alone under it (profiles read its HLO)
_PROGRAMS: "weakref.WeakValueDictionary[str, Cluster]" = weakref.WeakValueDictionary()


def named_program(body: Callable, name: str) -> Callable:
    """``body`` under the name ``name``, so that ``jax.jit`` of it is XLA's module
    ``jit_<name>`` (profiles and HLO dumps show it)."""

    @functools.wraps(body)  # (jax reads the signature through __wrapped__)
    def entry(*args: Any, **kwargs: Any) -> Any:
        return body(*args, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    return entry


def cluster_of_program(module: str) -> "Cluster | None":
    """The cluster whose jitted form is XLA's module ``module`` (still alive), if any."""
    return _PROGRAMS.get(module)


class Cluster:
    """An immutable pure graph compiled as one unit, compared and hashed by identity.
    ``calls_host``: a host callback runs inside it (in a loop body). What is derived from it
    (compile options, jitted form, gradient cluster) is made once, when first asked for."""

    __slots__ = ("graph", "calls_host", "program", "_made", "__weakref__")

    def __init__(self, graph: Graph, calls_host: bool = False, program: str | None = None):
        # ``program``: the name of its XLA module when it runs alone (jit_<program>), as
        # profiles find it (``cluster_of_program``); None: jax's default
        self.graph, self.calls_host, self.program = graph, calls_host, program
        self._made: dict[Any, Any] = {}

    def __repr__(self) -> str:
        return f"Cluster({self.graph.name!r})"

    def _once(self, key: Any, make: Callable[[], Any]) -> Any:
        made = self._made.get(key, _NOT_MADE)  # (None is a value: no compile options)
        if made is _NOT_MADE:  # (threads racing here all get the one stored first)
            made = self._made.setdefault(key, make())
        return made

    def options(self, platform: str | None) -> dict[str, str] | None:
        """The XLA compile options of this cluster on ``platform`` (None: jax's default)."""
        return self._once(("options", platform), lambda: compiler_options(self.graph, platform))

    def jitted(self, platform: str | None, top_level: bool) -> Callable[..., tuple]:
        """The cluster alone under ``jax.jit``: with its compile options for ``platform`` when
        called at top level (jax takes compile options only on a jit it is not tracing inside
        another)."""

        def make() -> Callable[..., tuple]:
            options = self.options(platform) if top_level else None

            def run(*xs: Any) -> tuple:
                return tuple(call_cluster(self, *xs))

            if self.program is not None:
                _PROGRAMS[f"jit_{self.program}"] = self
                run = named_program(run, self.program)
            return jax.jit(run, compiler_options=options)

        return self._once(("jitted", platform, top_level), make)

    def vjp(self) -> "Cluster":
        """The gradient cluster: (inputs, a cotangent per differentiable output) -> a cotangent
        per differentiable input. Made when jax first asks for it, so a cluster that cannot be
        differentiated (a while loop) raises its GradientError then."""
        return self._once("vjp", lambda: Cluster(linearize(self.graph).joint))


cluster_p = Primitive("flowjit_cluster")
cluster_p.multiple_results = True


def _abstract_eval(*avals: ShapedArray, cluster: Cluster) -> tuple[ShapedArray, ...]:
    return tuple(ShapedArray(v.type.shape, v.type.dtype) for v in cluster.graph.outputs)


def _lower(ctx, *args: ir.Value, cluster: Cluster) -> Sequence[ir.Value]:
    return emit_graph(LoweringContext.under_jit(ctx), cluster.graph, args)


def _batch(args: Sequence[Any], dims: Sequence[Any], *, cluster: Cluster) -> Any:
    """jax.vmap of a cluster: its graph batched (the batch axis first), as a new cluster."""
    flags = [d is not None for d in dims]  # (jax's dimension of an unmapped argument: None)
    args = [jax.numpy.moveaxis(a, d, 0) if f else a for a, d, f in zip(args, dims, flags)]
    size = next(a.shape[0] for a, f in zip(args, flags) if f)
    made = cluster._once(("batched", tuple(flags), size), lambda: _batched(cluster, flags, size))
    batched, out_flags = made
    outs = call_cluster(batched, *args)
    return outs, [0 if f else None for f in out_flags]


def _batched(cluster: Cluster, flags: list[bool], size: int) -> tuple[Cluster, list[bool]]:
    graph, out_flags = batch_graph(cluster.graph, flags, size)
    return Cluster(graph), out_flags


cluster_p.def_abstract_eval(_abstract_eval)
cluster_p.def_impl(lambda *args, cluster: cluster.jitted(None, False)(*args))
register_lowering(cluster_p, _lower)
register_batching(cluster_p, _batch)


def call_cluster(cluster: Cluster, *args: Any) -> list[Any]:
    """The results of ``cluster`` on ``args``, bound so that jax can differentiate it."""
    return list(cluster._once("differentiable", lambda: _differentiable(cluster))(*args))


def _differentiable(cluster: Cluster) -> Callable[..., tuple]:
    """``cluster`` as a jax.custom_vjp function (one per cluster: jax caches traces by the
    function object)."""
    graph = cluster.graph
    diff_in = [differentiable(v.type) for v in graph.inputs]
    diff_out = [differentiable(v.type) for v in graph.outputs]

    @jax.custom_vjp
    def run(*args: Any) -> tuple:
        return tuple(cluster_p.bind(*args, cluster=cluster))

    def forward(*args: Any) -> tuple:
        return run(*args), args

    def backward(args: tuple, cts: tuple) -> tuple:
        # (the joint graph recomputes the forward values it needs: nothing else is saved)
        cts = [ct for ct, d in zip(cts, diff_out) if d]
        grads = iter(call_cluster(cluster.vjp(), *args, *cts))
        return tuple(next(grads) if d else None for d in diff_in)

    run.defvjp(forward, backward)
    return run


def cluster_stablehlo(graph: Graph) -> str:
    """The graph as a standalone StableHLO module (dumps, golden tests, Lowered.stablehlo). A
    graph with ops that are emitted through jax's helpers (a host callback, a jax computation)
    is lowered by jax, as its cluster under jax.jit: the module jax gives."""
    if _emitted_by_jax(graph):
        cluster = Cluster(graph)
        specs = [jax.ShapeDtypeStruct(v.type.shape, v.type.dtype) for v in graph.inputs]
        lowered = jax.jit(lambda *xs: call_cluster(cluster, *xs)).lower(*specs)
        return lowered.as_text(debug_info=True)
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
                context = LoweringContext.standalone()
                func.ReturnOp(emit_graph(context, graph, list(block.arguments)))
        module.operation.verify()
        return module.operation.get_asm(enable_debug_info=True)


def _emitted_by_jax(graph: Graph) -> bool:
    return any(
        Effect.HOST in op.effects or op.opdef is jax_call or any(map(_emitted_by_jax, op.subgraphs))
        for op in graph.ops
    )


__all__ = ["Cluster", "call_cluster", "cluster_p", "cluster_stablehlo", "hlo"]
