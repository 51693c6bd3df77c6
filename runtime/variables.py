"""Variable cells: a variable's identity, name and current device value.

The runtime owns each variable's current ``jax.Array``; a compiled step donates it and the
runtime rebinds the step's new array (``_rebind``), so the update happens in place. Outside a
compiled function, reads and ``assign*`` act at once. The compiler subclasses this with the
traced behaviour (``fj.Variable``).

Threads: each cell has a lock (or shares another's: ``lock_with``). A step holds the locks of
all the variables it reads or writes from reading their values to rebinding the new ones
(``VariableLocks``, taken in one global order), and ``set_value``, ``assign_add``/``assign_sub``
and placement hold the cell's own, so each of these is atomic with respect to steps.
``np.asarray(variable)`` takes no lock and reads the value before or after any step. ``value``
is the current buffer itself: the next step donates it, so a thread that keeps it while others
run steps should copy it (``np.asarray(variable)``). The locks are taken all or none
(``VariableLocks``): a Ctrl-C while waiting for one releases those already taken.

A value can be lost (docs/errors.md): its buffer deleted by the user (``v.value.delete()``, or
donated to a jax function), or poisoned by a step that failed while it ran on the device (out of
memory: dispatch is asynchronous, so the step had returned and its variables were rebound to
results that raise on every read). Once found, at a read, at a step or when the runtime waits
for the queue of steps (``plan.bound_in_flight``), the variable holds a ``_LostValue`` and every
use of it raises the same ``VariableError``, naming the variable and the step, until a new value
is assigned or a checkpoint restored."""

from __future__ import annotations

import functools
import itertools
import threading
from typing import Any, Iterable

import numpy as np

from flowjit.backends.xla.jaxshim import jax, jnp
from flowjit.ir import DTypeError, ShapeError, ShardingError, TensorType, VariableError, dtype_name

from .interrupts import (
    deliver_interrupt,
    hold_interrupts,
    interrupt_pending,
    release_interrupts,
)
from .sharding import P, Mesh, NamedSharding, active_mesh, place, sharding_for

_default_names = itertools.count()
_creation_order = itertools.count()  # (next() on a count is atomic)


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
            # (a copy by XLA's client, where jnp.array(copy=True) compiles a program per shape:
            # a model's construction compiled one per parameter shape and kept its memory)
            return jax.device_put(value, may_alias=False).block_until_ready()
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
        # (numpy's 64-bit data is 32-bit unless jax_enable_x64 is on, as in jax.numpy)
        dtype = jax.dtypes.canonicalize_dtype(dtype or initial_value.dtype)
        self._type = TensorType(np.shape(initial_value), dtype)
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
        self._writer: str | None = None  # the compiled function whose step last rebound it
        # reentrant: a host call inside a step may run a compiled function on this variable
        self._lock = threading.RLock()
        self._order = next(_creation_order)  # where its lock comes in VariableLocks' order

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
        """The current value, a ``jax.Array`` (VariableError if it was lost)."""
        value = self._value
        if type(value) is _LostValue:
            raise value.error()
        return value

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        try:  # (no lock: a read never waits for steps, nor they for it)
            out = np.asarray(self._value)
        except Exception:
            # a step donated the buffer after we took it (it rebinds the new one before it
            # lets go of the lock), or the value is lost
            with self._lock:
                out = np.asarray(self._ready())
        return out if dtype is None else out.astype(dtype)

    def _checked(self) -> Any:
        """The current value, not waited for; VariableError if it is lost or deleted."""
        value = self._value
        if type(value) is _LostValue:
            raise value.error()
        if value.is_deleted():
            raise self._lose(value, None)
        return value

    def _ready(self) -> Any:
        """The current value, waited for; VariableError if it is lost, deleted, or the step
        that computed it failed."""
        value = self._checked()
        try:
            return value.block_until_ready()
        except jax.errors.JaxRuntimeError as err:  # (the step that computed it failed)
            raise self._lose(value, err) from None

    def _lose(self, value: Any, err: BaseException | None) -> VariableError:
        """Record that ``value``, found deleted (``err`` None) or failed, is lost: every use
        from now on raises the error returned."""
        if err is None:
            why = (
                "its buffer was deleted (by .delete() on its value, or by passing "
                "variable.value to a jax function that donates its arguments)"
            )
        else:
            what = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            step = f"the call of {self._writer!r}" if self._writer else "the step"
            why = (
                f"{step} that wrote it failed while it ran on the device, or used values of one "
                f"that did ({what})"
            )
        lost = _LostValue(
            f"variable {self.name!r} has no value: {why}. Restore a checkpoint "
            "(fj.Checkpoint(...).restore()) or assign it a new value (variable.assign(...))",
            err,
        )
        if self._value is value:
            self._value = lost
        return lost.error()

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
        dtype = jax.dtypes.canonicalize_dtype(value.dtype)  # (float64 data is float32 unless x64)
        self.check_compatible(TensorType(np.shape(value), dtype), what)
        return value

    def place_on(self, mesh: Mesh, what: str) -> None:
        """Make the variable live on ``mesh`` for a function running SPMD over it (``what``
        names that function): a variable on one device is replicated over the mesh, once; a
        variable sharded over another mesh is an error."""
        with self._lock:
            if self.sharding is None:
                self.sharding = NamedSharding(mesh.jax, P())
                self._value = _device_copy(self._checked(), self.dtype, self.sharding)
                return
        if self.sharding.mesh != mesh.jax:
            raise ShardingError(
                f"variable {self.name!r} is sharded over the mesh {dict(self.sharding.mesh.shape)} "
                f"but {what} runs over {mesh}; create the variable on the function's mesh"
            )

    def lock_with(self, other: "VariableCell") -> None:
        """Share ``other``'s lock: a step over either waits for steps over the other, and a
        step over both takes one lock. For state that goes with a variable wherever it goes
        (an optimizer's slots: a step over N variables and their 2N slots takes N locks, not
        3N); only for a variable no step or thread has used yet."""
        self._lock, self._order = other._lock, other._order

    def _rebind(self, new_value: Any, writer: str | None = None) -> None:
        """Install the array a compiled step of the function named ``writer`` produced (the
        runtime's path, with the lock held; no checks)."""
        self._value = new_value
        self._writer = writer

    def set_value(self, value: Any) -> "VariableCell":
        """Replace the value now (outside compiled functions); shape and dtype must match."""
        value = self._eager_value(value, "cannot assign a value")
        with self._lock:
            self._value = _device_copy(value, self.dtype, self.sharding)
        return self

    def _assign_add_now(self, value: Any, sign: int) -> "VariableCell":
        delta = jnp.asarray(self._eager_value(value, "cannot add a value"))
        with self._lock:  # (no step may donate the value between the read and the rebind)
            old = self._checked()
            value = old + delta if sign > 0 else old - delta
            if self.sharding is not None and value.sharding != self.sharding:
                value = jax.device_put(value, self.sharding)  # (it keeps its layout)
            self._value = value
        return self


