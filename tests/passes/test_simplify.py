"""simplify: one golden IR-in/IR-out test per rule, where it applies and where it must not; rules
inside subgraphs, effects, the fixed point and idempotence.

simplify forwards a rewritten op's uses and leaves the ops that become unused to dce, so the
goldens keep them (a constant that was an operand, an inner transpose)."""

from __future__ import annotations

import numpy as np
import pytest

from flowjit.backends.reference import run_graph
from flowjit.ir import parse, print_graph, verify
from flowjit.passes import simplify


def run(text: str) -> tuple[str, bool]:
    graph = parse(text)
    verify(graph)
    out, changed = simplify(graph)
    verify(out)
    return print_graph(out), changed


def check_golden(before: str, after: str) -> None:
    """``before`` simplifies to ``after``, which is a fixed point, and means the same."""
    assert run(before) == (after, True)
    assert run(after) == (after, False)
    original, simplified = parse(before), parse(after)
    rng = np.random.default_rng(0)
    for _ in range(2):
        args = [
            rng.random(v.type.shape) < 0.5
            if v.type.dtype == np.bool_
            else (rng.standard_normal(v.type.shape) * 3).astype(v.type.dtype)
            for v in original.inputs
        ]
        for want, got in zip(run_graph(original, args), run_graph(simplified, args), strict=True):
            assert want.dtype == got.dtype and want.shape == got.shape
            np.testing.assert_array_equal(got, want)


def check_unchanged(text: str) -> None:
    assert run(text) == (text, False)


# -- neutral elements ------------------------------------------------------------------------
def _neutral_case(op: str, constant: str, left: bool, dtype: str = "f32") -> str:
    c = f"dense({dtype}[], [{constant}])"
    operands = "%1, %0" if left else "%0, %1"
    return f"""graph @g(%0: {dtype}[2]) {{
  %1: {dtype}[] = constant() {{value={c}}}
  %2: {dtype}[2] = {op}({operands})
  %3: {dtype}[2] = exp(%2)
  return %3
}}
"""


def _forwarded(constant: str, dtype: str = "f32") -> str:
    return f"""graph @g(%0: {dtype}[2]) {{
  %1: {dtype}[] = constant() {{value=dense({dtype}[], [{constant}])}}
  %2: {dtype}[2] = exp(%0)
  return %2
}}
"""


@pytest.mark.parametrize(
    "op, constant, left",
    [
        ("add", "-0.0", False),  # x + -0 -> x (exact for every x)
        ("add", "-0.0", True),  # -0 + x -> x
        ("sub", "0.0", False),  # x - 0 -> x
        ("mul", "1.0", False),  # x * 1 -> x
        ("mul", "1.0", True),  # 1 * x -> x
        ("div", "1.0", False),  # x / 1 -> x
        ("pow", "1.0", False),  # x ** 1 -> x
    ],
)
def test_neutral_element_is_dropped(op, constant, left):
    check_golden(_neutral_case(op, constant, left), _forwarded(constant))


@pytest.mark.parametrize("op, constant", [("add", "0"), ("mul", "1"), ("pow", "1")])
def test_neutral_element_on_integers(op, constant):
    before = f"""graph @g(%0: i32[2]) {{
  %1: i32[] = constant() {{value=dense(i32[], [{constant}])}}
  %2: i32[2] = {op}(%0, %1)
  %3: i32[2] = neg(%2)
  return %3
}}
"""
    after = f"""graph @g(%0: i32[2]) {{
  %1: i32[] = constant() {{value=dense(i32[], [{constant}])}}
  %2: i32[2] = neg(%0)
  return %2
}}
"""
    check_golden(before, after)


