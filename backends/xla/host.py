"""StableHLO lowerings of ir/ops/host.py: a ``cluster`` is emitted inline (its body's ops), a
``transfer`` is the value itself (one program runs on one device), and a ``host_call`` left
inside a loop body becomes a host callback in the compiled program (jax's python-callback
custom call, with side effects, ordered by a token through the graph it is in).

A callback that raises cannot carry its exception through XLA: XLA reports a generic error
(jaxlib's text holds the traceback of what the callback raised). So the callback records what to
raise instead (a HostCallError naming the user's line, or a KeyboardInterrupt as it is) under a
fresh number, and raises an exception whose message holds that number; the runtime takes the
record back with ``take_failure`` on the XLA error the step got (runtime/steps.py).

Why the number travels in the error: several threads may run steps at once, and the callback
runs on whichever thread XLA runs the program on (the dispatching thread, or one of XLA's own),
so neither a process-wide "last failure" nor anything keyed by the running thread says which
step failed; nor does jax hand the callback anything naming its execution. The error XLA reports
is the one thing that reaches exactly the step whose program failed, and it carries the
callback's exception text. (A record whose error never reaches ``take_failure``, a program run
under a jax transformation, say, is dropped after ``_KEPT_FAILURES`` newer ones.)"""

from __future__ import annotations

import dataclasses
import itertools
import re
import threading
from typing import Sequence

import numpy as np

from flowjit.ir import FlowjitError, HostCallError, Op
from flowjit.ir.ops import host as H

from .jaxshim import ShapedArray, emit_python_callback, hlo, ir
from .lowering import LoweringContext, emit_graph, lowers

_FAILURES: dict[int, BaseException] = {}  # number -> what the step that failed raises
_KEPT_FAILURES = 256
_failures_lock = threading.Lock()
_failure_numbers = itertools.count()
_MARKER = "flowjit host callback failure #{}"
_MARKER_RE = re.compile(r"flowjit host callback failure #(\d+)")


class _CallbackFailed(Exception):
    """What a callback raises into XLA: its message names the recorded failure."""


def _record_failure(failure: BaseException) -> _CallbackFailed:
    """Keep ``failure`` for the step whose program is running; returns the exception to raise
    into XLA in its place."""
    number = next(_failure_numbers)
    with _failures_lock:
        _FAILURES[number] = failure
        while len(_FAILURES) > _KEPT_FAILURES:
            del _FAILURES[next(iter(_FAILURES))]  # (the oldest: dicts keep insertion order)
    return _CallbackFailed(f"{failure!r} ({_MARKER.format(number)})")


def take_failure(error: BaseException) -> BaseException | None:
    """What to raise instead of ``error``, the error a program got from XLA: the failure its
    host callback recorded, taken (None: no callback of it failed)."""
    # (the text may name earlier failures too, in exceptions chained before this one: a host
    # call running a compiled function whose own host call failed; the last is this one's)
    with _failures_lock:
        for number in reversed(_MARKER_RE.findall(str(error))):
            if int(number) in _FAILURES:
                return _FAILURES.pop(int(number))
    return None


@lowers(H.cluster)
def _cluster_lower(ctx: LoweringContext, op: Op, *args: ir.Value) -> Sequence[ir.Value]:
    return emit_graph(ctx, op.attrs["body"], args)


@lowers(H.transfer)
def _transfer_lower(ctx: LoweringContext, op: Op, x: ir.Value) -> ir.Value:
    return x  # within one compiled program a value is where the program runs


@lowers(H.host_call)
def _host_call_lower(ctx: LoweringContext, op: Op, *args: ir.Value) -> Sequence[ir.Value]:
    fn = op.attrs["callback"]
    name, out_types = op.attrs["name"], op.attrs["result_types"]

    def callback(*arrays):
        try:
            results = fn(*(np.asarray(a) for a in arrays))
        except (FlowjitError, KeyboardInterrupt) as err:
            # (a result that does not fit, say, and Ctrl-C: the step raises them as they are)
            raise _record_failure(err) from err
        except Exception as err:
            failure = HostCallError(
                f"the function {name} raised {type(err).__name__}: {err}",
                op="host_call",
                loc=op.loc,
            )
            failure.__cause__ = err
            raise _record_failure(failure) from err
        return tuple(np.asarray(r, t.dtype).reshape(t.shape) for r, t in zip(results, out_types))

    avals_in = [ShapedArray(v.type.shape, v.type.dtype) for v in op.inputs]
    avals_out = [ShapedArray(t.shape, t.dtype) for t in out_types]
    # jax's context, describing this call's operands and results (the custom call reads them)
    jax_ctx = dataclasses.replace(ctx.jax_rule_context(op), avals_in=avals_in, avals_out=avals_out)
    if ctx.token is None:
        ctx.token = hlo.create_token()
    results, ctx.token, _ = emit_python_callback(
        jax_ctx, callback, ctx.token, list(args), avals_in, avals_out, has_side_effect=True
    )
    return list(results)
