"""``fj.Tensor``: the traced value users compute with inside a compiled function."""

from __future__ import annotations

from typing import Any

import operator

import numpy as np

from flowjit.ir import TracingError, Value

from . import numpy_api as fnp
from . import numpy_linalg as fla
from .indexing import getitem
from .location import user_location

_CONTROL_FLOW_HINT = (
    "the value of a traced Tensor is not known while the function is traced. For a branch on "
    "data use fj.cond(pred, true_fn, false_fn, *operands) or fnp.where; for a loop use "
    "fj.while_loop / fj.fori_loop; or pass the value as a static argument (static_argnums)"
)


class Tensor:
    """A symbolic array: an IR value of the trace being built. Supports numpy's operators."""

    __slots__ = ("_value", "_trace")
    __array_priority__ = 1000  # numpy arrays defer to Tensor's reflected operators

    def __init__(self, value: Value, trace: Any):
        self._value, self._trace = value, trace

    # -- type --------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._value.type.shape

    @property
    def dtype(self) -> np.dtype:
        return self._value.type.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return self._value.type.size

    def __repr__(self) -> str:
        if getattr(self._trace, "eager", False):
            return f"Tensor({self._value.type}, {self._trace.value_of(self._value)!r})"
        return f"Tensor({self._value.type})"

    __hash__ = object.__hash__

    # -- Python control flow is not traceable (except in eager mode) ----------------------
    def _concrete(self, what: str) -> np.ndarray:
        """The Tensor's value in eager mode; otherwise a TracingError saying what to do."""
        if getattr(self._trace, "eager", False):
            return self._trace.value_of(self._value)
        raise TracingError(
            f"{what} of a Tensor {self._value.type}: {_CONTROL_FLOW_HINT}", loc=user_location()
        )

    def __bool__(self):
        return bool(self._concrete("bool()"))

    def __int__(self):
        return int(self._concrete("int()"))

    def __float__(self):
        return float(self._concrete("float()"))

    def __index__(self):
        return operator.index(self._concrete("using as a Python index").item())

    def __complex__(self):
        return complex(self._concrete("complex()"))

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._concrete("converting to a numpy array"), dtype)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d Tensor")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d Tensor")
        return (self[i] for i in range(self.shape[0]))

    # -- operators -----------------------------------------------------------------------
    # Operators (+ - * / // % ** @ & | ^ and their reflections, comparisons) are attached
    # below the class from tables, each forwarding to its flowjit.numpy function.
    def __neg__(self):
        return fnp.negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return fnp.abs(self)

    def __invert__(self):
        return fnp.invert(self)

    def __getitem__(self, key):
        return getitem(self, key)

    # -- methods -------------------------------------------------------------------------
    @property
    def T(self) -> "Tensor":
        return fnp.transpose(self)

    def reshape(self, *shape) -> "Tensor":
        return fnp.reshape(
            self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape
        )

    def transpose(self, *axes) -> "Tensor":
        if len(axes) == 1 and not isinstance(axes[0], int):
            axes = axes[0]
        return fnp.transpose(self, axes or None)

    def astype(self, dtype) -> "Tensor":
        return fnp.astype(self, dtype)

    def sum(self, axis=None, keepdims=False, dtype=None) -> "Tensor":
        return fnp.sum(self, axis, keepdims, dtype)

    def mean(self, axis=None, keepdims=False) -> "Tensor":
        return fnp.mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False) -> "Tensor":
        return fnp.max(self, axis, keepdims)

    def min(self, axis=None, keepdims=False) -> "Tensor":
        return fnp.min(self, axis, keepdims)

    def prod(self, axis=None, keepdims=False) -> "Tensor":
        return fnp.prod(self, axis, keepdims)

    def argmax(self, axis=None, keepdims=False) -> "Tensor":
        return fnp.argmax(self, axis, keepdims)

    def argmin(self, axis=None, keepdims=False) -> "Tensor":
        return fnp.argmin(self, axis, keepdims)

    def var(self, axis=None, keepdims=False) -> "Tensor":
        return fnp.var(self, axis, keepdims)

    def std(self, axis=None, keepdims=False) -> "Tensor":
        return fnp.std(self, axis, keepdims)

    def all(self, axis=None, keepdims=False) -> "Tensor":
        return fnp.all(self, axis, keepdims)

    def any(self, axis=None, keepdims=False) -> "Tensor":
        return fnp.any(self, axis, keepdims)

    def flatten(self) -> "Tensor":
        return fnp.reshape(self, (-1,))

    def squeeze(self, axis=None) -> "Tensor":
        return fnp.squeeze(self, axis)


