"""StableHLO lowering of ir/ops/sharding.py: ``with_sharding`` becomes Shardy's
``sdy.sharding_constraint`` over an inline mesh, which jax merges with the mesh of the step's
``jax.jit`` shardings (``sdy.mesh @mesh``); the SPMD partitioner does the rest."""

from __future__ import annotations

from flowjit.ir import MeshAxes, Op
from flowjit.ir.ops import sharding as S

from .jaxshim import ir, sdy
from .lowering import LoweringContext, lowers


def sdy_sharding(mesh: MeshAxes, spec: str) -> str:
    """The text of a ``#sdy.sharding`` attribute (dimensions closed, as jax emits them)."""
    axes = ", ".join(f'"{name}"={size}' for name, size in mesh.axes)
    dims = ", ".join("{" + ", ".join(f'"{a}"' for a in dim) + "}" for dim in S.parse_spec(spec))
    return f"#sdy.sharding<mesh<[{axes}]>, [{dims}]>"


@lowers(S.with_sharding)
def _with_sharding_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    attr = ir.Attribute.parse(sdy_sharding(op.attrs["mesh"], op.attrs["spec"]))
    return sdy.sharding_constraint(x, attr)
