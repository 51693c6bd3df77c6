"""optimization_barrier, checkpoint_name and remat on random inputs against numpy expressions
written here, and their gradients (remat's under every policy); the text form round-trips;
the passes keep the barrier and the recomputation behind it."""

from __future__ import annotations

import numpy as np
import pytest
from flowjit.ir import Graph, ShapeError, TensorType, TypeMismatchError, parse, print_graph
from flowjit.ir.grad import backward
from flowjit.ir.ops import remat as R
from flowjit.ir.types import dtype_name
from flowjit.passes import cse, dce, fold_constants, simplify
from opcheck import OpCase, add_op, check_case, check_grad, params, rand

FLOATS = (np.float32, np.float64)
DOT = "{lhs_contracting=[1], rhs_contracting=[0], lhs_batch=[], rhs_batch=[]}"
INPUTS = "(%0: f32[3,3], %1: f32[2,3], %2: i32[])"

# consts w; args x, k: y = sin(name(x @ w, "z")) * x, and k + 1 passes through
BODY = """graph @block INPUTS {
  %3: f32[2,3] = dot_general(%1, %0) DOT
  %4: f32[2,3] = checkpoint_name(%3) {name="z"}
  %5: f32[2,3] = sin(%4)
  %6: f32[2,3] = mul(%5, %1)
  %7: i32[] = constant() {value=dense(i32[], [1])}
  %8: i32[] = add(%2, %7)
  %9: f32[2,3] = tanh(%6)
  return %9, %8, %4
}"""
# (written short above: the lines would be too long)
BODY = BODY.replace("DOT", DOT).replace(" INPUTS", INPUTS)


def body(dt) -> Graph:
    return parse(BODY.replace("f32", dtype_name(np.dtype(dt))))


def remat_case(policy: str, names: str = "", prevent_cse: bool = True):
    def make(rng, dt):
        inputs = [rand(rng, (3, 3), dt, -1, 1), rand(rng, (2, 3), dt), np.int32(rng.integers(9))]
        attrs = {"policy": policy, "names": names, "prevent_cse": prevent_cse}
        return inputs, {"body": body(dt), **attrs}

    return make


def np_block(w, x, k, **_):
    z = x @ w
    return np.tanh(np.sin(z) * x), np.int32(k + 1), z


def barrier_case(rng, dt):
    return [rand(rng, (2, 3), dt), rand(rng, (), np.int32, -9, 9), rand(rng, (4,), dt)], {}


def name_case(rng, dt):
    return [rand(rng, (3, 2), dt)], {"name": "h"}


CASES = [
    OpCase(R.optimization_barrier, FLOATS, barrier_case, lambda *xs: tuple(xs)),
    OpCase(R.checkpoint_name, FLOATS, name_case, lambda x, **_: x),
    OpCase(R.remat, FLOATS, remat_case("nothing_saveable"), np_block, name="remat_nothing"),
    OpCase(R.remat, FLOATS, remat_case("everything_saveable"), np_block, name="remat_all"),
    OpCase(R.remat, FLOATS, remat_case("dots_saveable"), np_block, name="remat_dots"),
    OpCase(
        R.remat,
        FLOATS,
        remat_case("dots_with_no_batch_dims_saveable"),
        np_block,
        name="remat_dots_no_batch",
    ),
    OpCase(
        R.remat, FLOATS, remat_case("save_only_these_names", "z,q"), np_block, name="remat_names"
    ),
    OpCase(
        R.remat,
        FLOATS,
        remat_case("nothing_saveable", prevent_cse=False),
        np_block,
        name="remat_no_barrier",
    ),
]


@pytest.mark.parametrize("case, dtype", params(CASES))
def test_op_against_numpy(case, dtype):
    check_case(case, dtype)


@pytest.mark.parametrize("case, dtype", params(CASES))
def test_gradient(case, dtype):
    check_grad(case, dtype)


def test_remat_rejects_an_unknown_policy_and_names_without_their_policy():
    types = [((3, 3), np.float32), ((2, 3), np.float32), ((), np.int32)]
    with pytest.raises(ShapeError, match="unknown remat policy 'dots'"):
        add_op(R.remat, types, body=body(np.float32), policy="dots", names="", prevent_cse=True)
    with pytest.raises(ShapeError, match="saves no named values"):
        add_op(
            R.remat,
            types,
            body=body(np.float32),
            policy="dots_saveable",
            names="z",
            prevent_cse=True,
        )
    with pytest.raises(TypeMismatchError, match="body input 1 is f32\\[2,3\\] but operand 1"):
        add_op(
            R.remat,
            types[:1] + [((2, 4), np.float32)] + types[2:],
            body=body(np.float32),
            policy="nothing_saveable",
            names="",
            prevent_cse=True,
        )
    with pytest.raises(ShapeError, match="no comma"):
        add_op(R.checkpoint_name, [((2,), np.float32)], name="a,b")