@pytest.mark.parametrize(
    "op, constant, left",
    [
        ("sub", "0.0", True),  # 0 - x is -x, not x
        ("add", "0.0", False),  # x + 0.0 is 0.0, not x, at x = -0.0
        ("add", "0.0", True),
        ("sub", "-0.0", False),  # x - -0.0 is 0.0 at x = -0.0
        ("div", "1.0", True),  # 1 / x
        ("pow", "1.0", True),  # 1 ** x
        ("add", "1.0", False),  # not the neutral element
        ("mul", "0.0", False),  # x * 0 is not 0 for inf and nan
        ("mul", "nan", False),
    ],
)
def test_non_neutral_operands_stay(op, constant, left):
    check_unchanged(_neutral_case(op, constant, left))


def test_neutral_constant_at_full_shape_and_a_splat_only():
    before = """graph @g(%0: f32[2,2]) {
  %1: f32[2,2] = constant() {value=dense(f32[2,2], [1.0, 1.0, 1.0, 1.0])}
  %2: f32[2,2] = mul(%0, %1)
  %3: f32[2,2] = constant() {value=dense(f32[2,2], [1.0, 1.0, 1.0, 2.0])}
  %4: f32[2,2] = mul(%0, %3)
  return %2, %4
}
"""
    after = """graph @g(%0: f32[2,2]) {
  %1: f32[2,2] = constant() {value=dense(f32[2,2], [1.0, 1.0, 1.0, 1.0])}
  %2: f32[2,2] = constant() {value=dense(f32[2,2], [1.0, 1.0, 1.0, 2.0])}
  %3: f32[2,2] = mul(%0, %2)
  return %0, %3
}
"""
    check_golden(before, after)


def test_neutral_constant_that_broadcasts_x_stays():
    # x * ones(3, 2) is x broadcast to [3, 2], and x + zeros(2, 1) is x broadcast to [2, 2]:
    # neither is x
    check_unchanged("""graph @g(%0: f32[2]) {
  %1: f32[3,2] = constant() {value=dense(f32[3,2], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0])}
  %2: f32[3,2] = mul(%0, %1)
  %3: f32[2,1] = constant() {value=dense(f32[2,1], [0.0, 0.0])}
  %4: f32[2,2] = add(%3, %0)
  %5: f32[] = reduce_sum(%0) {axes=[0], keepdims=false}
  %6: f32[1] = constant() {value=dense(f32[1], [1.0])}
  %7: f32[1] = mul(%5, %6)
  return %2, %4, %7
}
""")


def test_neutral_element_forwarded_to_an_output_and_an_input():
    # the rewrite forwards every use: another op's operand and the graph's result
    before = """graph @g(%0: f32[2], %1: f32[]) {
  %2: f32[] = constant() {value=dense(f32[], [0.0])}
  %3: f32[2] = sub(%0, %2)
  %4: f32[2] = mul(%3, %3)
  return %3, %4
}
"""
    after = """graph @g(%0: f32[2], %1: f32[]) {
  %2: f32[] = constant() {value=dense(f32[], [0.0])}
  %3: f32[2] = mul(%0, %0)
  return %0, %3
}
"""
    check_golden(before, after)


# -- negation, convert, stop_gradient --------------------------------------------------------
def test_double_negation():
    # -(-x) -> x; a single negation stays
    before = """graph @g(%0: i32[2]) {
  %1: i32[2] = neg(%0)
  %2: i32[2] = neg(%1)
  %3: i32[2] = add(%1, %2)
  return %3
}
"""
    after = """graph @g(%0: i32[2]) {
  %1: i32[2] = neg(%0)
  %2: i32[2] = add(%1, %0)
  return %2
}
"""
    check_golden(before, after)
    check_unchanged("graph @g(%0: f32[2]) {\n  %1: f32[2] = neg(%0)\n  return %1\n}\n")


