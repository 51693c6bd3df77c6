"""What gradient rules build with: an emitter that appends ops to the graph being
differentiated, plus the helpers rules share (zeros, constants, undoing a broadcast).

A rule is ``rule(emit, op, *cts) -> sequence of input cotangents`` where ``cts`` are the
cotangents of the op's outputs (None means zero) and each returned entry is a Value of the
input's type, or None (zero, or the input is not differentiable)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .core import Graph, Location, OpDef, Value
from .types import TensorType, is_float


class Emit:
    """Appends ops to ``graph`` at ``loc`` (the op being differentiated keeps its user line)."""

    def __init__(self, graph: Graph, loc: Location | None = None):
        self.graph, self.loc = graph, loc

    def __call__(self, opdef: OpDef, *inputs: Value, **attrs: Any) -> Any:
        outs = self.graph.add(opdef, list(inputs), attrs, self.loc)
        return outs[0] if len(outs) == 1 else outs

    def constant(self, value: Any, dtype: np.dtype) -> Value:
        from .ops import creation as C

        return self(C.constant, value=np.asarray(value, dtype))

    def zeros(self, t: TensorType) -> Value:
        from .ops import shape as S

        zero = self.constant(0, t.dtype)
        return zero if not t.shape else self(S.broadcast_to, zero, shape=t.shape)

    def unbroadcast(self, ct: Value, t: TensorType) -> Value:
        """Sum ``ct`` (of a broadcast result's shape) back to ``t``'s shape: the cotangent of an
        operand that numpy broadcasting stretched."""
        from .ops import reduce as R
        from .ops import shape as S

        shape = ct.type.shape
        if shape == t.shape:
            return ct
        lead = len(shape) - len(t.shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, d in enumerate(t.shape) if d == 1 and shape[lead + i] != 1
        )
        summed = self(R.reduce_sum, ct, axes=axes, keepdims=False) if axes else ct
        return summed if summed.type.shape == t.shape else self(S.reshape, summed, shape=t.shape)


def differentiable(t: TensorType) -> bool:
    return is_float(t.dtype)
