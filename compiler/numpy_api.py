"""``flowjit.numpy``: numpy's names and broadcasting rules over traced Tensors.

Each function lifts Python scalars and numpy arrays to constants, brings operands to one dtype
(compiler/dtypes.py) and emits IR ops; composite functions (mean, var, clip, ...) are written
in terms of the primitive ops so the IR stays small.
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from flowjit.ir.errors import ArgumentError, ShapeError
from flowjit.ir.ops import creation as C
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops import reduce as R
from flowjit.ir.ops import shape as S
from flowjit.ir.ops.rules import normalize_axes, normalize_axis
from flowjit.ir.types import BOOL, dtype_name, is_float

from .dtypes import (
    FLOAT0,
    INT0,
    accumulation_dtype,
    canonical_dtype,
    canonicalize,
    check_fits,
    float_dtype,
    is_python_scalar,
    result_dtype,
    x64_enabled,
)
from .location import check_int, user_location, wrap_public_functions
from .trace import constant, convert, emit


def asarray(x: Any, dtype: Any = None):
    """A Tensor of ``x`` (a Tensor, Variable (read now), numpy array or Python scalar),
    converted to ``dtype``."""
    from .tensor import Tensor
    from .variable import Variable

    dtype = None if dtype is None else canonical_dtype(dtype)
    if isinstance(x, Variable):
        x = x.read()
    if not isinstance(x, Tensor):
        if not (is_python_scalar(x) or isinstance(x, (np.ndarray, np.generic, list, tuple))):
            if hasattr(x, "__jax_array__") or type(x).__module__.startswith("jax"):
                x = np.asarray(x)
            else:
                raise TypeError(
                    f"cannot use a {type(x).__name__} as an array in a compiled "
                    "function; pass arrays, numbers or Tensors"
                )
        if dtype is None and is_python_scalar(x):
            dtype = result_dtype(x)
        elif dtype is None and not x64_enabled():  # numpy's 64-bit data, as jax.numpy takes it
            dtype = canonicalize(np.asarray(x).dtype)
        # (an int that the dtype cannot hold is an error, never wrapped: compiler/dtypes.py)
        check_fits(x, np.asarray(x).dtype if dtype is None else dtype, "a constant")
        with np.errstate(over="ignore", invalid="ignore"):
            return constant(x, dtype)
    return x if dtype is None else convert(x, dtype)


def _common(*xs: Any, dtype: Any = None) -> list:
    dtype = np.dtype(dtype) if dtype is not None else result_dtype(*xs)
    return [asarray(x, dtype) for x in xs]


def _binary(opdef, a, b, dtype=None):
    return emit(opdef, _common(a, b, dtype=dtype))


def _float_unary(opdef, x):
    x = asarray(x)
    return emit(opdef, [convert(x, float_dtype(x.dtype))])


# -- elementwise ---------------------------------------------------------------------------
def _binary_function(name: str, opdef):
    def function(a, b):
        return _binary(opdef, a, b)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"numpy.{name}: ``{opdef.name}`` after broadcasting and dtype promotion."
    return function


def _float_function(name: str, opdef):
    def function(x):
        return _float_unary(opdef, x)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"numpy.{name}: ``{opdef.name}`` (integers and bools become float32)."
    return function


add = _binary_function("add", E.add)
subtract = _binary_function("subtract", E.sub)
multiply = _binary_function("multiply", E.mul)
floor_divide = _binary_function("floor_divide", E.floor_divide)
mod = remainder = _binary_function("mod", E.remainder)
power = _binary_function("power", E.pow_)
maximum = _binary_function("maximum", E.max_)
minimum = _binary_function("minimum", E.min_)
equal = _binary_function("equal", E.eq)
not_equal = _binary_function("not_equal", E.ne)
less = _binary_function("less", E.lt)
less_equal = _binary_function("less_equal", E.le)
greater = _binary_function("greater", E.gt)
greater_equal = _binary_function("greater_equal", E.ge)
exp = _float_function("exp", E.exp)
expm1 = _float_function("expm1", E.expm1)
log = _float_function("log", E.log)
log1p = _float_function("log1p", E.log1p)
sqrt = _float_function("sqrt", E.sqrt)
rsqrt = _float_function("rsqrt", E.rsqrt)
sin = _float_function("sin", E.sin)
cos = _float_function("cos", E.cos)
tan = _float_function("tan", E.tan)
tanh = _float_function("tanh", E.tanh)


def divide(a, b):
    return _binary(E.div, a, b, dtype=float_dtype(result_dtype(a, b)))


true_divide = divide


def arctan2(a, b):
    return _binary(E.atan2, a, b, dtype=float_dtype(result_dtype(a, b)))


def negative(x):
    return emit(E.neg, [asarray(x)])


def abs(x):  # noqa: A001 (numpy's name)
    return emit(E.abs_, [asarray(x)])


absolute = abs


def sign(x):
    return emit(E.sign, [asarray(x)])


def square(x):
    x = asarray(x)
    return multiply(x, x)


def _rounding(opdef, x):
    x = asarray(x)
    return x if not is_float(x.dtype) else emit(opdef, [x])  # integers are already whole


def floor(x):
    return _rounding(E.floor, x)


def ceil(x):
    return _rounding(E.ceil, x)


def round(x, decimals: int = 0):  # noqa: A001 (numpy's name)
    x = asarray(x)
    dtype = float_dtype(x.dtype)  # (what x * 10**decimals computes in)
    digits = int(np.log10(float(np.finfo(dtype).max)))  # 10**digits is a finite `dtype`
    name = dtype_name(dtype)
    decimals = check_int(
        decimals,
        "decimals",
        op="round",
        minimum=-digits,
        maximum=digits,
        hint=f" (10**decimals must be a finite {name}; {name} keeps about "
        f"{np.finfo(dtype).precision} significant digits)",
    )
    if decimals == 0:
        return _rounding(E.round_, x)
    scale = 10.0**decimals
    return divide(_rounding(E.round_, multiply(x, scale)), scale)


def clip(x, a_min=None, a_max=None):
    x = asarray(x)
    if a_min is not None:
        x = maximum(x, a_min)
    if a_max is not None:
        x = minimum(x, a_max)
    return x


def where(condition, x, y):
    condition = asarray(condition)
    if condition.dtype != BOOL:
        condition = not_equal(condition, 0)
    x, y = _common(x, y)
    return emit(E.select, [condition, x, y])


def _to_bool(x):
    x = asarray(x)
    return x if x.dtype == BOOL else not_equal(x, 0)


def logical_and(a, b):
    return emit(E.and_, [_to_bool(a), _to_bool(b)])


def logical_or(a, b):
    return emit(E.or_, [_to_bool(a), _to_bool(b)])


def logical_xor(a, b):
    return emit(E.xor, [_to_bool(a), _to_bool(b)])


def logical_not(x):
    return emit(E.not_, [_to_bool(x)])


def bitwise_and(a, b):
    return _binary(E.and_, a, b)


def bitwise_or(a, b):
    return _binary(E.or_, a, b)


def bitwise_xor(a, b):
    return _binary(E.xor, a, b)


def invert(x):
    return emit(E.not_, [asarray(x)])


def isfinite(x):
    x = asarray(x)
    if not is_float(x.dtype):
        return full(x.shape, True, BOOL)
    return emit(E.isfinite, [x])


# -- reductions ----------------------------------------------------------------------------
def _as_tuple(v) -> tuple:
    """An axis or shape argument as a tuple: a sequence's items, or ``v`` alone (an int, or
    something else that the checks of its items reject)."""
    return tuple(v) if isinstance(v, (tuple, list, np.ndarray)) else (v,)


def _axes(x, axis) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(x.ndim))
    axes = _as_tuple(axis)
    try:
        return normalize_axes(axes, x.ndim)
    except ShapeError as err:
        raise err.with_context(loc=user_location()) from None


def _accumulator_dtype(dtype: np.dtype) -> np.dtype:
    """jax's rule for sum/prod: bools and small ints accumulate in the default int."""
    if dtype == BOOL or (dtype.kind == "i" and dtype.itemsize < 4):
        return INT0
    if dtype.kind == "u" and dtype.itemsize < 4:
        return np.dtype(np.uint32)
    return dtype


