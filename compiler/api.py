"""``fj.compile``: trace once per signature, optimize, lower, compile and cache.

The entry point is ``jax.jit`` over ``_body`` (runtime/plan.py): jax's C++ dispatch finds the
executable for a known signature with no Python work of ours. On a signature jax has not seen,
``_body`` runs with tracers: it looks up (or makes) flowjit's trace for the signature, then binds
the cluster primitive. flowjit's own cache, keyed on flowjit signatures, decides when the user
function is traced again.

Threads may call compiled functions at once. A pure call takes no lock of ours (jax's dispatch
is thread safe). A call with variables holds their locks (runtime/variables.py) from reading
their values to rebinding the new ones, so steps over common variables, of one function or of
several, run one at a time. Tracing, the trace caches and the state layouts are guarded by
``_TRACING``: a thread holding it never waits for a variable's lock, and a thread inside jax's
trace of an entry never waits for it (_Busy), so these locks and jax's own waits for a trace in
another thread form no cycle (for host calls that run compiled functions, see _call_steps)."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from flowjit.backends.xla import compiler_options
from flowjit.backends.xla.jaxshim import jax, jnp, trace_state_clean
from flowjit.ir import (
    ArgumentError,
    DonationError,
    FlowjitError,
    Graph,
    ShardingError,
    TracingError,
)
from flowjit.passes import (
    PipelineResult,
    default_pipeline,
    resolve_passes,
    run_pipeline,
    with_required,
)
from flowjit.runtime import (
    HostStep,
    Plan,
    bound_in_flight,
    config,
    make_entry,
    run_plan,
    step_token,
)
from flowjit.runtime.interrupts import hold_interrupts, release_interrupts
from flowjit.runtime.sharding import check_spec_axes, entered, is_spec, place, sharding_for
from flowjit.runtime.variables import VariableLocks, lose_donated

from .dump import dump_compilation
from .eager import EagerContext
from .location import check_argnums, positional_parameters, user_location
from .lowered import Lowered
from .nan_check import has_nan, nan_origin
from .planning import make_plan
from .sharding import constrain, function_mesh, keep_sharding, specs_per_leaf
from .signature import Signature, argument_name, dynamic_part, path_name, signature_of
from .tensor import Tensor
from .trace import TraceContext, current, tracing

logger = logging.getLogger("flowjit")
RETRACE_WARNING_AFTER = 5

# One trace at a time in the process: the stacks of trace contexts (compiler/trace.py) and of
# entered meshes (runtime/sharding.py) are the process's. Reentrant, for a trace that calls a
# compiled function. Also guards each function's trace cache and state layout. Held only for
# flowjit's own work on a signature it has not seen (XLA compiles outside it), so it is never
# in a call's way once every signature is traced. Inside a jax trace a thread only tries it
# (see _Busy).
_TRACING = threading.RLock()


@dataclass(frozen=True)
class CacheInfo:
    hits: int
    misses: int
    traces: int


@dataclass
class TraceRecord:
    """One traced signature: the IR before and after the passes and the plan to run."""

    signature: Signature
    traced: Graph  # as traced, before any pass (passes build new graphs; it is not changed)
    pipeline: PipelineResult
    plan: Plan
    out_treedef: Any
    in_shardings: list  # per argument leaf: its NamedSharding, or None
    out_shardings: list  # per result leaf
    variables: dict  # the traced graph's variable handles' names -> the variables

    @property
    def graph(self) -> Graph:
        return self.pipeline.graph


class _StateLayout:
    """The variables a function's stateful entry takes: the values of ``written`` (donated)
    then of ``read_only``; and their locks. A function's layout is replaced, never changed, and
    only while the locks of the one it replaces are held: a call holding them sees its layout
    stay the same until it has rebound the variables."""

    __slots__ = ("written", "read_only", "locks")

    def __init__(self, written: tuple = (), read_only: tuple = ()):
        self.written, self.read_only = written, read_only
        self.locks = VariableLocks(written + read_only)

    def fits(self, plan: Plan) -> bool:
        """Whether the entry called with this layout feeds every variable ``plan`` reads
        and donates every one it writes."""
        # sets, not tuples: `in` on a tuple would compare variables with == (a traced read)
        written = set(self.written)
        known = written | set(self.read_only)
        return written.issuperset(plan.state_outputs) and known.issuperset(plan.state_inputs)

    def grown(self, plan: Plan) -> "_StateLayout":
        """This layout with the variables ``plan`` uses added (one it writes moves from
        read_only to written)."""
        written, known = set(self.written), set(self.written) | set(self.read_only)
        new_written = [v for v in plan.state_outputs if v not in written]
        moved = set(new_written)
        new_read = [v for v in plan.state_inputs if v not in known and v not in moved]
        read_only = tuple(v for v in self.read_only if v not in moved)
        return _StateLayout(self.written + tuple(new_written), read_only + tuple(new_read))


class _StateChanged(Exception):
    """Raised inside a jax trace when the flowjit trace's ``plan`` uses variables the entry
    was not called with; the call then grows the state layout and starts over."""

    def __init__(self, plan: Plan):
        super().__init__()
        self.plan = plan


class _Busy(Exception):
    """Raised inside a jax trace when another thread holds _TRACING. Waiting there could
    deadlock: jax lets one thread trace a jitted function for given argument types and makes
    the others wait for it, and the holder, tracing a function that calls this one, may be
    waiting for this very jax trace. The call leaves jax's trace, waits, and starts over."""


