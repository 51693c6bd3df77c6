"""The variables a compiled function's stateful entry takes (``StateLayout``), and the cell
holding a function's current layout, which calls lock and traces grow (``LayoutCell``)."""

from __future__ import annotations

from typing import Any

from flowjit.runtime import Plan
from flowjit.runtime.variables import VariableLocks

from .trace_cache import TRACING


class StateLayout:
    """The variables a function's stateful entry takes: the values of ``written`` (donated)
    then of ``read_only``; and their locks. A function's layout is replaced, never changed, and
    only while the locks of the one it replaces are held: a call holding them sees its layout
    stay the same until it has rebound the variables."""

    __slots__ = ("written", "read_only", "locks")

    def __init__(self, written: tuple = (), read_only: tuple = ()):
        self.written, self.read_only = written, read_only
        self.locks = VariableLocks(written + read_only)

    def fits(self, plan: Plan) -> bool:
        """Whether the entry called with this layout feeds every variable ``plan`` reads
        and donates every one it writes."""
        # sets, not tuples: `in` on a tuple would compare variables with == (a traced read)
        written = set(self.written)
        known = written | set(self.read_only)
        return written.issuperset(plan.state_outputs) and known.issuperset(plan.state_inputs)

    def grown(self, plan: Plan) -> "StateLayout":
        """This layout with the variables ``plan`` uses added (one it writes moves from
        read_only to written)."""
        written, known = set(self.written), set(self.written) | set(self.read_only)
        new_written = [v for v in plan.state_outputs if v not in written]
        moved = set(new_written)
        new_read = [v for v in plan.state_inputs if v not in known and v not in moved]
        read_only = tuple(v for v in self.read_only if v not in moved)
        return StateLayout(self.written + tuple(new_written), read_only + tuple(new_read))


class LayoutCell:
    """A function's current state layout (``current``), empty until a trace uses variables."""

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current = StateLayout()

    def locked(self) -> StateLayout:
        """The current layout, with its variables' locks taken (the caller releases them)."""
        while True:
            layout = self.current
            layout.locks.acquire()
            if layout is self.current:
                return layout
            layout.locks.release()  # it grew while we waited: take the new one's

    def grow(self, plan: Plan, mesh: Any, name: str) -> None:
        """Make the layout feed the variables ``plan`` uses (placed on ``mesh`` first, if the
        function of ``name`` has one)."""
        if mesh is not None:  # (before any is fed: a failure changes no layout)
            for variable in {*plan.state_inputs, *plan.state_outputs}:
                variable.place_on(mesh, name)
        layout = self.locked()
        try:
            with TRACING:
                if not layout.fits(plan):
                    self.current = layout.grown(plan)
        finally:
            layout.locks.release()