def _reduce(opdef, x, axis, keepdims, dtype=None):
    x = asarray(x, dtype)
    return emit(opdef, [x], axes=_axes(x, axis), keepdims=bool(keepdims))


def sum(x, axis=None, keepdims=False, dtype=None):  # noqa: A001
    x = asarray(x)
    return _reduce(R.reduce_sum, x, axis, keepdims, dtype or _accumulator_dtype(x.dtype))


def prod(x, axis=None, keepdims=False, dtype=None):
    x = asarray(x)
    return _reduce(R.reduce_prod, x, axis, keepdims, dtype or _accumulator_dtype(x.dtype))


def max(x, axis=None, keepdims=False):  # noqa: A001
    return _reduce(R.reduce_max, x, axis, keepdims)


def min(x, axis=None, keepdims=False):  # noqa: A001
    return _reduce(R.reduce_min, x, axis, keepdims)


amax, amin = max, min


def all(x, axis=None, keepdims=False):  # noqa: A001
    return _reduce(R.reduce_and, _to_bool(x), axis, keepdims)


def any(x, axis=None, keepdims=False):  # noqa: A001
    return _reduce(R.reduce_or, _to_bool(x), axis, keepdims)


def _count(x, axis) -> int:
    return int(np.prod([x.shape[a] for a in _axes(x, axis)], dtype=np.int64))


