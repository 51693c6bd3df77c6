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
# The differential fuzz test passes with it as without (each op held to its own rounding).
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
    return options if _uses(graph, when) else None


def _uses(graph: Graph, opdefs) -> bool:
    return any(
        op.opdef in opdefs or any(_uses(g, opdefs) for g in op.subgraphs) for op in graph.ops
    )
