"""How a compiled function's arguments split into static and dynamic ones, and the names its
messages give them."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from flowjit.backends.xla.jaxshim import jax

from .location import check_argnums, positional_parameters
from .signature import Signature, dynamic_part, signature_of


@dataclass(frozen=True)
class FunctionArgs:
    """The function's ``name``, its positional parameters' names (``params``, for messages;
    () if they cannot be read) and which arguments are static."""

    name: str
    params: tuple[str, ...]
    static_argnums: tuple[int, ...]
    static_argnames: tuple[str, ...]

    @classmethod
    def of(
        cls, fn: Callable, name: str, static_argnums: Any, static_argnames: Sequence[str] | str
    ) -> FunctionArgs:
        """``fn``'s arguments, ``static_argnums`` checked (an ArgumentError says what is
        wrong). A static argument passed by keyword is static too (jax.jit infers the names
        alike)."""
        params = _parameter_names(fn)
        argnums = check_argnums(
            static_argnums,
            "static_argnums",
            name,
            positional_parameters(fn),
            by_name="static_argnames",
        )
        named = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
        inferred = tuple(p for i, p in enumerate(params) if i in argnums and p not in named)
        return cls(name, params, argnums, named + inferred)

    @property
    def static(self) -> tuple[tuple[int, ...], tuple[str, ...]]:
        return self.static_argnums, self.static_argnames

    def signature(self, args: tuple, kwargs: dict) -> Signature:
        """The flowjit signature of a call (an ArgumentError names a leaf it cannot take)."""
        return signature_of(args, kwargs, self.static_argnums, self.static_argnames)

    def dynamic_leaves(self, args: tuple, kwargs: dict) -> list[Any]:
        """The leaves of the call's dynamic (non-static) arguments, in signature order."""
        return jax.tree_util.tree_leaves(
            dynamic_part(args, kwargs, self.static_argnums, self.static_argnames)
        )


def _parameter_names(fn: Callable) -> tuple[str, ...]:
    """The names of ``fn``'s positional parameters (for messages); () if it has none we can
    read."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in parameters if p.kind in kinds)