def mean(x, axis=None, keepdims=False, dtype=None):
    x = asarray(x)
    dtype = canonical_dtype(dtype) if dtype is not None else float_dtype(x.dtype)
    wide = accumulation_dtype(dtype)
    total = sum(x, axis, keepdims, wide)
    return convert(divide(total, asarray(_count(x, axis), wide)), dtype)


def var(x, axis=None, keepdims=False, ddof: int = 0):
    x = asarray(x)
    dtype = float_dtype(x.dtype)
    x = convert(x, accumulation_dtype(dtype))
    centered = subtract(x, mean(x, axis, keepdims=True))
    spread = divide(sum(square(centered), axis, keepdims), asarray(_count(x, axis) - ddof, x.dtype))
    return convert(spread, dtype)


def std(x, axis=None, keepdims=False, ddof: int = 0):
    return sqrt(var(x, axis, keepdims, ddof))


def _arg_reduce(opdef, x, axis, keepdims):
    x = asarray(x)
    if axis is None:  # the index into the flattened array; keepdims keeps every axis as 1
        index = emit(opdef, [reshape(x, (-1,))], axis=0, keepdims=False)
        return reshape(index, (1,) * x.ndim) if keepdims else index
    return emit(opdef, [x], axis=normalize_axis(axis, x.ndim), keepdims=bool(keepdims))


def argmax(x, axis=None, keepdims=False):
    return _arg_reduce(R.argmax, x, axis, keepdims)


def argmin(x, axis=None, keepdims=False):
    return _arg_reduce(R.argmin, x, axis, keepdims)


def cumsum(x, axis=None, dtype=None):
    x = asarray(x)
    # jax.numpy's rule, unlike sum's: only bools are widened (to the default int)
    x = convert(
        x, canonical_dtype(dtype) if dtype is not None else INT0 if x.dtype == BOOL else x.dtype
    )
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    return emit(R.cumsum, [x], axis=normalize_axis(axis, x.ndim), reverse=False)


# -- creation ------------------------------------------------------------------------------
def full(shape, fill_value, dtype=None):
    shape = _shape(shape, "full")
    fill = asarray(fill_value, dtype)
    return broadcast_to(fill, shape)


