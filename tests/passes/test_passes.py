"""Golden IR-in/IR-out tests for each pass, and the pipeline's contract."""

from __future__ import annotations

import pytest

from flowjit.ir import Graph, PassError, parse, print_graph
from flowjit.passes import cse, dce, run_pipeline


def apply(pass_, text: str) -> tuple[str, bool]:
    graph, changed = pass_(parse(text))
    return print_graph(graph, locs=False), changed


def test_dce_drops_unused_pure_ops():
    before = """graph @g(%0: f32[2]) {
  %1: f32[2] = neg(%0)
  %2: f32[2] = exp(%0)
  %3: f32[2] = sin(%2)
  return %1
}
"""
    after = """graph @g(%0: f32[2]) {
  %1: f32[2] = neg(%0)
  return %1
}
"""
    assert apply(dce, before) == (after, True)
    assert apply(dce, after) == (after, False)


def test_cse_merges_identical_pure_ops():
    before = """graph @g(%0: f32[2]) {
  %1: f32[2] = neg(%0)
  %2: f32[2] = neg(%0)
  %3: f32[] = constant() {value=dense(f32[], [1.0])}
  %4: f32[] = constant() {value=dense(f32[], [1.0])}
  %5: f32[2] = add(%1, %3)
  %6: f32[2] = add(%2, %4)
  %7: f32[2] = mul(%5, %6)
  return %7
}
"""
    after = """graph @g(%0: f32[2]) {
  %1: f32[2] = neg(%0)
  %2: f32[] = constant() {value=dense(f32[], [1.0])}
  %3: f32[2] = add(%1, %2)
  %4: f32[2] = mul(%3, %3)
  return %4
}
"""
    assert apply(cse, before) == (after, True)
    assert apply(cse, after) == (after, False)


def test_cse_keeps_different_attributes_apart():
    text = """graph @g(%0: f32[2]) {
  %1: i32[2] = convert(%0) {dtype=i32}
  %2: i8[2] = convert(%0) {dtype=i8}
  return %1, %2
}
"""
    assert apply(cse, text) == (text, False)


def test_pipeline_records_and_wraps_failures():
    text = (
        "graph @g(%0: f32[2]) {\n  %1: f32[2] = neg(%0)\n  %2: f32[2] = neg(%0)\n  return %1\n}\n"
    )
    result = run_pipeline(parse(text), [cse, dce], keep_text=True)
    assert [(r.name, r.changed, r.ops_before, r.ops_after) for r in result.records] == [
        ("cse", True, 2, 1),
        ("dce", False, 1, 1),
    ]
    assert result.records[0].text == print_graph(result.graph)

    def broken(graph: Graph) -> tuple[Graph, bool]:
        graph.ops.append(graph.ops[0])  # defines the same value twice
        return graph, True

    with pytest.raises(PassError, match=r"pass broken failed after \['cse', 'dce'\]"):
        run_pipeline(parse(text), [cse, dce, broken])
