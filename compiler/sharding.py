"""Shardings in traced functions: ``fj.with_sharding(x, spec)`` and the constraints the
compiler places on sharded arguments, variables and results (API.md, section 8).

A constraint is a ``with_sharding`` op in the IR (ir/ops/sharding.py); the shardings of a
compiled function's arguments and results also go to its ``jax.jit`` boundary (api.py)."""

from __future__ import annotations

from typing import Any

from flowjit.backends.xla.jaxshim import jax, jnp
from flowjit.ir import MeshAxes, ShardingError
from flowjit.ir.ops import sharding as S
from flowjit.runtime.sharding import (
    NamedSharding,
    active_mesh,
    as_mesh,
    is_spec,
    place,
    sharding_for,
    spec_of,
)

from .location import user_location
from .trace import emit, tracing


def constrain(tensor: Any, sharding: NamedSharding, always: bool = False) -> Any:
    """``tensor`` laid out as ``sharding`` (a ``with_sharding`` op); a replicated sharding
    adds no op unless ``always``."""
    spec = spec_of(sharding, tensor.ndim)
    if not always and not any(spec):
        return tensor
    mesh = MeshAxes(tuple(sharding.mesh.shape.items()))
    return emit(S.with_sharding, [tensor], mesh=mesh, spec=S.spec_text(spec))


def with_sharding(x: Any, spec: Any) -> Any:
    """``x`` laid out over the mesh as ``spec`` (a ``fj.P`` or ``fj.NamedSharding``), like
    ``jax.lax.with_sharding_constraint``. Inside a compiled function the mesh is the
    function's (``fj.compile(mesh=...)``) or the one entered with ``with mesh:``; outside,
    the value is placed on the devices at once."""
    if not tracing():
        array = jnp.asarray(x)
        return place(array, sharding_for(spec, active_mesh(), array.shape, "fj.with_sharding"))
    from .numpy_api import asarray

    tensor = asarray(x)
    try:
        sharding = sharding_for(spec, active_mesh(), tensor.shape, "fj.with_sharding")
    except ShardingError as err:
        raise err.with_context(loc=user_location()) from None
    return constrain(tensor, sharding, always=True)


def keep_sharding(variable: Any, value: Any) -> Any:
    """Inside a jitted step: a variable's new value, held to the variable's sharding (so a
    sharded variable stays sharded, and its buffer is updated in place)."""
    if variable.sharding is None:
        return value
    return jax.lax.with_sharding_constraint(value, variable.sharding)


def function_mesh(mesh: Any, in_shardings: Any, out_shardings: Any, name: str) -> Any:
    """The function's mesh: ``mesh``, else the mesh of its NamedSharding specs, else None
    (then its specs must be NamedShardings)."""
    if mesh is not None:
        return as_mesh(mesh)
    leaves = jax.tree_util.tree_leaves((in_shardings, out_shardings), is_leaf=is_spec)
    meshes = {s.mesh for s in leaves if isinstance(s, jax.sharding.NamedSharding)}
    if any(isinstance(s, jax.sharding.PartitionSpec) for s in leaves) or len(meshes) > 1:
        raise ShardingError(
            f"{name}: in_shardings/out_shardings given as fj.P need a mesh; compile with "
            "fj.compile(..., mesh=fj.Mesh(devices, axis_names))"
        )
    return as_mesh(meshes.pop()) if meshes else None


def specs_per_leaf(prefix: Any, tree: Any, what: str) -> list:
    """The spec of each leaf of ``tree``, from ``prefix`` (a tree of specs whose structure is
    a prefix of ``tree``'s, as jax.jit's shardings are)."""
    treedef = jax.tree_util.tree_structure(prefix, is_leaf=is_spec)
    try:
        subtrees = treedef.flatten_up_to(tree)
    except (ValueError, TypeError) as err:
        raise ShardingError(f"{what} does not match the structure of the values: {err}") from None
    specs = jax.tree_util.tree_leaves(prefix, is_leaf=is_spec)
    return [s for s, sub in zip(specs, subtrees) for _ in jax.tree_util.tree_leaves(sub)]
