"""fold_constants: golden IR-in/IR-out tests, and folded graphs mean what the originals mean.

Expected constants are worked out by hand in the comments; the operands of a folded op stay
(dce drops them)."""

from __future__ import annotations

import numpy as np
import pytest

from flowjit.backends.reference import run_graph
from flowjit.ir import Graph, Location, OpDef, parse, print_graph, verify
from flowjit.ir.ops import creation as Cr
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops.rules import NUMERIC, unary_rule
from flowjit.passes import fold_constants
from flowjit.passes.fold import FOLD_LIMIT


def fold(text: str) -> tuple[str, bool]:
    graph = parse(text)
    verify(graph)
    folded, changed = fold_constants(graph)
    verify(folded)
    return print_graph(folded), changed


def check_golden(before: str, after: str) -> None:
    """``before`` folds to ``after``; folding again changes nothing; and both graphs give the
    same results on the reference interpreter."""
    assert fold(before) == (after, True)
    assert fold(after) == (after, False)
    assert_same_results(before, after)


def assert_same_results(before: str, after: str) -> None:
    original, folded = parse(before), parse(after)
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(v.type.shape).astype(v.type.dtype) for v in original.inputs]
    want, got = run_graph(original, args), run_graph(folded, args)
    assert len(want) == len(got)
    for w, g in zip(want, got):
        assert w.dtype == g.dtype and w.shape == g.shape
        np.testing.assert_array_equal(g, w)


def test_binary_and_unary_ops_on_constants():
    before = """graph @g(%0: f32[2]) {
  %1: f32[2] = constant() {value=dense(f32[2], [1.0, 2.0])}
  %2: f32[2] = constant() {value=dense(f32[2], [3.0, 0.5])}
  %3: f32[2] = add(%1, %2)
  %4: f32[2] = neg(%2)
  %5: i32[] = constant() {value=dense(i32[], [7])}
  %6: i32[] = constant() {value=dense(i32[], [-3])}
  %7: i32[] = mul(%5, %6)
  %8: bool[] = lt(%6, %5)
  %9: f32[2] = mul(%3, %0)
  return %9, %4, %7, %8
}
"""
    # [1, 2] + [3, 0.5] = [4, 2.5]; -[3, 0.5]; 7 * -3 = -21; -3 < 7
    after = """graph @g(%0: f32[2]) {
  %1: f32[2] = constant() {value=dense(f32[2], [1.0, 2.0])}
  %2: f32[2] = constant() {value=dense(f32[2], [3.0, 0.5])}
  %3: f32[2] = constant() {value=dense(f32[2], [4.0, 2.5])}
  %4: f32[2] = constant() {value=dense(f32[2], [-3.0, -0.5])}
  %5: i32[] = constant() {value=dense(i32[], [7])}
  %6: i32[] = constant() {value=dense(i32[], [-3])}
  %7: i32[] = constant() {value=dense(i32[], [-21])}
  %8: bool[] = constant() {value=dense(bool[], [true])}
  %9: f32[2] = mul(%3, %0)
  return %9, %4, %7, %8
}
"""
    check_golden(before, after)


def test_an_op_with_attributes_and_a_dtype_change():
    before = """graph @g() {
  %0: f32[2,3] = constant() {value=dense(f32[2,3], [1.5, -2.5, 3.0, 4.0, 5.0, 6.0])}
  %1: f32[3,2] = transpose(%0) {perm=[1, 0]}
  %2: i32[3,2] = convert(%1) {dtype=i32}
  %3: f32[2] = reduce_sum(%0) {axes=[1], keepdims=false}
  return %2, %3
}
"""
    # transpose rows [1.5 -2.5 3], [4 5 6]; convert truncates toward zero; row sums 2, 15
    after = """graph @g() {
  %0: f32[2,3] = constant() {value=dense(f32[2,3], [1.5, -2.5, 3.0, 4.0, 5.0, 6.0])}
  %1: f32[3,2] = constant() {value=dense(f32[3,2], [1.5, 4.0, -2.5, 5.0, 3.0, 6.0])}
  %2: i32[3,2] = constant() {value=dense(i32[3,2], [1, 4, -2, 5, 3, 6])}
  %3: f32[2] = constant() {value=dense(f32[2], [2.0, 15.0])}
  return %2, %3
}
"""
    check_golden(before, after)


