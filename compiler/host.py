"""``fj.host_call`` and ``fj.print`` (API.md, section 6): Python on the host, in program order.

Inside a compiled function each becomes a ``host_call`` op; the clustering pass splits the
graph around it and the runtime calls the Python function on numpy values between the
compiled clusters (inside a loop body it runs as a callback of the compiled loop). Outside a
compiled function they simply run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import ArgumentError, TensorType, TypeMismatchError
from flowjit.ir.ops import host as H
from flowjit.ir.types import DTYPE_NAMES

from .control_flow import tensor_leaves
from .dtypes import canonical_dtype, check_fits
from .location import user_location
from .trace import emit, tracing


@dataclass(frozen=True)
class ShapeDtype:
    """The shape and dtype of a host_call result (``jax.ShapeDtypeStruct`` works too)."""

    shape: tuple[int, ...]
    dtype: Any


@dataclass(frozen=True, eq=False)
class HostFunction:
    """What a ``host_call`` op holds: the user's function, called on the operands' numpy
    values in the pytree structure they were given, its results checked against the declared
    types. The graph that traced it owns it (it lives as long as that graph does)."""

    fn: Callable
    args_tree: Any
    results_tree: Any
    types: tuple[TensorType, ...]
    where: Any  # the user's line of the fj.host_call

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        result = self.fn(*jax.tree_util.tree_unflatten(self.args_tree, arrays))
        return _checked(result, self.results_tree, self.types, self.where)


def host_call(fn: Callable, *args: Any, result_shape_dtypes: Any) -> Any:
    """``fn(*args)`` on the host, on numpy values; its results must have the structure,
    shapes and dtypes of ``result_shape_dtypes`` (a pytree of ``fj.ShapeDtype``)."""
    types, results_tree = _result_types(result_shape_dtypes)
    if not tracing():
        arrays = _checked(fn(*args), results_tree, types, user_location())
        return jax.tree_util.tree_unflatten(results_tree, arrays)
    tensors, args_tree, _ = tensor_leaves(args, "args")
    function = HostFunction(fn, args_tree, results_tree, tuple(types), user_location())
    name = getattr(fn, "__name__", type(fn).__name__)
    results = emit(H.host_call, tensors, callback=function, name=name, result_types=tuple(types))
    results = results if isinstance(results, tuple) else (results,)
    return jax.tree_util.tree_unflatten(results_tree, list(results))


def _result_types(result_shape_dtypes: Any) -> tuple[list[TensorType], Any]:
    """The result types ``result_shape_dtypes`` declares (a pytree of objects with a shape and
    a dtype) and its treedef; an ArgumentError at the user's line for any other leaf."""
    leaves, tree = jax.tree_util.tree_flatten(result_shape_dtypes, is_leaf=_declares_type)
    for leaf in leaves:
        if not _declares_type(leaf):
            dtype = _dtype_named(leaf)
            fix = (
                f"if you meant a scalar {dtype.name}, use fj.ShapeDtype((), '{dtype.name}')"
                if dtype is not None
                else "give each result as fj.ShapeDtype(shape, dtype), as "
                "fj.ShapeDtype((3,), 'float32')"
            )
            raise ArgumentError(
                "result_shape_dtypes must be a pytree of fj.ShapeDtype (or "
                f"jax.ShapeDtypeStruct), or None for no result, but holds {leaf!r}; {fix}",
                op="host_call",
                loc=user_location(),
            )
    # (float64 results are float32 unless jax_enable_x64 is on, as all values are)
    return [TensorType(tuple(t.shape), canonical_dtype(t.dtype)) for t in leaves], tree


def _declares_type(x: Any) -> bool:
    # (a class such as np.float32 has a shape and a dtype too: descriptors)
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type)


def _dtype_named(leaf: Any) -> np.dtype | None:
    """The dtype ``leaf`` names ('f32', 'float32', np.float32), or None."""
    if isinstance(leaf, str) and leaf in DTYPE_NAMES:
        return DTYPE_NAMES[leaf]
    try:
        dtype = np.dtype(leaf) if isinstance(leaf, (str, type, np.dtype)) else None
    except TypeError:
        return None
    return None if dtype is None or dtype.kind == "O" else dtype


def _checked(result: Any, tree: Any, types: Sequence[TensorType], where: Any) -> list:
    """``result``, a function's result, as a flat list of numpy arrays of ``types``, or a
    TypeMismatchError naming the call's line."""
    flat, got_tree = jax.tree_util.tree_flatten(result)
    if got_tree != tree:
        raise TypeMismatchError(
            f"the function returned {got_tree}, but result_shape_dtypes is {tree}",
            op="host_call",
            loc=where,
        )
    arrays = []
    for i, (value, t) in enumerate(zip(flat, types)):
        array = np.asarray(value)
        if array.shape != t.shape:
            raise TypeMismatchError(
                f"result {i} of the function has shape {array.shape}, but "
                f"result_shape_dtypes says {t}",
                op="host_call",
                loc=where,
            )
        # (an int64 result that int32 cannot hold would wrap around)
        check_fits(array, t.dtype, f"result {i} of the function", op="host_call", loc=where)
        if not np.can_cast(array.dtype, t.dtype, casting="same_kind"):
            raise TypeMismatchError(
                f"result {i} of the function has dtype {array.dtype}, but "
                f"result_shape_dtypes says {t} (a cast of the same kind, such as float64 "
                "to float32, is made; convert other results yourself)",
                op="host_call",
                loc=where,
            )
        arrays.append(array.astype(t.dtype, copy=False))
    return arrays


def print_(fmt: str, *tensors: Any) -> None:
    """Print ``fmt.format(*values)`` on the host, in program order (``fj.print``)."""

    def show(*values: Any) -> tuple:
        print(fmt.format(*values), flush=True)
        return ()

    show.__name__ = "print"
    host_call(show, *tensors, result_shape_dtypes=())