def zeros(shape, dtype=FLOAT0):
    return full(shape, 0, dtype)


def ones(shape, dtype=FLOAT0):
    return full(shape, 1, dtype)


def full_like(x, fill_value, dtype=None):
    x = asarray(x)
    return full(x.shape, fill_value, dtype or x.dtype)


def zeros_like(x, dtype=None):
    return full_like(x, 0, dtype)


def ones_like(x, dtype=None):
    return full_like(x, 1, dtype)


def arange(start, stop=None, step=1, dtype=None):
    if stop is None:
        start, stop = 0, start
    for v in (start, stop, step):
        if not is_python_scalar(v) and not isinstance(v, np.generic):
            raise TypeError(
                "arange needs static bounds (Python numbers); for a traced bound use "
                "fj.fori_loop or a mask built with fnp.where"
            )
    n = builtins.max(0, int(np.ceil((stop - start) / step)))
    dtype = canonical_dtype(dtype) if dtype is not None else result_dtype(start, stop, step)
    index = emit(C.iota, [], shape=(n,), dimension=0, dtype=dtype)
    if step != 1:
        index = multiply(index, asarray(step, dtype))
    return index if start == 0 else add(index, asarray(start, dtype))


def eye(N: int, M: int | None = None, k: int = 0, dtype=FLOAT0):
    M = N if M is None else M
    rows = emit(C.iota, [], shape=(N, M), dimension=0, dtype=INT0)
    cols = emit(C.iota, [], shape=(N, M), dimension=1, dtype=INT0)
    return convert(equal(add(rows, k), cols), canonical_dtype(dtype))


# -- shapes --------------------------------------------------------------------------------
def _shape(shape: Any, op: str, minimum: int = 0, hint: str = "") -> tuple[int, ...]:
    """``shape`` (an int or a sequence of ints, each >= ``minimum``) as a tuple of ints; an
    ArgumentError naming the user's line and ``op`` otherwise."""
    wanted = f"an int or a tuple of ints >= {minimum}"
    return tuple(
        check_int(d, "shape", op=op, minimum=minimum, wanted=wanted, hint=hint)
        for d in _as_tuple(shape)
    )


