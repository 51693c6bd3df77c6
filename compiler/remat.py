"""``fj.checkpoint`` (alias ``fj.remat``), ``fj.checkpoint_policies`` and
``fj.checkpoint_name``: jax's rematerialization API (API.md, section 11).

``fj.checkpoint(f)`` traces ``f`` into the body of one ``remat`` op (ir/ops/remat.py), whose
gradient rule recomputes the body's values in the backward pass instead of saving them, except
those the policy saves. Outside a trace the function simply runs."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import ArgumentError
from flowjit.ir.ops import remat as R

from .control_flow import outer_tensors, trace_function, unflatten, with_inputs, tensor_leaves
from .location import check_argnums, positional_parameters, user_location
from .trace import emit, tracing


@dataclass(frozen=True)
class CheckpointPolicy:
    """A policy of ``fj.checkpoint_policies``: which of a region's values the backward pass
    keeps (the others it recomputes). ``names``: for save_only_these_names."""

    name: str
    names: tuple[str, ...] = ()

    def __repr__(self) -> str:
        args = ", ".join(map(repr, self.names))
        return f"checkpoint_policies.{self.name}" + (
            f"({args})" if self.name.startswith("save_only") else ""
        )


class _Policies:
    """``fj.checkpoint_policies``: the policies of ``jax.checkpoint_policies`` flowjit has."""

    nothing_saveable = CheckpointPolicy("nothing_saveable")
    everything_saveable = CheckpointPolicy("everything_saveable")
    dots_saveable = CheckpointPolicy("dots_saveable")
    checkpoint_dots = dots_saveable
    dots_with_no_batch_dims_saveable = CheckpointPolicy("dots_with_no_batch_dims_saveable")
    checkpoint_dots_with_no_batch_dims = dots_with_no_batch_dims_saveable

    @staticmethod
    def save_only_these_names(*names: str) -> CheckpointPolicy:
        """Save only the values named (``fj.checkpoint_name``) with one of ``names``."""
        for name in names:
            _check_name(name, "fj.checkpoint_policies.save_only_these_names")
        return CheckpointPolicy("save_only_these_names", tuple(names))


checkpoint_policies = _Policies()


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or "," in name:
        raise ArgumentError(
            f"{what}: a name must be a non-empty string without commas, got {name!r}",
            loc=user_location(),
        )
    return name


def _policy(policy: Any) -> CheckpointPolicy:
    """``policy`` as one of ours: None (nothing_saveable), a CheckpointPolicy, or the same
    policy of ``jax.checkpoint_policies``."""
    if policy is None:
        return checkpoint_policies.nothing_saveable
    if isinstance(policy, CheckpointPolicy):
        return policy
    for name in R.POLICIES[:-1]:  # (not save_only_these_names: a factory, not a policy)
        if policy is getattr(jax.checkpoint_policies, name, None):
            return CheckpointPolicy(name)
    raise ArgumentError(
        f"fj.checkpoint: policy={policy!r} is not one flowjit knows; use one of "
        "fj.checkpoint_policies: nothing_saveable, everything_saveable, dots_saveable, "
        "dots_with_no_batch_dims_saveable, save_only_these_names(*names)",
        loc=user_location(),
    )


def checkpoint(
    fun: Callable,
    *,
    prevent_cse: bool = True,
    policy: Any = None,
    static_argnums: int | Sequence[int] = (),
) -> Callable:
    """Like ``jax.checkpoint``: ``fun``, whose intermediate values a gradient recomputes in
    the backward pass instead of keeping them from the forward pass (only those ``policy``
    allows are kept). ``prevent_cse=False`` lets XLA merge the recomputation with the
    forward pass (safe inside a loop body, where they are in different loops).
    ``static_argnums`` name positional arguments that are Python values, not Tensors."""
    if not callable(fun):
        raise ArgumentError(
            f"fj.checkpoint needs a function, got {type(fun).__name__}", loc=user_location()
        )
    chosen = _policy(policy)
    if not isinstance(prevent_cse, bool):
        raise ArgumentError(
            f"fj.checkpoint: prevent_cse must be True or False, got {prevent_cse!r}",
            loc=user_location(),
        )
    name = getattr(fun, "__name__", "fn")
    statics = check_argnums(static_argnums, "static_argnums", name, positional_parameters(fun))

    @functools.wraps(fun)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not tracing():
            return fun(*args, **kwargs)
        check_argnums(statics, "static_argnums", name, given=len(args))
        static = {i % len(args): args[i] for i in statics}
        dynamic = [a for i, a in enumerate(args) if i not in static]

        def body(dyn: list, kw: dict) -> Any:
            values = iter(dyn)
            full = [static[i] if i in static else next(values) for i in range(len(args))]
            return fun(*full, **kw)

        tensors, treedef, _ = tensor_leaves((dynamic, kwargs), "arguments")
        types = [t._value.type for t in tensors]
        traced = trace_function(body, f"checkpoint_{name}", treedef, types)
        captured = traced.captured
        results = emit(
            R.remat,
            [*outer_tensors(captured), *tensors],
            body=with_inputs(traced, len(types), captured),
            policy=chosen.name,
            names=",".join(chosen.names),
            prevent_cse=prevent_cse,
        )
        return unflatten(traced.treedef, results)

    return wrapped


remat = checkpoint


def checkpoint_name(x: Any, name: str) -> Any:
    """Like ``jax.ad_checkpoint.checkpoint_name``: ``x`` (a Tensor or a structure of them),
    named ``name`` for the save_only_these_names policy."""
    _check_name(name, "fj.checkpoint_name")
    if not tracing():
        return x
    leaves, treedef, _ = tensor_leaves(x, "x")
    named = [emit(R.checkpoint_name, [leaf], name=name) for leaf in leaves]
    return jax.tree_util.tree_unflatten(treedef, named)


__all__ = ["CheckpointPolicy", "checkpoint", "checkpoint_name", "checkpoint_policies", "remat"]
