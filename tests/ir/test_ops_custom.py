"""custom_vjp_call and custom_jvp_call on random inputs against numpy expressions written
here, their gradients (the rules below are the functions' true derivatives, so finite
differences check them), the text round trip of an op holding its rule, and the shape
rules' errors."""

from __future__ import annotations

import numpy as np
import pytest
from flowjit.ir import GradientError, Graph, ShapeError, TypeMismatchError, parse, print_graph
from flowjit.ir.ops import custom as C
from flowjit.ir.types import dtype_name
from opcheck import OpCase, add_op, check_case, check_grad, params, rand

FLOATS = (np.float32, np.float64)
F32 = np.dtype(np.float32)


def subgraphs(dt, **texts: str) -> dict[str, Graph]:
    """Parse each subgraph, written in f32, with f32 replaced by ``dt``."""
    name = dtype_name(np.dtype(dt))
    return {key: parse(text.replace("f32", name)) for key, text in texts.items()}


# -- custom_vjp_call -------------------------------------------------------------------------
# const k (i32), args x, y: results (sin(x) * k + y, x * y); fwd saves x and y
BODY = """graph @body(%0: i32[], %1: f32[3], %2: f32[3]) {
  %3: f32[] = convert(%0) {dtype=f32}
  %4: f32[3] = sin(%1)
  %5: f32[3] = mul(%4, %3)
  %6: f32[3] = add(%5, %2)
  %7: f32[3] = mul(%1, %2)
  return %6, %7
}"""
FWD = """graph @fwd(%0: i32[], %1: f32[3], %2: f32[3]) {
  %3: f32[] = convert(%0) {dtype=f32}
  %4: f32[3] = sin(%1)
  %5: f32[3] = mul(%4, %3)
  %6: f32[3] = add(%5, %2)
  %7: f32[3] = mul(%1, %2)
  return %6, %7, %1, %2
}"""
# (k, saved x, saved y, g1, g2) -> (g1 * cos(x) * k + g2 * y, g1 + g2 * x)
BWD = """graph @bwd(%0: i32[], %1: f32[3], %2: f32[3], %3: f32[3], %4: f32[3]) {
  %5: f32[] = convert(%0) {dtype=f32}
  %6: f32[3] = cos(%1)
  %7: f32[3] = mul(%3, %6)
  %8: f32[3] = mul(%7, %5)
  %9: f32[3] = mul(%4, %2)
  %10: f32[3] = add(%8, %9)
  %11: f32[3] = mul(%4, %1)
  %12: f32[3] = add(%3, %11)
  return %10, %12
}"""


def vjp_case(with_residuals: bool):
    def make(rng, dt):
        operands = [rand(rng, (), np.int32, -3, 3), rand(rng, (3,), dt), rand(rng, (3,), dt)]
        graphs = subgraphs(dt, body=BODY, fwd=FWD, bwd=BWD)
        return operands, {"consts": 1, "with_residuals": with_residuals, **graphs}

    return make


def np_vjp(k, x, y, with_residuals, **_):
    outs = (np.sin(x) * k + y, x * y)
    return outs + (x, y) if with_residuals else outs


# -- custom_jvp_call -------------------------------------------------------------------------
# const k (i32), arg x: k * log1p(exp(x)), its tangent t * k * logistic(x)
JVP_BODY = """graph @body(%0: i32[], %1: f32[4]) {
  %2: f32[] = convert(%0) {dtype=f32}
  %3: f32[4] = exp(%1)
  %4: f32[4] = log1p(%3)
  %5: f32[4] = mul(%4, %2)
  return %5
}"""
JVP = """graph @jvp(%0: i32[], %1: f32[4], %2: f32[4]) {
  %3: f32[] = convert(%0) {dtype=f32}
  %4: f32[4] = exp(%1)
  %5: f32[4] = log1p(%4)
  %6: f32[4] = mul(%5, %3)
  %7: f32[4] = logistic(%1)
  %8: f32[4] = mul(%2, %7)
  %9: f32[4] = mul(%8, %3)
  return %6, %9
}"""