GOLDEN = """\
graph @g(%0: f32[3,3], %1: f32[2,3], %2: i32[]) {
  %3: f32[2,3], %4: i32[], %5: f32[2,3] = remat(%0, %1, %2) {body=graph @block INPUTS {
      %3: f32[2,3] = dot_general(%1, %0) DOT
      %4: f32[2,3] = checkpoint_name(%3) {name="z"}
      %5: f32[2,3] = sin(%4)
      %6: f32[2,3] = mul(%5, %1)
      %7: i32[] = constant() {value=dense(i32[], [1])}
      %8: i32[] = add(%2, %7)
      %9: f32[2,3] = tanh(%6)
      return %9, %8, %4
    }, policy="save_only_these_names", names="z,q", prevent_cse=true} loc("m.py":3)
  %6: f32[2,3], %7: i32[] = optimization_barrier(%3, %4) loc("m.py":4)
  return %6, %7, %5
}
""".replace("DOT", DOT).replace(" INPUTS", INPUTS)


def test_text_round_trip():
    assert print_graph(parse(GOLDEN)) == GOLDEN


def gradient_graph(policy: str, names: str = "", prevent_cse: bool = True) -> Graph:
    """The graph of the body as one remat op, then the gradient of sum(y) with respect to w
    and x, built by remat's rule."""
    g = Graph("grad")
    types = [((3, 3), np.float32), ((2, 3), np.float32), ((), np.int32)]
    w, x, k = (g.add_input(TensorType(s, d)) for s, d in types)
    attrs = {"body": body(np.float32), "policy": policy, "names": names}
    y, _, _ = g.add(R.remat, [w, x, k], {**attrs, "prevent_cse": prevent_cse})
    cts = backward(g, list(g.ops), {y: g.add_input(TensorType((2, 3), np.float32))}, [w, x])
    g.outputs = [cts[w], cts[x]]
    return g


def ops_named(graph: Graph, name: str) -> list:
    return [op for op in graph.ops if op.opdef.name == name]


@pytest.mark.parametrize(
    "policy, names, results, dots, sines",
    [
        ("nothing_saveable", "", 3, 3, 1),  # the dot is recomputed (+ the gradient's two)
        ("dots_saveable", "", 4, 2, 1),  # + x @ w (checkpoint_name's operand)
        ("dots_with_no_batch_dims_saveable", "", 4, 2, 1),
        ("save_only_these_names", "z", 3, 2, 1),  # z is already a result
        ("save_only_these_names", "other", 3, 3, 1),
        ("everything_saveable", "", 4, 2, 0),  # + sin(z): nothing is recomputed
    ],
)
def test_the_forward_op_saves_what_the_policy_says_and_the_rest_is_recomputed(
    policy, names, results, dots, sines
):
    g = gradient_graph(policy, names)
    (forward,) = ops_named(g, "remat")
    assert len(forward.outputs) == results
    assert len(ops_named(g, "dot_general")) == dots
    assert len(ops_named(g, "sin")) == sines
    # one barrier: the values the recomputation reads (inputs, saved values) and the
    # cotangent of y, so nothing behind it runs before the backward pass reaches it
    (barrier,) = ops_named(g, "optimization_barrier")
    assert barrier.inputs[-1] is g.inputs[3]
    recomputed = [op for op in g.ops if op.opdef.name in ("dot_general", "sin", "tanh")]
    behind = set(barrier.outputs)
    for op in g.ops[g.ops.index(barrier) + 1 :]:
        if any(v in behind for v in op.inputs):
            behind.update(op.outputs)
    assert all(any(v in behind for v in op.outputs) for op in recomputed)


def test_passes_keep_the_barrier_and_the_recomputation():
    g = gradient_graph("nothing_saveable")
    g.outputs.append(g.ops[0].outputs[0])  # (the forward result is used too)
    before = print_graph(g, locs=False)
    for run in (simplify, cse, fold_constants, dce):
        g, _ = run(g)
    assert len(ops_named(g, "optimization_barrier")) == 1
    # the recomputed sin is still there, beside the forward one inside the remat body
    assert len(ops_named(g, "sin")) == 1 and "sin" in print_graph(g.ops[0].attrs["body"])
    assert print_graph(g, locs=False).count("dot_general") == before.count("dot_general")


def test_without_prevent_cse_the_recomputation_has_no_barrier():
    g = gradient_graph("nothing_saveable", prevent_cse=False)
    assert not ops_named(g, "optimization_barrier")
    assert ops_named(g, "sin")
