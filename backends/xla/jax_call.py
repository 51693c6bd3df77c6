"""The XLA lowering of ``jax_call`` (ir/ops/jax_call.py): the op's jax computation, loaded
from its bytes once (``load``), is emitted into the cluster being built through jax's own
lowering of a call to it, so XLA compiles and fuses it with the ops around it.
``call_module`` runs one on numpy values: the reference interpreter's way to run the op.

A module's ``derivative``-th VJP takes (and gives) a ``float0`` cotangent where the function
has an integer or boolean value; the IR leaves those out, so they are filled in (zeros) on the
way in and dropped on the way out."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Sequence

import numpy as np

from flowjit.ir import JaxModule, Op
from flowjit.ir.ops import jax_call as J

from .jaxshim import ShapedArray, float0, ir, jax_export, lower_fun
from .lowering import LoweringContext, lowers

_load_lock = threading.Lock()


def load(module: JaxModule, derivative: int) -> Any:
    """The jax.export ``Exported`` of ``module``'s ``derivative``-th VJP."""
    with _load_lock:
        if module.loaded is None:
            module.loaded = jax_export.deserialize(bytearray(module.data))
    exported = module.loaded
    for _ in range(derivative):
        exported = exported.vjp()
    return exported


def _calling(exported: Any):
    """A function of the IR's operands (float0 ones left out) that calls ``exported`` and
    returns its results (float0 ones left out)."""

    def call(*args: Any) -> list:
        args = iter(args)
        full = [
            np.zeros(a.shape, float0) if a.dtype == float0 else next(args)
            for a in exported.in_avals
        ]
        outs = exported.call(*full)
        return [o for o, a in zip(outs, exported.out_avals) if a.dtype != float0]

    return call


def call_module(module: JaxModule, derivative: int, arrays: Sequence[np.ndarray]) -> list:
    """The results of ``module`` (its ``derivative``-th VJP) on ``arrays``, as numpy arrays."""
    return [np.asarray(r) for r in _calling(load(module, derivative))(*arrays)]


@lowers(J.jax_call)
def _jax_call_lower(ctx: LoweringContext, op: Op, *args: ir.Value) -> Sequence[ir.Value]:
    exported = load(op.attrs["module"], op.attrs["derivative"])
    avals_in = [ShapedArray(v.type.shape, v.type.dtype) for v in op.inputs]
    avals_out = [ShapedArray(v.type.shape, v.type.dtype) for v in op.outputs]
    jax_ctx = dataclasses.replace(ctx.jax_rule_context(op), avals_in=avals_in, avals_out=avals_out)
    block = ir.InsertionPoint.current.block
    module = jax_ctx.module_context.module.body
    before = (len(block.operations), len(module.operations))
    results = lower_fun(_calling(exported), multiple_results=True)(jax_ctx, *args)
    # What jax emitted carries its own locations (flowjit's frames at lowering time): each op
    # is put at this op's location instead, so XLA's metadata, and profiles, name the user's
    # line (an optimizer's update: the line of opt.apply)
    here = ir.Location.current
    _relocate(list(block.operations)[before[0] :], here)
    _relocate(list(module.operations)[before[1] :], here)
    return results


def _relocate(ops: Sequence[Any], location: Any) -> None:
    for operation in ops:
        operation.location = location
        for region in operation.regions:
            for inner in region.blocks:
                _relocate(list(inner.operations), location)


__all__ = ["call_module", "load"]