def test_convert_to_the_same_dtype():
    # convert(x, x.dtype) -> x; a convert that changes the dtype stays
    before = """graph @g(%0: f32[2]) {
  %1: f32[2] = convert(%0) {dtype=f32}
  %2: bf16[2] = convert(%1) {dtype=bf16}
  %3: f32[2] = convert(%2) {dtype=f32}
  return %3
}
"""
    after = """graph @g(%0: f32[2]) {
  %1: bf16[2] = convert(%0) {dtype=bf16}
  %2: f32[2] = convert(%1) {dtype=f32}
  return %2
}
"""
    check_golden(before, after)


def test_stop_gradient():
    # stop_gradient(x) -> x (gradients were taken while tracing, before any pass)
    before = """graph @g(%0: f32[2]) {
  %1: f32[2] = stop_gradient(%0)
  %2: f32[2] = mul(%1, %0)
  return %2, %1
}
"""
    after = """graph @g(%0: f32[2]) {
  %1: f32[2] = mul(%0, %0)
  return %1, %0
}
"""
    check_golden(before, after)


# -- select ----------------------------------------------------------------------------------
@pytest.mark.parametrize("pred, chosen", [("true", "%0"), ("false", "%1")])
def test_select_with_a_constant_predicate(pred, chosen):
    # select(true, a, b) -> a;  select(false, a, b) -> b  (a splat of any shape counts)
    before = f"""graph @g(%0: f32[2], %1: f32[2]) {{
  %2: bool[2] = constant() {{value=dense(bool[2], [{pred}, {pred}])}}
  %3: f32[2] = select(%2, %0, %1)
  return %3
}}
"""
    after = f"""graph @g(%0: f32[2], %1: f32[2]) {{
  %2: bool[2] = constant() {{value=dense(bool[2], [{pred}, {pred}])}}
  return {chosen}
}}
"""
    check_golden(before, after)


def test_select_that_must_stay():
    # a computed predicate; a mixed constant one; a constant one whose chosen operand the
    # other operand broadcasts (select(true, a: f32[], b: f32[2]) is a broadcast, not a)
    check_unchanged("""graph @g(%0: f32[2], %1: f32[2], %2: f32[]) {
  %3: bool[2] = lt(%0, %1)
  %4: f32[2] = select(%3, %0, %1)
  %5: bool[2] = constant() {value=dense(bool[2], [true, false])}
  %6: f32[2] = select(%5, %0, %1)
  %7: bool[] = constant() {value=dense(bool[], [true])}
  %8: f32[2] = select(%7, %2, %1)
  return %4, %6, %8
}
""")


# -- transpose -------------------------------------------------------------------------------
def test_identity_transpose():
    before = """graph @g(%0: f32[2,3]) {
  %1: f32[2,3] = transpose(%0) {perm=[0, 1]}
  %2: f32[2,3] = exp(%1)
  return %2
}
"""
    after = """graph @g(%0: f32[2,3]) {
  %1: f32[2,3] = exp(%0)
  return %1
}
"""
    check_golden(before, after)


def test_transpose_of_a_square_matrix_stays():
    # [1, 0] keeps the type of a square matrix but is not the identity
    check_unchanged("""graph @g(%0: f32[3,3]) {
  %1: f32[3,3] = transpose(%0) {perm=[1, 0]}
  return %1
}
""")


@pytest.mark.parametrize(
    "x, inner, q, out, composed",
    [
        # p = q = [1, 2, 0]: [2,3,4] -> [3,4,2] -> [4,2,3], which is x with perm [2, 0, 1]
        ("2,3,4", "3,4,2", "1, 2, 0", "4,2,3", "2, 0, 1"),
        # p = [1, 2, 0], q = [0, 2, 1]: output axis i is x's axis p[q[i]], so [1, 0, 2] (not
        # q[p] = [2, 1, 0]); a cube, where a wrong perm would still type-check
        ("2,2,2", "2,2,2", "0, 2, 1", "2,2,2", "1, 0, 2"),
        ("2,3,4", "3,4,2", "0, 2, 1", "3,2,4", "1, 0, 2"),
    ],
)
def test_transposes_compose(x, inner, q, out, composed):
    # transpose(transpose(x, p), q) -> transpose(x, p[q])
    before = f"""graph @g(%0: f32[{x}]) {{
  %1: f32[{inner}] = transpose(%0) {{perm=[1, 2, 0]}}
  %2: f32[{out}] = transpose(%1) {{perm=[{q}]}}
  return %2
}}
"""
    after = f"""graph @g(%0: f32[{x}]) {{
  %1: f32[{inner}] = transpose(%0) {{perm=[1, 2, 0]}}
  %2: f32[{out}] = transpose(%0) {{perm=[{composed}]}}
  return %2
}}
"""
    check_golden(before, after)


