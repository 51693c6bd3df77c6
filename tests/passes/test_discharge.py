"""discharge_state golden tests, and effects: no pass drops, merges or reorders a state op."""

from __future__ import annotations

import numpy as np

from flowjit.backends.reference import run_graph
from flowjit.ir import parse, print_graph
from flowjit.passes import DEFAULT_PIPELINE, cse, dce, discharge_state, run_pipeline

STATEFUL = """graph @step(%0: f32[2]) state($w: f32[2], $n: i32[], $unused: f32[]) {
  %1: f32[2] = read_variable($w)
  %2: f32[2] = add(%1, %0)
  assign_variable($w, %2)
  %3: f32[2] = read_variable($w)
  %4: i32[] = constant() {value=dense(i32[], [1])}
  assign_add_variable($n, %4)
  assign_sub_variable($w, %0)
  return %3
}
"""


def test_discharge_golden():
    graph, changed = discharge_state(parse(STATEFUL))
    assert changed
    assert print_graph(graph) == (
        "graph @step(%0: f32[2], %1: f32[2], %2: i32[]) "
        "state_map($w: in=1 out=1, $n: in=2 out=2, $unused: in=none out=none) {\n"
        "  %3: f32[2] = add(%1, %0)\n"
        "  %4: i32[] = constant() {value=dense(i32[], [1])}\n"
        "  %5: i32[] = add(%2, %4)\n"
        "  %6: f32[2] = sub(%3, %0)\n"
        "  return %3, %6, %5\n"
        "}\n"
    )
    assert print_graph(parse(print_graph(graph))) == print_graph(graph)


def test_write_only_variable_gets_no_input():
    text = "graph @g(%0: f32[2]) state($w: f32[2]) {\n  assign_variable($w, %0)\n  return\n}\n"
    graph, _ = discharge_state(parse(text))
    assert print_graph(graph) == (
        "graph @g(%0: f32[2]) state_map($w: in=none out=0) {\n  return %0\n}\n"
    )


def test_discharged_graph_means_what_the_stateful_one_means():
    x = np.array([1.0, -2.0], np.float32)
    state = {"w": np.array([10.0, 20.0], np.float32), "n": np.int32(3), "unused": np.float32(0)}
    graph = parse(STATEFUL)
    pure, _ = discharge_state(graph)
    pure_out = run_graph(pure, [x, state["w"], state["n"]])
    stateful_out = run_graph(graph, [x], state)
    np.testing.assert_array_equal(pure_out[0], stateful_out[0])
    np.testing.assert_array_equal(pure_out[1], state["w"])
    np.testing.assert_array_equal(pure_out[2], state["n"])
    np.testing.assert_array_equal(state["w"], [10.0, 20.0])  # 10 + 1 - 1, 20 - 2 + 2
    assert int(state["n"]) == 4


def test_dce_and_cse_keep_every_state_op_in_order():
    text = """graph @g(%0: f32[2]) state($w: f32[2]) {
  %1: f32[2] = read_variable($w)
  %2: f32[2] = read_variable($w)
  assign_variable($w, %0)
  assign_variable($w, %0)
  %3: f32[2] = read_variable($w)
  return
}
"""
    for p in (cse, dce):
        graph, changed = p(parse(text))
        assert not changed and print_graph(graph) == text


def test_pipeline_ends_with_discharge():
    result = run_pipeline(parse(STATEFUL), DEFAULT_PIPELINE)
    assert result.records[-1].name == "discharge_state"
    assert not result.graph.states and result.graph.state_map is not None
