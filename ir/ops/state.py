"""State ops: reading and writing variables through their handles (``$w``), which each takes
as its operand ``state_operand``.

They have effects, so no pass drops, merges or reorders them; ``discharge_state`` turns them
into plain dataflow before lowering, by each op's discharge rule, declared below it. A write
op's ``ref`` returns the variable's new value (the reference interpreter stores it); a read
returns the current value. An add/sub write reads the variable too, so it has both effects."""

from __future__ import annotations

import numpy as np

from ..core import Effect, OpDef, register
from ..errors import BatchingError, DTypeError, ShapeError
from ..types import TensorType
from . import elementwise as E
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


def _write_op(name: str, ref, update: bool, doc: str) -> OpDef:
    """A write op: no outputs; its ``ref`` gives the variable's new value. An ``update`` (add,
    sub) combines the variable's value with the operand: it reads the variable too, and needs
    a numeric one."""
    effects = {Effect.READ, Effect.WRITE} if update else {Effect.WRITE}
    return register(
        OpDef(
            name,
            _write_rule(update),
            ref,
            effects=frozenset(effects),
            state_operand=0,
            no_vjp="has no outputs",
            doc=doc,
            batch=_write_batch,
        )
    )


def _write_batch(emit, op, args, batched):
    """A write whose value differs across the examples of fj.vmap: a variable holds one
    value, so it is an error (a write of a value shared by every example is copied as is)."""
    raise BatchingError(
        f"fj.vmap: the write to variable ${op.state_handle.name} gives it a different value "
        "for each example, but a variable holds one value; reduce over the batch first "
        "(e.g. .mean(axis=0)), or return the values from the vmapped function and write "
        "outside fj.vmap"
    )


assign_variable = _write_op(
    "assign_variable", lambda current, value: value.copy(), False, "variable <- value"
)
assign_add_variable = _write_op("assign_add_variable", np.add, True, "variable <- variable + value")
assign_sub_variable = _write_op(
    "assign_sub_variable", np.subtract, True, "variable <- variable - value"
)


# -- discharge rules -----------------------------------------------------------------------
@read_variable.defdischarge
def _read_discharge(emit, op, current):
    return (current,), None  # the result is the variable's current value


@assign_variable.defdischarge
def _assign_discharge(emit, op, current, value):
    return (), value  # the variable's new value is the operand


@assign_add_variable.defdischarge
def _assign_add_discharge(emit, op, current, value):
    return (), emit(E.add, current, value)  # variable <- variable + value


@assign_sub_variable.defdischarge
def _assign_sub_discharge(emit, op, current, value):
    return (), emit(E.sub, current, value)  # variable <- variable - value
