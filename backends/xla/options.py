"""The XLA compile options flowjit passes, per platform and per program, beside the lowering
choices it makes per platform (nn.py)."""

from __future__ import annotations

from flowjit.ir import Graph, OpDef
from flowjit.ir.ops import nn as N

from .jaxshim import jax

# platform -> (ops that make a program take the options, the options). On XLA:CPU:
# YNNPACK runs the convolutions; with this it also takes the elementwise ops and reductions
# next to them, so a convolution's bias add runs inside it. Measured with bench/suite,
# interleaved in one process: the CNN step 16.4 -> 14.7 ms, but the MLP step 2.7 -> 3.3 and
# the LSTM step 114 -> 136, so only programs with a convolution take it (docs/performance.md).
# The option replaces XLA's list of what YNNPACK takes, which by default holds the grouped
# convolutions (fj.vmap's per-example kernel gradients, bench/per_example.py): without them
# those ran 3.5x slower, and XLA's defaults beat the option there by ~10%, so a program with
# a grouped convolution takes none.
COMPILER_OPTIONS: dict[str, tuple[frozenset[OpDef], dict[str, str]]] = {
    "cpu": (
        frozenset({N.conv2d}),
        {
            "xla_cpu_experimental_ynn_fusion_type": (
                "LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE"
            )
        },
    )
}


def compiler_options(graph: Graph, platform: str | None = None) -> dict[str, str] | None:
    """The options for compiling ``graph`` on ``platform`` (None: jax's default backend's),
    for jax.jit; None for none."""
    when, options = COMPILER_OPTIONS.get(platform or jax.default_backend(), ((), None))
    if not _uses(graph, lambda op: op.opdef in when) or _uses(graph, _grouped_convolution):
        return None
    return options


def _grouped_convolution(op) -> bool:
    return op.opdef is N.conv2d and op.attrs["feature_group_count"] > 1


def _uses(graph: Graph, found) -> bool:
    return any(found(op) or any(_uses(g, found) for g in op.subgraphs) for op in graph.ops)
