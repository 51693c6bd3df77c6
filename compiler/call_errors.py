"""What a failed call of a compiled function did wrong, in flowjit's words: jax rejects a bad
argument, a donated or lost buffer or a sharding that does not fit in its own words; these
checks, run after the failure (never on a call that succeeds), name the argument or the
variable instead."""

from __future__ import annotations

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import DonationError

from .boundary import BoundaryShardings
from .function_args import FunctionArgs
from .layout import StateLayout


def name_failure(
    err: Exception,
    args: tuple,
    kwargs: dict,
    spec: FunctionArgs,
    boundary: BoundaryShardings,
    layout: StateLayout,
) -> None:
    """Raise flowjit's error for the call with ``args`` and ``kwargs`` that raised ``err``,
    where one applies; else return (the caller raises ``err``)."""
    if isinstance(err, (RuntimeError, TypeError)):  # (jax's words for a deleted buffer)
        for variable in (*layout.written, *layout.read_only):
            variable._checked()  # (VariableError if its value was lost)
    if isinstance(err, RuntimeError):  # (jax's error for a deleted or donated buffer)
        _check_not_donated(spec, args, kwargs)
    if isinstance(err, (TypeError, OverflowError)):
        # jax rejects a non-array argument (or an int too big for it) in its own words;
        # name the argument's path
        spec.signature(args, kwargs)
    if boundary.arg_shardings is not None and isinstance(err, ValueError):
        # jax checks argument shardings before tracing: name the argument instead
        boundary.input_shardings(spec.signature(args, kwargs), args, kwargs)


def _check_not_donated(spec: FunctionArgs, args: tuple, kwargs: dict) -> None:
    """Raise DonationError naming an argument that was donated to an earlier call (its buffer
    is deleted), if one was."""
    leaves = spec.dynamic_leaves(args, kwargs)
    if not any(isinstance(leaf, jax.Array) and leaf.is_deleted() for leaf in leaves):
        return
    sig = spec.signature(args, kwargs)
    for path, leaf in zip(sig.paths, leaves):
        if isinstance(leaf, jax.Array) and leaf.is_deleted():
            raise DonationError(
                f"{spec.name}: {path} was donated to an earlier call (donate_argnums) and "
                "its buffer is gone; pass a new array, or keep a copy (jnp.copy(x)) before "
                "the call that donates it"
            ) from None
