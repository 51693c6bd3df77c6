"""Linear algebra: dot_general, XLA's one contraction op (matmul, batched matmul, vector dot
and einsum-like contractions are all spellings of it)."""

from __future__ import annotations

import numpy as np

from ..core import OpDef, register
from ..errors import ShapeError
from ..types import TensorType
from .rules import NUMERIC, check_arity, check_dtype, low_precision_ref, same_dtype


def dot_dims(
    lhs: TensorType,
    rhs: TensorType,
    *,
    lhs_contracting: tuple[int, ...],
    rhs_contracting: tuple[int, ...],
    lhs_batch: tuple[int, ...],
    rhs_batch: tuple[int, ...],
) -> tuple[tuple[int, ...], ...]:
    """The dimension numbers with negative axes wrapped, as (lhs_contracting, rhs_contracting,
    lhs_batch, rhs_batch); ShapeError unless they pair up dims of equal size, once each."""
    for kind, a, b in (
        ("contracting", lhs_contracting, rhs_contracting),
        ("batch", lhs_batch, rhs_batch),
    ):
        if len(a) != len(b):
            raise ShapeError(f"lhs_{kind}={a} and rhs_{kind}={b} must have the same length")
    dims = []
    for side, t, used in (
        ("lhs", lhs, lhs_contracting + lhs_batch),
        ("rhs", rhs, rhs_contracting + rhs_batch),
    ):
        if any(not -t.ndim <= d < t.ndim for d in used):
            raise ShapeError(
                f"{side} contracting and batch dims {used} are out of range for "
                f"{side} shape {t.shape}"
            )
        wrapped = tuple(d % t.ndim for d in used)
        if len(set(wrapped)) != len(wrapped):
            raise ShapeError(
                f"{side} contracting and batch dims {used} repeat an axis of {side} shape {t.shape}"
            )
        dims.append(wrapped)
    nc = len(lhs_contracting)
    lc, lb, rc, rb = dims[0][:nc], dims[0][nc:], dims[1][:nc], dims[1][nc:]
    for verb, a, b in (("contract", lc, rc), ("batch", lb, rb)):
        for i, j in zip(a, b):
            if lhs.shape[i] != rhs.shape[j]:
                raise ShapeError(
                    f"cannot {verb} shapes {lhs.shape} and {rhs.shape}: "
                    f"{lhs.shape[i]} != {rhs.shape[j]} (lhs dim {i}, rhs dim {j})"
                )
    return lc, rc, lb, rb


def _free(ndim: int, *used: tuple[int, ...]) -> list[int]:
    return [d for d in range(ndim) if not any(d in u for u in used)]


def _dot_general_rule(types: tuple[TensorType, ...], **dims: tuple[int, ...]) -> TensorType:
    check_arity(types, 2)
    lhs, rhs = types
    dtype = same_dtype(types)
    check_dtype(lhs, NUMERIC)
    lc, rc, lb, rb = dot_dims(lhs, rhs, **dims)
    shape = (
        [lhs.shape[d] for d in lb]
        + [lhs.shape[d] for d in _free(lhs.ndim, lc, lb)]
        + [rhs.shape[d] for d in _free(rhs.ndim, rc, rb)]
    )
    return TensorType(tuple(shape), dtype)


def _dot_general_ref(a: np.ndarray, b: np.ndarray, **dims: tuple[int, ...]) -> np.ndarray:
    """Each result sums its products from 0.0 (numpy's and XLA's kernels), so that a zero sum
    of two or more is 0.0; but a result of one product is that product, -0.0 included, as in
    XLA, which multiplies there (numpy adds it to 0.0)."""
    # Bring both operands to (batch, free, contracted) matrices and let matmul do the work.
    lc, rc, lb, rb = dot_dims(TensorType(a.shape, a.dtype), TensorType(b.shape, b.dtype), **dims)
    lf, rf = _free(a.ndim, lc, lb), _free(b.ndim, rc, rb)
    batch = [a.shape[d] for d in lb]
    free_a, free_b = [a.shape[d] for d in lf], [b.shape[d] for d in rf]
    contracted = [a.shape[d] for d in lc]
    m, n, k = (int(np.prod(s, dtype=np.int64)) for s in (free_a, free_b, contracted))
    a2 = a.transpose([*lb, *lf, *lc]).reshape((*batch, m, k))
    b2 = b.transpose([*rb, *rc, *rf]).reshape((*batch, k, n))
    with np.errstate(over="ignore", invalid="ignore"):  # (inf and NaN: results like any other)
        out = a2 * b2 if k == 1 else np.matmul(a2, b2)
    return out.reshape((*batch, *free_a, *free_b))


