"""The XLA backend: StableHLO emission with jaxlib's builders, compiled through jax.jit."""

# (each module registers its rules)
from . import bits, control, creation, custom, elementwise, host, index, jax_call  # noqa: F401
from . import linalg, nn, reduce, remat, shape, sharding, sort  # noqa: F401
from .cluster import (
    Cluster,
    call_cluster,
    cluster_of_program,
    cluster_p,
    cluster_stablehlo,
    named_program,
)
from .lowering import LOWERINGS, LoweringContext, emit_graph
from .options import compiler_options

__all__ = [
    "Cluster",
    "call_cluster",
    "cluster_p",
    "cluster_of_program",
    "cluster_stablehlo",
    "named_program",
    "LOWERINGS",
    "LoweringContext",
    "emit_graph",
    "compiler_options",
]