def test_transposes_that_cancel():
    before = """graph @g(%0: f32[2,3]) {
  %1: f32[3,2] = transpose(%0) {perm=[1, 0]}
  %2: f32[2,3] = transpose(%1) {perm=[1, 0]}
  return %2
}
"""
    after = """graph @g(%0: f32[2,3]) {
  %1: f32[3,2] = transpose(%0) {perm=[1, 0]}
  return %0
}
"""
    check_golden(before, after)


# -- reshape and broadcast_to ----------------------------------------------------------------
def test_reshape_to_the_same_shape_and_chains():
    # reshape(x, x.shape) -> x;  reshape(reshape(x, a), b) -> reshape(x, b)
    before = """graph @g(%0: f32[2,3]) {
  %1: f32[2,3] = reshape(%0) {shape=[2, 3]}
  %2: f32[6] = reshape(%1) {shape=[6]}
  %3: f32[3,2] = reshape(%2) {shape=[3, 2]}
  return %3
}
"""
    after = """graph @g(%0: f32[2,3]) {
  %1: f32[6] = reshape(%0) {shape=[6]}
  %2: f32[3,2] = reshape(%0) {shape=[3, 2]}
  return %2
}
"""
    check_golden(before, after)


def test_reshape_chain_back_to_the_input_shape():
    before = """graph @g(%0: f32[2,3]) {
  %1: f32[6] = reshape(%0) {shape=[6]}
  %2: f32[2,3] = reshape(%1) {shape=[2, 3]}
  return %2
}
"""
    after = """graph @g(%0: f32[2,3]) {
  %1: f32[6] = reshape(%0) {shape=[6]}
  return %0
}
"""
    check_golden(before, after)


def test_reshape_that_changes_the_shape_stays():
    check_unchanged("""graph @g(%0: f32[2,3]) {
  %1: f32[3,2] = reshape(%0) {shape=[3, 2]}
  return %1
}
""")


def test_broadcast_to_the_same_shape_and_chains():
    # broadcast_to(x, x.shape) -> x;  broadcast_to(broadcast_to(x, a), b) -> broadcast_to(x, b)
    before = """graph @g(%0: f32[3]) {
  %1: f32[3] = broadcast_to(%0) {shape=[3]}
  %2: f32[2,3] = broadcast_to(%1) {shape=[2, 3]}
  %3: f32[4,2,3] = broadcast_to(%2) {shape=[4, 2, 3]}
  return %3
}
"""
    after = """graph @g(%0: f32[3]) {
  %1: f32[2,3] = broadcast_to(%0) {shape=[2, 3]}
  %2: f32[4,2,3] = broadcast_to(%0) {shape=[4, 2, 3]}
  return %2
}
"""
    check_golden(before, after)


def test_broadcast_of_a_reshaped_scalar():
    # broadcast_to(reshape(s, [1, 1]), shape) -> broadcast_to(s, shape)
    before = """graph @g(%0: f32[]) {
  %1: f32[1,1] = reshape(%0) {shape=[1, 1]}
  %2: f32[2,3] = broadcast_to(%1) {shape=[2, 3]}
  return %2
}
"""
    after = """graph @g(%0: f32[]) {
  %1: f32[1,1] = reshape(%0) {shape=[1, 1]}
  %2: f32[2,3] = broadcast_to(%0) {shape=[2, 3]}
  return %2
}
"""
    check_golden(before, after)


