"""The one error hierarchy of flowjit.

Every error may carry the op it concerns and the user's source location; the message then
reads ``file.py:14: matmul: cannot contract ...`` so the user sees where and what at once.
"""

from __future__ import annotations


class FlowjitError(Exception):
    """Base of every flowjit error. ``detail`` is the message without op and location."""

    def __init__(self, detail: str, *, op: str | None = None, loc: object | None = None):
        self.detail, self.op, self.loc = detail, op, loc
        super().__init__(self._format())

    def _format(self) -> str:
        parts = [str(p) for p in (self.loc, self.op) if p]
        return ": ".join([*parts, self.detail])

    def with_context(self, *, op: str | None = None, loc: object | None = None) -> FlowjitError:
        """Fill in the op and location where not set; returns self (``raise e.with_context()``)."""
        self.op = self.op or op
        self.loc = self.loc or loc
        self.args = (self._format(),)
        return self


class ShapeError(FlowjitError, ValueError):
    """Incompatible shapes or attributes at trace time."""


class DTypeError(FlowjitError, TypeError):
    """An op got a dtype it does not accept."""


class ArgumentError(FlowjitError, TypeError, ValueError):
    """A flowjit function got an argument it does not take: of the wrong kind (a str for an
    axis, an int for a function) or out of range (a stride of 0, an unknown pass name). It is
    both a TypeError and a ValueError, as Python raises one or the other for such mistakes."""


class VerifyError(FlowjitError, ValueError):
    """A graph breaks an IR invariant (use before definition, wrong types, bad attributes)."""


class ParseError(FlowjitError, ValueError):
    """Malformed IR text; carries the 1-based line and column of the offending token."""

    def __init__(self, detail: str, line: int, column: int):
        self.line, self.column = line, column
        super().__init__(f"line {line}, column {column}: {detail}")


class TypeMismatchError(FlowjitError, TypeError):
    """Branches of a cond, or a loop's carry in and out, differ in structure, shape or dtype."""


class GradientError(FlowjitError, ValueError):
    """A gradient that cannot be taken (through a while loop, say); says what to use instead."""


class BatchingError(FlowjitError, ValueError):
    """``fj.vmap`` cannot batch a function as asked: batch axes of different sizes, a
    variable written with a different value for each example, an op without a batching rule."""


class TracingError(FlowjitError, TypeError):
    """Python code used a traced Tensor as a concrete value (``if t:``, ``int(t)``, ...)."""


class LoweringError(FlowjitError, TypeError):
    """A backend cannot lower an op or a dtype."""


class HostCallError(FlowjitError, RuntimeError):
    """A host_call's Python function raised; the message names the user's line."""


class PassError(FlowjitError, RuntimeError):
    """A pass failed; the message names the pass and the passes that ran before it."""


class CheckpointError(FlowjitError, ValueError):
    """A checkpoint cannot be written or restored; the message names the file and variable."""


class ShardingError(FlowjitError, ValueError):
    """A mesh or sharding does not fit: an axis the mesh lacks, a dimension the axis does not
    divide, a spec longer than the value's rank; the message names the argument or variable."""


class IntegerOverflowError(FlowjitError, OverflowError):
    """An integer does not fit the integer dtype it would take (a Python int beyond int32 with
    jax_enable_x64 off, int64 data narrowed to int32, a constant meeting a narrower int): it
    would wrap around. An OverflowError, as jax raises for a Python int it cannot convert; the
    message names the argument, variable or line."""


class NaNError(FlowjitError, FloatingPointError):
    """With ``check_nans`` on: a call computed a NaN; the message names the first op that
    made one from inputs without any, and the user's line."""


class DonationError(FlowjitError, RuntimeError):
    """An argument was donated to an earlier call (``donate_argnums``) and passed again."""


class VariableError(FlowjitError, RuntimeError):
    """A variable has no value to use: its buffer was deleted, or the step that wrote it
    failed while it ran on the device. The message names the variable and the step."""
