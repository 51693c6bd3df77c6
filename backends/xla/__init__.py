"""The XLA backend: StableHLO emission with jaxlib's builders, compiled through jax.jit."""

# (each module registers its rules)
from . import bits, control, creation, elementwise, host, index, linalg  # noqa: F401
from . import nn, reduce, shape, sharding, sort  # noqa: F401
from .cluster import CLUSTERS, call_cluster, cluster_p, cluster_stablehlo, register_cluster
from .lowering import LOWERINGS, emit_graph
from .options import compiler_options

__all__ = [
    "CLUSTERS",
    "call_cluster",
    "cluster_p",
    "cluster_stablehlo",
    "register_cluster",
    "LOWERINGS",
    "emit_graph",
    "compiler_options",
]