class _LostValue:
    """What a variable holds once its value is found lost (module docstring): using it raises
    a VariableError with ``message``, from the error that found it."""

    __slots__ = ("message", "cause")

    def __init__(self, message: str, cause: BaseException | None):
        self.message, self.cause = message, cause

    def error(self) -> VariableError:
        error = VariableError(self.message)
        error.__cause__ = self.cause
        return error

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise self.error()


def rebind_all(variables: Iterable[VariableCell], values: Iterable[Any], writer: str) -> None:
    """``_rebind`` each of ``variables`` to its value in ``values``, computed by a step of the
    function named ``writer`` (the per-step path: one loop, no call per variable)."""
    for variable, value in zip(variables, values):
        variable._value = value
        variable._writer = writer


def lost_in(variables: Iterable[VariableCell]) -> VariableError | None:
    """The error of the first of ``variables`` whose value is lost (deleted, or computed by a
    step that failed: this waits for their steps), or None."""
    for variable in variables:
        try:
            variable._ready()
        except VariableError as err:
            return err
    return None


def lose_donated(variables: Iterable[VariableCell], step: str, err: BaseException) -> None:
    """After XLA failed a call of ``step`` that writes ``variables`` with ``err``: those whose
    buffers it took (donated) are lost, and say so naming it (a call that failed before it
    took them leaves them as they were)."""
    for variable in variables:
        value = variable._value
        if type(value) is not _LostValue and value.is_deleted():
            variable._writer = step
            variable._lose(value, err)


class VariableLocks:
    """The locks of some variables, taken (``acquire``) and released (``release``) together,
    all or none. Every holder of more than one variable's lock takes them through this class,
    in the creation order of the variables they were made for, so two steps over overlapping
    sets of variables (of one function or of two) cannot wait for each other in a cycle.

    Ctrl-C: ``with locks:`` holds interrupts while it takes them (runtime/interrupts.py), and a
    caller of ``acquire`` in the main thread holds them itself; a Ctrl-C that comes while one is
    waited for gives back those taken, then is delivered (KeyboardInterrupt): no lock leaks."""

    __slots__ = ("acquire", "release")

    def __init__(self, variables: Iterable[VariableCell]):
        # one per lock (variables may share one: lock_with); by id, as == on a Variable is a
        # traced op
        unique = {id(v._lock): v for v in variables}.values()
        locks = tuple(v._lock for v in sorted(unique, key=lambda v: v._order))
        if len(locks) == 1:  # (the lock's own methods: a step on one variable pays the least)
            self.acquire = functools.partial(_acquire_one, locks[0])
            self.release = locks[0].release
        else:
            self.acquire = functools.partial(_acquire_all, locks)
            self.release = functools.partial(_release_all, locks[::-1])

    def __enter__(self) -> None:
        held = hold_interrupts()
        try:
            self.acquire()
        except BaseException:
            if held:
                release_interrupts()
            raise
        if held:
            try:
                release_interrupts()  # (a Ctrl-C that came meanwhile is raised here)
            except BaseException:
                self.release()
                raise

    def __exit__(self, *exc: Any) -> None:
        self.release()


_POLL_S = 0.05  # how often a wait for a lock looks for a held Ctrl-C


def _acquire_one(lock: Any) -> None:
    if not lock.acquire(False):  # (held elsewhere: wait as for several)
        _acquire_all((lock,))


def _acquire_all(locks: tuple) -> None:
    taken = 0
    try:
        for lock in locks:  # (no lock held elsewhere, the usual case: no wait, no timeout)
            if not lock.acquire(False):
                break
            taken += 1
        while taken < len(locks):
            if locks[taken].acquire(timeout=_POLL_S):
                taken += 1
            elif interrupt_pending():  # a held Ctrl-C: give all back, then deliver it
                _release_all(locks[:taken][::-1])
                taken = 0
                deliver_interrupt()  # (if its handler returns, take them again)
    except BaseException:  # (a KeyboardInterrupt where interrupts are not held)
        _release_all(locks[:taken][::-1])
        raise


def _release_all(locks: tuple) -> None:
    for lock in locks:
        lock.release()