def test_multi_output_op_folds_into_one_constant_per_result():
    before = """graph @g() {
  %0: f32[4] = constant() {value=dense(f32[4], [3.0, 9.0, 1.0, 7.0])}
  %1: f32[2], %2: i32[2] = top_k(%0) {k=2} loc("m.py":4)
  return %2, %1
}
"""
    after = """graph @g() {
  %0: f32[4] = constant() {value=dense(f32[4], [3.0, 9.0, 1.0, 7.0])}
  %1: f32[2] = constant() {value=dense(f32[2], [9.0, 7.0])} loc("m.py":4)
  %2: i32[2] = constant() {value=dense(i32[2], [1, 3])} loc("m.py":4)
  return %2, %1
}
"""
    check_golden(before, after)


def test_a_chain_folds_transitively_in_one_run():
    before = """graph @g(%0: f32[]) {
  %1: f32[] = constant() {value=dense(f32[], [2.0])}
  %2: f32[] = constant() {value=dense(f32[], [3.0])}
  %3: f32[] = mul(%1, %2)
  %4: f32[] = sub(%3, %1)
  %5: f32[] = neg(%4)
  %6: f32[] = mul(%5, %5)
  %7: f32[] = add(%0, %6)
  return %7
}
"""
    # 2 * 3 = 6; 6 - 2 = 4; -4; (-4) * (-4) = 16
    after = """graph @g(%0: f32[]) {
  %1: f32[] = constant() {value=dense(f32[], [2.0])}
  %2: f32[] = constant() {value=dense(f32[], [3.0])}
  %3: f32[] = constant() {value=dense(f32[], [6.0])}
  %4: f32[] = constant() {value=dense(f32[], [4.0])}
  %5: f32[] = constant() {value=dense(f32[], [-4.0])}
  %6: f32[] = constant() {value=dense(f32[], [16.0])}
  %7: f32[] = add(%0, %6)
  return %7
}
"""
    check_golden(before, after)


def test_locations_are_kept():
    before = """graph @g() {
  %0: f32[] = constant() {value=dense(f32[], [0.25])} loc("a.py":1)
  %1: f32[] = add(%0, %0) loc("b.py":20)
  %2: f32[] = exp(%1)
  return %2
}
"""
    after = """graph @g() {
  %0: f32[] = constant() {value=dense(f32[], [0.25])} loc("a.py":1)
  %1: f32[] = constant() {value=dense(f32[], [0.5])} loc("b.py":20)
  %2: f32[] = constant() {value=dense(f32[], [1.6487212181091309])}
  return %2
}
"""
    # exp(0.5) = 1.6487212707..., which rounds to the float32 1.6487212181091309
    assert float(np.float32(np.exp(0.5))) == 1.6487212181091309
    check_golden(before, after)


def _dense(n: int, values) -> str:
    return f"dense(f32[{n}], [{', '.join(repr(float(v)) for v in values)}])"


@pytest.mark.parametrize("n", [FOLD_LIMIT, FOLD_LIMIT + 1])
def test_results_larger_than_the_limit_stay(n):
    before = f"""graph @g() {{
  %0: f32[{n}] = constant() {{value={_dense(n, range(n))}}}
  %1: f32[{n}] = neg(%0)
  return %1
}}
"""
    folded = f"""graph @g() {{
  %0: f32[{n}] = constant() {{value={_dense(n, range(n))}}}
  %1: f32[{n}] = constant() {{value={_dense(n, [-float(i) for i in range(n)])}}}
  return %1
}}
"""
    if n <= FOLD_LIMIT:
        check_golden(before, folded)
    else:
        assert fold(before) == (before, False)


