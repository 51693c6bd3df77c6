"""The pass pipeline: runs passes in order, verifies between them, times them and keeps the
IR after each pass that changed it (for dumps). A pass is a function Graph -> (Graph, changed)
with a ``__name__``; only the pipeline verifies, times and wraps failures."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from flowjit.ir import FlowjitError, Graph, PassError, print_graph, verify

Pass = Callable[[Graph], tuple[Graph, bool]]


@dataclass
class PassRecord:
    name: str
    seconds: float
    changed: bool
    ops_before: int
    ops_after: int
    text: str | None  # the IR after the pass, when it changed


@dataclass
class PipelineResult:
    graph: Graph
    records: list[PassRecord] = field(default_factory=list)


def run_pipeline(graph: Graph, passes: list[Pass], *, keep_text: bool = False) -> PipelineResult:
    verify(graph)
    result = PipelineResult(graph)
    for p in passes:
        name = getattr(p, "name", p.__name__)
        before = len(result.graph.ops)
        start = time.perf_counter()
        try:
            new, changed = p(result.graph)
            verify(new)
        except FlowjitError as err:
            done = [r.name for r in result.records]
            raise PassError(f"pass {name} failed after {done}: {err}") from err
        seconds = time.perf_counter() - start
        text = print_graph(new) if keep_text and changed else None
        result.records.append(PassRecord(name, seconds, changed, before, len(new.ops), text))
        result.graph = new
    return result
