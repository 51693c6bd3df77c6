"""What ``CompiledFunction.lower`` returns: the trace of one signature, its IR at each
stage, its StableHLO and its compiled executable (API.md, section 1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from flowjit.backends.reference import run_graph
from flowjit.backends.xla import cluster_stablehlo
from flowjit.backends.xla.jaxshim import compilation_cache_include_metadata_in_key
from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import LoweringError, print_graph
from flowjit.ir.ops import host as H

from .signature import dynamic_part

if TYPE_CHECKING:
    from .api import CompiledFunction
    from .trace_cache import TraceRecord


class Lowered:
    """A traced, optimized and lowered function; nothing has run."""

    def __init__(self, record: TraceRecord, jax_lowered: Any, function: CompiledFunction):
        self._record, self._jax, self._function = record, jax_lowered, function

    def ir(self, stage: str = "optimized") -> str:
        if stage == "traced":
            return print_graph(self._record.traced)
        if stage == "optimized":
            return print_graph(self._record.graph)
        raise ValueError(f"stage must be 'traced' or 'optimized', got {stage!r}")

    def passes(self) -> list:
        """What each pass did: its name, seconds, whether it changed the graph and the op
        counts before and after (counting ops in loop bodies and branches)."""
        return list(self._record.pipeline.records)

    def stablehlo(self) -> str:
        """The StableHLO of every compiled cluster."""
        graph = self._record.graph
        clusters = [op.attrs["body"] for op in graph.ops if op.opdef is H.cluster]
        return "\n".join(cluster_stablehlo(g) for g in clusters or [graph])

    def compile(self) -> "Compiled":
        if self._jax is None:
            raise LoweringError(
                f"{self._function.name} has host calls: it runs as several compiled clusters "
                "with the host calls between them; call the function itself",
                op="compile",
            )
        return Compiled(self._jax.compile(), self._jax, self._function)

    def run_reference(self, *args: Any, **kwargs: Any) -> tuple[Any, dict]:
        """Run the optimized graph on the reference (numpy) interpreter, with the variables'
        current values, writing nothing back: returns the results (in the function's
        structure) and {variable: new value} for each variable the function writes."""
        f, plan = self._function, self._record.plan
        leaves = jax.tree_util.tree_leaves(
            dynamic_part(args, kwargs, f.static_argnums, f.static_argnames)
        )
        inputs = [np.asarray(x, dt) for x, dt in zip(leaves, plan.input_dtypes, strict=True)]
        inputs += [np.asarray(v._ready()) for v in plan.state_inputs]
        outs = run_graph(self._record.graph, inputs)
        n = len(outs) - len(plan.state_outputs)
        results = jax.tree_util.tree_unflatten(self._record.out_treedef, outs[:n])
        return results, dict(zip(plan.state_outputs, outs[n:]))


class Compiled:
    """An XLA executable for one signature. Call it with the same arguments as the function
    (static ones included; they must equal the values it was lowered with); it reads and
    updates the function's variables like a call of the function does."""

    def __init__(self, jax_compiled: Any, jax_lowered: Any, function: CompiledFunction):
        self._jax, self._lowered, self._function = jax_compiled, jax_lowered, function
        self._stateful = function.takes_variables

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        f = self._function
        args = tuple(a for i, a in enumerate(args) if i not in f.static_argnums)
        kwargs = {k: v for k, v in kwargs.items() if k not in f.static_argnames}
        if self._stateful:
            return f.call_with_state(self._jax, args, kwargs)
        return self._jax(*args, **kwargs)

    def hlo(self) -> str:
        """XLA's optimized HLO text; its metadata names this program's source lines (the
        executable that runs may have come from the persistent cache: see ``optimized_hlo``)."""
        return optimized_hlo(self._lowered)

    def cost_analysis(self) -> Any:
        return self._jax.cost_analysis()

    def memory_analysis(self) -> Any:
        return self._jax.memory_analysis()


def optimized_hlo(jax_lowered: Any, options: dict[str, str] | None = None) -> str:
    """XLA's optimized HLO text of ``jax_lowered`` (a jax ``Lowered``, compiled with compiler
    ``options``), its metadata naming the source lines of this lowering.

    jax keys its persistent compilation cache by the program without its locations: an
    executable it serves carries the metadata, source lines included, of whichever program
    compiled it first, though that may be another script or an older version of this one. So
    the text comes from a compile of its own, keyed with the locations (jax's
    ``jax_compilation_cache_include_metadata_in_key``, for this thread and this compile only):
    a cache serves it only to a program with the same lines. Its options differ from the run's
    by one that only names modules to dump (none is named so), so that jax's in-process cache
    does not hand back the run's executable either."""
    display = {**(options or {}), "xla_dump_hlo_module_re": "flowjit-hlo-text"}
    with compilation_cache_include_metadata_in_key(True):
        return jax_lowered.compile(display).as_text()
