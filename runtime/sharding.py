"""Meshes and shardings (API.md, section 8): ``fj.Mesh``, ``fj.P`` and the checks that turn a
user's partition spec into a ``jax.sharding.NamedSharding`` or a clear ``ShardingError``.

flowjit runs SPMD programs on XLA's partitioner through ``jax.jit``: a compiled function with
a mesh passes its argument and result shardings to the jit boundary, its sharded variables
live as sharded ``jax.Array``s (each device holds only its shard), and ``with_sharding`` ops
in the IR become Shardy constraints in the StableHLO."""

from __future__ import annotations

import math
import threading
from typing import Any, Sequence

import numpy as np

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import MeshAxes, ShardingError
from flowjit.ir.ops.sharding import Spec

P = jax.sharding.PartitionSpec
NamedSharding = jax.sharding.NamedSharding


class _Entered(threading.local):
    def __init__(self) -> None:
        self.meshes: list[Mesh] = []  # entered with ``with mesh:`` in this thread, innermost last


_ENTERED = _Entered()


class Mesh:
    """Devices arranged in a grid with named axes, e.g. 4 x 2 over ("data", "model").

    ``devices`` is an array (or nested lists) of jax devices with one dimension per axis
    name; a flat list needs one axis name. ``with mesh:`` makes it the mesh that
    ``fj.Variable(..., sharding=fj.P(...))`` and ``fj.with_sharding`` use outside a compiled
    function that has its own."""

    def __init__(self, devices: Any, axis_names: Sequence[str] | str):
        if isinstance(devices, jax.sharding.Mesh):
            self.jax = devices
            return
        names = (axis_names,) if isinstance(axis_names, str) else tuple(axis_names)
        grid = np.array(devices, dtype=object)
        if not names or not all(isinstance(n, str) and n.isidentifier() for n in names):
            raise ShardingError(f"mesh axis names must be identifiers, got {axis_names!r}")
        if len(set(names)) != len(names):
            raise ShardingError(f"mesh axis names must differ, got {names}")
        if grid.ndim != len(names):
            raise ShardingError(
                f"a mesh of {grid.shape} devices needs {grid.ndim} axis names, got "
                f"{len(names)} ({', '.join(names)}); reshape the devices, e.g. "
                f"np.array(fj.devices()).reshape({', '.join(['n'] * len(names))})"
            )
        if grid.size == 0 or not all(isinstance(d, jax.Device) for d in grid.flat):
            raise ShardingError("a mesh needs jax devices (from fj.devices()), at least one")
        if len(set(grid.flat)) != grid.size:
            raise ShardingError("a mesh lists a device twice")
        self.jax = jax.sharding.Mesh(grid, names)

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(self.jax.axis_names)

    @property
    def shape(self) -> dict[str, int]:
        return dict(self.jax.shape)

    @property
    def axes(self) -> MeshAxes:
        return MeshAxes(tuple(self.jax.shape.items()))

    @property
    def devices(self) -> np.ndarray:
        return self.jax.devices

    @property
    def size(self) -> int:
        return self.jax.size

    def __enter__(self) -> "Mesh":
        _ENTERED.meshes.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _ENTERED.meshes.remove(self)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Mesh) and other.jax == self.jax

    def __hash__(self) -> int:
        return hash(self.jax)

    def __repr__(self) -> str:
        return f"Mesh({self.axes})"


def as_mesh(mesh: Any) -> Mesh:
    """A flowjit Mesh from a Mesh or a ``jax.sharding.Mesh``."""
    if isinstance(mesh, Mesh):
        return mesh
    if isinstance(mesh, jax.sharding.Mesh):
        return Mesh(mesh, mesh.axis_names)
    raise ShardingError(
        f"mesh must be an fj.Mesh, got {type(mesh).__name__}; build one with "
        "fj.Mesh(np.array(fj.devices()).reshape(...), axis_names)"
    )


def active_mesh() -> Mesh | None:
    meshes = _ENTERED.meshes
    return meshes[-1] if meshes else None


class entered:
    """``with entered(mesh):`` makes ``mesh`` (or nothing, for None) the active mesh."""

    def __init__(self, mesh: Mesh | None):
        self.mesh = mesh

    def __enter__(self) -> None:
        if self.mesh is not None:
            _ENTERED.meshes.append(self.mesh)

    def __exit__(self, *exc: Any) -> None:
        if self.mesh is not None:
            _ENTERED.meshes.pop()


def is_spec(x: Any) -> bool:
    """Whether ``x`` is a leaf of a shardings tree: a spec, a NamedSharding or None."""
    return x is None or isinstance(x, (P, NamedSharding))


