"""``fj.Variable``: state that persists across calls (API.md, section 3).

Outside a compiled function a Variable acts at once on its device value (runtime/variables.py).
Inside one, using it reads it (a ``read_variable`` op) and ``assign*`` writes it (ordered
``assign*_variable`` ops), so reads and writes happen in the order the Python code wrote them.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from flowjit.ir import ArgumentError, TensorType, TracingError
from flowjit.ir.errors import FlowjitError
from flowjit.ir.ops import state as S
from flowjit.runtime.variables import VariableCell

from .dtypes import canonical_dtype, check_fits, check_scalar_kind, data_dtype
from .location import user_location
from .sharding import constrain
from .trace import current, emit, tracing


class Variable(VariableCell):
    """A named, typed, mutable array. ``w.value`` is its current ``jax.Array``."""

    __hash__ = object.__hash__
    #: logical axis names, one per dimension (fj.Module.param; fj.nn.axis_rules maps them)
    axes: tuple[str | None, ...] | None = None
    _path_named = False  # named by its path in a module (fj.Module renames it when set)

    def __init__(self, initial_value: Any, *, name: str | None = None, **options: Any):
        """As ``VariableCell`` (``options``: dtype, trainable, sharding); ``name`` must be a
        str, or None for a generated one."""
        if name is not None and not isinstance(name, str):
            raise ArgumentError(
                f"a Variable's name must be a str (it names the variable in checkpoints and "
                f"messages), got {name!r}; if you meant the name {str(name)!r}, use "
                f"name={str(name)!r}",
                loc=user_location(),
            )
        initial_value = _host_data(initial_value, options.get("dtype"), name)
        super().__init__(initial_value, name=name, **options)

    def read(self) -> Any:
        """The current value: a Tensor inside a compiled function, a jax.Array outside."""
        if not tracing():
            return self.value
        ctx = current()
        value = emit(S.read_variable, [ctx.handle(self)])
        return value if self.sharding is None else constrain(value, self.sharding)

    def _write(self, opdef, value: Any, what: str) -> "Variable":
        try:  # (a Python float into an int variable, an int that does not fit: never changed)
            if _is_scalar(value):
                action, target = what.removesuffix(" a value"), f"variable {self.name!r}"
                check_scalar_kind(value, self.dtype, action, target)
            elif isinstance(value, _HOST_DATA) and data_dtype(value) == self.dtype:
                check_fits(value, self.dtype, f"{what} to variable {self.name!r}")
        except FlowjitError as err:
            raise err.with_context(op=opdef.name, loc=user_location()) from None
        if not tracing():
            if opdef is S.assign_variable:
                return self.set_value(value)
            return self._assign_add_now(value, 1 if opdef is S.assign_add_variable else -1)
        from .numpy_api import asarray, broadcast_to, full

        try:  # a Python scalar fills the variable's shape; other values broadcast to it
            tensor = full(self.shape, value, self.dtype) if _is_scalar(value) else asarray(value)
            if tensor.shape != self.shape and _broadcasts(tensor.shape, self.shape):
                tensor = broadcast_to(tensor, self.shape)
            self.check_compatible(TensorType(tensor.shape, tensor.dtype), what)
            emit(opdef, [current().handle(self), tensor])
        except FlowjitError as err:
            raise err.with_context(op=opdef.name, loc=user_location()) from None
        return self

    def assign(self, value: Any) -> "Variable":
        return self._write(S.assign_variable, value, "cannot assign a value")

    def assign_add(self, value: Any) -> "Variable":
        return self._write(S.assign_add_variable, value, "cannot add a value")

    def assign_sub(self, value: Any) -> "Variable":
        return self._write(S.assign_sub_variable, value, "cannot subtract a value")

    def __array__(self, dtype: Any = None, copy: Any = None):
        if tracing():
            raise TracingError(
                f"np.asarray(variable {self.name!r}) inside a compiled function would bake its "
                "current value into the program; use the variable itself (fnp functions and "
                "operators read it)",
                loc=user_location(),
            )
        return super().__array__(dtype, copy)

    # Everything else a Tensor (or, outside, a jax.Array) has, on the value as read now.
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.read(), name)

    def __getitem__(self, key: Any) -> Any:
        return self.read()[key]

    def __bool__(self) -> bool:
        return bool(self.read())

    def __len__(self) -> int:
        return self.shape[0]

    def __neg__(self):
        return -self.read()

    def __abs__(self):
        return abs(self.read())

    def __invert__(self):
        return ~self.read()

    @property
    def T(self) -> Any:
        return self.read().T

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return self.type.size


def _broadcasts(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float))


_HOST_DATA = (bool, int, float, list, tuple, np.ndarray, np.generic)


def _host_data(value: Any, dtype: Any, name: str | None) -> Any:
    """A Variable's initial value: host data (Python numbers, lists of them, numpy data) as a
    numpy array of ``dtype``, else of the dtype flowjit gives it (``data_dtype``: a Python int
    that needs 64 bits is int64 with x64 on); an IntegerOverflowError at the user's line where
    an integer does not fit, which numpy would wrap. Other values (jax arrays) as they are."""
    if not isinstance(value, _HOST_DATA):
        return value
    dtype = data_dtype(value) if dtype is None else canonical_dtype(dtype)
    what = f"the initial value of variable {name!r}" if name else "a Variable's initial value"
    check_fits(value, dtype, what, loc=user_location())
    return value if dtype.kind == "O" else np.asarray(value, dtype)  # (O: VariableCell says)


def _forward(op, reflected: bool = False):
    if reflected:
        return lambda self, other: op(other, self.read())
    return lambda self, other: op(self.read(), other)


for _name in (
    "add",
    "sub",
    "mul",
    "truediv",
    "floordiv",
    "mod",
    "pow",
    "matmul",
    "and",
    "or",
    "xor",
):
    _op = getattr(operator, _name if _name not in ("and", "or") else f"{_name}_")
    setattr(Variable, f"__{_name}__", _forward(_op))
    setattr(Variable, f"__r{_name}__", _forward(_op, reflected=True))
for _name in ("eq", "ne", "lt", "le", "gt", "ge"):
    setattr(Variable, f"__{_name}__", _forward(getattr(operator, _name)))
