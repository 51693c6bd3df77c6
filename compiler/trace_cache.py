"""A compiled function's traces: the user's function traced once per flowjit signature, run
through the passes and planned (``TraceCache``); and the lock that makes one trace at a time
in the process (``TRACING``)."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import Graph, ShardingError, TracingError
from flowjit.passes import PipelineResult, default_pipeline, run_pipeline, with_required
from flowjit.runtime import Plan, config
from flowjit.runtime.sharding import entered

from .boundary import BoundaryShardings
from .dump import dump_compilation
from .function_args import FunctionArgs
from .location import location_in, user_location
from .planning import make_plan
from .restarts import Busy
from .sharding import constrain
from .signature import Signature, argument_name, dynamic_part, path_name
from .tensor import Tensor
from .trace import TraceContext, current

# What jax says when a jax function is given a Tensor (tests/compiler/test_from_jax.py checks it)
_JAX_GOT_A_TENSOR = "of type <class 'flowjit.compiler.tensor.Tensor'> is not a valid JAX type"

logger = logging.getLogger("flowjit")
RETRACE_WARNING_AFTER = 5

# One trace at a time in the process: the stacks of trace contexts (compiler/trace.py) and of
# entered meshes (runtime/sharding.py) are the process's. Reentrant, for a trace that calls a
# compiled function. Also guards each function's trace cache and state layout. Held only for
# flowjit's own work on a signature it has not seen (XLA compiles outside it), so it is never
# in a call's way once every signature is traced. Inside a jax trace a thread only tries it
# (see restarts.Busy).
TRACING = threading.RLock()


def wait_for_other_traces() -> None:
    """Out of jax's trace (after Busy): wait until no other thread is tracing."""
    TRACING.acquire()
    TRACING.release()


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


class TraceCache:
    """The traces of the user's function ``fn``, one per flowjit signature; each is made once
    (under TRACING), even when threads miss on it at once."""

    def __init__(
        self,
        fn: Callable,
        spec: FunctionArgs,
        passes: Sequence[Callable] | None,
        boundary: BoundaryShardings,
    ):
        self.fn, self.spec, self.passes = fn, spec, passes
        self.name, self.params = spec.name, spec.params
        self.static_argnums, self.static_argnames = spec.static_argnums, spec.static_argnames
        self.boundary, self.mesh = boundary, boundary.mesh
        self.traces: dict[tuple, TraceRecord] = {}
        self._last: TraceRecord | None = None

    def __len__(self) -> int:
        return len(self.traces)

    def prepare(self, args: tuple, kwargs: dict, wait: bool = True) -> tuple[TraceRecord, list]:
        """The trace of the call's signature (traced now if new) and its dynamic leaves."""
        record = self.record(self.spec.signature(args, kwargs), args, kwargs, wait)
        return record, self.spec.dynamic_leaves(args, kwargs)

    def record(self, sig: Signature, args: tuple, kwargs: dict, wait: bool) -> TraceRecord:
        """The trace of ``sig``, traced now if no thread has traced it. Without ``wait`` (in
        a jax trace), raise Busy rather than wait for another thread's trace."""
        record = self.traces.get(sig.key)
        if record is None:
            if not TRACING.acquire(blocking=wait):
                raise Busy()
            try:  # (threads missing on one signature at once trace it once)
                record = self.traces.get(sig.key)
                if record is None:
                    record = self._trace(sig, args, kwargs)
                    if self._last is not None:
                        self._log_retrace(sig)
                    self.traces[sig.key] = record
            finally:
                TRACING.release()
        self._last = record
        return record

    def _log_retrace(self, sig: Signature) -> None:
        change = self._last.signature.describe_change(sig, self.params)
        logger.info("retracing %s (trace %d): %s", self.name, len(self.traces) + 1, change)
        if len(self.traces) > RETRACE_WARNING_AFTER:
            logger.warning(
                "%s has been traced %d times (a retrace compiles again); this "
                "time %s. Keep shapes and dtypes fixed between calls, or pass "
                "values that change as arrays rather than static arguments.",
                self.name,
                len(self.traces) + 1,
                change,
            )

    def _apply(self, treedef: Any, tensors: list, args: tuple, kwargs: dict) -> Any:
        """The user's function called on ``tensors`` (its dynamic argument leaves, arranged as
        ``treedef``) and its static arguments from ``args`` and ``kwargs``."""
        dyn_args, dyn_kwargs = jax.tree_util.tree_unflatten(treedef, tensors)
        call_args = [args[i] if i in self.static_argnums else a for i, a in enumerate(dyn_args)]
        call_kwargs = {**dyn_kwargs, **{k: kwargs[k] for k in self.static_argnames if k in kwargs}}
        # (jax code that builds constants, jnp.tril(jnp.ones((4, 4))), computes them now: the
        # trace runs under jax.jit's, which would make them jax tracers a Tensor cannot use)
        try:
            with jax.ensure_compile_time_eval():
                return self.fn(*call_args, **call_kwargs)
        except TypeError as err:
            if _JAX_GOT_A_TENSOR in str(err):  # (jnp.tanh(t): jax cannot trace a Tensor)
                raise TracingError(
                    "a jax function was called on a Tensor inside a compiled function, and jax "
                    "cannot trace a Tensor. Use the flowjit.numpy or fj.nn function of the same "
                    "name (flowjit.numpy has all of jax.numpy), or wrap the jax code in "
                    "fj.from_jax(fn) and call that on Tensors",
                    loc=location_in(err.__traceback__),
                ) from err
            raise

    def inline(self, args: tuple, kwargs: dict) -> Any:
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
                name = argument_name(path_name(path), self.params)
                raise TypeError(
                    f"{self.name}: {name} is a {type(leaf).__name__}; pass Tensors, arrays or "
                    "numbers (in tuples, lists, dicts), or mark it static"
                ) from None
        return self._apply(treedef, tensors, args, kwargs)

    def call_fn(self, tensors: list, sig: Signature, args: tuple, kwargs: dict) -> tuple:
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

    def _trace(self, sig: Signature, args: tuple, kwargs: dict) -> TraceRecord:
        start = time.perf_counter()
        in_shardings = self.boundary.input_shardings(sig, args, kwargs)
        with entered(self.mesh), TraceContext(self.name) as ctx:
            tensors = [ctx.input(t) for t in sig.types]
            tensors = [t if s is None else constrain(t, s) for t, s in zip(tensors, in_shardings)]
            outputs, out_treedef = self.call_fn(tensors, sig, args, kwargs)
            out_shardings = self.boundary.output_shardings(out_treedef, outputs)
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
