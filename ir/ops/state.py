"""State ops: reading and writing variables through their handles (``$w``).

They have effects, so no pass drops, merges or reorders them; ``discharge_state`` turns them
into plain dataflow before lowering. A write op's ``ref`` returns the variable's new value
(the reference interpreter stores it); a read returns the current value."""

from __future__ import annotations

import numpy as np

from ..core import Effect, OpDef, register
from ..errors import DTypeError, ShapeError
from ..types import TensorType
from .rules import NUMERIC, check_arity, check_dtype

def _read_rule(types: tuple[TensorType, ...]) -> TensorType:
    check_arity(types, 1)
    return types[0]


def _write_rule(numeric: bool):
    def rule(types: tuple[TensorType, ...]) -> tuple[()]:
        check_arity(types, 2)
        state, value = types
        if value.shape != state.shape:
            raise ShapeError(
                f"cannot write a value of shape {value.shape} to a variable of shape {state.shape}"
            )
        if value.dtype != state.dtype:
            raise DTypeError(
                f"cannot write a value of dtype {value.dtype} to a variable of "
                f"dtype {state.dtype}; convert it with .astype()"
            )
        if numeric:
            check_dtype(state, NUMERIC, "the variable")
        return ()

    return rule


read_variable = register(
    OpDef(
        "read_variable",
        _read_rule,
        lambda current: current.copy(),
        effects=frozenset({Effect.READ}),
        state_operand=0,
        no_vjp="the gradient with respect to a variable is taken at its read (issue 4)",
        doc="the variable's current value",
    )
)


def _write_op(name: str, ref, numeric: bool, doc: str) -> OpDef:
    """A write op: no outputs; its ``ref`` gives the variable's new value."""
    return register(
        OpDef(
            name,
            _write_rule(numeric),
            ref,
            effects=frozenset({Effect.WRITE}),
            state_operand=0,
            no_vjp="has no outputs",
            doc=doc,
        )
    )


assign_variable = _write_op(
    "assign_variable", lambda current, value: value.copy(), False, "variable <- value"
)
assign_add_variable = _write_op("assign_add_variable", np.add, True, "variable <- variable + value")
assign_sub_variable = _write_op(
    "assign_sub_variable", np.subtract, True, "variable <- variable - value"
)