def jvp_case(rng, dt):
    operands = [rand(rng, (), np.int32, -3, 3), rand(rng, (4,), dt)]
    return operands, {"consts": 1, **subgraphs(dt, body=JVP_BODY, jvp=JVP)}


CASES = [
    OpCase(C.custom_vjp_call, FLOATS, vjp_case(False), np_vjp, name="custom_vjp_call"),
    OpCase(
        C.custom_vjp_call,
        FLOATS,
        vjp_case(True),
        np_vjp,
        name="custom_vjp_call_with_residuals",
    ),
    OpCase(
        C.custom_jvp_call,
        FLOATS,
        jvp_case,
        lambda k, x, **_: k * np.log1p(np.exp(x)),
        name="custom_jvp_call",
    ),
]


@pytest.mark.parametrize("case, dtype", params(CASES))
def test_op_against_numpy(case, dtype):
    check_case(case, dtype)


@pytest.mark.parametrize("case, dtype", params(CASES))
def test_gradient(case, dtype):
    check_grad(case, dtype)


def test_the_rule_is_used_not_the_body():
    """A bwd that is not the body's derivative (a straight-through round): the gradient is
    bwd's, and the primal runs once (the op, extended to give fwd's residuals)."""
    from flowjit.compiler.trace import emit

    import flowjit as fj
    import flowjit.numpy as fnp

    graphs = {
        "body": parse("graph @b(%0: f32[3]) {\n  %1: f32[3] = round(%0)\n  return %1\n}"),
        "fwd": parse("graph @f(%0: f32[3]) {\n  %1: f32[3] = round(%0)\n  return %1, %0\n}"),
        "bwd": parse(
            "graph @g(%0: f32[3], %1: f32[3]) {\n  %2: f32[3] = mul(%0, %1)\n  return %2\n}"
        ),
    }

    @fj.compile
    def grad_of(x):
        loss = lambda x: fnp.sum(
            emit(C.custom_vjp_call, [x], consts=0, with_residuals=False, **graphs)
        )
        return fj.grad(loss)(x)

    x = np.array([0.4, -1.6, 2.5], np.float32)
    np.testing.assert_array_equal(np.asarray(grad_of(x)), x)  # bwd: g * x, g = 1
    ops = [op for op in parse(grad_of.lower(x).ir()).ops]
    calls = [op for op in ops if op.opdef is C.custom_vjp_call]
    assert len(calls) == 1 and calls[0].attrs["with_residuals"]


def test_the_jvp_rule_reuses_the_primal_results():
    """The transposed jvp takes the op's results for the primal results jvp computes: the
    backward pass of exp (its tangent t * exp(x)) multiplies by the op's result, and computes
    no exp again (softmax's would have computed its exp and sum twice)."""
    from flowjit.ir.grad import backward
    from flowjit.ir.ops import elementwise as E

    body = parse("graph @body(%0: f32[3]) {\n  %1: f32[3] = exp(%0)\n  return %1\n}")
    jvp = parse(
        "graph @jvp(%0: f32[3], %1: f32[3]) {\n"
        "  %2: f32[3] = exp(%0)\n"
        "  %3: f32[3] = mul(%1, %2)\n"
        "  return %2, %3\n"
        "}"
    )
    graph = Graph("g")
    x, ct = graph.add_input(body.inputs[0].type), graph.add_input(body.inputs[0].type)
    (y,) = graph.add(C.custom_jvp_call, [x], {"consts": 0, "body": body, "jvp": jvp})
    forward = list(graph.ops)
    cts = backward(graph, forward, {y: ct})
    added = graph.ops[len(forward) :]
    assert [op.opdef for op in added] == [E.mul]
    assert set(added[0].inputs) == {y, ct} and cts[x] is added[0].outputs[0]


