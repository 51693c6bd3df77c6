"""Golden IR-in/IR-out tests for each pass, and the pipeline's contract."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from flowjit.backends.reference import run_graph
from flowjit.backends.xla import cluster_stablehlo
from flowjit.ir import Graph, Op, PassError, TensorType, Value, parse, print_graph, verify
from flowjit.passes import (
    count_ops,
    cse,
    dce,
    default_pipeline,
    discharge_state,
    fold_constants,
    partition,
    pass_name,
    resolve_passes,
    run_pipeline,
    simplify,
)

import flowjit as fj
import flowjit.numpy as fnp


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


# -- cse and dce inside subgraphs ------------------------------------------------------------
NESTED_DUPLICATES = """graph @g(%0: bool[], %1: f32[2], %2: f32[3,2]) {
  %3: f32[2] = cond(%0, %1) {true_branch=graph @t(%0: f32[2]) {
      %1: f32[2] = exp(%0)
      %2: f32[2] = exp(%0)
      %3: f32[2] = add(%1, %2)
      return %3
    }, false_branch=graph @f(%0: f32[2]) {
      %1: f32[2] = neg(%0)
      return %1
    }}
  %4: f32[2], %5: f32[3,2] = scan(%3, %2) {consts=0, carries=1, length=3, reverse=false, \
body=graph @b(%0: f32[2], %1: f32[2]) {
      %2: f32[2] = mul(%0, %1)
      %3: f32[2] = mul(%0, %1)
      %4: f32[2] = sin(%1)
      %5: f32[2] = add(%2, %3)
      return %5, %2
    }}
  %6: f32[2] = exp(%1)
  return %4, %5, %6
}
"""


def test_cse_inside_subgraphs():
    # each subgraph on its own: exp(%1) outside is not the branch's exp(%0)
    after = """graph @g(%0: bool[], %1: f32[2], %2: f32[3,2]) {
  %3: f32[2] = cond(%0, %1) {true_branch=graph @t(%0: f32[2]) {
      %1: f32[2] = exp(%0)
      %2: f32[2] = add(%1, %1)
      return %2
    }, false_branch=graph @f(%0: f32[2]) {
      %1: f32[2] = neg(%0)
      return %1
    }}
  %4: f32[2], %5: f32[3,2] = scan(%3, %2) {consts=0, carries=1, length=3, reverse=false, \
body=graph @b(%0: f32[2], %1: f32[2]) {
      %2: f32[2] = mul(%0, %1)
      %3: f32[2] = sin(%1)
      %4: f32[2] = add(%2, %2)
      return %4, %2
    }}
  %6: f32[2] = exp(%1)
  return %4, %5, %6
}
"""
    assert apply(cse, NESTED_DUPLICATES) == (after, True)
    assert apply(cse, after) == (after, False)


def test_dce_inside_subgraphs():
    # the body's sin is dead; a subgraph keeps its results (the op's signature fixes them)
    after = """graph @g(%0: bool[], %1: f32[2], %2: f32[3,2]) {
  %3: f32[2] = cond(%0, %1) {true_branch=graph @t(%0: f32[2]) {
      %1: f32[2] = exp(%0)
      %2: f32[2] = exp(%0)
      %3: f32[2] = add(%1, %2)
      return %3
    }, false_branch=graph @f(%0: f32[2]) {
      %1: f32[2] = neg(%0)
      return %1
    }}
  %4: f32[2], %5: f32[3,2] = scan(%3, %2) {consts=0, carries=1, length=3, reverse=false, \
body=graph @b(%0: f32[2], %1: f32[2]) {
      %2: f32[2] = mul(%0, %1)
      %3: f32[2] = mul(%0, %1)
      %4: f32[2] = add(%2, %3)
      return %4, %2
    }}
  %6: f32[2] = exp(%1)
  return %4, %5, %6
}
"""
    assert apply(dce, NESTED_DUPLICATES) == (after, True)
    assert apply(dce, after) == (after, False)


def test_cse_merges_twin_control_ops_whose_subgraphs_it_simplifies():
    # Two conds with the very same operands and subgraph objects are one op; that the
    # subgraphs hold a duplicate for cse to merge must not keep them apart.
    graph = parse(NESTED_DUPLICATES)
    cond = graph.ops[0]
    twin = Op(cond.opdef, cond.inputs, cond.attrs, (Value(cond.outputs[0].type),))
    graph.ops.insert(1, twin)
    graph.outputs = [cond.outputs[0], twin.outputs[0]]
    merged, changed = cse(graph)
    assert changed
    assert [op.opdef.name for op in merged.ops] == ["cond", "scan", "exp"]
    assert merged.outputs[0] is merged.outputs[1]


@pytest.mark.parametrize("scale, merged", [("2.0", True), ("3.0", False)])
def test_cse_compares_subgraphs_by_their_text(scale, merged):
    # two conds traced apart hold distinct subgraph objects: equal text is equal meaning
    # (subgraphs are closed); a different constant inside is a different op
    text = f"""graph @g(%0: bool[], %1: f32[]) {{
  %2: f32[] = cond(%0, %1) {{true_branch=graph @t(%0: f32[]) {{
      %1: f32[] = constant() {{value=dense(f32[], [2.0])}}
      %2: f32[] = mul(%0, %1)
      return %2
    }}, false_branch=graph @f(%0: f32[]) {{
      return %0
    }}}}
  %3: f32[] = cond(%0, %1) {{true_branch=graph @t(%0: f32[]) {{
      %1: f32[] = constant() {{value=dense(f32[], [{scale}])}}
      %2: f32[] = mul(%0, %1)
      return %2
    }}, false_branch=graph @f(%0: f32[]) {{
      return %0
    }}}}
  %4: f32[] = add(%2, %3)
  return %4
}}
"""
    graph, changed = cse(parse(text))
    assert changed == merged
    assert [op.opdef.name for op in graph.ops] == ["cond"] * (1 if merged else 2) + ["add"]


# -- the pipeline ----------------------------------------------------------------------------
FOUR = [fold_constants, simplify, cse, dce]
PIPELINE_INPUT = """graph @g(%0: f32[2]) {
  %1: f32[] = constant() {value=dense(f32[], [1.0])}
  %2: f32[] = constant() {value=dense(f32[], [0.0])}
  %3: f32[] = add(%1, %2)
  %4: f32[2] = mul(%0, %3)
  %5: f32[2] = exp(%4)
  %6: f32[2] = exp(%4)
  %7: f32[2] = sub(%5, %6)
  return %7
}
"""


def test_pipeline_skips_disabled_passes():
    result = run_pipeline(parse(PIPELINE_INPUT), FOUR, disabled=["simplify", "dce"])
    assert [(r.name, r.changed, r.ops_before, r.ops_after) for r in result.records] == [
        ("fold_constants", True, 7, 7),  # 1 + 0 becomes the constant 1
        ("cse", True, 7, 5),  # that constant is the first one; the second exp
    ]
    assert print_graph(result.graph, locs=False) == (
        "graph @g(%0: f32[2]) {\n"
        "  %1: f32[] = constant() {value=dense(f32[], [1.0])}\n"
        "  %2: f32[] = constant() {value=dense(f32[], [0.0])}\n"
        "  %3: f32[2] = mul(%0, %1)\n"
        "  %4: f32[2] = exp(%3)\n"
        "  %5: f32[2] = sub(%4, %4)\n"
        "  return %5\n"
        "}\n"
    )


def test_pipeline_of_all_four_passes():
    result = run_pipeline(parse(PIPELINE_INPUT), FOUR)
    assert [(r.name, r.changed, r.ops_before, r.ops_after) for r in result.records] == [
        ("fold_constants", True, 7, 7),
        ("simplify", True, 7, 6),  # x * 1
        ("cse", True, 6, 4),  # the folded 1 is the first constant; the second exp
        ("dce", True, 4, 2),  # the two constants
    ]
    assert print_graph(result.graph) == (
        "graph @g(%0: f32[2]) {\n"
        "  %1: f32[2] = exp(%0)\n"
        "  %2: f32[2] = sub(%1, %1)\n"
        "  return %2\n"
        "}\n"
    )


def test_pipeline_refuses_to_turn_off_a_required_pass():
    with pytest.raises(ValueError, match="discharge_state cannot be turned off"):
        run_pipeline(parse(PIPELINE_INPUT), default_pipeline(), disabled=["discharge_state"])


def test_pipeline_names_itself_for_an_unknown_pass():
    names = [pass_name(p) for p in FOUR]
    with pytest.raises(ValueError) as info:
        run_pipeline(parse(PIPELINE_INPUT), FOUR, disabled=["cse", "constant_folding"])
    assert "'constant_folding'" in str(info.value)
    assert str(names) in str(info.value)


def test_on_pass_sees_each_record_and_the_graph_it_describes():
    seen = []
    result = run_pipeline(
        parse(PIPELINE_INPUT), FOUR, on_pass=lambda record, graph: seen.append((record, graph))
    )
    assert [record for record, _ in seen] == result.records
    assert [record.name for record, _ in seen] == ["fold_constants", "simplify", "cse", "dce"]
    assert seen[-1][1] is result.graph
    texts = [print_graph(graph) for _, graph in seen]
    # each graph is the one after its pass: the op counts are its own
    for (record, graph), text in zip(seen, texts):
        assert record.ops_after == len(graph.ops)
        assert record.text is None  # no text unless asked for
    assert texts[2] != texts[3]  # dce dropped the constants


def test_op_counts_count_subgraph_ops():
    # 3 ops at the top level, 3 + 1 in the cond's branches, 4 in the scan's body: 11
    result = run_pipeline(parse(NESTED_DUPLICATES), [dce, cse])
    assert [(r.name, r.ops_before, r.ops_after) for r in result.records] == [
        ("dce", 11, 10),  # sin in the body
        ("cse", 10, 8),  # exp in the true branch, mul in the body
    ]
    assert count_ops(result.graph) == 8


def test_verify_each_names_the_pass_that_broke_the_graph():
    def wrong_type(graph: Graph) -> tuple[Graph, bool]:
        out = graph.derive()
        out.ops = list(graph.ops)
        op = out.ops[-1]  # the last op now claims an i32 result
        out.ops[-1] = Op(op.opdef, op.inputs, op.attrs, (Value(TensorType((2,), np.int32)),))
        out.outputs = [out.ops[-1].outputs[0]]
        return out, True

    with pytest.raises(PassError) as info:
        run_pipeline(parse(PIPELINE_INPUT), [*FOUR[:2], wrong_type, *FOUR[2:]])
    message = str(info.value)
    assert "pass wrong_type failed after ['fold_constants', 'simplify']" in message
    assert "shape rule" in message  # the verifier's finding comes with it
    # without verify_each the broken graph goes through (only the pipeline verifies)
    result = run_pipeline(parse(PIPELINE_INPUT), [wrong_type], verify_each=False)
    assert result.records[0].name == "wrong_type"


def test_a_pass_that_crashes_is_named():
    # A pass failing with any exception, not just a flowjit error, is "pass X failed after
    # [...]": the pipeline is what says which pass broke (torch.fx's pass manager does so).
    def crashes(graph: Graph) -> tuple[Graph, bool]:
        return {}["missing"], True

    with pytest.raises(PassError, match=r"pass crashes failed after \['fold_constants'\]"):
        run_pipeline(parse(PIPELINE_INPUT), [fold_constants, crashes])


def test_pipeline_takes_a_subgraph_that_declares_a_variable_it_does_not_use():
    # The verifier accepts a body whose state(...) names a variable no op in it uses; the
    # pipeline must get such a graph through to a pure one (discharge_state left the
    # declaration in the body of the now stateless graph, which then fails to verify).
    text = """graph @g(%0: f32[2]) state($w: f32[2]) {
  %1: f32[2], %2: f32[1,2] = scan(%0) {consts=0, carries=1, length=1, reverse=false, \
body=graph @body(%0: f32[2]) state($w: f32[2]) {
      %1: f32[2] = neg(%0)
      return %1, %0
    }}
  return %1, %2
}
"""
    verify(parse(text))
    result = run_pipeline(parse(text), default_pipeline())
    assert not result.graph.states and result.graph.state_map is not None
    x = np.array([1.0, -2.0], np.float32)
    carry, ys = run_graph(result.graph, [x])
    np.testing.assert_array_equal(carry, -x)
    np.testing.assert_array_equal(ys, [x])


# -- fj.compile with a custom pipeline and with disabled passes ------------------------------
def _duplicated(x):
    return fnp.exp(x) * 1.0 + fnp.exp(x)


def _count(ir: str, op: str) -> int:
    return ir.count(f" = {op}(")


def test_compile_with_a_custom_pipeline():
    x = np.array([0.5, -1.0], np.float32)
    want = 2 * np.exp(x)
    default, without_cse = fj.compile(_duplicated), fj.compile(_duplicated, passes=[simplify, dce])
    assert _count(default.lower(x).ir(), "exp") == 1
    assert _count(without_cse.lower(x).ir(), "exp") == 2  # the duplicate stays
    assert _count(without_cse.lower(x).ir(), "mul") == 0  # simplify ran
    for f in (default, without_cse):
        np.testing.assert_allclose(f(x), want, rtol=1e-6)


def test_compile_appends_discharge_state_to_a_custom_pipeline():
    v = fj.Variable(np.array([1.0, 2.0], np.float32), name="v")

    def step(x):
        v.assign_add(x)
        return fnp.sum(v)

    f = fj.compile(step, passes=[dce])
    x = np.array([0.5, 0.25], np.float32)
    optimized = f.lower(x).ir()
    assert "state_map($v: in=" in optimized and "_variable(" not in optimized
    assert float(f(x)) == 3.75  # (1 + 0.5) + (2 + 0.25)
    assert float(f(x)) == 4.5
    np.testing.assert_array_equal(np.asarray(v), [2.0, 2.5])


def test_compile_takes_pass_names():
    x = np.array([0.5, -1.0], np.float32)
    by_name = fj.compile(_duplicated, passes=["simplify", "dce"])
    assert _count(by_name.lower(x).ir(), "exp") == 2  # no cse
    assert _count(by_name.lower(x).ir(), "mul") == 0  # simplify ran
    only_cse = fj.compile(_duplicated, passes=["cse", dce])  # names and functions mix
    assert _count(only_cse.lower(x).ir(), "exp") == 1
    assert _count(only_cse.lower(x).ir(), "mul") == 1  # no simplify
    for f in (by_name, only_cse):
        np.testing.assert_allclose(f(x), 2 * np.exp(x), rtol=1e-6)


def test_run_pipeline_takes_pass_names():
    by_name = run_pipeline(parse(PIPELINE_INPUT), ["fold_constants", "simplify", "cse", "dce"])
    by_function = run_pipeline(parse(PIPELINE_INPUT), FOUR)
    assert [r.name for r in by_name.records] == ["fold_constants", "simplify", "cse", "dce"]
    assert print_graph(by_name.graph) == print_graph(by_function.graph)


def test_resolve_passes_maps_each_default_name_to_its_pass():
    names = ["fold_constants", "simplify", "cse", "dce", "discharge_state", "partition"]
    passes = [fold_constants, simplify, cse, dce, discharge_state, partition]
    assert resolve_passes(names) == passes
    assert resolve_passes(reversed(passes)) == passes[::-1]  # functions pass through


def test_an_unknown_pass_name_lists_the_known_ones():
    x = np.ones(2, np.float32)
    with pytest.raises(ValueError, match=r"no pass named 'constant_folding'") as err:
        fj.compile(_duplicated, passes=["cse", "constant_folding"])(x)
    for name in ("fold_constants", "simplify", "cse", "dce", "discharge_state", "partition"):
        assert name in str(err.value)


@pytest.mark.parametrize(
    "passes, message",
    [
        ("cse", r"passes takes a list of pass functions or pass names .*write \['cse'\]"),
        (cse, r"passes takes a list of pass functions or pass names .*not function"),
        ([3], r"passes takes a list of pass functions or pass names .*not int 3"),
        ([lambda g: (g, False), functools.partial(cse)], r"has no name"),
    ],
)
def test_compile_says_what_passes_takes(passes, message):
    x = np.ones(2, np.float32)
    with pytest.raises(TypeError, match=message):
        fj.compile(_duplicated, passes=passes)(x)


@pytest.fixture
def disabled_passes():
    """Set fj.config.disabled_passes in a test; the setting is restored after it."""
    saved = fj.config.disabled_passes
    try:
        yield lambda names: fj.config.update("disabled_passes", names)
    finally:
        fj.config.update("disabled_passes", saved)


def test_config_disabled_passes(disabled_passes):
    x = np.array([0.5, -1.0], np.float32)
    disabled_passes(["cse"])
    f = fj.compile(_duplicated)
    assert _count(f.lower(x).ir(), "exp") == 2
    np.testing.assert_allclose(f(x), 2 * np.exp(x), rtol=1e-6)
    disabled_passes(["cse", "simplify", "fold_constants", "dce"])
    g = fj.compile(_duplicated)
    assert _count(g.lower(x).ir(), "mul") == 1
    np.testing.assert_allclose(g(x), 2 * np.exp(x), rtol=1e-6)


def test_config_disabled_passes_checks_names_when_compiling(disabled_passes):
    x = np.ones(2, np.float32)
    disabled_passes(["discharge_state"])
    with pytest.raises(ValueError, match="discharge_state cannot be turned off"):
        fj.compile(_duplicated)(x)
    disabled_passes(["no_such_pass"])
    with pytest.raises(ValueError, match="no pass named 'no_such_pass'"):
        fj.compile(_duplicated)(x)


def test_config_disabled_passes_must_be_names():
    saved = fj.config.disabled_passes
    try:
        with pytest.raises(ValueError, match="list of pass names"):
            fj.config.update("disabled_passes", "cse")
        with pytest.raises(ValueError, match="list of pass names"):
            fj.config.update("disabled_passes", [cse])
        assert fj.config.disabled_passes == saved
    finally:
        fj.config.update("disabled_passes", saved)


def test_an_op_merged_by_cse_keeps_all_of_its_origins():
    text = """graph @g(%0: f32[3]) {
  %1: f32[3] = exp(%0) loc("model.py":4)
  %2: f32[3] = exp(%0) loc("model.py":5)
  %3: f32[3] = exp(%0) loc("model.py":4)
  %4: f32[3] = add(%1, %2) loc("model.py":6)
  %5: f32[3] = add(%4, %3) loc("model.py":7)
  return %5
}
"""
    want = """graph @g(%0: f32[3]) {
  %1: f32[3] = exp(%0) loc("model.py":4, "model.py":5)
  %2: f32[3] = add(%1, %1) loc("model.py":6)
  %3: f32[3] = add(%2, %1) loc("model.py":7)
  return %3
}
"""
    merged, changed = cse(parse(text))
    assert changed and print_graph(merged) == want
    assert print_graph(parse(want)) == want
    assert str(merged.ops[0].loc) == "model.py:4 (and model.py:5)"
    # both lines reach the StableHLO, as one fused location
    module = cluster_stablehlo(merged)
    assert 'loc("model.py":4:0)' in module and 'loc("model.py":5:0)' in module
    assert "fused[" in module
