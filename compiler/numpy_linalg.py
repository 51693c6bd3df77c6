"""``flowjit.numpy`` linear algebra, indexing and sorting functions."""

from __future__ import annotations

import builtins
from typing import Sequence

import numpy as np

from flowjit.backends.xla.jaxshim import jnp

from flowjit.ir.errors import DTypeError, ShapeError
from flowjit.ir.ops import index as I
from flowjit.ir.ops import linalg as L
from flowjit.ir.ops import sort as So
from flowjit.ir.ops.rules import normalize_axis
from flowjit.ir.types import BOOL

from .dtypes import INT0, is_python_scalar
from .location import user_location, wrap_public_functions
from .numpy_api import (
    _common,
    asarray,
    broadcast_to,
    expand_dims,
    not_equal,
    reshape,
    squeeze,
    sum,
    transpose,
)
from .numpy_api import any as any_
from .trace import convert, emit


def _dot_general(
    a,
    b,
    contract: tuple[Sequence[int], Sequence[int]],
    batch: tuple[Sequence[int], Sequence[int]] = ((), ()),
):
    """``a`` and ``b`` share a dtype; bools (which dot_general does not take) multiply as ints,
    and a sum is true where it is nonzero, as in jax."""
    if a.dtype == BOOL:
        product = _dot_general(convert(a, INT0), convert(b, INT0), contract, batch)
        return not_equal(product, 0)
    return emit(
        L.dot_general,
        [a, b],
        lhs_contracting=tuple(contract[0]),
        rhs_contracting=tuple(contract[1]),
        lhs_batch=tuple(batch[0]),
        rhs_batch=tuple(batch[1]),
    )


def _sum_away(x, axes: tuple[int, ...]):
    """Sum over ``axes`` in ``x``'s own dtype (einsum's labels of one operand only)."""
    if not axes:
        return x
    return any_(x, axes) if x.dtype == BOOL else sum(x, axes, dtype=x.dtype)


