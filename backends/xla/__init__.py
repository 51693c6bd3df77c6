"""The XLA backend: StableHLO emission with jaxlib's builders, compiled through jax.jit."""

from . import bits, control, creation, elementwise, host, index, linalg, nn, reduce, shape, sharding, sort  # noqa: F401  (rules)
from .cluster import cluster_p, cluster_stablehlo, register_cluster
from .lowering import LOWERINGS, emit_graph

__all__ = ["cluster_p", "cluster_stablehlo", "register_cluster", "LOWERINGS", "emit_graph"]