def named_tree(tree: Any, mesh: Mesh, what: str) -> Any:
    """``tree`` (of fj.P, NamedSharding and None leaves) with each P made a NamedSharding on
    ``mesh``, after checking its axes; ``what`` names it in the ShardingError otherwise."""

    def named(spec: Any) -> Any:
        if not isinstance(spec, P):
            return spec
        check_spec_axes(spec, mesh, what)
        return NamedSharding(mesh.jax, spec)

    return jax.tree_util.tree_map(named, tree, is_leaf=is_spec)


def check_spec_axes(spec: Any, mesh: Mesh, what: str) -> None:
    """ShardingError unless ``spec`` is a partition spec whose axes are the mesh's, each once
    (checks that need no shape; ``sharding_for`` checks the rest)."""
    if not isinstance(spec, P):
        raise ShardingError(
            f"{what}: expected a partition spec fj.P(...), got {type(spec).__name__} {spec!r}"
        )
    used: list[str] = []
    for entry in spec:
        for axis in entry if isinstance(entry, tuple) else (entry,):
            if axis is None:
                continue
            if axis not in mesh.shape:
                raise ShardingError(
                    f"{what}: {_show(spec)} names axis {axis!r}, which the mesh "
                    f"{mesh} lacks; use one of {', '.join(map(repr, mesh.axis_names))}"
                )
            used.append(axis)
    if len(set(used)) != len(used):
        raise ShardingError(f"{what}: {_show(spec)} uses a mesh axis twice")


def sharding_for(spec: Any, mesh: Mesh | None, shape: Sequence[int], what: str) -> NamedSharding:
    """The NamedSharding that lays a value of ``shape`` out as ``spec`` (a ``fj.P`` on
    ``mesh``, or a NamedSharding), after checking that it fits; ``what`` names the argument or
    variable in the ShardingError otherwise."""
    if isinstance(spec, NamedSharding):
        mesh, spec = as_mesh(spec.mesh), spec.spec
    if mesh is None:
        raise ShardingError(
            f"{what}: the sharding {_show(spec)} needs a mesh; create it inside `with mesh:` "
            "(mesh = fj.Mesh(...)) or pass fj.NamedSharding(mesh, spec)"
        )
    check_spec_axes(spec, mesh, what)
    if len(spec) > len(shape):
        raise ShardingError(
            f"{what}: {_show(spec)} has {len(spec)} entries but the value has shape "
            f"{tuple(shape)} (rank {len(shape)}); give at most one entry per dimension"
        )
    for d, entry in enumerate(spec):
        axes = entry if isinstance(entry, tuple) else (() if entry is None else (entry,))
        parts = math.prod(mesh.shape[a] for a in axes)
        if shape[d] % parts:
            raise ShardingError(
                f"{what}: dimension {d} has size {shape[d]}, which {_show(spec)} splits over "
                f"{' x '.join(axes)} = {parts} devices, and {parts} does not divide {shape[d]}; "
                "choose a size divisible by it or another axis"
            )
    # without trailing Nones, as jax writes the shardings of a step's results: a variable's
    # sharding then equals its new value's, and the step is not compiled a second time
    entries = list(spec)
    while entries and entries[-1] is None:
        entries.pop()
    return NamedSharding(mesh.jax, P(*entries))


def spec_of(sharding: NamedSharding, ndim: int) -> Spec:
    """The IR's spec of ``sharding`` for a value of rank ``ndim``: per dimension, its axes."""
    spec = tuple(sharding.spec) + (None,) * (ndim - len(sharding.spec))
    return tuple(e if isinstance(e, tuple) else (() if e is None else (e,)) for e in spec)


def place(value: Any, sharding: NamedSharding) -> jax.Array:
    """``value`` (a numpy or jax array) laid out as ``sharding``: each device receives only
    its shard (also across processes), in a fresh buffer."""
    if (
        isinstance(value, jax.Array)
        and value.is_fully_addressable
        and sharding.is_fully_addressable
    ):  # (a copy by XLA's client: no program compiled per shape)
        return jax.device_put(value, sharding, may_alias=False)
    if isinstance(value, jax.Array) and value.sharding == sharding:
        return jax.numpy.array(value, copy=True)
    # (across processes: each process fills its own devices' shards from the whole value)
    array = host_value(value) if isinstance(value, jax.Array) else np.asarray(value)
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def host_value(value: jax.Array) -> np.ndarray:
    """The whole value as a numpy array, also when its shards live in several processes
    (then every process must call this: it is a collective)."""
    if value.is_fully_addressable:
        return np.asarray(value)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(value, tiled=True))


def _show(spec: Any) -> str:
    return "fj.P(" + ", ".join(map(repr, spec)) + ")" if isinstance(spec, P) else repr(spec)