def test_a_result_never_grows_past_its_largest_input():
    # a broadcast scalar stays a broadcast (a tensor of its size would be embedded); an op
    # whose result is as large as its largest input folds, even when another input is smaller
    before = """graph @g() {
  %0: f32[] = constant() {value=dense(f32[], [2.0])}
  %1: f32[3] = constant() {value=dense(f32[3], [1.0, 2.0, 3.0])}
  %2: f32[3] = broadcast_to(%0) {shape=[3]}
  %3: f32[3] = mul(%0, %1)
  %4: f32[3,1] = reshape(%1) {shape=[3, 1]}
  %5: f32[3,3] = add(%4, %1)
  %6: f32[6] = concatenate(%1, %1) {axis=0}
  return %2, %3, %5, %6
}
"""
    after = """graph @g() {
  %0: f32[] = constant() {value=dense(f32[], [2.0])}
  %1: f32[3] = constant() {value=dense(f32[3], [1.0, 2.0, 3.0])}
  %2: f32[3] = broadcast_to(%0) {shape=[3]}
  %3: f32[3] = constant() {value=dense(f32[3], [2.0, 4.0, 6.0])}
  %4: f32[3,1] = constant() {value=dense(f32[3,1], [1.0, 2.0, 3.0])}
  %5: f32[3,3] = add(%4, %1)
  %6: f32[6] = concatenate(%1, %1) {axis=0}
  return %2, %3, %5, %6
}
"""
    check_golden(before, after)


def test_ops_with_effects_stay():
    text = """graph @g() state($w: f32[2]) {
  %0: f32[2] = constant() {value=dense(f32[2], [1.0, 2.0])}
  assign_variable($w, %0)
  assign_add_variable($w, %0)
  %1: f32[2] = read_variable($w)
  %2: f32[2] = neg(%0)
  return %1, %2
}
"""
    after = """graph @g() state($w: f32[2]) {
  %0: f32[2] = constant() {value=dense(f32[2], [1.0, 2.0])}
  assign_variable($w, %0)
  assign_add_variable($w, %0)
  %1: f32[2] = read_variable($w)
  %2: f32[2] = constant() {value=dense(f32[2], [-1.0, -2.0])}
  return %1, %2
}
"""
    assert fold(text) == (after, True)
    state = {"w": np.zeros(2, np.float32)}
    assert [r.tolist() for r in run_graph(parse(after), [], state)] == [[2.0, 4.0], [-1.0, -2.0]]


def test_control_flow_ops_stay_but_constants_inside_their_subgraphs_fold():
    before = """graph @g() {
  %0: bool[] = constant() {value=dense(bool[], [true])}
  %1: f32[] = constant() {value=dense(f32[], [3.0])}
  %2: f32[] = cond(%0, %1) {true_branch=graph @t(%0: f32[]) {
      %1: f32[] = constant() {value=dense(f32[], [0.5])}
      %2: f32[] = add(%1, %1) loc("t.py":2)
      %3: f32[] = mul(%0, %2)
      return %3
    }, false_branch=graph @f(%0: f32[]) {
      return %0
    }} loc("t.py":1)
  %3: f32[], %4: f32[2] = scan(%1) {consts=0, carries=1, length=2, reverse=false, \
body=graph @b(%0: f32[]) {
      %1: f32[] = constant() {value=dense(f32[], [4.0])}
      %2: f32[] = sqrt(%1)
      %3: f32[] = mul(%0, %2)
      return %3, %0
    }}
  return %2, %3, %4
}
"""
    # 0.5 + 0.5 = 1 in the true branch; sqrt(4) = 2 in the scan body
    after = """graph @g() {
  %0: bool[] = constant() {value=dense(bool[], [true])}
  %1: f32[] = constant() {value=dense(f32[], [3.0])}
  %2: f32[] = cond(%0, %1) {true_branch=graph @t(%0: f32[]) {
      %1: f32[] = constant() {value=dense(f32[], [0.5])}
      %2: f32[] = constant() {value=dense(f32[], [1.0])} loc("t.py":2)
      %3: f32[] = mul(%0, %2)
      return %3
    }, false_branch=graph @f(%0: f32[]) {
      return %0
    }} loc("t.py":1)
  %3: f32[], %4: f32[2] = scan(%1) {consts=0, carries=1, length=2, reverse=false, \
body=graph @b(%0: f32[]) {
      %1: f32[] = constant() {value=dense(f32[], [4.0])}
      %2: f32[] = constant() {value=dense(f32[], [2.0])}
      %3: f32[] = mul(%0, %2)
      return %3, %0
    }}
  return %2, %3, %4
}
"""
    check_golden(before, after)
    # by hand: cond gives 3 * 1; the scan carries 3 -> 6 -> 12 and stacks [3, 6]
    assert [r.tolist() for r in run_graph(parse(after), [])] == [3.0, 12.0, [3.0, 6.0]]


