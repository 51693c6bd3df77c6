"""cluster, transfer and host_call on random inputs against numpy expressions written here
(host_call also compiled, as the callback it becomes inside a compiled loop or cluster)."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import OpCase, check_case, params, rand

from flowjit.ir import Effect, Graph, TensorType, TypeMismatchError, parse
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


SCALED_SUM = H.register_callback(_scaled_sum)


def host_call_case(rng, dt):
    types = (TensorType((3,), dt), TensorType((), dt))
    attrs = {"callback": SCALED_SUM, "name": "scaled_sum", "result_types": types}
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
        f"  %1: f32[3], %2: f32[] = host_call(%0, %0) {{callback={SCALED_SUM}, "
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