def test_broadcast_of_a_reshaped_vector_stays():
    # reshape(v, [2, 1]) makes v a column: broadcast_to(v, [2, 2]) would repeat it as rows
    check_unchanged("""graph @g(%0: f32[2]) {
  %1: f32[2,1] = reshape(%0) {shape=[2, 1]}
  %2: f32[2,2] = broadcast_to(%1) {shape=[2, 2]}
  return %2
}
""")


def test_operand_broadcast_of_a_size_one_value():
    # a + broadcast_to(s, a.shape) -> a + s; the same for select's predicate
    before = """graph @g(%0: f32[2,3], %1: f32[], %2: bool[1]) {
  %3: f32[2,3] = broadcast_to(%1) {shape=[2, 3]}
  %4: f32[2,3] = add(%0, %3)
  %5: f32[2,3] = mul(%3, %0)
  %6: bool[2,3] = broadcast_to(%2) {shape=[2, 3]}
  %7: f32[2,3] = select(%6, %4, %5)
  return %7
}
"""
    after = """graph @g(%0: f32[2,3], %1: f32[], %2: bool[1]) {
  %3: f32[2,3] = broadcast_to(%1) {shape=[2, 3]}
  %4: f32[2,3] = add(%0, %1)
  %5: f32[2,3] = mul(%1, %0)
  %6: bool[2,3] = broadcast_to(%2) {shape=[2, 3]}
  %7: f32[2,3] = select(%2, %4, %5)
  return %7
}
"""
    check_golden(before, after)


def test_operand_broadcast_that_sets_the_result_shape_stays():
    # s + broadcast_to(t, [2, 3]) with scalars s and t: the broadcast gives the result its
    # shape (s + t is a scalar); the same for a select whose operands are all scalars
    check_unchanged("""graph @g(%0: f32[], %1: f32[], %2: bool[]) {
  %3: f32[2,3] = broadcast_to(%1) {shape=[2, 3]}
  %4: f32[2,3] = add(%0, %3)
  %5: bool[2,3] = broadcast_to(%2) {shape=[2, 3]}
  %6: f32[2,3] = select(%5, %0, %1)
  return %4, %6
}
""")


# -- subgraphs, effects, fixed point ---------------------------------------------------------
def test_rules_apply_inside_a_scan_body():
    before = """graph @g(%0: f32[2], %1: f32[3,2]) {
  %2: f32[2], %3: f32[3,2] = scan(%0, %1) {consts=0, carries=1, length=3, reverse=false, \
body=graph @step(%0: f32[2], %1: f32[2]) {
      %2: f32[] = constant() {value=dense(f32[], [1.0])}
      %3: f32[2] = mul(%1, %2) loc("s.py":2)
      %4: f32[2] = neg(%0)
      %5: f32[2] = neg(%4)
      %6: f32[2] = add(%5, %3)
      return %6, %4
    }} loc("s.py":1)
  %4: f32[2] = neg(%2)
  %5: f32[2] = neg(%4)
  return %5, %3
}
"""
    after = """graph @g(%0: f32[2], %1: f32[3,2]) {
  %2: f32[2], %3: f32[3,2] = scan(%0, %1) {consts=0, carries=1, length=3, reverse=false, \
body=graph @step(%0: f32[2], %1: f32[2]) {
      %2: f32[] = constant() {value=dense(f32[], [1.0])}
      %3: f32[2] = neg(%0)
      %4: f32[2] = add(%0, %1)
      return %4, %3
    }} loc("s.py":1)
  %4: f32[2] = neg(%2)
  return %2, %3
}
"""
    check_golden(before, after)


