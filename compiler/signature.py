"""Signatures: what a compiled function's trace cache is keyed on.

A signature is the tree structure of the dynamic arguments, each leaf's TensorType, the values
of the static arguments and jax's ``jax_enable_x64`` setting (which decides the dtypes a trace
makes, as it does for jax.jit). Leaves are described by their jax abstract value, so concrete
arguments and the tracers jax hands the traced body give the same signature, and numpy's
float64/int64 arguments are float32/int32 unless x64 is on (a concrete int64 argument whose
values do not fit int32 is an IntegerOverflowError naming it, where jax would wrap them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import TensorType, dtype_name
from flowjit.ir.errors import DTypeError
from flowjit.runtime.variables import VariableCell

from .dtypes import canonicalize, check_fits, x64_enabled

_NARROW = {
    np.dtype(np.float64): np.dtype(np.float32),
    np.dtype(np.int64): np.dtype(np.int32),
    np.dtype(np.uint64): np.dtype(np.uint32),
}


@dataclass(frozen=True)
class Signature:
    treedef: Any
    paths: tuple[str, ...]
    types: tuple[TensorType, ...]
    statics: tuple[tuple[str, Any], ...]
    x64: bool = False  # jax_enable_x64 when the call was made

    @property
    def key(self) -> tuple:
        return (self.treedef, self.types, self.statics, self.x64)

    def describe_change(self, new: "Signature", params: Sequence[str] = ()) -> str:
        """What differs between this signature and ``new``, in words, naming arguments by
        the function's parameter names ``params``: ``x: shape (128, 784) -> (64, 784)``."""
        name = lambda path: argument_name(path, params)  # noqa: E731
        for (path, old_v), (_, new_v) in zip(self.statics, new.statics):
            if old_v != new_v:
                return f"{name(path)}: static value {old_v!r} -> {new_v!r}"
        if self.x64 != new.x64:
            return f"jax_enable_x64: {self.x64} -> {new.x64}"
        if self.treedef != new.treedef:
            return f"the argument structure: {self.treedef} -> {new.treedef}"
        for path, old_t, new_t in zip(self.paths, self.types, new.types):
            changes = []
            if old_t.shape != new_t.shape:
                changes.append(f"shape {old_t.shape} -> {new_t.shape}")
            if old_t.dtype != new_t.dtype:
                changes.append(f"dtype {dtype_name(old_t.dtype)} -> {dtype_name(new_t.dtype)}")
            if changes:
                return f"{name(path)}: {', '.join(changes)}"
        return "nothing visible changed"


def argument_name(path: str, params: Sequence[str]) -> str:
    """``args[1]['w']`` as ``params['w']`` when parameter 1 is called ``params``;
    ``kwargs['k']`` as ``k``."""
    if path.startswith("kwargs["):
        key, _, rest = path[len("kwargs[") :].partition("]")
        return key.strip("'\"") + rest
    index, _, rest = path[len("args[") :].partition("]")
    position = int(index)
    return (params[position] if position < len(params) else f"args[{position}]") + rest


def path_name(path: Sequence[Any]) -> str:
    """``args[1]['w']`` for a key path into ``(args, kwargs)``."""
    head, first, rest = path[0].idx, path[1], tuple(path[2:])
    base = f"args[{first.idx}]" if head == 0 else f"kwargs[{first.key!r}]"
    return base + jax.tree_util.keystr(rest)


def leaf_type(leaf: Any, path: str) -> TensorType:
    """The flowjit type of one argument leaf (array, scalar or tracer)."""
    if isinstance(leaf, VariableCell):
        raise TypeError(
            f"{path} is the variable {leaf.name!r}: variables are captured, not passed; use it "
            "inside the function directly (or pass its .value to pass a copy of its value)"
        )
    try:
        aval = jax.typeof(leaf)
    except TypeError:
        raise TypeError(
            f"{path} is a {type(leaf).__name__}, which is not an array: pass numpy "
            "or jax arrays, Python/numpy scalars or None (nested in tuples, lists "
            "and dicts), or mark the argument static with static_argnums/"
            "static_argnames"
        ) from None
    except OverflowError:  # a Python int beyond int32 (int64 with x64 on), as jax.jit says
        check_fits(leaf, canonicalize(np.int64), f"{path} (a Python int)")
        raise
    dtype = np.dtype(aval.dtype)
    if isinstance(leaf, (np.ndarray, np.generic)) and leaf.dtype != dtype:
        check_fits(leaf, dtype, f"{path} ({leaf.dtype} data)")  # (int64 as int32, x64 off)
    if getattr(aval, "weak_type", False):
        # A Python scalar: a float is f32, an int i32; with x64 on, an int is i64, as in
        # jax.jit: the trace cannot see its value, and it may need 64 bits
        dtype = dtype if dtype == np.int64 else _NARROW.get(dtype, dtype)
    try:
        return TensorType(aval.shape, dtype)
    except DTypeError:
        raise TypeError(f"{path} has dtype {dtype}, which flowjit does not support") from None


def dynamic_part(
    args: tuple, kwargs: dict, static_argnums: Sequence[int], static_argnames: Sequence[str]
) -> tuple[tuple, dict]:
    """``(args, kwargs)`` with the static arguments taken out (positions become None)."""
    dyn_args = tuple(None if i in static_argnums else a for i, a in enumerate(args))
    return dyn_args, {k: v for k, v in kwargs.items() if k not in static_argnames}


def signature_of(
    args: tuple, kwargs: dict, static_argnums: Sequence[int], static_argnames: Sequence[str]
) -> Signature:
    """The signature of a call; static arguments are taken out of the tree by position/name."""
    statics = tuple((f"args[{i}]", args[i]) for i in static_argnums if i < len(args))
    statics += tuple((f"kwargs[{k!r}]", kwargs[k]) for k in static_argnames if k in kwargs)
    dyn_args, dyn_kwargs = dynamic_part(args, kwargs, static_argnums, static_argnames)
    flat, treedef = jax.tree_util.tree_flatten_with_path((dyn_args, dyn_kwargs))
    paths = tuple(path_name(p) for p, _ in flat)
    types = tuple(leaf_type(leaf, path) for path, (_, leaf) in zip(paths, flat))
    return Signature(treedef, paths, types, statics, x64_enabled())
