"""Variable cells: a variable's identity, name and current device value.

The runtime owns each variable's current ``jax.Array``; a compiled step donates it and the
runtime rebinds the step's new array (``_rebind``), so the update happens in place. Outside a
compiled function, reads and ``assign*`` act at once. The compiler subclasses this with the
traced behaviour (``fj.Variable``)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from flowjit.backends.xla.jaxshim import jax, jnp
from flowjit.ir import DTypeError, ShapeError, ShardingError, TensorType, dtype_name

from .sharding import P, Mesh, NamedSharding, active_mesh, place, sharding_for

_default_names = itertools.count()


def _device_copy(value: Any, dtype: Any = None, sharding: NamedSharding | None = None) -> Any:
    """A fresh device buffer owned by the variable (never aliasing the caller's numpy memory,
    so the first donation is in place too); with ``sharding``, each device gets its shard."""
    # Variables may be created while jax traces a compiled function (optimizer slots): their
    # values are concrete all the same.
    # The copy is waited for: a step that donated a buffer still being written would have to
    # copy it instead of updating it in place.
    with jax.ensure_compile_time_eval():
        if sharding is not None:
            if not isinstance(value, jax.Array) or value.dtype != dtype:
                value = np.asarray(value, dtype=dtype)
            return place(value, sharding).block_until_ready()
        if isinstance(value, jax.Array) and (dtype is None or value.dtype == dtype):
            return jnp.array(value, copy=True).block_until_ready()
        # one host->device copy (jnp.array(copy=True) of a numpy array makes two)
        array = np.asarray(value, dtype=dtype)
        return jax.device_put(array, may_alias=False).block_until_ready()


class VariableCell:
    """Mutable state with a fixed shape and dtype."""

    def __init__(
        self,
        initial_value: Any,
        *,
        name: str | None = None,
        dtype: Any = None,
        trainable: bool = True,
        sharding: Any = None,
    ):
        if isinstance(initial_value, VariableCell):
            initial_value = initial_value.value
        if not isinstance(initial_value, jax.Array):
            array = np.asarray(initial_value, dtype=dtype)
            if (
                dtype is None
                and array.dtype == np.float64
                and not isinstance(initial_value, np.ndarray)
            ):
                array = array.astype(np.float32)  # Python floats are float32, as elsewhere
            if (
                dtype is None
                and array.dtype == np.int64
                and not isinstance(initial_value, np.ndarray)
            ):
                array = array.astype(np.int32)
            initial_value = array
        self._type = TensorType(np.shape(initial_value), dtype or initial_value.dtype)
        self.name = name if name is not None else f"Variable_{next(_default_names)}"
        self.trainable = trainable
        if sharding is not None and not isinstance(sharding, (P, NamedSharding)):
            raise ShardingError(
                f"variable {self.name!r}: sharding must be fj.P(...) or fj.NamedSharding, got "
                f"{type(sharding).__name__}"
            )
        #: how the value is laid out over a mesh (a NamedSharding), or None: on one device
        self.sharding = None
        if sharding is not None:
            self.sharding = sharding_for(
                sharding, active_mesh(), self.shape, f"variable {self.name!r}"
            )
        self._value = _device_copy(initial_value, self._type.dtype, self.sharding)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._type.shape

    @property
    def dtype(self) -> np.dtype:
        return self._type.dtype

    @property
    def type(self) -> TensorType:
        return self._type

    @property
    def value(self) -> Any:
        """The current value, a ``jax.Array``."""
        return self._value

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.asarray(self._value)
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"Variable({self.name!r}, {self._type})"

    # -- eager updates (outside compiled functions) ------------------------------------------
    def check_compatible(self, value_type: TensorType, what: str) -> None:
        """ShapeError/DTypeError unless ``value_type`` fits this variable."""
        if value_type.shape != self.shape:
            raise ShapeError(
                f"{what} of shape {value_type.shape} to variable {self.name!r} of shape "
                f"{self.shape}; reshape the value or create the variable with that shape"
            )
        if value_type.dtype != self.dtype:
            raise DTypeError(
                f"{what} of dtype {dtype_name(value_type.dtype)} to variable {self.name!r} of "
                f"dtype {dtype_name(self.dtype)}; convert it with .astype()"
            )

    def _eager_value(self, value: Any, what: str) -> Any:
        if isinstance(value, (bool, int, float)):  # Python scalars take the variable's dtype
            value = np.full(self.shape, value, self.dtype)
        elif isinstance(value, VariableCell):
            value = value.value
        elif not isinstance(value, jax.Array):
            value = np.asarray(value)
        if np.shape(value) != self.shape:  # broadcast to the variable's shape if it fits
            try:
                if np.broadcast_shapes(np.shape(value), self.shape) == self.shape:
                    value = jnp.broadcast_to(value, self.shape)
            except ValueError:
                pass  # check_compatible names the mismatch
        self.check_compatible(TensorType(np.shape(value), value.dtype), what)
        return value

    def place_on(self, mesh: Mesh, what: str) -> None:
        """Make the variable live on ``mesh`` for a function running SPMD over it (``what``
        names that function): a variable on one device is replicated over the mesh, once; a
        variable sharded over another mesh is an error."""
        if self.sharding is None:
            self.sharding = NamedSharding(mesh.jax, P())
            self._value = _device_copy(self._value, self.dtype, self.sharding)
        elif self.sharding.mesh != mesh.jax:
            raise ShardingError(
                f"variable {self.name!r} is sharded over the mesh {dict(self.sharding.mesh.shape)} "
                f"but {what} runs over {mesh}; create the variable on the function's mesh"
            )

    def _rebind(self, new_value: Any) -> None:
        """Install the array a compiled step produced (the runtime's path; no checks)."""
        self._value = new_value

    def set_value(self, value: Any) -> "VariableCell":
        """Replace the value now (outside compiled functions); shape and dtype must match."""
        value = self._eager_value(value, "cannot assign a value")
        self._value = _device_copy(value, self.dtype, self.sharding)
        return self

    def _assign_add_now(self, value: Any, sign: int) -> "VariableCell":
        delta = jnp.asarray(self._eager_value(value, "cannot add a value"))
        value = self._value + delta if sign > 0 else self._value - delta
        if self.sharding is not None and value.sharding != self.sharding:
            value = jax.device_put(value, self.sharding)  # (it keeps its layout)
        self._value = value
        return self