def test_ops_with_effects_are_not_touched():
    # the reads and writes stay, in order; pure ops between them simplify, and the write of
    # -(-r) writes r (the value read before the write, which SSA keeps)
    before = """graph @g(%0: f32[2]) state($w: f32[2]) {
  %1: f32[2] = read_variable($w) loc("e.py":1)
  %2: f32[2] = neg(%1)
  %3: f32[2] = neg(%2)
  assign_variable($w, %3) loc("e.py":2)
  %4: f32[] = constant() {value=dense(f32[], [-0.0])}
  %5: f32[2] = add(%0, %4)
  assign_add_variable($w, %5) loc("e.py":3)
  %6: f32[2] = read_variable($w) loc("e.py":4)
  %7: f32[2] = stop_gradient(%6)
  return %7
}
"""
    after = """graph @g(%0: f32[2]) state($w: f32[2]) {
  %1: f32[2] = read_variable($w) loc("e.py":1)
  %2: f32[2] = neg(%1)
  assign_variable($w, %1) loc("e.py":2)
  %3: f32[] = constant() {value=dense(f32[], [-0.0])}
  assign_add_variable($w, %0) loc("e.py":3)
  %4: f32[2] = read_variable($w) loc("e.py":4)
  return %4
}
"""
    assert run(before) == (after, True)
    assert run(after) == (after, False)
    x = np.array([1.0, -2.0], np.float32)
    for text in (before, after):
        state = {"w": np.array([10.0, 20.0], np.float32)}
        (out,) = run_graph(parse(text), [x], state)
        np.testing.assert_array_equal(out, [11.0, 18.0])
        np.testing.assert_array_equal(state["w"], [11.0, 18.0])


def test_chains_collapse_in_one_run():
    # each op is rewritten until no rule applies, in program order, so a chain of any length
    # reaches the fixed point at once
    before = """graph @g(%0: f32[2,2]) {
  %1: f32[2,2] = neg(%0)
  %2: f32[2,2] = neg(%1)
  %3: f32[2,2] = neg(%2)
  %4: f32[2,2] = neg(%3)
  %5: f32[2,2] = transpose(%0) {perm=[1, 0]}
  %6: f32[2,2] = transpose(%5) {perm=[1, 0]}
  %7: f32[2,2] = transpose(%6) {perm=[1, 0]}
  %8: f32[] = constant() {value=dense(f32[], [1.0])}
  %9: f32[2,2] = broadcast_to(%8) {shape=[2, 2]}
  %10: f32[2,2] = mul(%7, %9)
  %11: f32[4] = reshape(%10) {shape=[4]}
  %12: f32[1,4] = reshape(%11) {shape=[1, 4]}
  %13: f32[2,2] = reshape(%12) {shape=[2, 2]}
  %14: f32[2,2] = add(%4, %13)
  return %14
}
"""
    # -(-(-(-x))) is x; the third transpose is the first; mul by a broadcast 1 is the
    # transpose; the reshapes back to [2, 2] are it too
    after = """graph @g(%0: f32[2,2]) {
  %1: f32[2,2] = neg(%0)
  %2: f32[2,2] = neg(%0)
  %3: f32[2,2] = transpose(%0) {perm=[1, 0]}
  %4: f32[2,2] = transpose(%0) {perm=[1, 0]}
  %5: f32[] = constant() {value=dense(f32[], [1.0])}
  %6: f32[2,2] = broadcast_to(%5) {shape=[2, 2]}
  %7: f32[4] = reshape(%4) {shape=[4]}
  %8: f32[1,4] = reshape(%4) {shape=[1, 4]}
  %9: f32[2,2] = add(%0, %4)
  return %9
}
"""
    check_golden(before, after)


def test_unchanged_graph_is_returned_as_is():
    graph = parse("graph @g(%0: f32[2]) {\n  %1: f32[2] = exp(%0)\n  return %1\n}\n")
    assert simplify(graph) == (graph, False)
