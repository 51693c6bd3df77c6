"""``fj.compile``: trace once per signature, optimize, lower, compile and cache.

The entry point is ``jax.jit`` over ``_body`` (runtime/plan.py): jax's C++ dispatch finds the
executable for a known signature with no Python work of ours. On a signature jax has not seen,
``_body`` runs with tracers: it looks up (or makes) flowjit's trace for the signature, then binds
the cluster primitive. flowjit's own cache, keyed on flowjit signatures, decides when the user
function is traced again.

``CompiledFunction`` coordinates; its parts live beside it: the traces per signature
(trace_cache.py), the variables its stateful entry takes (layout.py), the shardings at its
jax.jit boundary (boundary.py), its arguments (function_args.py), calls run step by step
(stepwise.py), the debugging modes' calls (debug_calls.py), the errors that name what a failed
call did wrong (call_errors.py) and the decisions its jitted body makes inside jax's trace
(restarts.py).

Threads may call compiled functions at once. A pure call takes no lock of ours (jax's dispatch
is thread safe). A call with variables holds their locks (runtime/variables.py) from reading
their values to rebinding the new ones, so steps over common variables, of one function or of
several, run one at a time. Tracing, the trace caches and the state layouts are guarded by
``TRACING`` (trace_cache.py): a thread holding it never waits for a variable's lock, and a
thread inside jax's trace of an entry never waits for it (restarts.Busy), so these locks and
jax's own waits for a trace in another thread form no cycle (for host calls that run compiled
functions, see stepwise.call_steps)."""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from flowjit.backends.xla import compiler_options
from flowjit.backends.xla.jaxshim import jax, trace_state_clean
from flowjit.ir import ArgumentError, FlowjitError
from flowjit.passes import resolve_passes
from flowjit.runtime import bound_in_flight, config, make_entry, run_plan, step_token
from flowjit.runtime.interrupts import hold_interrupts, release_interrupts
from flowjit.runtime.profile import listen_for_compiles
from flowjit.runtime.variables import lose_donated, rebind_all

from .boundary import BoundaryShardings
from .call_errors import name_failure
from .debug_calls import call_checking_nans, call_eagerly
from .function_args import FunctionArgs
from .layout import LayoutCell
from .location import check_argnums, positional_parameters, user_location
from .lowered import Lowered
from .profiling import note_call
from .restarts import Busy, HostCalls, OptionsChanged, Restart, StateChanged
from .sharding import keep_sharding
from .stepwise import call_steps, refuse_under_jax
from .trace import tracing
from .trace_cache import TraceCache, TraceRecord, wait_for_other_traces


class Route(enum.Enum):
    """The path a call of a compiled function takes (besides the debugging modes). It only
    moves forward: PURE -> STATE when a trace uses variables, PURE or STATE -> STEPS when one
    has host calls. Once on STEPS, a trace that uses variables still grows the state layout,
    which lower() feeds to the stateful entry (calls run step by step without it)."""

    PURE = "pure"  # the jitted pure entry, fed no variables
    STATE = "state"  # the jitted stateful entry, fed the state layout's variables
    STEPS = "steps"  # step by step, outside jax.jit (stepwise.py)


_PURE, _STATE, _STEPS = Route.PURE, Route.STATE, Route.STEPS


@dataclass(frozen=True)
class CacheInfo:
    hits: int
    misses: int
    traces: int


