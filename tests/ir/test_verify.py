"""The verifier catches broken graphs that passes could produce."""

from __future__ import annotations

import numpy as np
import pytest

from flowjit.ir import Graph, Op, ShapeError, TensorType, Value, VerifyError, parse, verify
from flowjit.ir.core import StateSlot
from flowjit.ir.ops import control as C
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops import state as S

F32 = TensorType((2,), np.float32)


def base() -> Graph:
    return parse(
        "graph @g(%0: f32[2]) {\n  %1: f32[2] = neg(%0)\n  %2: f32[2] = exp(%1)\n  return %2\n}\n"
    )


def test_valid_graph_passes():
    verify(base())


def test_use_before_definition():
    g = base()
    g.ops.reverse()
    with pytest.raises(VerifyError, match="input 0 of op #0 is used before it is defined"):
        verify(g)


def test_wrong_output_type():
    g = base()
    op = g.ops[0]
    g.ops[0] = Op(op.opdef, op.inputs, op.attrs, (Value(TensorType((3,), np.float32)),), op.loc)
    with pytest.raises(
        VerifyError, match=r"output types f32\[3\] but its shape rule gives f32\[2\]"
    ):
        verify(g)


def test_undefined_output_and_redefinition():
    g = base()
    g.outputs = [Value(F32)]
    with pytest.raises(VerifyError, match="graph output 0 is not defined"):
        verify(g)
    g = base()
    g.ops.append(g.ops[0])
    with pytest.raises(VerifyError, match="redefines"):
        verify(g)


def test_bad_attributes():
    g = base()
    x = g.inputs[0]
    g.ops.append(Op(E.convert, (x,), {"dtype": np.float32, "extra": 1}, (Value(F32),)))
    with pytest.raises(VerifyError, match="unknown attributes"):
        verify(g)


# -- subgraphs -------------------------------------------------------------------------------
def with_cond(true_branch: Graph, *, variables: dict[str, TensorType] | None = None) -> Graph:
    """A graph ``(pred, x: f32[2]) -> cond(pred, x)`` whose false branch returns its input,
    declaring ``variables``."""
    graph = Graph("g", [Value(TensorType((), np.bool_)), Value(F32)])
    for name, t in (variables or {}).items():
        graph.add_state(name, t)
    false_branch = Graph("f", [Value(F32)])
    false_branch.outputs = list(false_branch.inputs)
    attrs = {"true_branch": true_branch, "false_branch": false_branch}
    graph.outputs = list(graph.add(C.cond, graph.inputs, attrs))
    return graph


def writes_w(t: TensorType) -> Graph:
    """A branch ``x -> x`` that writes x to its variable $w of type ``t``."""
    branch = Graph("t", [Value(F32)])
    branch.add(S.assign_variable, [branch.add_state("w", t), branch.inputs[0]])
    branch.outputs = list(branch.inputs)
    return branch


def test_valid_subgraph_with_a_variable_passes():
    verify(with_cond(writes_w(F32), variables={"w": F32}))


@pytest.mark.parametrize(
    "variables",
    [{}, {"v": F32}, {"w": TensorType((3,), np.float32)}, {"w": TensorType((2,), np.float64)}],
)
def test_subgraph_variable_the_enclosing_graph_does_not_declare(variables):
    graph = with_cond(writes_w(F32), variables=variables)
    with pytest.raises(
        VerifyError,
        match=r"cond: in op #0: subgraph @t uses variable \$w: f32\[2\], which the enclosing "
        "graph does not declare with that type",
    ):
        verify(graph)


def test_subgraph_using_the_enclosing_graphs_handle():
    """A branch must name a variable through its own state(...), not the outer handle."""
    graph = with_cond(writes_w(F32), variables={"w": F32})
    branch = graph.ops[0].attrs["true_branch"]
    branch.ops[0] = Op(S.assign_variable, (graph.states[0], branch.inputs[0]), {}, ())
    with pytest.raises(VerifyError, match="input 0 of op #0 must be a declared variable handle"):
        verify(graph)


def test_subgraph_using_a_value_of_the_enclosing_graph():
    graph = Graph("g", [Value(TensorType((), np.bool_)), Value(F32)])
    (outer,) = graph.add(E.neg, [graph.inputs[1]])
    branch = Graph("t", [Value(F32)])
    branch.outputs = list(branch.add(E.add, [branch.inputs[0], outer]))  # outer: not its own
    plain = Graph("f", [Value(F32)])
    plain.outputs = list(plain.inputs)
    attrs = {"true_branch": branch, "false_branch": plain}
    graph.outputs = list(graph.add(C.cond, [graph.inputs[0], outer], attrs))
    with pytest.raises(
        VerifyError, match="cond: in op #1: .*input 1 of op #0 is used before it is defined"
    ):
        verify(graph)
    # returning the outer value directly is caught too
    branch.ops, branch.outputs = [], [outer]
    with pytest.raises(VerifyError, match="in op #1: graph output 0 is not defined"):
        verify(graph)


def test_error_deep_in_nested_subgraphs_names_each_op():
    text = """graph @g(%0: f32[2]) {
  %1: f32[2] = scan(%0) {consts=0, carries=1, length=3, reverse=false, body=graph @b(%0: f32[2]) {
      %1: f32[2] = neg(%0)
      %2: bool[] = constant() {value=dense(bool[], [true])}
      %3: f32[2] = cond(%2, %1) {true_branch=graph @t(%0: f32[2]) {
          %1: f32[2] = exp(%0)
          return %1
        }, false_branch=graph @f(%0: f32[2]) {
          return %0
        }}
      return %3
    }}
  return %1
}
"""
    graph = parse(text)
    verify(graph)
    branch = graph.ops[0].attrs["body"].ops[2].attrs["true_branch"]
    branch.ops.append(branch.ops[0])  # exp, now defining its result twice
    with pytest.raises(VerifyError, match=r"scan: in op #0: .*cond: in op #2: op #1 redefines"):
        verify(graph)


def test_subgraph_cannot_have_a_state_map():
    branch = writes_w(F32)
    branch.ops, branch.states = [], []
    branch.state_map = [StateSlot("w", None, None)]
    with pytest.raises(VerifyError, match="subgraph @t cannot have a state_map"):
        verify(with_cond(branch))


@pytest.mark.parametrize("shape", [(2**63,), (2**32, 2**32), (2**63, 0)])
def test_a_type_with_more_than_int64_elements_is_a_shape_error(shape):
    with pytest.raises(ShapeError, match="is too large: at most 2\\*\\*63 - 1 elements"):
        TensorType(shape, np.float32)