dot_general = register(
    OpDef(
        "dot_general",
        _dot_general_rule,
        low_precision_ref(_dot_general_ref),
        attrs={
            "lhs_contracting": "ints",
            "rhs_contracting": "ints",
            "lhs_batch": "ints",
            "rhs_batch": "ints",
        },
        doc="XLA DotGeneral: sum over paired contracting dims; output dims are the batch dims, "
        "then lhs free dims, then rhs free dims; float16/bfloat16 accumulate in float32",
    )
)


# -- gradient rules (ir/grad.py) ------------------------------------------------------------------
def _dot_transpose_lhs(e, g, x, y, xc, yc, xb, yb, swap_ans=False):
    """The cotangent of ``x`` in ``dot_general(x, y)`` (``dot_general(y, x)`` with
    ``swap_ans``): ``g`` contracted with ``y`` over ``y``'s free dims, then transposed back to
    ``x``'s axis order (jax's _dot_general_transpose_lhs). For 16-bit floats, where the
    product in the other operand order, ``y`` with ``g``, is already in ``x``'s order (a
    kernel's cotangent, the activations with ``g``), it is that product, with no transpose:
    after a low-precision product's rounding (float32 sums, then bfloat16) XLA cannot fold a
    transpose into it. (In float32 XLA folds it, and jax's order lets XLA:CPU transpose the
    smaller operand: a GPT's MLP kernel gradients were 1.3x slower in the other order.)"""
    from .shape import transpose

    x_kept = _free(x.type.ndim, xc, xb)
    y_kept = _free(y.type.ndim, yc, yb)
    nb = len(xb)
    if swap_ans:  # g's axes: batch, y kept, x kept
        ans_y = tuple(range(nb, nb + len(y_kept)))
    else:  # g's axes: batch, x kept, y kept
        ans_y = tuple(range(nb + len(x_kept), nb + len(x_kept) + len(y_kept)))
    # x's contracting dims in the order of y's: how they come out of either product
    x_contract_by_y = [xc[i] for i in np.argsort(yc, kind="stable")]
    perm = tuple(int(i) for i in np.argsort([*xb, *x_kept, *x_contract_by_y]))
    identity = tuple(range(x.type.ndim))
    low_precision = x.type.dtype.itemsize < 4
    if low_precision and perm != identity and (*xb, *x_contract_by_y, *x_kept) == identity:
        return e(
            dot_general,
            y,
            g,
            lhs_contracting=tuple(y_kept),
            rhs_contracting=ans_y,
            lhs_batch=tuple(yb),
            rhs_batch=tuple(range(nb)),
        )
    x_bar = e(
        dot_general,
        g,
        y,
        lhs_contracting=ans_y,
        rhs_contracting=tuple(y_kept),
        lhs_batch=tuple(range(nb)),
        rhs_batch=tuple(yb),
    )
    # x_bar's axes: x batch, x kept, then x's contracting dims in the order of y's
    return x_bar if perm == identity else e(transpose, x_bar, perm=perm)


@dot_general.defvjp
def _dot_general_vjp(e, op, g):
    x, y = op.inputs
    lc, rc, lb, rb = dot_dims(x.type, y.type, **op.attrs)
    return [
        _dot_transpose_lhs(e, g, x, y, lc, rc, lb, rb),
        _dot_transpose_lhs(e, g, y, x, rc, lc, rb, lb, swap_ans=True),
    ]


@dot_general.defjvp
def _dot_general_jvp(e, op, ta, tb):
    """Bilinear: the tangent of ``a . b`` is ``ta . b + a . tb``, with the op's dims."""
    from .elementwise import add

    a, b = op.inputs
    parts = [e(dot_general, ta, b, **op.attrs)] if ta is not None else []
    parts += [e(dot_general, a, tb, **op.attrs)] if tb is not None else []
    return [parts[0] if len(parts) == 1 else e(add, *parts)]


@dot_general.defbatch
def _dot_general_batch(e, op, args, batched):
    """Both operands batched: the batch axis is one more batch dimension (the result's
    first). One: it is a free dimension of that operand, moved to the front afterwards."""
    lhs, rhs = op.inputs
    lc, rc, lb, rb = dot_dims(lhs.type, rhs.type, **op.attrs)
    up = [tuple(d + 1 for d in dims) if b else dims for dims, b in zip((lc, rc), batched)]
    lb_up, rb_up = (tuple(d + 1 for d in dims) if b else dims for dims, b in zip((lb, rb), batched))
    if all(batched):
        lb_up, rb_up, at = (0, *lb_up), (0, *rb_up), 0
    elif batched[0]:
        at = len(lb)  # (after the batch dims, the lhs's first free dim)
    else:
        at = lhs.type.ndim - len(lc)  # (after the lhs's batch and free dims, the rhs's first)
    attrs = {"lhs_contracting": up[0], "rhs_contracting": up[1]}
    out = e(dot_general, *args, **attrs, lhs_batch=lb_up, rhs_batch=rb_up)
    return [e.moveaxis(out, at, 0)], [True]