def _wait_for_other_traces() -> None:
    """Out of jax's trace (after _Busy): wait until no other thread is tracing."""
    _TRACING.acquire()
    _TRACING.release()


class _HostCalls(Exception):
    """Raised inside a jax trace when the flowjit trace has host calls: the function then
    runs step by step (compiled clusters and host calls) instead of under one jax.jit."""


class _OptionsChanged(Exception):
    """Raised inside a jax trace when the flowjit trace wants XLA compile options (the
    backend's, for a program with convolutions on CPU) its jitted entries lack: the function's
    entries are made again with them and the call starts over."""

    def __init__(self, options: dict):
        super().__init__()
        self.options = options


class CompiledFunction:
    """What ``@fj.compile`` returns: call it like the function it wraps.

    Variables the function uses are fed to the jitted entry as two tuples ahead of the user's
    arguments: the values of the variables any trace writes (donated: updated in place) and of
    those only read. A function that uses no variable has an entry without them."""

    def __init__(
        self,
        fn: Callable,
        *,
        static_argnums: Sequence[int] = (),
        static_argnames: Sequence[str] = (),
        donate_argnums: Sequence[int] = (),
        backend: str | None = None,
        name: str | None = None,
        passes: Sequence[Callable] | None = None,
        mesh: Any = None,
        in_shardings: Any = None,
        out_shardings: Any = None,
    ):
        if not callable(fn):
            keyword = f"static_argnums={fn!r}" if isinstance(fn, int) else "static_argnums=..."
            raise ArgumentError(
                f"fj.compile takes the function to compile, got {fn!r}; its options are "
                f"keywords: if you meant {keyword}, use @fj.compile({keyword})",
                loc=user_location(),
            )
        self.fn = fn
        try:
            self.passes = None if passes is None else resolve_passes(passes)
        except FlowjitError as err:
            raise err.with_context(loc=user_location()) from None
        self._params = _parameter_names(fn)
        self.name = name or getattr(fn, "__name__", "fn")
        as_tuple = lambda v, t: (v,) if isinstance(v, t) else tuple(v)  # noqa: E731
        counted = positional_parameters(fn)
        self.static_argnums = check_argnums(
            static_argnums, "static_argnums", self.name, counted, by_name="static_argnames"
        )
        # a static argument passed by keyword is static too (jax.jit infers the names alike)
        named = as_tuple(static_argnames, str)
        self.static_argnames = named + tuple(
            name
            for i, name in enumerate(self._params)
            if i in self.static_argnums and name not in named
        )
        donate_argnums = check_argnums(donate_argnums, "donate_argnums", self.name, counted)
        self.mesh = function_mesh(mesh, in_shardings, out_shardings, self.name)
        self._arg_shardings = self._per_argument(in_shardings)  # a spec tree per argument
        self._out_shardings = self._to_named(out_shardings, "out_shardings")
        arg_shardings = None if self._arg_shardings is None else tuple(self._arg_shardings)
        # a mesh spanning several processes takes global jax.Arrays only (see _globalize)
        self._across_processes = self.mesh is not None and not all(
            d.process_index == jax.process_index() for d in self.mesh.devices.flat
        )
        self._traces: dict[tuple, TraceRecord] = {}
        self._last: TraceRecord | None = None
        # (+= on an int attribute is atomic under the GIL: no thread switch inside it)
        self._calls = 0
        self._layout = _StateLayout()  # the variables the traces use
        self._stateful = False
        self._split = False  # whether calls run step by step (the function has host calls)
        # whether a call is just the jitted pure entry's (no variables, host calls or
        # processes to handle first)
        self._plain = not self._across_processes
        self._backend = backend
        self._make_entries = functools.partial(
            self._entries, backend, donate_argnums, arg_shardings, out_shardings
        )
        # XLA compile options the entries were made with (_OptionsChanged); calls made while
        # jax traces another function go through entries without (_call_nested)
        self._options: dict | None = None
        self._pure_entry, self._state_entry = self._make_entries(options=None)
        self._nested_entries: tuple[Callable, Callable] | None = None
        functools.update_wrapper(self, fn)

    def _entries(
        self, backend, donate_argnums, arg_shardings, out_shardings, *, options: dict | None
    ) -> tuple[Callable, Callable]:
        """The jitted (pure, stateful) entries, compiling with XLA ``options``."""
        entry = functools.partial(
            make_entry, static_argnames=self.static_argnames, backend=backend, options=options
        )
        pure = entry(
            self._pure_body,
            static_argnums=self.static_argnums,
            donate_argnums=donate_argnums,
            in_shardings=arg_shardings,
            out_shardings=self._out_shardings,
        )
        # variables are placed before they are fed (runtime/variables.py): jax takes their
        # shardings from the arrays (None), and keep_sharding holds the new values to them
        state = entry(
            self._state_body,
            static_argnums=tuple(i + 2 for i in self.static_argnums),
            donate_argnums=(0,) + tuple(i + 2 for i in donate_argnums),
            in_shardings=None if arg_shardings is None else (None, None, *arg_shardings),
            out_shardings=None if out_shardings is None else (self._out_shardings, None, None),
        )
        return pure, state

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if tracing():  # called while another function is traced (in this thread)
            return self._inline(args, kwargs)
        if config.eager or config.check_nans:  # (debugging modes, docs/debugging.md)
            if config.eager:
                return self._call_eagerly(args, kwargs)
            return self._call_checking_nans(args, kwargs)
        return self._call(args, kwargs)

    def _call(self, args: tuple, kwargs: dict) -> Any:
        self._calls += 1
        try:
            if self._plain:  # (the per-call hot path: jax's C++ dispatch does the rest)
                return self._pure_entry(*args, **kwargs)
            return self._dispatch(args, kwargs)
        except Exception as err:
            self._calls -= 1  # only calls that ran count as hits or misses
            return self._recover(err, args, kwargs)

    def _dispatch(self, args: tuple, kwargs: dict, nested: bool = False) -> Any:
        if self._layout.written and not trace_state_clean():
            names = ", ".join(repr(v.name) for v in self._layout.written)
            self._refuse_under_jax(
                f"writes the Variables {names}",
                "which cannot update them",
                ", or compile the whole step with fj.compile (fj.grad and fj.value_and_grad "
                "take gradients inside it)",
            )
        if self._across_processes:
            args = self._globalize(args)
        if self._split:
            return self._call_steps(args, kwargs)
        if self._stateful:
            state = self._nested_entries[1] if nested else self._state_entry
            return self._call_with_state(state, args, kwargs)
        return (self._nested_entries[0] if nested else self._pure_entry)(*args, **kwargs)

    def _refuse_under_jax(self, what: str, why: str, also: str = "", **where: Any) -> None:
        """A function that does ``what`` (writes Variables, calls the host), called while jax
        traces (jax.jit, jax.grad, ...): refused before any variable is read or changed."""
        raise TracingError(
            f"{self.name} {what} and was called inside a jax transformation (jax.jit, "
            f"jax.grad, jax.vmap, ...), {why}. Call it outside jax's transformations{also}",
            **where,
        )

    def _call_nested(self, args: tuple, kwargs: dict) -> Any:
        """A call made while jax traces another function (a compiled function called while
        another is traced, or inside jax.jit): through jits without compile options."""
        if self._nested_entries is None:
            self._nested_entries = self._make_entries(options=None)
        self._calls += 1
        try:
            return self._dispatch(args, kwargs, nested=True)
        except Exception as err:
            self._calls -= 1
            return self._recover(err, args, kwargs, nested=True)

    def _recover(self, err: Exception, args: tuple, kwargs: dict, nested: bool = False) -> Any:
        """After a call raised ``err``: call again if the first trace found variables
        (_StateChanged) or host calls (_HostCalls), if another thread was tracing (_Busy), or
        if jax refused the compile options of a jit called inside its trace of another; else
        raise it, naming the argument."""
        if isinstance(err, _StateChanged):
            self._grow_layout(err.plan)
            return self(*args, **kwargs)
        if isinstance(err, _Busy):
            _wait_for_other_traces()
            return self(*args, **kwargs)
        if isinstance(err, _HostCalls):
            self._plain, self._split = False, True
            return self(*args, **kwargs)
        if isinstance(err, _OptionsChanged):
            self._use_options(err.options)
            return self(*args, **kwargs)
        if self._options is not None and not nested and not trace_state_clean():
            return self._call_nested(args, kwargs)
        if isinstance(err, (RuntimeError, TypeError)):  # (jax's words for a deleted buffer)
            for variable in (*self._layout.written, *self._layout.read_only):
                variable._checked()  # (VariableError if its value was lost)
        if isinstance(err, RuntimeError) and "deleted" in str(err):
            self._check_not_donated(args, kwargs)
        if isinstance(err, (TypeError, OverflowError)):
            # jax rejects a non-array argument (or an int too big for it) in its own words;
            # name the argument's path
            signature_of(args, kwargs, self.static_argnums, self.static_argnames)
        if self._arg_shardings is not None and isinstance(err, ValueError):
            # jax checks argument shardings before tracing: name the argument instead
            sig = signature_of(args, kwargs, self.static_argnums, self.static_argnames)
            self._input_shardings(sig, args, kwargs)
        raise err

    def _check_not_donated(self, args: tuple, kwargs: dict) -> None:
        """Raise DonationError naming an argument that was donated to an earlier call."""
        sig = signature_of(args, kwargs, self.static_argnums, self.static_argnames)
        leaves = jax.tree_util.tree_leaves(
            dynamic_part(args, kwargs, self.static_argnums, self.static_argnames)
        )
        for path, leaf in zip(sig.paths, leaves):
            if isinstance(leaf, jax.Array) and leaf.is_deleted():
                raise DonationError(
                    f"{self.name}: {path} was donated to an earlier call (donate_argnums) and "
                    "its buffer is gone; pass a new array, or keep a copy (jnp.copy(x)) before "
                    "the call that donates it"
                ) from None

    def _call_checking_nans(self, args: tuple, kwargs: dict) -> Any:
        """A call with ``check_nans`` on (docs/errors.md, E11): the arguments and every
        variable the trace uses are copied to the host first; if a result or a new variable
        value holds NaN, the variables the call wrote get their old values back and the
        traced graph runs again on the reference interpreter to name the op that made it."""
        record, leaves = self._prepare(args, kwargs)  # (traces a new signature first)
        inputs = [np.array(x) for x in leaves]  # (copies: the call may donate the arguments)
        before = {name: np.array(v.value) for name, v in record.variables.items()}
        out = self._call(args, kwargs)
        written = {id(v) for v in record.plan.state_outputs}
        where = [f"result {i}" for i, x in enumerate(jax.tree_util.tree_leaves(out)) if has_nan(x)]
        where += [
            f"variable {name!r}"
            for name, v in record.variables.items()
            if id(v) in written and has_nan(v.value)
        ]
        if where:
            for name, v in record.variables.items():
                if id(v) in written:
                    v.set_value(before[name])
            raise nan_origin(self.name, record.traced, inputs, before, where[0])
        return out

    def _call_with_state(self, entry: Callable, args: tuple, kwargs: dict) -> Any:
        # Ctrl-C is held from taking the variables' locks to rebinding the new values: the
        # step's variables end all old or all new, and no lock is left taken (one that comes
        # while a lock is waited for is raised at once: runtime/variables.py, interrupts.py)
        held = hold_interrupts()
        try:
            layout = self._locked_layout()  # (list comprehensions: the per-step hot path)
            try:
                out, new, token = entry(
                    tuple([v._value for v in layout.written]),
                    tuple([v._value for v in layout.read_only]),
                    *args,
                    **kwargs,
                )
                for variable, value in zip(layout.written, new):
                    variable._rebind(value, self.name)  # the old array was donated to this step
            except jax.errors.JaxRuntimeError as err:
                # XLA failed the call after it took the donated buffers (out of memory found
                # while the call is dispatched, as on GPUs): those variables' values are lost
                lose_donated(layout.written, self.name, err)
                raise
            finally:
                layout.locks.release()
        finally:
            if held:
                release_interrupts()  # (a Ctrl-C that came meanwhile is raised here)
        bound_in_flight(out, token, layout.written)  # (it may wait: not holding the variables)
        return out

    def _locked_layout(self) -> _StateLayout:
        """The state layout, with its variables' locks taken (the caller releases them)."""
        while True:
            layout = self._layout
            layout.locks.acquire()
            if layout is self._layout:
                return layout
            layout.locks.release()  # it grew while we waited: take the new one's

    def _grow_layout(self, plan: Plan) -> None:
        """Make the state layout feed the variables ``plan`` uses; calls then take the
        stateful entry."""
        if self.mesh is not None:  # (before any is fed: a failure changes no layout)
            for variable in {*plan.state_inputs, *plan.state_outputs}:
                variable.place_on(self.mesh, self.name)
        layout = self._locked_layout()
        try:
            with _TRACING:
                if not layout.fits(plan):
                    self._layout = layout.grown(plan)
                self._stateful, self._plain = True, False
        finally:
            layout.locks.release()

    def _call_steps(self, args: tuple, kwargs: dict) -> Any:
        """A call run step by step (the function has host calls): variables are read before
        and rebound after all steps, so a failing step changes none of them. Over a mesh,
        the arguments, results and new variable values are placed as their shardings say
        (each cluster runs SPMD on the shardings of its inputs)."""
        record, leaves = self._prepare(args, kwargs)
        plan = record.plan
        host = next((s for s in plan.steps if isinstance(s, HostStep)), None)
        if host is not None and not trace_state_clean():
            self._refuse_under_jax(
                f"calls the host function {host.name}",
                "where its Python function would get no values",
                op="host_call",
                loc=host.where,
            )
        leaves = [
            jnp.asarray(x) if s is None else jax.device_put(x, s)
            for x, s in zip(leaves, record.in_shardings)
        ]
        if self.mesh is not None:
            for variable in plan.state_inputs:
                variable.place_on(self.mesh, self.name)
        # the variables are held through every step, host calls included: a host call that
        # calls a compiled function on them (in this thread) does not wait, another thread does
        with plan.variable_locks:
            state = {v: v._checked() for v in plan.state_inputs}
            outs, new_values = run_plan(plan, leaves, state)
            placed = {
                v: x if v.sharding is None else jax.device_put(x, v.sharding)
                for v, x in new_values.items()
            }
            held = hold_interrupts()  # (all rebound, or none: runtime/interrupts.py)
            try:
                for variable, value in placed.items():
                    variable._rebind(value, self.name)
            finally:
                if held:
                    release_interrupts()
        outs = [
            x if s is None else jax.device_put(x, s) for x, s in zip(outs, record.out_shardings)
        ]
        return jax.tree_util.tree_unflatten(record.out_treedef, outs)

    # -- tracing ---------------------------------------------------------------------------
    def _pure_body(self, *args: Any, **kwargs: Any) -> Any:
        record, leaves = self._traced_prepare(args, kwargs)
        if record.plan.stateful:  # (the pure entry feeds no variable)
            raise _StateChanged(record.plan)
        outs, _ = run_plan(record.plan, leaves)
        return jax.tree_util.tree_unflatten(record.out_treedef, outs)

    def _state_body(self, written: tuple, read_only: tuple, *args: Any, **kwargs: Any) -> Any:
        record, leaves = self._traced_prepare(args, kwargs)
        layout = self._layout  # the one the entry was called with: the caller holds its locks
        if not layout.fits(record.plan):
            raise _StateChanged(record.plan)
        values = dict(zip(layout.written, written))
        values.update(zip(layout.read_only, read_only))
        outs, new_values = run_plan(record.plan, leaves, values)
        # a variable this trace does not write passes through (donated, so still rebound)
        new_written = tuple(keep_sharding(v, new_values.get(v, values[v])) for v in layout.written)
        token = step_token(outs, new_written)
        return jax.tree_util.tree_unflatten(record.out_treedef, outs), new_written, token

    def _prepare(self, args: tuple, kwargs: dict, wait: bool = True) -> tuple["TraceRecord", list]:
        sig = signature_of(args, kwargs, self.static_argnums, self.static_argnames)
        record = self._record(sig, args, kwargs, wait)
        leaves = jax.tree_util.tree_leaves(
            dynamic_part(args, kwargs, self.static_argnums, self.static_argnames)
        )
        return record, leaves

    def _traced_prepare(self, args: tuple, kwargs: dict) -> tuple["TraceRecord", list]:
        """_prepare under the jitted entry, which cannot run host calls: a plan with them
        switches the function to running step by step. A graph that wants XLA compile options
        the entries lack has them made again with the options (once: a function keeps them)."""
        record, leaves = self._prepare(args, kwargs, wait=False)
        if record.plan.split:
            raise _HostCalls()
        if self._options is None:
            options = compiler_options(record.graph, self._backend)
            if options is not None:
                raise _OptionsChanged(options)
        return record, leaves

    def _use_options(self, options: dict) -> None:
        """Make the jitted entries again, compiling with ``options`` (_OptionsChanged)."""
        if self._options is None:
            self._pure_entry, self._state_entry = self._make_entries(options=options)
            self._options = options

    def _record(self, sig: Signature, args: tuple, kwargs: dict, wait: bool) -> TraceRecord:
        """The trace of ``sig``, traced now if no thread has traced it. Without ``wait`` (in
        a jax trace), raise _Busy rather than wait for another thread's trace."""
        record = self._traces.get(sig.key)
        if record is None:
            if not _TRACING.acquire(blocking=wait):
                raise _Busy()
            try:  # (threads missing on one signature at once trace it once)
                record = self._traces.get(sig.key)
                if record is None:
                    record = self._trace(sig, args, kwargs)
                    if self._last is not None:
                        self._log_retrace(sig)
                    self._traces[sig.key] = record
            finally:
                _TRACING.release()
        self._last = record
        return record

    def _log_retrace(self, sig: Signature) -> None:
        change = self._last.signature.describe_change(sig, self._params)
        logger.info("retracing %s (trace %d): %s", self.name, len(self._traces) + 1, change)
        if len(self._traces) > RETRACE_WARNING_AFTER:
            logger.warning(
                "%s has been traced %d times (a retrace compiles again); this "
                "time %s. Keep shapes and dtypes fixed between calls, or pass "
                "values that change as arrays rather than static arguments.",
                self.name,
                len(self._traces) + 1,
                change,
            )

    def _apply(self, treedef: Any, tensors: list, args: tuple, kwargs: dict) -> Any:
        """The user's function called on ``tensors`` (its dynamic argument leaves, arranged as
        ``treedef``) and its static arguments from ``args`` and ``kwargs``."""
        dyn_args, dyn_kwargs = jax.tree_util.tree_unflatten(treedef, tensors)
        call_args = [args[i] if i in self.static_argnums else a for i, a in enumerate(dyn_args)]
        call_kwargs = {**dyn_kwargs, **{k: kwargs[k] for k in self.static_argnames if k in kwargs}}
        return self.fn(*call_args, **call_kwargs)

    def _inline(self, args: tuple, kwargs: dict) -> Any:
        """A call while another function is traced: the function is traced into the caller's
        graph, as a jax.jit called inside another is inlined. Its static arguments are passed
        as they are and the others as Tensors (arrays and numbers become constants, as they
        would be arguments); the Variables it uses become the caller's state, its ops keep the
        user's lines, and the caller's passes, shardings and donation apply."""
        from .numpy_api import asarray

        if self.mesh is not None:
            raise ShardingError(
                f"{self.name} is compiled over a mesh and was called while another function is "
                "traced; inlining it would drop its shardings. Give the caller the mesh and "
                "shardings (fj.compile(..., mesh=..., in_shardings=...)) and call the function "
                "undecorated inside it"
            )
        dynamic = dynamic_part(args, kwargs, self.static_argnums, self.static_argnames)
        flat, treedef = jax.tree_util.tree_flatten_with_path(dynamic)
        tensors = []
        for path, leaf in flat:
            try:
                tensors.append(asarray(leaf))
            except TypeError:
                name = argument_name(path_name(path), self._params)
                raise TypeError(
                    f"{self.name}: {name} is a {type(leaf).__name__}; pass Tensors, arrays or "
                    "numbers (in tuples, lists, dicts), or mark it static"
                ) from None
        return self._apply(treedef, tensors, args, kwargs)

    def _call_fn(self, tensors: list, sig: Signature, args: tuple, kwargs: dict) -> tuple:
        """Call the user's function on ``tensors`` (its dynamic argument leaves) and its
        static arguments; returns the result leaves' values and the result's treedef."""
        from .numpy_api import asarray

        result = self._apply(sig.treedef, tensors, args, kwargs)
        flat, out_treedef = jax.tree_util.tree_flatten_with_path(result)
        outputs = []
        for path, leaf in flat:
            if not isinstance(leaf, Tensor):
                try:
                    leaf = asarray(leaf)
                except TypeError:
                    raise TypeError(
                        f"{self.name} returned a {type(leaf).__name__} at "
                        f"result{jax.tree_util.keystr(path)}; return Tensors, "
                        "arrays, numbers or None (in tuples, lists, dicts)"
                    ) from None
            outputs.append(current().capture(leaf, "result"))  # (a leaked Tensor: an error)
        return outputs, out_treedef

    def _call_eagerly(self, args: tuple, kwargs: dict) -> Any:
        """Eager mode: run the function op by op on concrete values (compiler/eager.py)."""
        sig = signature_of(args, kwargs, self.static_argnums, self.static_argnames)
        leaves = jax.tree_util.tree_leaves(
            dynamic_part(args, kwargs, self.static_argnums, self.static_argnames)
        )
        with entered(self.mesh), EagerContext(self.name) as ctx:
            tensors = [ctx.feed(np.asarray(x), t) for x, t in zip(leaves, sig.types, strict=True)]
            outputs, out_treedef = self._call_fn(tensors, sig, args, kwargs)
            results = [jnp.asarray(ctx.value_of(v)) for v in outputs]
        return jax.tree_util.tree_unflatten(out_treedef, results)

    def _trace(self, sig: Signature, args: tuple, kwargs: dict) -> TraceRecord:
        start = time.perf_counter()
        in_shardings = self._input_shardings(sig, args, kwargs)
        with entered(self.mesh), TraceContext(self.name) as ctx:
            tensors = [ctx.input(t) for t in sig.types]
            tensors = [t if s is None else constrain(t, s) for t, s in zip(tensors, in_shardings)]
            outputs, out_treedef = self._call_fn(tensors, sig, args, kwargs)
            out_shardings = self._output_shardings(out_treedef, outputs)
            ctx.graph.outputs = [
                v if s is None else constrain(Tensor(v, ctx), s)._value
                for v, s in zip(outputs, out_shardings)
            ]
        traced_at = time.perf_counter()
        pipeline = run_pipeline(
            ctx.graph,
            with_required(default_pipeline() if self.passes is None else self.passes),
            verify_each=config.verify_passes,
            disabled=config.disabled_passes,
            keep_text=config.dump_dir is not None,
            loc=user_location(),
        )
        if config.dump_dir is not None:
            dump_compilation(os.fspath(config.dump_dir), self.name, sig, ctx.graph, pipeline)
        plan = make_plan(pipeline.graph, sig, ctx.variables, self.mesh)
        logger.info(
            "traced %s in %.1f ms, passes in %.1f ms (%d ops)",
            self.name,
            (traced_at - start) * 1e3,
            (time.perf_counter() - traced_at) * 1e3,
            len(pipeline.graph.ops),
        )
        variables = {handle.name: variable for variable, handle in ctx.variables.items()}
        return TraceRecord(
            sig, ctx.graph, pipeline, plan, out_treedef, in_shardings, out_shardings, variables
        )

    # -- shardings -------------------------------------------------------------------------
    def _to_named(self, tree: Any, what: str) -> Any:
        """``tree`` (of fj.P, NamedSharding and None leaves) with each P made a NamedSharding
        on the function's mesh, after checking its axes."""
        if tree is None:
            return None

        def named(spec: Any) -> Any:
            if spec is None or not isinstance(spec, jax.sharding.PartitionSpec):
                return spec
            check_spec_axes(spec, self.mesh, f"{self.name}: {what}")
            return jax.sharding.NamedSharding(self.mesh.jax, spec)

        return jax.tree_util.tree_map(named, tree, is_leaf=is_spec)

    def _per_argument(self, in_shardings: Any) -> list | None:
        """The argument shardings, one tree per positional argument (a single spec is every
        argument's, as in jax.jit)."""
        if in_shardings is None:
            return None
        if is_spec(in_shardings):
            if not self._params or _has_var_positional(self.fn):
                raise ShardingError(
                    f"{self.name}: give in_shardings as a tuple, one per positional argument "
                    "(the function's arguments cannot be counted)"
                )
            count = len(self._params) - len(self.static_argnums)
            in_shardings = (in_shardings,) * count
        elif not isinstance(in_shardings, (tuple, list)):
            raise ShardingError(
                f"{self.name}: in_shardings must be a spec (fj.P) or a tuple of them, one per "
                f"positional argument, got {type(in_shardings).__name__}"
            )
        return list(self._to_named(tuple(in_shardings), "in_shardings"))

    def _globalize(self, args: tuple) -> tuple:
        """In a multi-process run: each numpy argument, the same value in every process, as a
        global jax.Array laid out as its sharding says (each process fills its own devices)."""
        shardings = self._arg_shardings or []
        replicated = jax.sharding.NamedSharding(self.mesh.jax, jax.sharding.PartitionSpec())
        out, j = list(args), 0
        for i, arg in enumerate(args):
            if i in self.static_argnums:
                continue
            leaves, treedef = jax.tree_util.tree_flatten(arg)
            specs = specs_per_leaf(shardings[j], arg, "in_shardings") if j < len(shardings) else []
            specs += [None] * (len(leaves) - len(specs))
            leaves = [
                x if isinstance(x, jax.Array) else place(np.asarray(x), s or replicated)
                for x, s in zip(leaves, specs)
            ]
            out[i], j = jax.tree_util.tree_unflatten(treedef, leaves), j + 1
        return tuple(out)

    def _input_shardings(self, sig: Signature, args: tuple, kwargs: dict) -> list:
        """Each dynamic argument leaf's NamedSharding (or None), checked against its shape."""
        if self._arg_shardings is None:
            return [None] * len(sig.types)
        dyn_args, dyn_kwargs = dynamic_part(args, kwargs, self.static_argnums, self.static_argnames)
        if jax.tree_util.tree_leaves(dyn_kwargs):
            raise ShardingError(
                f"{self.name} has in_shardings: pass its array arguments by position, not by "
                f"keyword ({', '.join(dyn_kwargs)})"
            )
        positional = [a for i, a in enumerate(dyn_args) if i not in self.static_argnums]
        if len(positional) != len(self._arg_shardings):
            raise ShardingError(
                f"{self.name}: in_shardings gives {len(self._arg_shardings)} entries but the "
                f"call has {len(positional)} positional array arguments; give one per argument"
            )
        specs = []
        for spec_tree, arg in zip(self._arg_shardings, positional):
            specs += specs_per_leaf(spec_tree, arg, f"{self.name}: in_shardings")
        return [
            None
            if s is None
            else sharding_for(
                s,
                self.mesh,
                t.shape,
                f"{self.name}: in_shardings for argument {argument_name(path, self._params)}",
            )
            for s, t, path in zip(specs, sig.types, sig.paths, strict=True)
        ]

    def _output_shardings(self, out_treedef: Any, outputs: list) -> list:
        """Each result leaf's NamedSharding (or None), checked against its shape."""
        if self._out_shardings is None:
            return [None] * len(outputs)
        result = jax.tree_util.tree_unflatten(out_treedef, range(len(outputs)))
        specs = specs_per_leaf(self._out_shardings, result, f"{self.name}: out_shardings")
        paths = [
            jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(result)[0]
        ]
        return [
            None
            if s is None
            else sharding_for(
                s, self.mesh, v.type.shape, f"{self.name}: out_shardings for result{path}"
            )
            for s, v, path in zip(specs, outputs, paths, strict=True)
        ]

    # -- introspection ---------------------------------------------------------------------
    def lower(self, *args: Any, **kwargs: Any) -> "Lowered":
        sig = signature_of(args, kwargs, self.static_argnums, self.static_argnames)
        try:  # traces through the body if needed
            if not self._stateful:
                jax_lowered = self._pure_entry.lower(*args, **kwargs)
            else:
                layout = self._locked_layout()
                try:
                    states = (
                        tuple(v.value for v in layout.written),
                        tuple(v.value for v in layout.read_only),
                    )
                    jax_lowered = self._state_entry.lower(*states, *args, **kwargs)
                finally:
                    layout.locks.release()
        except _StateChanged as changed:
            self._grow_layout(changed.plan)
            return self.lower(*args, **kwargs)
        except _Busy:
            _wait_for_other_traces()
            return self.lower(*args, **kwargs)
        except _HostCalls:
            jax_lowered = None  # compiled cluster by cluster
        except _OptionsChanged as changed:
            self._use_options(changed.options)
            return self.lower(*args, **kwargs)
        return Lowered(self._traces[sig.key], jax_lowered, self)

    def cache_info(self) -> CacheInfo:
        misses = len(self._traces)
        return CacheInfo(hits=max(self._calls - misses, 0), misses=misses, traces=misses)

    def __repr__(self) -> str:
        return f"<flowjit compiled function {self.name}>"


