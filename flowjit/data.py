"""``fj.data``: input pipelines (API.md, section 12). flowjit owns only the prefetching to
devices; the batches come from any Python iterator, Grain's included (runtime/data.py).

    for x, y in fj.data.prefetch(loader, size=2, sharding=train_step):
        loss = train_step(x, y)
"""

from __future__ import annotations

from typing import Any, Iterable

from flowjit.backends.xla.jaxshim import jax
from flowjit.compiler import CompiledFunction
from flowjit.ir import ShardingError
from flowjit.runtime.data import Prefetcher, placer
from flowjit.runtime.sharding import P, active_mesh, is_spec, named_tree


def prefetch(iterable: Iterable, size: int = 2, sharding: Any = None) -> Prefetcher:
    """The batches of ``iterable``, each moved to its devices on a background thread,
    ``size`` batches ahead of the loop that takes them.

    ``sharding``: None (the default device); a ``fj.NamedSharding`` for every array; a tree
    of them (``fj.P`` leaves under ``with mesh:``, None leaves for the default device) shaped
    as a prefix of the batches; or a compiled function, whose ``in_shardings`` place each batch
    as the arguments it takes (a batch is then the tuple of its positional arguments). Over a
    mesh spanning several processes each process's iterator yields its own slice of the global
    batch. The result's ``get_state``/``set_state`` save and restore where a resumable source
    (Grain's) stands; ``close()`` stops it."""
    return Prefetcher(iterable, size, placer(_shardings(sharding)))


def _shardings(sharding: Any) -> Any:
    """``sharding`` as runtime/data.placer takes it: None, or a tree of jax Shardings."""
    if isinstance(sharding, CompiledFunction):
        shardings = sharding.argument_shardings()
        return None if shardings is None else tuple(shardings)
    if isinstance(sharding, jax.sharding.Sharding) or sharding is None:
        return sharding
    mesh = active_mesh()
    specs = [x for x in jax.tree_util.tree_leaves(sharding, is_leaf=is_spec) if isinstance(x, P)]
    if specs and mesh is None:
        raise ShardingError(
            f"fj.data.prefetch: sharding {specs[0]!r} is a partition spec with no mesh; call "
            "it under `with mesh:`, or give fj.NamedSharding(mesh, spec)"
        )
    tree = sharding if mesh is None else named_tree(sharding, mesh, "fj.data.prefetch")
    for leaf in jax.tree_util.tree_leaves(tree, is_leaf=is_spec):
        if leaf is not None and not isinstance(leaf, jax.sharding.Sharding):
            raise ShardingError(
                f"fj.data.prefetch: sharding must be None, a fj.NamedSharding, fj.P specs "
                f"or a compiled function, got {type(leaf).__name__} {leaf!r}"
            )
    return tree


__all__ = ["prefetch", "Prefetcher"]
