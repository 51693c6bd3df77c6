"""``flowjit.numpy``: numpy's names over traced Tensors (API.md, section 2). Every jax.numpy
name this module does not define comes from jax.numpy through ``fj.from_jax`` (same
signature, same result): ``fnp.tril``, ``fnp.linalg.inv``, ``fnp.pi``."""

import jax.numpy as _jnp
import numpy as _np

from flowjit.compiler.from_jax import bridged as _bridged
from flowjit.compiler.from_jax import with_jax_signatures as _with_jax_signatures

from flowjit.compiler.numpy_api import (
    abs,
    absolute,
    add,
    all,
    amax,
    amin,
    any,
    arange,
    arctan2,
    asarray,
    astype,
    bitwise_and,
    bitwise_or,
    bitwise_xor,
    broadcast_to,
    ceil,
    clip,
    concatenate,
    cos,
    cumsum,
    divide,
    equal,
    exp,
    expand_dims,
    expm1,
    eye,
    flip,
    floor,
    floor_divide,
    full,
    full_like,
    greater,
    greater_equal,
    invert,
    isfinite,
    less,
    less_equal,
    log,
    log1p,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    max,
    maximum,
    mean,
    min,
    minimum,
    mod,
    multiply,
    negative,
    not_equal,
    ones,
    ones_like,
    pad,
    power,
    prod,
    remainder,
    reshape,
    round,
    rsqrt,
    sign,
    sin,
    split,
    sqrt,
    square,
    squeeze,
    stack,
    std,
    subtract,
    sum,
    tan,
    tanh,
    tile,
    transpose,
    true_divide,
    var,
    where,
    zeros,
    zeros_like,
)
from flowjit.compiler.numpy_linalg import (
    argsort,
    dot,
    dynamic_slice,
    dynamic_update_slice,
    einsum,
    matmul,
    sort,
    take,
    take_along_axis,
    tensordot,
    top_k,
)
from flowjit.compiler.numpy_api import argmax, argmin
from flowjit.ir.types import bfloat16

bool_ = _np.dtype(_np.bool_)
int8 = _np.dtype(_np.int8)
int16 = _np.dtype(_np.int16)
int32 = _np.dtype(_np.int32)
int64 = _np.dtype(_np.int64)
uint8 = _np.dtype(_np.uint8)
uint32 = _np.dtype(_np.uint32)
float16 = _np.dtype(_np.float16)
float32 = _np.dtype(_np.float32)
float64 = _np.dtype(_np.float64)
globals()["bool"] = bool_  # fnp.bool, as in numpy 2

# a call flowjit's own function does not take (a keyword only jax's has) is jax's
_with_jax_signatures(globals(), _jnp, "flowjit.numpy")


def __getattr__(name: str):
    return _bridged(_jnp, "flowjit.numpy", name, globals())
