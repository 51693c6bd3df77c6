"""The shardings at a compiled function's ``jax.jit`` boundary (API.md, section 8): its
``in_shardings`` (one spec tree per positional argument) and ``out_shardings``, checked against
the mesh and against each call's argument and result shapes; and, over a mesh spanning several
processes, the arguments made global jax.Arrays."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import ShardingError
from flowjit.runtime.sharding import is_spec, named_tree, place, sharding_for

from .function_args import FunctionArgs
from .location import positional_parameters
from .sharding import function_mesh, specs_per_leaf
from .signature import Signature, argument_name, dynamic_part


class BoundaryShardings:
    """A compiled function's mesh and the shardings of its arguments and results.

    ``arg_shardings`` is None or a list of NamedSharding trees, one per positional argument;
    ``out_shardings`` is None or a tree of them (a prefix of the result's structure)."""

    def __init__(
        self, fn: Callable, spec: FunctionArgs, mesh: Any, in_shardings: Any, out_shardings: Any
    ):
        self.spec, self.name, self.params = spec, spec.name, spec.params
        self.static_argnums = spec.static_argnums
        self.mesh = function_mesh(mesh, in_shardings, out_shardings, spec.name)
        self.arg_shardings = self._per_argument(fn, in_shardings)
        self.out_shardings = self._to_named(out_shardings, "out_shardings")
        # a mesh spanning several processes takes global jax.Arrays only (see globalize)
        self.across_processes = self.mesh is not None and not all(
            d.process_index == jax.process_index() for d in self.mesh.devices.flat
        )

    def _to_named(self, tree: Any, what: str) -> Any:
        """``tree`` (of fj.P, NamedSharding and None leaves) with each P made a NamedSharding
        on the function's mesh, after checking its axes."""
        return None if tree is None else named_tree(tree, self.mesh, f"{self.name}: {what}")

    def _per_argument(self, fn: Callable, in_shardings: Any) -> list | None:
        """The argument shardings, one tree per positional argument (a single spec is every
        argument's, as in jax.jit)."""
        if in_shardings is None:
            return None
        if is_spec(in_shardings):
            if not self.params or positional_parameters(fn) is None:  # (*args, unreadable)
                raise ShardingError(
                    f"{self.name}: give in_shardings as a tuple, one per positional argument "
                    "(the function's arguments cannot be counted)"
                )
            count = len(self.params) - len(self.static_argnums)
            in_shardings = (in_shardings,) * count
        elif not isinstance(in_shardings, (tuple, list)):
            raise ShardingError(
                f"{self.name}: in_shardings must be a spec (fj.P) or a tuple of them, one per "
                f"positional argument, got {type(in_shardings).__name__}"
            )
        return list(self._to_named(tuple(in_shardings), "in_shardings"))

    def globalize(self, args: tuple) -> tuple:
        """In a multi-process run: each numpy argument, the same value in every process, as a
        global jax.Array laid out as its sharding says (each process fills its own devices)."""
        shardings = self.arg_shardings or []
        replicated = jax.sharding.NamedSharding(self.mesh.jax, jax.sharding.PartitionSpec())
        out, j = list(args), 0
        for i, arg in enumerate(args):
            if i in self.static_argnums:
                continue
            leaves, treedef = jax.tree_util.tree_flatten(arg)
            specs = specs_per_leaf(shardings[j], arg, "in_shardings") if j < len(shardings) else []
            specs += [None] * (len(leaves) - len(specs))
            leaves = [
                x if isinstance(x, jax.Array) else place(np.asarray(x), s or replicated)
                for x, s in zip(leaves, specs)
            ]
            out[i], j = jax.tree_util.tree_unflatten(treedef, leaves), j + 1
        return tuple(out)

    def input_shardings(self, sig: Signature, args: tuple, kwargs: dict) -> list:
        """Each dynamic argument leaf's NamedSharding (or None), checked against its shape."""
        if self.arg_shardings is None:
            return [None] * len(sig.types)
        dyn_args, dyn_kwargs = dynamic_part(
            args, kwargs, self.static_argnums, self.spec.static_argnames
        )
        if jax.tree_util.tree_leaves(dyn_kwargs):
            raise ShardingError(
                f"{self.name} has in_shardings: pass its array arguments by position, not by "
                f"keyword ({', '.join(dyn_kwargs)})"
            )
        positional = [a for i, a in enumerate(dyn_args) if i not in self.static_argnums]
        if len(positional) != len(self.arg_shardings):
            raise ShardingError(
                f"{self.name}: in_shardings gives {len(self.arg_shardings)} entries but the "
                f"call has {len(positional)} positional array arguments; give one per argument"
            )
        specs = []
        for spec_tree, arg in zip(self.arg_shardings, positional):
            specs += specs_per_leaf(spec_tree, arg, f"{self.name}: in_shardings")
        return [
            None
            if s is None
            else sharding_for(
                s,
                self.mesh,
                t.shape,
                f"{self.name}: in_shardings for argument {argument_name(path, self.params)}",
            )
            for s, t, path in zip(specs, sig.types, sig.paths, strict=True)
        ]

    def output_shardings(self, out_treedef: Any, outputs: list) -> list:
        """Each result leaf's NamedSharding (or None), checked against its shape."""
        if self.out_shardings is None:
            return [None] * len(outputs)
        result = jax.tree_util.tree_unflatten(out_treedef, range(len(outputs)))
        specs = specs_per_leaf(self.out_shardings, result, f"{self.name}: out_shardings")
        paths = [
            jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(result)[0]
        ]
        return [
            None
            if s is None
            else sharding_for(
                s, self.mesh, v.type.shape, f"{self.name}: out_shardings for result{path}"
            )
            for s, v, path in zip(specs, outputs, paths, strict=True)
        ]