def _resolve_shape(size: int, shape: Any) -> tuple[int, ...]:
    """``shape`` (a reshape's argument) with its -1, if any, worked out from ``size``."""
    hint = (
        " (-1 stands for the dimension worked out from the size); if you meant to flatten, "
        "use .reshape(-1)"
    )
    shape = _shape(shape, "reshape", minimum=-1, hint=hint)
    if shape.count(-1) > 1:
        raise ShapeError(
            f"can only infer one dimension of {shape}", op="reshape", loc=user_location()
        )
    if -1 in shape:
        known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
        if known == 0 or size % known:
            raise ShapeError(
                f"cannot reshape {size} elements into {shape}", op="reshape", loc=user_location()
            )
        shape = tuple(size // known if d == -1 else d for d in shape)
    return shape


def reshape(x, shape):
    x = asarray(x)
    shape = _resolve_shape(x.size, shape)
    return x if shape == x.shape else emit(S.reshape, [x], shape=shape)


def transpose(x, axes=None):
    x = asarray(x)
    axes = (
        tuple(reversed(range(x.ndim)))
        if axes is None
        else tuple(normalize_axis(a, x.ndim) for a in _as_tuple(axes))
    )
    return x if axes == tuple(range(x.ndim)) else emit(S.transpose, [x], perm=axes)


def expand_dims(x, axis):
    x = asarray(x)
    axes = _as_tuple(axis)
    ndim = x.ndim + len(axes)
    axes = normalize_axes(axes, ndim)
    dims = iter(x.shape)
    return reshape(x, tuple(1 if i in axes else next(dims) for i in range(ndim)))


def squeeze(x, axis=None):
    x = asarray(x)
    axes = tuple(i for i, d in enumerate(x.shape) if d == 1) if axis is None else _axes(x, axis)
    for a in axes:
        if x.shape[a] != 1:
            raise ShapeError(
                f"cannot squeeze axis {a} of shape {x.shape}: its size is not 1",
                op="squeeze",
                loc=user_location(),
            )
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def broadcast_to(x, shape):
    x = asarray(x)
    shape = _shape(shape, "broadcast_to")
    return x if x.shape == shape else emit(S.broadcast_to, [x], shape=shape)


def _some(arrays, op: str) -> list:
    """The arrays to join, as a list: an ArgumentError at the user's line if there are none
    (the result's shape and dtype come from them)."""
    arrays = list(arrays)
    if not arrays:
        raise ArgumentError(
            "needs at least one array, got none (the result's shape and dtype come from them); "
            "if the list can be empty, handle that case before the call (for an empty result, "
            "use fnp.zeros((0, ...)))",
            op=op,
            loc=user_location(),
        )
    return arrays


def concatenate(arrays, axis=0):
    arrays = _common(*_some(arrays, "concatenate"))
    if len(arrays) == 1:
        return arrays[0]
    return emit(S.concatenate, arrays, axis=normalize_axis(axis, arrays[0].ndim))


def stack(arrays, axis=0):
    arrays = [asarray(a) for a in _some(arrays, "stack")]
    return concatenate([expand_dims(a, axis) for a in arrays], axis)


def split(x, indices_or_sections, axis=0):
    x = asarray(x)
    axis = normalize_axis(axis, x.ndim)
    n = x.shape[axis]
    if isinstance(indices_or_sections, int):
        if n % indices_or_sections:
            raise ShapeError(
                f"cannot split axis {axis} of size {n} into {indices_or_sections} equal parts",
                op="split",
                loc=user_location(),
            )
        step = n // indices_or_sections
        bounds = list(range(0, n + 1, step)) if step else [0] * (indices_or_sections + 1)
    else:
        bounds = [0, *[builtins.min(builtins.max(int(i), 0), n) for i in indices_or_sections], n]
    return [_slice_axis(x, axis, lo, builtins.max(lo, hi)) for lo, hi in zip(bounds, bounds[1:])]


def _slice_axis(x, axis, lo, hi, step=1):
    start = [0] * x.ndim
    limit = list(x.shape)
    strides = [1] * x.ndim
    start[axis], limit[axis], strides[axis] = lo, hi, step
    return emit(S.slice_, [x], start=tuple(start), limit=tuple(limit), strides=tuple(strides))


def pad(x, pad_width, mode="constant", constant_values=0):
    x = asarray(x)
    if mode != "constant":
        raise ValueError(f"pad mode {mode!r} is not supported; use mode='constant'")
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2))
    return emit(
        S.pad,
        [x, asarray(constant_values, x.dtype)],
        low=tuple(widths[:, 0]),
        high=tuple(widths[:, 1]),
    )


def flip(x, axis=None):
    x = asarray(x)
    return emit(S.reverse, [x], axes=_axes(x, axis))


def tile(x, reps):
    x = asarray(x)
    reps = (reps,) if isinstance(reps, int) else tuple(reps)
    ndim = builtins.max(x.ndim, len(reps))
    reps = (1,) * (ndim - len(reps)) + reps
    x = reshape(x, (1,) * (ndim - x.ndim) + x.shape)
    # interleave a size-r axis before each axis, broadcast, then merge the pairs
    expanded = reshape(x, tuple(v for d in x.shape for v in (1, d)))
    target = tuple(v for r, d in zip(reps, x.shape) for v in (r, d))
    return reshape(broadcast_to(expanded, target), tuple(r * d for r, d in zip(reps, x.shape)))


# -- dtype helpers -------------------------------------------------------------------------
def astype(x, dtype):
    return convert(asarray(x), canonical_dtype(dtype))


wrap_public_functions(globals(), __name__)