def _program_name(name: str) -> str:
    """The name of a function's XLA program: its own, in letters, digits and underscores
    (XLA's module is ``jit_<name>``: profiles and HLO dumps name it so)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)[:100] or "fn"


class CompiledFunction:
    """What ``@fj.compile`` returns: call it like the function it wraps.

    Variables the function uses are fed to the jitted entry as two tuples ahead of the user's
    arguments: the values of the variables any trace writes (donated: updated in place) and of
    those only read. A function that uses no variable has an entry without them."""

    # The attributes a call reads are slots: a slot reads as fast whatever the instance dict
    # is like (update_wrapper makes the dict, and reads from it are slower)
    __slots__ = (
        "_calls", "_plain", "_stateful", "_pure_entry", "_state_entry", "_nested_entries",
        "_route",
        "_layout", "_boundary", "__dict__", "__weakref__",
    )  # fmt: skip

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
        self.name = name or getattr(fn, "__name__", "fn")
        self.program = f"jit_{_program_name(self.name)}"  # (XLA's module: profiles name it)
        listen_for_compiles()  # (profiles give each program's compile time)
        self._args = FunctionArgs.of(fn, self.name, static_argnums, static_argnames)
        self.static_argnums, self.static_argnames = self._args.static
        donate_argnums = check_argnums(
            donate_argnums, "donate_argnums", self.name, positional_parameters(fn)
        )
        self._boundary = BoundaryShardings(fn, self._args, mesh, in_shardings, out_shardings)
        self.mesh = self._boundary.mesh
        self._traces = TraceCache(fn, self._args, self.passes, self._boundary)
        # (+= on an int attribute is atomic under the GIL: no thread switch inside it)
        self._calls = 0
        self._layout = LayoutCell()  # the variables the traces use
        self._route = _PURE
        # whether a call is just the jitted pure entry's: the route is PURE and there are no
        # processes to handle first (kept with _route by _take: the hot path reads one flag)
        self._plain = not self._boundary.across_processes
        # whether a call goes straight to call_with_state when jax traces nothing:
        # the route is STATE and there are no processes to handle first
        self._stateful = False
        self._backend = backend
        self._make_entries = functools.partial(self._entries, backend, donate_argnums)
        # XLA compile options the entries were made with (OptionsChanged); calls made while
        # jax traces another function go through entries without (_call_nested)
        self._options: dict | None = None
        self._pure_entry, self._state_entry = self._make_entries(options=None)
        self._nested_entries: tuple[Callable, Callable] | None = None
        functools.update_wrapper(self, fn)

    def _entries(
        self, backend: str | None, donate_argnums: tuple, *, options: dict | None
    ) -> tuple[Callable, Callable]:
        """The jitted (pure, stateful) entries, compiling with XLA ``options``."""
        entry = functools.partial(
            make_entry,
            static_argnames=self.static_argnames,
            backend=backend,
            options=options,
            name=self.program[len("jit_") :],
        )
        args = self._boundary.arg_shardings
        args = None if args is None else tuple(args)
        out = self._boundary.out_shardings
        pure = entry(
            self._pure_body,
            static_argnums=self.static_argnums,
            donate_argnums=donate_argnums,
            in_shardings=args,
            out_shardings=out,
        )
        # variables are placed before they are fed (runtime/variables.py): jax takes their
        # shardings from the arrays (None), and keep_sharding holds the new values to them
        state = entry(
            self._state_body,
            static_argnums=tuple(i + 2 for i in self.static_argnums),
            donate_argnums=(0,) + tuple(i + 2 for i in donate_argnums),
            in_shardings=None if args is None else (None, None, *args),
            out_shardings=None if out is None else (out, None, None),
        )
        return pure, state

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # (no lambda here: one would make args and kwargs closure cells, slowing every call)
        if tracing():  # called while another function is traced (in this thread)
            return self._traces.inline(args, kwargs)
        if config.call_hooks:  # (debugging modes, docs/debugging.md; a profile recording)
            if config.profiling or config.profile_dir is not None:
                note_call(self, args, kwargs)
            if config.eager:
                return call_eagerly(self._traces, args, kwargs)
            if config.check_nans:
                return call_checking_nans(self._traces, self._call, args, kwargs)
        return self._call(args, kwargs)

    def _call(self, args: tuple, kwargs: dict) -> Any:
        self._calls += 1
        try:
            if self._plain:  # (the per-call hot path: jax's C++ dispatch does the rest)
                return self._pure_entry(*args, **kwargs)
            if self._stateful and trace_state_clean():  # (a training step's hot path)
                return self.call_with_state(self._state_entry, args, kwargs)
            return self._dispatch(args, kwargs)
        except Exception as err:
            self._calls -= 1  # only calls that ran count as hits or misses
            return self._recover(err, args, kwargs)

    def _dispatch(self, args: tuple, kwargs: dict, nested: bool = False) -> Any:
        written = self._layout.current.written
        if written and not trace_state_clean():
            refuse_under_jax(
                self.name,
                f"writes the Variables {', '.join(repr(v.name) for v in written)}",
                "which cannot update them",
                ", or compile the whole step with fj.compile (fj.grad and fj.value_and_grad "
                "take gradients inside it)",
            )
        if self._boundary.across_processes:
            args = self._boundary.globalize(args)
        route = self._route
        if route is _STEPS:
            record, leaves = self._traces.prepare(args, kwargs)
            return call_steps(self.name, self.mesh, record, leaves)
        if route is _STATE:
            state = self._nested_entries[1] if nested else self._state_entry
            return self.call_with_state(state, args, kwargs)
        return (self._nested_entries[0] if nested else self._pure_entry)(*args, **kwargs)

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
        (StateChanged) or host calls (HostCalls), if another thread was tracing (Busy), or
        if jax refused the compile options of a jit called inside its trace of another; else
        raise it, naming the argument."""
        if isinstance(err, Restart):
            self._act_on(err)
            return self(*args, **kwargs)
        if self._options is not None and not nested and not trace_state_clean():
            return self._call_nested(args, kwargs)
        name_failure(err, args, kwargs, self._args, self._boundary, self._layout.current)
        raise err

    def call_with_state(self, entry: Callable, args: tuple, kwargs: dict) -> Any:
        """Call ``entry`` (a stateful entry, or an executable compiled from one: Compiled) on
        the state layout's values and ``args`` and ``kwargs`` (as ``entry`` takes them), and
        rebind the variables it writes. Not part of the user-facing API."""
        # Ctrl-C is held from taking the variables' locks to rebinding the new values: the
        # step's variables end all old or all new, and no lock is left taken (one that comes
        # while a lock is waited for is raised at once: runtime/variables.py, interrupts.py)
        held = hold_interrupts()
        try:
            layout = self._layout.locked()  # (list comprehensions: the per-step hot path)
            try:
                out, new, token = entry(
                    tuple([v._value for v in layout.written]),
                    tuple([v._value for v in layout.read_only]),
                    *args,
                    **kwargs,
                )
                rebind_all(layout.written, new, self.name)  # (their old arrays were donated)
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

    def _act_on(self, restart: Restart) -> None:
        """Do what a decision made inside jax's trace asks (restarts.py); the caller then
        calls again."""
        if isinstance(restart, StateChanged):
            self._grow_layout(restart.plan)
        elif isinstance(restart, Busy):
            wait_for_other_traces()
        elif isinstance(restart, HostCalls):
            self._take(_STEPS)
        elif isinstance(restart, OptionsChanged):
            self._use_options(restart.options)

    def _grow_layout(self, plan: Any) -> None:
        """Make the state layout feed the variables ``plan`` uses; calls then take the
        stateful entry."""
        self._layout.grow(plan, self.mesh, self.name)
        if self._route is _PURE:
            self._take(_STATE)

    def _take(self, route: Route) -> None:
        """Calls take ``route`` from now on."""
        self._route = route
        self._plain = False
        self._stateful = route is _STATE and not self._boundary.across_processes

    def argument_shardings(self) -> list | None:
        """The shardings of the positional arguments (a tree of NamedShardings per argument,
        from ``in_shardings``), or None where none were given (for fj.data.prefetch)."""
        return self._boundary.arg_shardings

    @property
    def takes_variables(self) -> bool:
        """Whether the stateful entry is the one to lower and compile (a trace has used
        variables). Not part of the user-facing API (for Compiled)."""
        layout = self._layout.current
        return bool(layout.written or layout.read_only)

    # -- the jitted entries' bodies (run while jax traces) ----------------------------------
    def _pure_body(self, *args: Any, **kwargs: Any) -> Any:
        record, leaves = self._traced_prepare(args, kwargs)
        if record.plan.stateful:  # (the pure entry feeds no variable)
            raise StateChanged(record.plan)
        outs, _ = run_plan(record.plan, leaves)
        return jax.tree_util.tree_unflatten(record.out_treedef, outs)

    def _state_body(self, written: tuple, read_only: tuple, *args: Any, **kwargs: Any) -> Any:
        record, leaves = self._traced_prepare(args, kwargs)
        layout = self._layout.current  # the one the entry was called with: its locks are held
        if not layout.fits(record.plan):
            raise StateChanged(record.plan)
        values = dict(zip(layout.written, written))
        values.update(zip(layout.read_only, read_only))
        outs, new_values = run_plan(record.plan, leaves, values)
        # a variable this trace does not write passes through (donated, so still rebound)
        new_written = tuple(keep_sharding(v, new_values.get(v, values[v])) for v in layout.written)
        token = step_token(outs, new_written)
        return jax.tree_util.tree_unflatten(record.out_treedef, outs), new_written, token

    def _traced_prepare(self, args: tuple, kwargs: dict) -> tuple[TraceRecord, list]:
        """The trace and leaves under the jitted entry, which cannot run host calls: a plan
        with them switches the function to running step by step. A graph that wants XLA
        compile options the entries lack has them made again with the options (once: a
        function keeps them). Each decision leaves jax's trace as an exception (restarts.py)."""
        record, leaves = self._traces.prepare(args, kwargs, wait=False)
        if record.plan.split:
            raise HostCalls()
        if self._options is None:
            options = compiler_options(record.graph, self._backend)
            if options is not None:
                raise OptionsChanged(options)
        return record, leaves

    def _use_options(self, options: dict) -> None:
        """Make the jitted entries again, compiling with ``options`` (OptionsChanged)."""
        if self._options is None:
            self._pure_entry, self._state_entry = self._make_entries(options=options)
            self._options = options

    # -- introspection ---------------------------------------------------------------------
    def lower(self, *args: Any, **kwargs: Any) -> "Lowered":
        sig = self._args.signature(args, kwargs)
        try:  # traces through the body if needed
            if not self.takes_variables:
                jax_lowered = self._pure_entry.lower(*args, **kwargs)
            else:
                layout = self._layout.locked()
                try:
                    states = (
                        tuple(v.value for v in layout.written),
                        tuple(v.value for v in layout.read_only),
                    )
                    jax_lowered = self._state_entry.lower(*states, *args, **kwargs)
                finally:
                    layout.locks.release()
        except HostCalls:  # (calls take their route as before: lowering changes none)
            jax_lowered = None  # compiled cluster by cluster
        except Restart as restart:
            self._act_on(restart)
            return self.lower(*args, **kwargs)
        return Lowered(self._traces.traces[sig.key], jax_lowered, self)

    def cache_info(self) -> CacheInfo:
        misses = len(self._traces)
        return CacheInfo(hits=max(self._calls - misses, 0), misses=misses, traces=misses)

    def __repr__(self) -> str:
        return f"<flowjit compiled function {self.name}>"


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