def test_text_round_trip_keeps_the_rule():
    _, attrs = vjp_case(False)(np.random.default_rng(0), F32)
    graph = Graph("g")
    args = [graph.add_input(v.type) for v in attrs["body"].inputs]
    graph.outputs = list(graph.add(C.custom_vjp_call, args, attrs))
    text = print_graph(graph)
    assert "bwd=graph @bwd(" in text and "fwd=graph @fwd(" in text
    again = parse(text)
    assert print_graph(again) == text
    assert print_graph(again.ops[0].attrs["bwd"]) == print_graph(attrs["bwd"])


# -- shape rules ---------------------------------------------------------------------------
def test_fwd_results_must_begin_with_the_body_results():
    graphs = subgraphs(F32, body=BODY, bwd=BWD)
    types = [((), np.int32), ((3,), F32), ((3,), F32)]
    wrong = parse(
        FWD.replace("  return %6, %7, %1, %2", "  %8: f32[] = sin(%3)\n  return %8, %7, %1, %2")
    )
    with pytest.raises(TypeMismatchError, match=r"fwd result 0 is f32\[\] but body result 0"):
        add_op(C.custom_vjp_call, types, consts=1, with_residuals=False, fwd=wrong, **graphs)


def test_bwd_must_give_a_cotangent_per_argument():
    graphs = subgraphs(F32, body=BODY, fwd=FWD)
    bwd = parse(BWD.replace("return %10, %12", "return %10"))
    types = [((), np.int32), ((3,), F32), ((3,), F32)]
    with pytest.raises(TypeMismatchError, match="bwd result has 1 values but argument has 2"):
        add_op(C.custom_vjp_call, types, consts=1, with_residuals=False, bwd=bwd, **graphs)


def test_residuals_must_be_what_bwd_takes():
    graphs = subgraphs(F32, body=BODY, bwd=BWD)
    fwd = parse(FWD.replace("return %6, %7, %1, %2", "return %6, %7, %1, %3"))
    types = [((), np.int32), ((3,), F32), ((3,), F32)]
    with pytest.raises(TypeMismatchError, match="bwd residual input 1 is"):
        add_op(C.custom_vjp_call, types, consts=1, with_residuals=False, fwd=fwd, **graphs)
    with pytest.raises(ShapeError, match="consts=4 but the op has 3 inputs"):
        add_op(C.custom_vjp_call, types, consts=4, with_residuals=False, fwd=fwd, **graphs)


def test_jvp_must_give_results_and_their_tangents():
    body = parse(JVP_BODY)
    jvp = parse(JVP.replace("return %6, %9", "return %6"))
    with pytest.raises(TypeMismatchError, match="jvp result has 1 values but body result"):
        add_op(C.custom_jvp_call, [((), np.int32), ((4,), F32)], consts=1, body=body, jvp=jvp)


def test_subgraphs_must_not_write_variables():
    writes = parse(
        "graph @body(%0: f32[3]) state($w: f32[3]) {\n  assign_variable($w, %0)\n  return %0\n}"
    )
    jvp = parse("graph @jvp(%0: f32[3], %1: f32[3]) {\n  return %0, %1\n}")
    with pytest.raises(ShapeError, match="body of a function with a custom gradient writes"):
        add_op(C.custom_jvp_call, [((3,), F32)], consts=0, body=writes, jvp=jvp)


def test_a_jvp_rule_that_is_not_linear_has_no_transpose():
    from flowjit.compiler.trace import emit

    import flowjit as fj
    import flowjit.numpy as fnp

    body = parse("graph @body(%0: f32[3]) {\n  %1: f32[3] = sin(%0)\n  return %1\n}")
    squares = parse(
        "graph @jvp(%0: f32[3], %1: f32[3]) {\n"
        "  %2: f32[3] = sin(%0)\n"
        "  %3: f32[3] = mul(%1, %1)\n"
        "  return %2, %3\n"
        "}"
    )

    def loss(x):
        return fnp.sum(emit(C.custom_jvp_call, [x], consts=0, body=body, jvp=squares))

    with pytest.raises(GradientError, match="not linear in the input tangents") as info:
        fj.grad(loss)(np.ones(3, np.float32))
    assert info.value.op == "custom_jvp_call"