def _refuse(x: np.ndarray) -> np.ndarray:
    raise ValueError("this reference cannot compute its result")


def test_an_op_whose_reference_raises_stays():
    # a reference that refuses its constants (an op declared here, unregistered): the op is
    # left for run time; the ops beside it fold
    refuses = OpDef("refuses", unary_rule(NUMERIC), _refuse)
    graph = Graph("g")
    (c,) = graph.add(Cr.constant, [], {"value": np.array(2, np.int32)})
    (kept,) = graph.add(refuses, [c], loc=Location("p.py", 3))
    (doubled,) = graph.add(E.add, [c, c])
    graph.outputs = [kept, doubled]
    folded, changed = fold_constants(graph)
    assert changed
    assert [op.opdef.name for op in folded.ops] == ["constant", "refuses", "constant"]
    assert folded.ops[1].inputs == (c,) and folded.ops[1].outputs == (kept,)
    assert folded.ops[2].attrs["value"].tolist() == 4  # 2 + 2
    assert fold_constants(folded) == (folded, False)


def test_edge_values_fold_to_what_compiled_code_computes():
    # integer x // 0, x % 0, INT_MIN // -1, negative integer powers and signed zeros fold to
    # what jax.jit gives and XLA computes (docs/ir-format.md, "Edge values")
    before = """graph @g() {
  %0: i32[4] = constant() {value=dense(i32[4], [7, -7, 0, -2147483648])}
  %1: i32[4] = constant() {value=dense(i32[4], [0, 0, 0, -1])}
  %2: i32[4] = floor_divide(%0, %1)
  %3: i32[4] = remainder(%0, %1)
  %4: i32[4] = constant() {value=dense(i32[4], [2, -1, 1, 0])}
  %5: i32[4] = constant() {value=dense(i32[4], [-1, -3, -5, -1])}
  %6: i32[4] = pow(%4, %5)
  %7: f32[4] = constant() {value=dense(f32[4], [-0.0, -3.0, -0.0, 0.0])}
  %8: f32[4] = constant() {value=dense(f32[4], [3.0, 3.0, 0.0, -0.0])}
  %9: f32[4] = floor_divide(%7, %8)
  %10: f32[4] = remainder(%7, %8)
  %11: f32[4] = max(%7, %8)
  %12: f32[4] = min(%7, %8)
  %13: f32[4] = sign(%7)
  %14: f32[4] = add(%7, %8)
  return %2, %3, %6, %9, %10, %11, %12, %13, %14
}
"""
    # 7 // 0 = -2, -7 // 0 = -2, 0 // 0 = -1 (XLA's -1, less one where the signs of x and 0
    # differ), INT_MIN // -1 = INT_MIN (wraps); x % 0 = 0, INT_MIN % -1 = 0;
    # 2 ** -1 = 2 ** 63 = 0 (wraps), (-1) ** -3 = (-1) ** 61 = -1, 1 ** -5 = 1, 0 ** -1 = 0;
    # -0 // 3 = (-0 - -0) / 3 = 0, -3 // 3 = -1, -0 // 0 = -0 / 0 = nan, 0 // -0 = nan;
    # -0 % 3 = -0 and -3 % 3 = -0 (the dividend's sign), x % 0 = nan;
    # max(-0, 0) = max(0, -0) = 0, min(-0, 0) = min(0, -0) = -0; sign keeps -0;
    # -0 + 0 = 0 + -0 = 0
    after = """graph @g() {
  %0: i32[4] = constant() {value=dense(i32[4], [7, -7, 0, -2147483648])}
  %1: i32[4] = constant() {value=dense(i32[4], [0, 0, 0, -1])}
  %2: i32[4] = constant() {value=dense(i32[4], [-2, -2, -1, -2147483648])}
  %3: i32[4] = constant() {value=dense(i32[4], [0, 0, 0, 0])}
  %4: i32[4] = constant() {value=dense(i32[4], [2, -1, 1, 0])}
  %5: i32[4] = constant() {value=dense(i32[4], [-1, -3, -5, -1])}
  %6: i32[4] = constant() {value=dense(i32[4], [0, -1, 1, 0])}
  %7: f32[4] = constant() {value=dense(f32[4], [-0.0, -3.0, -0.0, 0.0])}
  %8: f32[4] = constant() {value=dense(f32[4], [3.0, 3.0, 0.0, -0.0])}
  %9: f32[4] = constant() {value=dense(f32[4], [0.0, -1.0, nan, nan])}
  %10: f32[4] = constant() {value=dense(f32[4], [-0.0, -0.0, nan, nan])}
  %11: f32[4] = constant() {value=dense(f32[4], [3.0, 3.0, 0.0, 0.0])}
  %12: f32[4] = constant() {value=dense(f32[4], [-0.0, -3.0, -0.0, -0.0])}
  %13: f32[4] = constant() {value=dense(f32[4], [-0.0, -1.0, -0.0, 0.0])}
  %14: f32[4] = constant() {value=dense(f32[4], [3.0, 0.0, 0.0, 0.0])}
  return %2, %3, %6, %9, %10, %11, %12, %13, %14
}
"""
    assert fold(before) == (after, True)
    assert fold(after) == (after, False)


