"""The pass pipeline: runs passes in order, verifies between them, times them and counts the
ops before and after each; a hook sees the IR after each pass (for dumps). A pass is a function
Graph -> (Graph, changed) with a ``__name__``; only the pipeline verifies, times and wraps
failures, as "pass X failed after [a, b]"."""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from flowjit.ir import ArgumentError, FlowjitError, Graph, PassError, print_graph, verify

from .partition import partition
from .cse import cse
from .dce import dce
from .discharge import discharge_state
from .fold import fold_constants
from .simplify import simplify
from .subgraphs import count_ops

Pass = Callable[[Graph], tuple[Graph, bool]]

# Lowering needs these: they cannot be turned off, and a custom list gets them at its end.
REQUIRED: tuple[Pass, ...] = (discharge_state, partition)


def default_pipeline() -> list[Pass]:
    """The passes ``fj.compile`` runs, in order (a fresh list: change it freely)."""
    return [fold_constants, simplify, cse, dce, discharge_state, partition]


def resolve_passes(passes: Iterable[Pass | str]) -> list[Pass]:
    """``passes`` as a list of pass functions: each entry is a pass (a function, or an object
    with a ``name``) or the name of one in ``default_pipeline()``. A wrong entry or an unknown
    name (its message lists the known names, and suggests the closest) is an ArgumentError;
    both say what ``passes`` takes."""
    takes = f"passes takes a list of pass functions or pass names ({', '.join(_by_name())})"
    if isinstance(passes, (str, bytes)) or not isinstance(passes, Iterable):
        hint = f"; for one pass, write [{passes!r}]" if isinstance(passes, str) else ""
        raise ArgumentError(f"{takes}, not {type(passes).__name__} {passes!r}{hint}")
    return [_resolve_pass(p, takes) for p in passes]


def _by_name() -> dict[str, Pass]:
    return {pass_name(p): p for p in default_pipeline()}


def _resolve_pass(p: Pass | str, takes: str) -> Pass:
    if isinstance(p, str):
        known = _by_name()
        if p not in known:
            raise _no_pass_named(p, f": {takes}", known, "passes")
        return known[p]
    if not callable(p):
        raise ArgumentError(f"{takes}, not {type(p).__name__} {p!r}")
    if not isinstance(getattr(p, "name", None) or getattr(p, "__name__", None), str):
        # the pipeline names each pass in its records, dumps, errors and disabled_passes
        raise ArgumentError(f"pass {p!r} has no name: give it a `name` or `__name__` attribute")
    return p


def _no_pass_named(
    name: str, detail: str, known: Iterable[str], setting: str, loc: object | None = None
) -> ArgumentError:
    """The error for ``name``, given in ``setting`` but not in ``known``: says ``detail``, and
    the closest known name if one is close."""
    close = difflib.get_close_matches(name.lower(), list(known), n=1, cutoff=0.5)
    fix = f"; if you meant {close[0]!r}, write {close[0]!r} in {setting}" if close else ""
    return ArgumentError(f"no pass named {name!r}{detail}{fix}", loc=loc)


def with_required(passes: Iterable[Pass | str]) -> list[Pass]:
    """``passes`` (resolved by ``resolve_passes``) with the passes lowering needs appended where
    missing."""
    passes = resolve_passes(passes)
    return [*passes, *(p for p in REQUIRED if p not in passes)]


@dataclass
class PassRecord:
    name: str
    seconds: float
    changed: bool
    ops_before: int  # ops counted in subgraphs too
    ops_after: int
    text: str | None  # the IR after the pass, when it changed and the text was asked for


@dataclass
class PipelineResult:
    graph: Graph
    records: list[PassRecord] = field(default_factory=list)


def pass_name(p: Pass) -> str:
    return getattr(p, "name", None) or p.__name__


def run_pipeline(
    graph: Graph,
    passes: Iterable[Pass | str],
    *,
    verify_each: bool = True,
    disabled: Sequence[str] = (),
    on_pass: Callable[[PassRecord, Graph], None] | None = None,
    keep_text: bool = False,
    loc: object | None = None,
) -> PipelineResult:
    """Run ``passes`` (pass functions or names, as ``resolve_passes`` takes them) on ``graph``,
    skipping those named in ``disabled``; verify the graph before and after each pass if
    ``verify_each``; call ``on_pass(record, graph)`` after each. A name in ``disabled`` that
    is no pass's, or a pass lowering needs, is an ArgumentError at ``loc`` (the user's line)."""
    passes = resolve_passes(passes)
    names = [pass_name(p) for p in passes]
    known = dict.fromkeys([*names, *(pass_name(p) for p in default_pipeline())])
    for name in disabled:
        if name in {pass_name(p) for p in REQUIRED}:
            raise ArgumentError(
                f"pass {name} cannot be turned off: lowering needs it; remove it from "
                "disabled_passes",
                loc=loc,
            )
        if name not in known:
            detail = f" to turn off; the pipeline has {names}"
            raise _no_pass_named(name, detail, known, "disabled_passes", loc)
    passes = [p for p in passes if pass_name(p) not in disabled]
    if verify_each:
        verify(graph)
    result = PipelineResult(graph)
    before = count_ops(graph)
    for p in passes:
        name = pass_name(p)
        start = time.perf_counter()
        try:
            new, changed = p(result.graph)
            if verify_each:
                verify(new)
        except Exception as err:  # any failure: the pipeline is what knows which pass broke
            done = [r.name for r in result.records]
            what = str(err) if isinstance(err, FlowjitError) else f"{type(err).__name__}: {err}"
            raise PassError(f"pass {name} failed after {done}: {what}") from err
        seconds = time.perf_counter() - start
        after = count_ops(new) if changed else before
        text = print_graph(new) if keep_text and changed else None
        record = PassRecord(name, seconds, changed, before, after, text)
        result.records.append(record)
        result.graph, before = new, after
        if on_pass is not None:
            on_pass(record, new)
    return result
