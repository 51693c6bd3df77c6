"""StableHLO lowerings of ir/ops/host.py: a ``cluster`` is emitted inline (its body's ops);
a ``host_call`` left inside a loop body becomes a host callback in the compiled program
(jax's python-callback custom call, with side effects, so XLA keeps it)."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from flowjit.ir import Op
from flowjit.ir.ops import host as H

from .jaxshim import ShapedArray, emit_python_callback, ir
from .lowering import emit_graph, lowering_context, lowers


@lowers(H.cluster)
def _cluster_lower(op: Op, *args: ir.Value) -> Sequence[ir.Value]:
    return emit_graph(op.attrs["body"], args)


@lowers(H.host_call)
def _host_call_lower(op: Op, *args: ir.Value) -> Sequence[ir.Value]:
    fn = H.CALLBACKS[op.attrs["callback"]]
    out_types = op.attrs["result_types"]

    def callback(*arrays):
        results = fn(*(np.asarray(a) for a in arrays))
        return tuple(np.asarray(r, t.dtype).reshape(t.shape) for r, t in zip(results, out_types))

    avals_in = [ShapedArray(v.type.shape, v.type.dtype) for v in op.inputs]
    avals_out = [ShapedArray(t.shape, t.dtype) for t in out_types]
    # jax's context, describing this call's operands and results (the custom call reads them)
    ctx = dataclasses.replace(lowering_context(), avals_in=avals_in, avals_out=avals_out)
    results, _, _ = emit_python_callback(
        ctx, callback, None, list(args), avals_in, avals_out, has_side_effect=True
    )
    return list(results)
