"""StableHLO lowerings of ir/ops/host.py: a ``cluster`` is emitted inline (its body's ops), a
``transfer`` is the value itself (one program runs on one device), and a ``host_call`` left
inside a loop body becomes a host callback in the compiled program (jax's python-callback
custom call, with side effects, ordered by a token through the graph it is in).

A callback that raises cannot carry its exception through XLA: it records a HostCallError
naming the user's line in ``FAILED_CALLBACKS``, which the runtime raises instead of XLA's."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from flowjit.ir import FlowjitError, HostCallError, Op
from flowjit.ir.ops import host as H

from .jaxshim import ShapedArray, emit_python_callback, hlo, ir
from .lowering import emit_graph, lowering_context, lowers, ordering_token

FAILED_CALLBACKS: list[HostCallError] = []


@lowers(H.cluster)
def _cluster_lower(op: Op, *args: ir.Value) -> Sequence[ir.Value]:
    return emit_graph(op.attrs["body"], args)


@lowers(H.transfer)
def _transfer_lower(op: Op, x: ir.Value) -> ir.Value:
    return x  # within one compiled program a value is where the program runs


@lowers(H.host_call)
def _host_call_lower(op: Op, *args: ir.Value) -> Sequence[ir.Value]:
    fn = H.CALLBACKS[op.attrs["callback"]]
    name, out_types = op.attrs["name"], op.attrs["result_types"]

    def callback(*arrays):
        try:
            results = fn(*(np.asarray(a) for a in arrays))
        except FlowjitError as err:  # (a result that does not fit, say: reported as it is)
            FAILED_CALLBACKS.append(err)
            raise
        except Exception as err:
            failure = HostCallError(
                f"the function {name} raised {type(err).__name__}: {err}",
                op="host_call",
                loc=op.loc,
            )
            failure.__cause__ = err
            FAILED_CALLBACKS.append(failure)
            raise
        return tuple(np.asarray(r, t.dtype).reshape(t.shape) for r, t in zip(results, out_types))

    avals_in = [ShapedArray(v.type.shape, v.type.dtype) for v in op.inputs]
    avals_out = [ShapedArray(t.shape, t.dtype) for t in out_types]
    # jax's context, describing this call's operands and results (the custom call reads them)
    ctx = dataclasses.replace(lowering_context(), avals_in=avals_in, avals_out=avals_out)
    token = ordering_token()
    if token[0] is None:
        token[0] = hlo.create_token()
    results, token[0], _ = emit_python_callback(
        ctx, callback, token[0], list(args), avals_in, avals_out, has_side_effect=True
    )
    return list(results)
