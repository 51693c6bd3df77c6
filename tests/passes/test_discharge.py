"""discharge_state golden tests, and effects: no pass drops, merges or reorders a state op."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import run_xla

from flowjit.backends.reference import run_graph
from flowjit.ir import Effect, Graph, Op, Value, parse, print_graph, verify
from flowjit.passes import default_pipeline, cse, dce, discharge_state, run_pipeline
from flowjit.passes.discharge import lift_state

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


def test_pipeline_discharges_after_every_pass_that_sees_variables():
    result = run_pipeline(parse(STATEFUL), default_pipeline())
    # only the clustering of host work (which needs a pure graph) comes after discharge_state
    assert [r.name for r in result.records][-2:] == ["discharge_state", "partition"]
    assert not result.graph.states and result.graph.state_map is not None


# -- control flow: lift_state and discharge_state thread variables through subgraphs ---------
def check_discharged(text: str, args: list[np.ndarray], state: dict[str, np.ndarray]) -> Graph:
    """Discharge the graph of ``text``; its results and new variable values on ``args`` and
    ``state`` must be the stateful graph's, on the reference interpreter and on XLA (each
    variable passed and returned where the state_map says). Returns the discharged graph."""
    graph = parse(text)
    pure, changed = discharge_state(graph)
    assert changed and not pure.states
    verify(pure)
    assert print_graph(parse(print_graph(pure))) == print_graph(pure)
    inputs = list(args) + [None] * (len(pure.inputs) - len(args))
    for slot in pure.state_map:
        if slot.input is not None:
            inputs[slot.input] = state[slot.name]
    assert all(x is not None for x in inputs)
    after = dict(state)
    want = run_graph(graph, args, after)
    for backend, outs in (("reference", run_graph(pure, inputs)), ("xla", run_xla(pure, inputs))):
        assert len(outs) == len(graph.outputs) + sum(s.output is not None for s in pure.state_map)
        for i, (got, expected) in enumerate(zip(outs, want)):
            np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=f"{backend} result {i}")
        for slot in pure.state_map:
            got = state[slot.name] if slot.output is None else outs[slot.output]
            np.testing.assert_allclose(
                got, after[slot.name], rtol=1e-6, err_msg=f"{backend} new ${slot.name}"
            )
    return pure


SCAN_WRITES = """graph @train(%0: f32[2], %1: f32[3,2]) state($w: f32[2]) {
  %2: f32[2], %3: f32[3] = scan(%0, %1) {consts=0, carries=1, length=3, reverse=false, \
body=graph @step(%0: f32[2], %1: f32[2]) state($w: f32[2]) {
      %2: f32[2] = read_variable($w)
      %3: f32[2] = mul(%1, %2)
      %4: f32[2] = add(%0, %3)
      assign_add_variable($w, %1) loc("train.py":5)
      %5: f32[] = reduce_sum(%4) {axes=[0], keepdims=false}
      return %4, %5
    }} loc("train.py":7)
  return %2, %3
}
"""


def test_discharge_scan_that_reads_and_adds_to_a_variable():
    # c <- c + x * w; w <- w + x; y = sum(c): w becomes a second carry, after c, and a result
    x = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.25]], np.float32)
    state = {"w": np.array([2.0, -1.0], np.float32)}
    pure = check_discharged(SCAN_WRITES, [np.array([1.0, 1.0], np.float32), x], state)
    assert print_graph(pure) == (
        "graph @train(%0: f32[2], %1: f32[3,2], %2: f32[2]) state_map($w: in=2 out=2) {\n"
        "  %3: f32[2], %4: f32[2], %5: f32[3] = scan(%0, %2, %1) "
        "{consts=0, carries=2, length=3, reverse=false, "
        "body=graph @step(%0: f32[2], %1: f32[2], %2: f32[2]) {\n"
        "      %3: f32[2] = mul(%2, %1)\n"
        "      %4: f32[2] = add(%0, %3)\n"
        '      %5: f32[2] = add(%1, %2) loc("train.py":5)\n'
        "      %6: f32[] = reduce_sum(%4) {axes=[0], keepdims=false}\n"
        "      return %4, %5, %6\n"
        '    }} loc("train.py":7)\n'
        "  return %3, %5, %4\n"
        "}\n"
    )
    # by hand: w = [2,-1], [3,1], [6,0], [6.5,0.25]; c = [1,1], [3,-1], [12,-2], [15,-2]
    outs = run_graph(pure, [np.array([1.0, 1.0], np.float32), x, state["w"]])
    np.testing.assert_array_equal(outs[0], [15.0, -2.0])
    np.testing.assert_array_equal(outs[1], [2.0, 10.0, 13.0])
    np.testing.assert_array_equal(outs[2], [6.5, 0.25])


COND_WRITES = """graph @g(%0: bool[], %1: f32[2]) state($w: f32[2], $n: i32[]) {
  %2: f32[2] = cond(%0, %1) {true_branch=graph @reset(%0: f32[2]) state($w: f32[2]) {
      %1: f32[2] = read_variable($w)
      assign_variable($w, %0)
      return %1
    }, false_branch=graph @keep(%0: f32[2]) state($w: f32[2]) {
      %1: f32[2] = read_variable($w)
      %2: f32[2] = add(%0, %1)
      return %2
    }}
  %3: f32[2] = read_variable($w)
  return %2, %3
}
"""


@pytest.mark.parametrize("pred", [True, False])
def test_discharge_cond_where_one_branch_writes(pred):
    # both branches return $w's new value: the one that does not write passes it through
    state = {"w": np.array([4.0, 5.0], np.float32), "n": np.int32(7)}
    x = np.array([1.0, -1.0], np.float32)
    pure = check_discharged(COND_WRITES, [np.array(pred), x], state)
    assert print_graph(pure) == (
        "graph @g(%0: bool[], %1: f32[2], %2: f32[2]) "
        "state_map($w: in=2 out=2, $n: in=none out=none) {\n"
        "  %3: f32[2], %4: f32[2] = cond(%0, %1, %2) "
        "{true_branch=graph @reset(%0: f32[2], %1: f32[2]) {\n"
        "      return %1, %0\n"
        "    }, false_branch=graph @keep(%0: f32[2], %1: f32[2]) {\n"
        "      %2: f32[2] = add(%0, %1)\n"
        "      return %2, %1\n"
        "    }}\n"
        "  return %3, %4, %4\n"
        "}\n"
    )


WHILE_WRITES = """graph @g(%0: f32[], %1: f32[]) state($scale: f32[], $limit: f32[]) {
  %2: f32[] = while(%0, %1) {consts=1, \
cond=graph @below(%0: f32[], %1: f32[]) state($limit: f32[]) {
      %2: f32[] = read_variable($limit)
      %3: bool[] = lt(%1, %2)
      return %3
    }, body=graph @step(%0: f32[], %1: f32[]) state($scale: f32[], $limit: f32[]) {
      %2: f32[] = read_variable($scale)
      %3: f32[] = mul(%0, %2)
      %4: f32[] = add(%1, %3)
      assign_sub_variable($limit, %0)
      return %4
    }} loc("loop.py":3)
  return %2
}
"""

# The while's operands become [consts, read-only variables, carry, written variables]; a
# subgraph that does not use a variable still takes it.
LIFTED_WHILE = """graph @g(%0: f32[], %1: f32[]) state($scale: f32[], $limit: f32[]) {
  %2: f32[] = read_variable($scale) loc("loop.py":3)
  %3: f32[] = read_variable($limit) loc("loop.py":3)
  %4: f32[], %5: f32[] = while(%0, %2, %1, %3) {consts=2, \
cond=graph @below(%0: f32[], %1: f32[], %2: f32[], %3: f32[]) {
      %4: bool[] = lt(%2, %3)
      return %4
    }, body=graph @step(%0: f32[], %1: f32[], %2: f32[], %3: f32[]) {
      %4: f32[] = mul(%0, %1)
      %5: f32[] = add(%2, %4)
      %6: f32[] = sub(%3, %0)
      return %5, %6
    }} loc("loop.py":3)
  assign_variable($limit, %5) loc("loop.py":3)
  return %4
}
"""


def test_lift_state_golden():
    lifted, changed = lift_state(parse(WHILE_WRITES))
    assert changed
    verify(lifted)
    assert print_graph(lifted) == LIFTED_WHILE
    pure = parse(LIFTED_WHILE)
    assert lift_state(pure) == (pure, False)  # nothing left to lift


def test_discharge_while_whose_cond_reads_what_its_body_writes():
    # x <- x + step * scale while x < limit, limit <- limit - step: by hand, with step 1,
    # scale 2, limit 7: (x, limit) = (0, 7), (2, 6), (4, 5), (6, 4) -> stop
    state = {"scale": np.float32(2.0), "limit": np.float32(7.0)}
    pure = check_discharged(WHILE_WRITES, [np.float32(1.0), np.float32(0.0)], state)
    assert print_graph(pure) == (
        "graph @g(%0: f32[], %1: f32[], %2: f32[], %3: f32[]) "
        "state_map($scale: in=2 out=none, $limit: in=3 out=1) {\n"
        "  %4: f32[], %5: f32[] = while(%0, %2, %1, %3) {consts=2, "
        "cond=graph @below(%0: f32[], %1: f32[], %2: f32[], %3: f32[]) {\n"
        "      %4: bool[] = lt(%2, %3)\n"
        "      return %4\n"
        "    }, body=graph @step(%0: f32[], %1: f32[], %2: f32[], %3: f32[]) {\n"
        "      %4: f32[] = mul(%0, %1)\n"
        "      %5: f32[] = add(%2, %4)\n"
        "      %6: f32[] = sub(%3, %0)\n"
        "      return %5, %6\n"
        '    }} loc("loop.py":3)\n'
        "  return %4, %5\n"
        "}\n"
    )
    assert [float(v) for v in run_graph(pure, [1.0, 0.0, 2.0, 7.0])] == [6.0, 4.0]


NESTED_WRITES = """graph @g(%0: f32[2,3]) state($acc: f32[]) {
  %1: f32[2] = scan(%0) {consts=0, carries=0, length=2, reverse=false, \
body=graph @rows(%0: f32[3]) state($acc: f32[]) {
      %1: f32[3] = scan(%0) {consts=0, carries=0, length=3, reverse=false, \
body=graph @cols(%0: f32[]) state($acc: f32[]) {
          %1: f32[] = read_variable($acc)
          %2: f32[] = add(%1, %0)
          assign_variable($acc, %2)
          return %2
        }}
      %2: f32[] = reduce_sum(%1) {axes=[0], keepdims=false}
      return %2
    }}
  return %1
}
"""


def test_discharge_scan_in_scan_writing_in_the_inner_body():
    # $acc becomes a carry of both loops: a running sum over the rows' elements
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)
    pure = check_discharged(NESTED_WRITES, [x], {"acc": np.float32(10.0)})
    assert print_graph(pure) == (
        "graph @g(%0: f32[2,3], %1: f32[]) state_map($acc: in=1 out=1) {\n"
        "  %2: f32[], %3: f32[2] = scan(%1, %0) {consts=0, carries=1, length=2, reverse=false, "
        "body=graph @rows(%0: f32[], %1: f32[3]) {\n"
        "      %2: f32[], %3: f32[3] = scan(%0, %1) "
        "{consts=0, carries=1, length=3, reverse=false, "
        "body=graph @cols(%0: f32[], %1: f32[]) {\n"
        "          %2: f32[] = add(%0, %1)\n"
        "          return %2, %2\n"
        "        }}\n"
        "      %4: f32[] = reduce_sum(%3) {axes=[0], keepdims=false}\n"
        "      return %2, %4\n"
        "    }}\n"
        "  return %3, %2\n"
        "}\n"
    )
    # by hand: running sums 11 13 16 | 20 25 31
    sums, acc = run_graph(pure, [x, np.float32(10.0)])
    np.testing.assert_array_equal(sums, [40.0, 76.0])
    assert float(acc) == 31.0


@pytest.mark.parametrize("text", [SCAN_WRITES, COND_WRITES, WHILE_WRITES, NESTED_WRITES])
def test_dce_and_cse_keep_control_ops_that_write(text):
    """Unused, and twice over with the very same subgraphs: dce keeps both, cse merges none."""
    graph = parse(text)
    op = graph.ops[0]
    graph.ops.insert(0, Op(op.opdef, op.inputs, op.attrs, tuple(Value(v.type) for v in op.outputs)))
    graph.outputs = []
    assert Effect.WRITE in op.effects
    for p in (cse, dce):
        out, changed = p(graph)
        assert not changed and print_graph(out) == print_graph(graph), p.__name__


PURE_CONTROL = """graph @g(%0: bool[], %1: f32[2]) {
  %2: f32[2] = cond(%0, %1) {true_branch=graph @t(%0: f32[2]) {
      %1: f32[2] = neg(%0)
      return %1
    }, false_branch=graph @f(%0: f32[2]) {
      return %0
    }}
  %3: f32[3,2] = scan(%1) {consts=1, carries=0, length=3, reverse=false, \
body=graph @b(%0: f32[2]) {
      return %0
    }}
  %4: f32[2] = exp(%1)
  return %4
}
"""


def test_dce_drops_unused_pure_control_ops():
    graph, changed = dce(parse(PURE_CONTROL))
    assert changed
    assert print_graph(graph) == (
        "graph @g(%0: bool[], %1: f32[2]) {\n  %2: f32[2] = exp(%1)\n  return %2\n}\n"
    )


def test_cse_merges_a_pure_control_op_with_the_same_subgraphs():
    graph = parse(PURE_CONTROL)
    cond = graph.ops[0]
    twin = Op(cond.opdef, cond.inputs, cond.attrs, (Value(cond.outputs[0].type),))
    graph.ops.insert(1, twin)
    graph.outputs = [cond.outputs[0], twin.outputs[0]]
    merged, changed = cse(graph)
    assert changed
    assert [op.opdef.name for op in merged.ops] == ["cond", "scan", "exp"]
    assert merged.outputs == [cond.outputs[0]] * 2
