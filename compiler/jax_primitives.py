"""The jax primitives with a flowjit op (``NATIVE``): how ``fj.from_jax`` (compiler/from_jax.py)
brings each into flowjit's IR. Each translation takes the jaxpr equation and its operands'
Tensors and gives its results; one whose params the flowjit op does not cover is held whole
instead, as a ``jax_call`` (``_held``). tests/compiler/test_from_jax_native.py checks each
against jax.jit, and says why the primitives left out are."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir.ops import bits as B
from flowjit.ir.ops import creation as Cr
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops import index as X
from flowjit.ir.ops import linalg as L
from flowjit.ir.ops import nn as N
from flowjit.ir.ops import reduce as R
from flowjit.ir.ops import shape as S
from flowjit.ir.ops import sort as O

from . import control_flow as CF
from .trace import constant, emit


def _is_float(x: Any) -> bool:
    return np.issubdtype(x.dtype, np.floating) or x.dtype == np.dtype("bfloat16")


def as_constant(array: np.ndarray) -> Any:
    return constant(array, array.dtype)


# -- primitives with a flowjit op ------------------------------------------------------------
# Each takes the equation and its operands' Tensors, and gives its results; an equation whose
# params the flowjit op does not cover is held whole instead (``_held``).


def _unary(opdef):
    return lambda eqn, x: emit(opdef, [x])


def _binary(opdef):
    return lambda eqn, x, y: emit(opdef, [x, y])


def _when(accepts: Callable[..., bool], translate: Callable) -> Callable:
    """``translate``, for an equation whose operands ``accepts``; any other is held whole."""
    return lambda eqn, *args: translate(eqn, *args) if accepts(*args) else _held(eqn, *args)


def _floats(*args: Any) -> bool:
    """Operands of one float dtype (what the flowjit op takes where jax also takes others)."""
    return _is_float(args[0]) and len({a.dtype for a in args}) == 1


def _bools(x: Any) -> bool:
    return x.dtype == np.bool_


def _numbers(x: Any) -> bool:
    return x.dtype != np.bool_


def _static_slice(x, start: Sequence[int], limit: Sequence[int]):
    return emit(S.slice_, [x], start=tuple(start), limit=tuple(limit), strides=(1,) * len(x.shape))


def _slice(eqn, x):
    p = eqn.params
    return emit(
        S.slice_,
        [x],
        start=tuple(map(int, p["start_indices"])),
        limit=tuple(map(int, p["limit_indices"])),
        strides=tuple(map(int, p["strides"] or (1,) * len(x.shape))),
    )


def _pad(eqn, x, value):
    """Edge padding only (interior padding is held): negative padding crops, as a slice of the
    result padded by the positive amounts."""
    config = [tuple(map(int, dim)) for dim in eqn.params["padding_config"]]
    if any(interior for _, _, interior in config):
        return _held(eqn, x, value)
    low = tuple(max(lo, 0) for lo, _, _ in config)
    high = tuple(max(hi, 0) for _, hi, _ in config)
    if any(low) or any(high):
        x = emit(S.pad, [x, value], low=low, high=high)
    if all(lo >= 0 and hi >= 0 for lo, hi, _ in config):
        return x
    start = [max(-lo, 0) for lo, _, _ in config]
    limit = [n - max(-hi, 0) for n, (_, hi, _) in zip(x.shape, config)]
    return _static_slice(x, start, limit)


def _split(eqn, x):
    axis, begin, parts = eqn.params["axis"], 0, []
    for size in map(int, eqn.params["sizes"]):
        start = [begin if d == axis else 0 for d in range(len(x.shape))]
        limit = [begin + size if d == axis else n for d, n in enumerate(x.shape)]
        parts.append(_static_slice(x, start, limit))
        begin += size
    return parts


def _cumulative(opdef):
    """cumsum, cumprod, cummax, cummin or cumlogsumexp (``opdef``) along the same axis."""
    return lambda eqn, x: emit(
        opdef, [x], axis=eqn.params["axis"], reverse=bool(eqn.params["reverse"])
    )


def _arg_extremum(opdef):
    """argmax or argmin (``opdef``), whose int32 index is converted to ``index_dtype``."""

    def translate(eqn, x):
        (axis,) = eqn.params["axes"]
        index = emit(opdef, [x], axis=axis, keepdims=False)
        dtype = np.dtype(eqn.params["index_dtype"])
        return index if dtype == index.dtype else emit(E.convert, [index], dtype=dtype)

    return translate


def _sort(eqn, *xs):
    """A sort on one key: the key alone is flowjit's sort; with other operands, every operand
    is taken along the key's stable argsort. An unstable sort is held where the order of equal
    keys shows (another operand, or float keys: -0.0 == 0.0 and nans compare equal)."""
    p = eqn.params
    shows = len(xs) > 1 or _is_float(xs[0])
    if p["num_keys"] != 1 or (shows and not p["is_stable"]):
        return _held(eqn, *xs)
    axis = p["dimension"]
    if len(xs) == 1:
        return [emit(O.sort, [xs[0]], axis=axis, descending=False)]
    order = emit(O.argsort, [xs[0]], axis=axis, descending=False)
    return [emit(X.take_along_axis, [x, order], axis=axis) for x in xs]


def _indexing(x, indices, axes, collapsed, batching, index_batching, window_dims):
    """(take, axis) or (take_along_axis, axis) where a gather's or a scatter's dimension
    numbers index ``x`` as jnp.take and x[i] do (or jnp.take_along_axis), else None."""
    if len(axes) != 1 or tuple(collapsed) != tuple(axes) or indices.shape[-1:] != (1,):
        return None
    axis, rank, batch = axes[0], len(x.shape), len(indices.shape) - 1
    others = tuple(d for d in range(rank) if d != axis)
    if x.shape[axis] == 0:
        return None
    if not batching and tuple(window_dims) == tuple(range(axis)) + tuple(
        range(axis + batch, batch + rank - 1)
    ):
        return X.take, axis
    if tuple(batching) == tuple(index_batching) == others and batch == rank and not window_dims:
        return X.take_along_axis, axis
    return None


# The modes of a gather or scatter (of out-of-range indices) translated: jax's other modes hold
_MODES = ("CLIP", "PROMISE_IN_BOUNDS", "FILL_OR_DROP")


def _mode(eqn) -> str:
    return str(eqn.params["mode"]).rsplit(".", 1)[-1]


def _clamped_index(indices, n: int):
    """The indices (without their last dim, of one) and the indices clamped into [0, n - 1]
    as XLA's gather clamps them (flowjit's take would first wrap a negative one)."""
    index = emit(S.reshape, [indices], shape=tuple(indices.shape[:-1]))
    clamped = index
    if n - 1 < np.iinfo(index.dtype).max:
        clamped = emit(E.min_, [index, as_constant(np.asarray(n - 1, index.dtype))])
    if np.issubdtype(index.dtype, np.signedinteger):
        clamped = emit(E.max_, [clamped, as_constant(np.zeros((), index.dtype))])
    return index, clamped


def _in_range(index, clamped, opdef, axis: int, rank: int):
    """Where the index was in range, shaped to broadcast against what ``opdef`` reads."""
    inside = emit(E.eq, [clamped, index])
    if opdef is X.take and axis < rank - 1:  # (the index's dims, then x's after the axis)
        inside = emit(S.reshape, [inside], shape=index.shape + (1,) * (rank - 1 - axis))
    return inside


def _gather(eqn, x, indices):
    """The gathers of jnp.take and x[i] (flowjit's take) and of jnp.take_along_axis, of clamped
    indices; mode "fill" then puts fill_value where an index was out of range. Other gathers,
    and fill mode's 64-bit indices (jax first casts them to 32 bits), are held."""
    dims, mode = eqn.params["dimension_numbers"], _mode(eqn)
    form = _indexing(
        x,
        indices,
        dims.start_index_map,
        dims.collapsed_slice_dims,
        dims.operand_batching_dims,
        dims.start_indices_batching_dims,
        dims.offset_dims,
    )
    if form is None or mode not in _MODES:
        return _held(eqn, x, indices)
    opdef, axis = form
    along = opdef is X.take_along_axis
    window = tuple(1 if d == axis or along else n for d, n in enumerate(x.shape))
    wide = mode == "FILL_OR_DROP" and indices.dtype.itemsize == 8
    if tuple(map(int, eqn.params["slice_sizes"])) != window or wide:
        return _held(eqn, x, indices)
    index, clamped = _clamped_index(indices, x.shape[axis])
    out = emit(opdef, [x, clamped], axis=axis)
    if mode != "FILL_OR_DROP":
        return out
    fill = as_constant(np.asarray(eqn.params["fill_value"], x.dtype))
    return emit(E.select, [_in_range(index, clamped, opdef, axis, len(x.shape)), out, fill])


def _scatter_add(eqn, x, indices, updates):
    """x.at[i].add(u) and jax.ops.segment_sum (take's transpose): flowjit's scatter_add at
    clamped indices, where an update out of range, but in mode "clip", adds -0.0 (x + -0.0 is x,
    -0.0 included) instead of being dropped. Held: other scatters, and float16 and bfloat16
    (flowjit's scatter_add sums them in float32)."""
    dims, mode = eqn.params["dimension_numbers"], _mode(eqn)
    form = _indexing(
        x,
        indices,
        dims.scatter_dims_to_operand_dims,
        dims.inserted_window_dims,
        dims.operand_batching_dims,
        dims.scatter_indices_batching_dims,
        dims.update_window_dims,
    )
    low = _is_float(x) and x.dtype.itemsize == 2
    if form is None or form[0] is not X.take or low or x.dtype == np.bool_ or mode not in _MODES:
        return _held(eqn, x, indices, updates)
    axis = form[1]
    if updates.shape != x.shape[:axis] + indices.shape[:-1] + x.shape[axis + 1 :]:
        return _held(eqn, x, indices, updates)
    index, clamped = _clamped_index(indices, x.shape[axis])
    if mode != "CLIP":
        nothing = as_constant(np.asarray(-0.0 if _is_float(x) else 0, x.dtype))
        inside = _in_range(index, clamped, X.take, axis, len(x.shape))
        updates = emit(E.select, [inside, updates, nothing])
    return emit(X.scatter_add, [x, clamped, updates], axis=axis)


def _broadcast_in_dim(eqn, x):
    shape, dims = tuple(eqn.params["shape"]), tuple(eqn.params["broadcast_dimensions"])
    ranked = [1] * len(shape)
    for i, d in enumerate(dims):
        ranked[d] = x.shape[i]
    if tuple(ranked) != tuple(x.shape):
        x = emit(S.reshape, [x], shape=tuple(ranked))
    return x if tuple(x.shape) == shape else emit(S.broadcast_to, [x], shape=shape)


def _reshape(eqn, x):
    """The result's shape, in row-major order: of ``squeeze``, ``expand_dims``, and of
    ``reshape``, whose ``dimensions`` (an order to read the operand in) transposes first."""
    order = eqn.params.get("dimensions") if eqn.primitive.name == "reshape" else None
    if order is not None and tuple(order) != tuple(range(len(x.shape))):
        x = emit(S.transpose, [x], perm=tuple(order))
    return emit(S.reshape, [x], shape=tuple(eqn.outvars[0].aval.shape))


def _reduce(opdef):
    return lambda eqn, x: emit(opdef, [x], axes=tuple(eqn.params["axes"]), keepdims=False)


def _dot_general(eqn, x, y):
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    out = eqn.outvars[0].aval.dtype
    if out != x.dtype or out != y.dtype:  # (preferred_element_type: held by jax_call instead)
        return _held(eqn, x, y)
    return emit(
        L.dot_general,
        [x, y],
        lhs_contracting=tuple(lc),
        rhs_contracting=tuple(rc),
        lhs_batch=tuple(lb),
        rhs_batch=tuple(rb),
    )


def _conv(eqn, x, w):
    """A 2-D convolution in any layout: x and w transposed to NHWC and HWIO, flowjit's conv2d,
    and its NHWC result transposed to the output's layout. Held: batch groups, a result dtype
    other than the operands', or a precision asked for (flowjit's is always the highest)."""
    p = eqn.params
    lhs, rhs, out = p["dimension_numbers"]
    if (
        len(lhs) != 4
        or p["batch_group_count"] != 1
        or p["precision"] not in (None, jax.lax.Precision.DEFAULT)
        or eqn.outvars[0].aval.dtype != x.dtype
        or x.dtype != w.dtype
    ):
        return _held(eqn, x, w)
    x = _transposed(x, (lhs[0], lhs[2], lhs[3], lhs[1]))
    w = _transposed(w, (rhs[2], rhs[3], rhs[1], rhs[0]))
    y = emit(
        N.conv2d,
        [x, w],
        strides=tuple(map(int, p["window_strides"])),
        padding=tuple(int(n) for pair in p["padding"] for n in pair),
        lhs_dilation=tuple(map(int, p["lhs_dilation"])),
        rhs_dilation=tuple(map(int, p["rhs_dilation"])),
        feature_group_count=int(p["feature_group_count"]),
    )
    perm = [0] * 4
    for logical, axis in zip((0, 3, 1, 2), out):  # (N, C, H, W: where each is in y and out)
        perm[axis] = logical
    return _transposed(y, tuple(perm))


def _transposed(x, perm: tuple[int, ...]):
    return x if perm == tuple(range(len(perm))) else emit(S.transpose, [x], perm=perm)


def _imported(closed: Any, name: str) -> Callable:
    """A function of Tensors computing the closed jaxpr ``closed``, brought in as the rest is
    (called where a flowjit subgraph is being traced)."""
    from .from_jax import Importer  # (the importer uses this table)

    return lambda *args: Importer(name).run(closed, args)


def _cond(eqn, index, *operands):
    """jax's cond (lax.cond and lax.switch): fj.cond on index == 0, 1, ... in turn, as XLA's
    case picks a branch, so an index out of range runs the last one."""
    branches = [_imported(b, "cond") for b in eqn.params["branches"]]

    def case(k: int, *args: Any) -> list:
        if k == len(branches) - 1:
            return branches[k](*args)
        hit = emit(E.eq, [index, as_constant(np.asarray(k, index.dtype))])
        return CF.cond(hit, branches[k], functools.partial(case, k + 1), *args)

    return case(0, *operands)


def _while(eqn, *args):
    p = eqn.params
    tests, bodies = p["cond_nconsts"], p["body_nconsts"]
    test_consts, body_consts = args[:tests], args[tests : tests + bodies]
    test, body = _imported(p["cond_jaxpr"], "while"), _imported(p["body_jaxpr"], "while")
    return CF.while_loop(
        lambda carry: test(*test_consts, *carry)[0],
        lambda carry: body(*body_consts, *carry),
        list(args[tests + bodies :]),
    )


def _scan(eqn, *args):
    """jax's scan: fj.scan of the body on (consts, carry, xs), giving the carry and the ys."""
    p = eqn.params
    consts, carry, xs = map(list, p["ft_in"].update(args).unpack())
    body = _imported(p["jaxpr"], "scan")

    def step(c: list, x: list) -> tuple:
        out = body(*consts, *c, *x)
        return out[: len(carry)], out[len(carry) :]

    final, ys = CF.scan(step, carry, xs, length=p["length"], reverse=bool(p["reverse"]))
    return [*final, *ys]


def _select_n(eqn, which, *cases):
    """cases[which]: a bool picks between two cases; an integer as jax lowers it, by halving
    the cases with which < mid, so an index below range picks the first case and one above it
    the last."""
    if which.dtype == np.bool_:
        return cases[0] if len(cases) == 1 else emit(E.select, [which, cases[1], cases[0]])

    def pick(offset: int, some: Sequence[Any]) -> Any:
        if len(some) == 1:
            return some[0]
        mid = len(some) // 2
        below = emit(E.lt, [which, as_constant(np.asarray(offset + mid, which.dtype))])
        return emit(E.select, [below, pick(offset, some[:mid]), pick(offset + mid, some[mid:])])

    return pick(0, cases)


def _clamp(eqn, low, x, high):
    """XLA's clamp: min(max(low, x), high), in this order, which gives its nans (of either sign)
    and signed zeros; low > high gives high."""
    return emit(E.min_, [emit(E.max_, [low, x]), high])


def _round(eqn, x):
    """Half to even only (jnp.round's); lax.round's default, half away from zero, is held."""
    if eqn.params["rounding_method"] != jax.lax.RoundingMethod.TO_NEAREST_EVEN or not _is_float(x):
        return _held(eqn, x)
    return emit(E.round_, [x])


def _bitcast(eqn, x):
    dtype = np.dtype(eqn.params["new_dtype"])
    if dtype.itemsize != x.dtype.itemsize or np.bool_ in (dtype, x.dtype):
        return _held(eqn, x)
    return emit(B.bitcast_convert, [x], dtype=dtype)


def _integer_pow(eqn, x):
    """x ** y by squaring, multiplied in the order jax's own lowering multiplies."""
    y = eqn.params["y"]
    if y == 0:
        return as_constant(np.ones(x.shape, x.dtype))
    acc, base, n = None, x, abs(y)
    while n:
        if n & 1:
            acc = base if acc is None else emit(E.mul, [acc, base])
        n >>= 1
        if n:
            base = emit(E.mul, [base, base])
    if y < 0:
        acc = emit(E.div, [as_constant(np.ones((), x.dtype)), acc])
    return acc


def _held(eqn, *args):
    """The equation alone, as one jax_call (params this translation does not cover)."""
    from .from_jax import Importer  # (the importer uses this table)

    importer = Importer(eqn.primitive.name)
    env = {}
    inputs = [v for v in eqn.invars if not isinstance(v, jax.extend.core.Literal)]
    values = [a for v, a in zip(eqn.invars, args) if not isinstance(v, jax.extend.core.Literal)]
    env.update(zip(inputs, values))
    importer.flush([eqn], env, set(eqn.outvars))
    outs = [env[v] for v in eqn.outvars]
    return outs if eqn.primitive.multiple_results else outs[0]


NATIVE: dict[str, Callable] = {
    **{
        name: _unary(opdef)
        for name, opdef in {
            "neg": E.neg,
            "exp": E.exp,
            "exp2": E.exp2,
            "log": E.log,
            "tanh": E.tanh,
            "sin": E.sin,
            "cos": E.cos,
            "tan": E.tan,
            "sqrt": E.sqrt,
            "rsqrt": E.rsqrt,
            "abs": E.abs_,
            "logistic": E.logistic,
            "log1p": E.log1p,
            "expm1": E.expm1,
            "floor": E.floor,
            "ceil": E.ceil,
            "sign": E.sign,
            "erf": E.erf,
            "erfc": E.erfc,
            "erf_inv": E.erf_inv,
            "lgamma": E.lgamma,
            "digamma": E.digamma,
            "is_finite": E.isfinite,
            "not": E.not_,
            "stop_gradient": E.stop_gradient,
        }.items()
    },
    **{
        name: _binary(opdef)
        for name, opdef in {
            "add": E.add,
            "sub": E.sub,
            "mul": E.mul,
            "max": E.max_,
            "min": E.min_,
            "atan2": E.atan2,
            "rem": E.rem,
            "eq": E.eq,
            "ne": E.ne,
            "lt": E.lt,
            "le": E.le,
            "gt": E.gt,
            "ge": E.ge,
            "and": E.and_,
            "or": E.or_,
            "xor": E.xor,
            "shift_left": B.shift_left,
            "shift_right_logical": B.shift_right_logical,
            "shift_right_arithmetic": B.shift_right_arithmetic,
        }.items()
    },
    "div": _when(_floats, _binary(E.div)),
    "pow": _when(_floats, _binary(E.pow_)),
    "clamp": _clamp,
    "round": _round,
    "square": lambda eqn, x: emit(E.mul, [x, x]),
    "integer_pow": _integer_pow,
    "convert_element_type": lambda eqn, x: (
        emit(E.convert, [x], dtype=eqn.outvars[0].aval.dtype)
        if x.dtype != eqn.outvars[0].aval.dtype
        else x
    ),
    "broadcast_in_dim": _broadcast_in_dim,
    "reshape": _reshape,
    "squeeze": _reshape,
    "expand_dims": _reshape,
    "transpose": lambda eqn, x: emit(S.transpose, [x], perm=tuple(eqn.params["permutation"])),
    "bitcast_convert_type": _bitcast,
    "reduce_precision": lambda eqn, x: emit(
        E.reduce_precision,
        [x],
        exponent_bits=eqn.params["exponent_bits"],
        mantissa_bits=eqn.params["mantissa_bits"],
    ),
    "slice": _slice,
    "pad": _pad,
    "split": _split,
    "rev": lambda eqn, x: emit(S.reverse, [x], axes=tuple(eqn.params["dimensions"])),
    "dynamic_slice": lambda eqn, x, *starts: emit(
        X.dynamic_slice, [x, *starts], sizes=tuple(map(int, eqn.params["slice_sizes"]))
    ),
    "dynamic_update_slice": lambda eqn, x, update, *starts: emit(
        X.dynamic_update_slice, [x, update, *starts]
    ),
    "gather": _gather,
    "scatter-add": _scatter_add,
    "dot_general": _dot_general,
    "conv_general_dilated": _conv,
    "reduce_sum": _reduce(R.reduce_sum),
    "reduce_max": _reduce(R.reduce_max),
    "reduce_min": _reduce(R.reduce_min),
    "reduce_prod": _reduce(R.reduce_prod),
    "reduce_and": _when(_bools, _reduce(R.reduce_and)),
    "reduce_or": _when(_bools, _reduce(R.reduce_or)),
    "argmax": _when(_numbers, _arg_extremum(R.argmax)),
    "argmin": _when(_numbers, _arg_extremum(R.argmin)),
    "cumsum": _when(_numbers, _cumulative(R.cumsum)),
    "cumprod": _when(_numbers, _cumulative(R.cumprod)),
    "cummax": _when(_numbers, _cumulative(R.cummax)),
    "cummin": _when(_numbers, _cumulative(R.cummin)),
    "cumlogsumexp": _when(_floats, _cumulative(R.cumlogsumexp)),
    "sort": _sort,
    "select_n": _select_n,
    "cond": _cond,
    "while": _while,
    "scan": _scan,
    "iota": lambda eqn: emit(
        Cr.iota,
        [],
        shape=tuple(eqn.params["shape"]),
        dimension=eqn.params["dimension"],
        dtype=eqn.params["dtype"],
    ),
    "concatenate": lambda eqn, *xs: emit(S.concatenate, list(xs), axis=eqn.params["dimension"]),
    "copy": lambda eqn, x: x,
    "copy_p": lambda eqn, x: x,
}

__all__ = ["NATIVE"]