def _has_var_positional(fn: Callable) -> bool:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)


def _parameter_names(fn: Callable) -> tuple[str, ...]:
    """The names of ``fn``'s positional parameters (for messages); () if it has none we can
    read."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in parameters if p.kind in kinds)


def compile(
    fn: Callable | None = None,
    *,
    static_argnums: Sequence[int] = (),  # noqa: A001
    static_argnames: Sequence[str] = (),
    donate_argnums: Sequence[int] = (),
    backend: str | None = None,
    mesh: Any = None,
    in_shardings: Any = None,
    out_shardings: Any = None,
    name: str | None = None,
    passes: Sequence[Callable] | None = None,
) -> Any:
    """Compile ``fn`` with flowjit (API.md, section 1). Usable as ``@fj.compile`` or
    ``@fj.compile(static_argnums=...)``. ``passes`` replaces ``fj.passes.default_pipeline()``
    (the passes lowering needs are added at its end if missing)."""
    if fn is None:
        return functools.partial(
            compile,
            static_argnums=static_argnums,
            static_argnames=static_argnames,
            donate_argnums=donate_argnums,
            backend=backend,
            name=name,
            passes=passes,
            mesh=mesh,
            in_shardings=in_shardings,
            out_shardings=out_shardings,
        )
    return CompiledFunction(
        fn,
        static_argnums=static_argnums,
        static_argnames=static_argnames,
        donate_argnums=donate_argnums,
        backend=backend,
        name=name,
        passes=passes,
        mesh=mesh,
        in_shardings=in_shardings,
        out_shardings=out_shardings,
    )
