"""How a compiled function's arguments split into static and dynamic ones, and the names its
messages give them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowjit.backends.xla.jaxshim import jax

from .signature import Signature, dynamic_part, signature_of


@dataclass(frozen=True)
class FunctionArgs:
    """The function's ``name``, its positional parameters' names (``params``, for messages;
    () if they cannot be read) and which arguments are static."""

    name: str
    params: tuple[str, ...]
    static_argnums: tuple[int, ...]
    static_argnames: tuple[str, ...]

    def signature(self, args: tuple, kwargs: dict) -> Signature:
        """The flowjit signature of a call (an ArgumentError names a leaf it cannot take)."""
        return signature_of(args, kwargs, self.static_argnums, self.static_argnames)

    def dynamic_leaves(self, args: tuple, kwargs: dict) -> list[Any]:
        """The leaves of the call's dynamic (non-static) arguments, in signature order."""
        return jax.tree_util.tree_leaves(
            dynamic_part(args, kwargs, self.static_argnums, self.static_argnames)
        )