def test_ops_without_inputs_stay():
    # iota has nothing to fold from; a lone constant is already folded
    text = """graph @g() {
  %0: i32[3] = iota() {shape=[3], dimension=0, dtype=i32}
  %1: f32[] = constant() {value=dense(f32[], [1.0])}
  return %0, %1
}
"""
    assert fold(text) == (text, False)


def test_nan_and_inf_fold_like_the_reference():
    before = """graph @g() {
  %0: f32[3] = constant() {value=dense(f32[3], [0.0, 1.0, -1.0])}
  %1: f32[3] = div(%0, %0)
  %2: f32[3] = log(%0)
  %3: bf16[3] = convert(%2) {dtype=bf16}
  return %1, %3
}
"""
    # 0/0 = nan, 1/1 = 1, -1/-1 = 1; log 0 = -inf, log 1 = 0, log -1 = nan
    after = """graph @g() {
  %0: f32[3] = constant() {value=dense(f32[3], [0.0, 1.0, -1.0])}
  %1: f32[3] = constant() {value=dense(f32[3], [nan, 1.0, 1.0])}
  %2: f32[3] = constant() {value=dense(f32[3], [-inf, 0.0, nan])}
  %3: bf16[3] = constant() {value=dense(bf16[3], [-inf, 0.0, nan])}
  return %1, %3
}
"""
    assert fold(before) == (after, True)
    assert fold(after) == (after, False)
    want = run_graph(parse(before), [])
    got = run_graph(parse(after), [])
    for w, g in zip(want, got):
        assert w.dtype == g.dtype
        np.testing.assert_array_equal(g.astype(np.float32), w.astype(np.float32))