def matmul(a, b):
    """numpy.matmul: vectors are promoted and the added axis removed; batch dims broadcast."""
    a, b = _common(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(
            f"matmul needs arrays of rank >= 1, got shapes {a.shape} and {b.shape}; "
            "for scalars use *",
            op="matmul",
            loc=user_location(),
        )
    a2 = expand_dims(a, 0) if a.ndim == 1 else a
    b2 = expand_dims(b, -1) if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ShapeError(
            f"cannot contract shapes {a.shape} and {b.shape}: {a2.shape[-1]} != {b2.shape[-2]}",
            op="matmul",
            loc=user_location(),
        )
    if b2.ndim == 2:  # a stack of matrices times one: contract a's last axis, no broadcast
        out = _dot_general(a2, b2, ((a2.ndim - 1,), (0,)), ((), ()))
    else:
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
        a2 = broadcast_to(a2, batch + a2.shape[-2:])
        b2 = broadcast_to(b2, batch + b2.shape[-2:])
        n = len(batch)
        out = _dot_general(a2, b2, ((n + 1,), (n,)), (tuple(range(n)), tuple(range(n))))
    if a.ndim == 1:
        out = squeeze(out, -2)
    if b.ndim == 1:
        out = squeeze(out, -1)
    return out


def dot(a, b):
    """numpy.dot: contracts a's last axis with b's second-to-last (or only) axis."""
    a, b = _common(a, b)
    if a.ndim == 0 or b.ndim == 0:
        from .numpy_api import multiply

        return multiply(a, b)
    rhs = builtins.max(b.ndim - 2, 0)
    if a.shape[-1] != b.shape[rhs]:
        raise ShapeError(
            f"cannot contract shapes {a.shape} and {b.shape}: {a.shape[-1]} != {b.shape[rhs]}",
            op="dot",
            loc=user_location(),
        )
    return _dot_general(a, b, ((a.ndim - 1,), (rhs,)))


def tensordot(a, b, axes=2):
    a, b = _common(a, b)
    if isinstance(axes, int):
        axes = (tuple(range(a.ndim - axes, a.ndim)), tuple(range(axes)))
    lhs, rhs = ([x] if isinstance(x, int) else list(x) for x in axes)
    return _dot_general(
        a, b, ([normalize_axis(i, a.ndim) for i in lhs], [normalize_axis(i, b.ndim) for i in rhs])
    )


def _repeats(terms: list[str]) -> bool:
    return any(len(set(term)) != len(term) for term in terms)


def einsum(subscripts: str, *operands, **options):
    """einsum: of two operands with distinct labels and no ellipsis ("ij,jk->ik"; implicit
    output as numpy when "->" is absent) as one dot_general; any other, jax.numpy's."""
    spec = subscripts.replace(" ", "")
    inputs, _, out = spec.partition("->")
    terms = inputs.split(",")
    if len(terms) != 2 or len(operands) != 2 or "." in spec or options or _repeats(terms):
        from .from_jax import from_jax  # (the bridge imports this module's namespace)

        return from_jax(jnp.einsum, name="flowjit.numpy.einsum")(subscripts, *operands, **options)
    a, b = _common(*operands)
    la, lb = terms
    if "->" not in spec:
        counts = {c: (la + lb).count(c) for c in la + lb}
        out = "".join(sorted(c for c, n in counts.items() if n == 1))
    for term, x in ((la, a), (lb, b)):
        if len(term) != x.ndim:
            raise ShapeError(
                f"einsum {subscripts!r}: term {term!r} does not fit shape {x.shape}",
                op="einsum",
                loc=user_location(),
            )
    # labels found in one operand only and not in the output are summed away first
    a = _sum_away(a, tuple(i for i, c in enumerate(la) if c not in lb and c not in out))
    la = "".join(c for c in la if c in lb or c in out)
    b = _sum_away(b, tuple(i for i, c in enumerate(lb) if c not in la and c not in out))
    lb = "".join(c for c in lb if c in la or c in out)
    batch = [c for c in la if c in lb and c in out]
    contract = [c for c in la if c in lb and c not in out]
    result = _dot_general(
        a,
        b,
        ([la.index(c) for c in contract], [lb.index(c) for c in contract]),
        ([la.index(c) for c in batch], [lb.index(c) for c in batch]),
    )
    order = batch + [c for c in la if c not in lb] + [c for c in lb if c not in la]
    if sorted(order) != sorted(out):
        raise ShapeError(
            f"einsum {subscripts!r}: output labels {out!r} do not match the operands",
            op="einsum",
            loc=user_location(),
        )
    return transpose(result, tuple(order.index(c) for c in out))


# -- indexing ------------------------------------------------------------------------------
def _int_indices(indices):
    indices = asarray(indices)
    if indices.dtype.kind not in "iu":
        raise DTypeError(
            f"indices must be integers, got {indices.dtype}; use .astype(int32)",
            loc=user_location(),
        )
    return indices


def take(a, indices, axis=None):
    """numpy.take; negative indices wrap, out-of-range indices are clamped (no error on
    device)."""
    a = asarray(a)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    return emit(I.take, [a, _int_indices(indices)], axis=normalize_axis(axis, a.ndim))


def take_along_axis(arr, indices, axis):
    arr = asarray(arr)
    return emit(
        I.take_along_axis, [arr, _int_indices(indices)], axis=normalize_axis(axis, arr.ndim)
    )


def _starts(x, start_indices) -> list:
    """Start indices as jax.lax takes them: a negative start counts from the end once; the op
    then clamps each start so that the slice fits."""
    from .numpy_api import add, less, where

    starts = []
    for axis, s in enumerate(start_indices):
        if axis < x.ndim and is_python_scalar(s) and s < 0:
            s += x.shape[axis]
        s = _int_indices(s)
        if axis < x.ndim and s.dtype.kind == "i" and not is_python_scalar(start_indices[axis]):
            s = where(less(s, 0), add(s, x.shape[axis]), s)
        starts.append(s)
    return starts


def dynamic_slice(x, start_indices, sizes):
    """jax.lax.dynamic_slice: ``x[s0:s0+sizes[0], ...]`` for traced scalar starts."""
    x = asarray(x)
    return emit(
        I.dynamic_slice, [x, *_starts(x, start_indices)], sizes=tuple(int(s) for s in sizes)
    )


def dynamic_update_slice(x, update, start_indices):
    """jax.lax.dynamic_update_slice: ``x`` with ``update`` (cast to x's dtype) written at the
    traced scalar starts."""
    x = asarray(x)
    update = asarray(update, x.dtype)
    return emit(I.dynamic_update_slice, [x, update, *_starts(x, start_indices)])


# -- sorting -------------------------------------------------------------------------------
def sort(a, axis=-1):
    a = asarray(a)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    return emit(So.sort, [a], axis=normalize_axis(axis, a.ndim), descending=False)


def argsort(a, axis=-1):
    a = asarray(a)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    return emit(So.argsort, [a], axis=normalize_axis(axis, a.ndim), descending=False)


def top_k(x, k: int):
    """The k largest entries along the last axis and their indices (as jax.lax.top_k)."""
    return emit(So.top_k, [asarray(x)], k=int(k))


wrap_public_functions(globals(), __name__)
