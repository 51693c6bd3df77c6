"""cluster, transfer and host_call on random inputs against numpy expressions written here
(host_call also compiled, as the callback it becomes inside a compiled loop or cluster)."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import OpCase, check_case, params, rand

from flowjit.backends.reference import run_graph
from flowjit.ir import (
    Effect,
    Graph,
    HostCallError,
    ParseError,
    TensorType,
    TypeMismatchError,
    Value,
    VerifyError,
    parse,
    print_graph,
)
from flowjit.ir.core import MissingFunction
from flowjit.ir.ops import host as H
from flowjit.ir.types import dtype_name

FLOATS = (np.float32, np.float64)

BODY = """graph @cluster_0(%0: f32[2,3], %1: f32[3]) {
  %2: f32[2,3] = mul(%0, %1)
  %3: f32[3] = tanh(%1)
  return %2, %3
}"""


def cluster_case(rng, dt):
    body = parse(BODY.replace("f32", dtype_name(np.dtype(dt))))
    return [rand(rng, (2, 3), dt), rand(rng, (3,), dt)], {"body": body}


def transfer_case(rng, dt):
    return [rand(rng, (4, 2), dt)], {"device": "default"}


def _scaled_sum(x, y):
    return (x * 2 + y, np.sum(x, dtype=x.dtype))


def host_call_case(rng, dt):
    types = (TensorType((3,), dt), TensorType((), dt))
    attrs = {"callback": _scaled_sum, "name": "scaled_sum", "result_types": types}
    return [rand(rng, (3,), dt), rand(rng, (3,), dt)], attrs


CASES = [
    OpCase(H.cluster, FLOATS, cluster_case, lambda a, b, **_: (a * b, np.tanh(b))),
    OpCase(H.transfer, FLOATS + (np.int32, np.bool_), transfer_case, lambda x, **_: x),
    OpCase(H.host_call, FLOATS, host_call_case, lambda x, y, **_: (x * 2 + y, x.sum())),
]


@pytest.mark.parametrize("case, dtype", params(CASES))
def test_op_against_numpy(case, dtype):
    check_case(case, dtype)


def test_host_call_results_are_what_result_types_declare():
    graph = parse(
        "graph @g(%0: f32[3]) {\n"
        "  %1: f32[3], %2: f32[] = host_call(%0, %0) {callback=0, "
        'name="scaled_sum", result_types=[f32[3], f32[]]}\n'
        "  return %2\n}\n"
    )
    assert [v.type for v in graph.ops[0].outputs] == [
        TensorType((3,), np.float32),
        TensorType((), np.float32),
    ]
    assert graph.ops[0].effects == {Effect.HOST}


def test_cluster_operands_must_match_its_body():
    graph = Graph("g")
    args = [
        graph.add_input(TensorType((2, 3), np.float32)),
        graph.add_input(TensorType((4,), np.float32)),
    ]
    with pytest.raises(
        TypeMismatchError, match=r"body input 1 is f32\[3\] but operand 1 is f32\[4\]"
    ):
        graph.add(H.cluster, args, {"body": parse(BODY)})


# A graph holding host calls: the same function twice, and another inside a scan body.
HOST_CALLS = (
    "graph @g(%0: f32[3]) {\n"
    '  %1: f32[3], %2: f32[] = host_call(%0, %0) {callback=0, name="a", '
    "result_types=[f32[3], f32[]]}\n"
    "  %3: f32[3] = scan(%1) {consts=0, carries=1, length=2, reverse=false, "
    "body=graph @body(%0: f32[3]) {\n"
    '      %1: f32[3] = host_call(%0) {callback=1, name="b", result_types=[f32[3]]}\n'
    "      return %1\n"
    "    }}\n"
    '  %4: f32[3], %5: f32[] = host_call(%3, %3) {callback=0, name="a", '
    "result_types=[f32[3], f32[]]}\n"
    "  return %4\n"
    "}\n"
)


def test_a_host_call_holds_its_function_and_the_text_numbers_them():
    def double(x):
        return (2 * x,)

    graph = parse(HOST_CALLS, functions=[_scaled_sum, double])
    assert graph.functions() == [_scaled_sum, double]  # (each once, in order of appearance)
    assert graph.ops[0].attrs["callback"] is _scaled_sum is graph.ops[2].attrs["callback"]
    assert print_graph(graph) == HOST_CALLS
    x = np.array([1, 2, 3], np.float32)
    # 2x+x, then twice doubled, then 2y+y
    np.testing.assert_allclose(run_graph(graph, [x])[0], 3 * (4 * (3 * x)))


def test_a_graph_parsed_without_its_functions_prints_the_same_and_says_so_when_run():
    graph = parse(HOST_CALLS, functions=[_scaled_sum])  # (function 1 not given)
    assert print_graph(graph) == HOST_CALLS
    missing = graph.ops[1].attrs["body"].ops[0].attrs["callback"]
    assert isinstance(missing, MissingFunction) and missing.number == 1
    with pytest.raises(HostCallError, match=r"function 1 is missing.*parse\(text, functions="):
        run_graph(graph, [np.ones(3, np.float32)])


def test_a_host_calls_function_must_be_callable():
    with pytest.raises(ParseError, match="callback must be a function's number"):
        parse(HOST_CALLS.replace("callback=1", 'callback="f"'))
    graph = Graph("g", [Value(TensorType((3,), np.float32))])
    with pytest.raises(VerifyError, match="callback=3 is not a valid function"):
        graph.add(H.host_call, graph.inputs, {"callback": 3, "name": "f", "result_types": ()})