_BINARY_OPERATORS = {
    "add": fnp.add,
    "sub": fnp.subtract,
    "mul": fnp.multiply,
    "truediv": fnp.divide,
    "floordiv": fnp.floor_divide,
    "mod": fnp.mod,
    "pow": fnp.power,
    "matmul": fla.matmul,
    "and": fnp.bitwise_and,
    "or": fnp.bitwise_or,
    "xor": fnp.bitwise_xor,
}
_COMPARISONS = {
    "eq": fnp.equal,
    "ne": fnp.not_equal,
    "lt": fnp.less,
    "le": fnp.less_equal,
    "gt": fnp.greater,
    "ge": fnp.greater_equal,
}


def _operator(fn, reflected: bool = False):
    if reflected:
        return lambda self, other: fn(other, self)
    return lambda self, other: fn(self, other)


for _name, _fn in _BINARY_OPERATORS.items():
    setattr(Tensor, f"__{_name}__", _operator(_fn))
    setattr(Tensor, f"__r{_name}__", _operator(_fn, reflected=True))
for _name, _fn in _COMPARISONS.items():
    setattr(Tensor, f"__{_name}__", _operator(_fn))


# -- jax.Array's other methods, through fj.from_jax (issue 22) ------------------------------
# Each is jax.Array's method of the same name on the Tensor's value: same arguments, same
# result. (flowjit's own methods above stay: they make readable IR without the bridge.)
_ARRAY_METHODS = (
    "argpartition",
    "argsort",
    "choose",
    "clip",
    "compress",
    "conj",
    "conjugate",
    "copy",
    "cumprod",
    "cumsum",
    "diagonal",
    "dot",
    "nonzero",
    "ptp",
    "ravel",
    "repeat",
    "round",
    "searchsorted",
    "sort",
    "swapaxes",
    "take",
    "trace",
)


def _array_method(name: str):
    def method(self, *args, **kwargs):
        from .from_jax import from_jax

        call = from_jax(lambda a, *rest, **options: getattr(a, name)(*rest, **options))
        return call(self, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"jax.Array.{name} of the Tensor (its arguments and result)."
    return method


for _name in _ARRAY_METHODS:
    setattr(Tensor, _name, _array_method(_name))


_AT_METHODS = ("set", "add", "subtract", "multiply", "mul", "divide", "power", "min", "max")
_AT_METHODS += ("apply", "get")


class _IndexUpdate:
    """``t.at[index]``: jax's functional updates, ``.set(v)``, ``.add(v)``, ``.subtract(v)``,
    ``.multiply(v)``, ``.divide(v)``, ``.power(v)``, ``.min(v)``, ``.max(v)``, ``.apply(f)``
    and ``.get()``, each a new Tensor (the index may hold Tensors)."""

    def __init__(self, tensor: "Tensor", index: Any = None):
        self._tensor, self._index = tensor, index

    def __getitem__(self, index: Any) -> "_IndexUpdate":
        return _IndexUpdate(self._tensor, index)

    def __getattr__(self, name: str):
        if name not in _AT_METHODS:
            raise AttributeError(f"t.at[...] has no method {name!r}")
        from .from_jax import from_jax

        def update(*args, **kwargs):
            def fn(a, index, *rest, **options):
                return getattr(a.at[index], name)(*rest, **options)

            call = from_jax(fn, name=f"Tensor.at[].{name}")
            return call(self._tensor, self._index, *args, **kwargs)

        return update


Tensor.at = property(lambda self: _IndexUpdate(self), doc="jax's functional index updates")
Tensor.mT = property(lambda self: self.swapaxes(-1, -2), doc="the last two axes swapped")
Tensor.itemsize = property(lambda self: self.dtype.itemsize)
Tensor.nbytes = property(lambda self: self.size * self.dtype.itemsize)


def _item(self, *args):
    """The value as a Python scalar (eager mode only: in a compiled function it is not known)."""
    return self._concrete("item()").item(*args)


Tensor.item = _item
