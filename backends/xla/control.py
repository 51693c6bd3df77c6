"""StableHLO lowerings of ir/ops/control.py: ``cond`` as stablehlo.case (its branches use the
operands from above, as jax's cond does), ``while`` as stablehlo.while with the consts carried
along, and ``scan`` as a stablehlo.while over a step counter that slices each x with
dynamic_slice and writes each y into a preallocated stack with dynamic_update_slice."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from flowjit.ir import Graph, Op, TensorType
from flowjit.ir.ops import control as C

from .jaxshim import hlo, ir
from .lowering import LoweringContext, constant, emit_graph, full, ir_type, lowers

I32 = TensorType((), np.int32)


def _branch(
    ctx: LoweringContext, region: ir.Region, graph: Graph, operands: Sequence[ir.Value]
) -> None:
    block = region.blocks.append()
    with ir.InsertionPoint(block):
        hlo.return_(emit_graph(ctx, graph, operands))


@lowers(C.cond)
def _cond_lower(
    ctx: LoweringContext, op: Op, pred: ir.Value, *operands: ir.Value
) -> Sequence[ir.Value]:
    index = hlo.convert(ir_type(I32), pred)  # case 0 is false, case 1 is true
    case = hlo.CaseOp([ir_type(v.type) for v in op.outputs], index, 2)
    _branch(ctx, case.regions[0], op.attrs["false_branch"], operands)
    _branch(ctx, case.regions[1], op.attrs["true_branch"], operands)
    return case.results


def _while(
    types: Sequence[TensorType],
    inits: Sequence[ir.Value],
    cond: Callable[..., ir.Value],
    body: Callable[..., Sequence[ir.Value]],
) -> Sequence[ir.Value]:
    """A stablehlo.while over ``inits``; ``cond`` and ``body`` get the loop's block arguments."""
    loop = hlo.WhileOp([ir_type(t) for t in types], list(inits))
    for region, fill in ((loop.regions[0], lambda *a: [cond(*a)]), (loop.regions[1], body)):
        block = region.blocks.append(*(ir_type(t) for t in types))
        with ir.InsertionPoint(block):
            hlo.return_(list(fill(*block.arguments)))
    return loop.results


@lowers(C.while_loop)
def _while_lower(ctx: LoweringContext, op: Op, *operands: ir.Value) -> Sequence[ir.Value]:
    k = op.attrs["consts"]
    results = _while(
        [v.type for v in op.inputs],
        operands,
        lambda *args: emit_graph(ctx, op.attrs["cond"], args)[0],
        lambda *args: [*args[:k], *emit_graph(ctx, op.attrs["body"], args)],
    )
    return results[k:]


@lowers(C.scan)
def _scan_lower(ctx: LoweringContext, op: Op, *operands: ir.Value) -> Sequence[ir.Value]:
    k, c, length = op.attrs["consts"], op.attrs["carries"], op.attrs["length"]
    body: Graph = op.attrs["body"]
    n = len(operands)
    ys = [v.type for v in op.outputs[c:]]
    types = [I32, *(v.type for v in op.inputs), *ys]
    if length == 0:  # no step runs: the carry as given, empty ys
        return [*operands[k : k + c], *(full(0, t) for t in ys)]
    zero = constant(0, np.int32)

    def step(i: ir.Value, *state: ir.Value) -> list[ir.Value]:
        fixed, carry, xs, stacks = state[:k], state[k : k + c], state[k + c : n], state[n:]
        at = hlo.subtract(constant(length - 1, np.int32), i) if op.attrs["reverse"] else i
        slices = []
        for x, value in zip(xs, body.inputs[k + c :]):
            sizes = [1, *value.type.shape]
            piece = hlo.dynamic_slice(x, [at] + [zero] * len(value.type.shape), sizes)
            slices.append(hlo.reshape(ir_type(value.type), piece))
        out = emit_graph(ctx, body, [*fixed, *carry, *slices])
        updated = []
        for stack, y, t in zip(stacks, out[c:], ys):
            row = hlo.reshape(ir_type(TensorType((1, *t.shape[1:]), t.dtype)), y)
            starts = [at] + [zero] * (len(t.shape) - 1)
            updated.append(hlo.dynamic_update_slice(stack, row, starts))
        next_i = hlo.add(i, constant(1, np.int32))
        return [next_i, *fixed, *out[:c], *xs, *updated]

    results = _while(
        types,
        [zero, *operands, *(full(0, t) for t in ys)],
        lambda i, *_: hlo.compare(
            i, constant(length, np.int32), hlo.ComparisonDirectionAttr.get("LT")
        ),
        step,
    )
    return [*results[1 + k : 1 + k + c], *results[1 + n :]]
