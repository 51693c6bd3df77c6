"""``check_nans`` (docs/errors.md, E11): after a call, look for a NaN in its results and new
variable values; on one, run the call's traced graph again on the reference interpreter,
from the same arguments and variable values, and name the first op that made a NaN from
inputs without any (the user's line is that op's location)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from flowjit.backends.reference import run_graph
from flowjit.ir import Graph, NaNError


def has_nan(array: Any) -> bool:
    array = np.asarray(array)
    if array.dtype.kind == "V":  # bfloat16
        array = array.astype(np.float32)
    return array.dtype.kind in "fc" and bool(np.isnan(array).any())


class _Found(Exception):
    def __init__(self, error: NaNError):
        self.error = error


def _first_index(arrays: Sequence[Any]) -> tuple[int, tuple[int, ...]]:
    for k, array in enumerate(arrays):
        if has_nan(array):
            wide = np.asarray(array).astype(np.float64)
            return k, tuple(int(i) for i in np.argwhere(np.isnan(wide))[0])
    raise AssertionError("no NaN")


def nan_origin(
    name: str, graph: Graph, args: Sequence[Any], state: dict[str, Any], where: str
) -> NaNError:
    """The error to raise for a call of function ``name`` that made a NaN (``where``: in which
    result or variable): the first op of ``graph`` (as traced) that makes one from inputs
    without any, on the reference interpreter."""
    undone = "check_nans is on, so the call's variable updates were undone"

    def observe(op, inputs, results) -> None:
        if any(has_nan(x) for x in inputs) or not any(has_nan(r) for r in results):
            return
        k, index = _first_index(results)
        which = f"result {k} " if len(results) > 1 else ""
        raise _Found(
            NaNError(
                f"produced NaN ({which}first at index {index}) from inputs without NaN; {undone}",
                op=op.opdef.name,
                loc=op.loc,
            )
        )

    try:
        with np.errstate(all="ignore"):
            run_graph(graph, [np.asarray(a) for a in args], dict(state), observe)
    except _Found as found:
        return found.error
    # no op made one: it came in (an argument, a variable), or from XLA's rounding alone
    for arg in args:
        if has_nan(arg):
            _, index = _first_index([arg])
            return NaNError(f"{name}: an argument holds NaN (at index {index}); {undone}")
    for variable, value in state.items():
        if has_nan(value):
            _, index = _first_index([value])
            return NaNError(
                f"{name}: variable {variable!r} held NaN (at index {index}) before "
                f"the call; {undone}"
            )
    return NaNError(
        f"{name}: the compiled call made NaN in {where}, but the reference interpreter computes "
        f"none from the same inputs (a difference in floating-point rounding); {undone}"
    )
