"""Constant folding: a pure op whose inputs are all constants is computed at compile time
with its reference implementation and becomes a constant, if each result has at most
``FOLD_LIMIT`` elements and no more than its largest input (a folded tensor is printed in
dumps and embedded in the program: a broadcast scalar stays a broadcast)."""

from __future__ import annotations

import numpy as np

from flowjit.ir import Graph, Op, Value
from flowjit.ir.ops import creation as Cr

from .subgraphs import in_subgraphs

FOLD_LIMIT = 1024


def fold_constants(graph: Graph) -> tuple[Graph, bool]:
    out = graph.derive()
    known: dict[Value, np.ndarray] = {}  # values computed by constant ops
    changed = False
    for op in graph.ops:
        if op.subgraphs:
            new = in_subgraphs(op, fold_constants)
            op, changed = (new, True) if new is not None else (op, changed)
        if op.opdef is Cr.constant:
            known[op.outputs[0]] = op.attrs["value"]
        elif _foldable(op, known):
            results = _evaluate(op, known)
            if results is not None:
                for value, array in zip(op.outputs, results):
                    constant = Op(Cr.constant, (), {"value": array}, (value,), op.loc, op.device)
                    out.ops.append(constant)
                    known[value] = array
                changed = True
                continue
        out.ops.append(op)
    out.outputs = list(graph.outputs)
    return (out, True) if changed else (graph, False)


def _foldable(op: Op, known: dict[Value, np.ndarray]) -> bool:
    return (
        bool(op.inputs)
        and not op.effects
        and not op.subgraphs
        and all(v in known for v in op.inputs)
        and all(
            v.type.size <= min(FOLD_LIMIT, max(x.type.size for x in op.inputs)) for v in op.outputs
        )
    )


def _evaluate(op: Op, known: dict[Value, np.ndarray]) -> list[np.ndarray] | None:
    """The op's results on the constants, in its result types; None if the reference
    implementation cannot compute them (then the op stays, and fails or not at run time)."""
    try:
        with np.errstate(all="ignore"):
            out = op.opdef.ref(*(known[v] for v in op.inputs), **op.attrs)
    except Exception:
        return None
    outs = out if isinstance(out, tuple) else (out,)
    return [
        np.asarray(r, dtype=v.type.dtype).reshape(v.type.shape) for r, v in zip(outs, op.outputs)
    ]
