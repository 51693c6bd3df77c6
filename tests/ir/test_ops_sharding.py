"""with_sharding: its value is its operand's on every backend (one device here; the mesh
runs in tests/runtime/test_sharding.py), its spec is checked against the value's shape, and
its text survives a round trip."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import OpCase, check_case, params, rand

from flowjit.ir import MeshAxes, ParseError, ShapeError, parse, print_graph
from flowjit.ir.ops import sharding as S

FLOATS = (np.float32, np.float64)


def sharded_case(rng, dt):
    return [rand(rng, (4, 6), dt)], {"mesh": "data=2, model=3", "spec": "[{data}, {model}]"}


def replicated_case(rng, dt):
    return [rand(rng, (5,), dt)], {"mesh": "data=2", "spec": "[{}]"}


CASES = [
    OpCase(S.with_sharding, FLOATS + (np.int32,), sharded_case, lambda x, **_: x),
    OpCase(S.with_sharding, FLOATS, replicated_case, lambda x, **_: x, name="replicated"),
]


@pytest.mark.parametrize("case, dtype", params(CASES))
def test_op_against_numpy(case, dtype):
    check_case(case, dtype)


def test_mesh_and_spec_text_round_trip():
    mesh = MeshAxes((("data", 4), ("model", 2)))
    spec = (("data", "model"), ())
    assert str(mesh) == "data=4, model=2"
    assert S.spec_text(spec) == "[{data, model}, {}]"
    assert MeshAxes.parse(str(mesh)) == mesh
    assert S.parse_spec(S.spec_text(spec)) == spec


@pytest.mark.parametrize(
    "text", ["data", "data=0", "1x=2", "data=2,,", "data=" + "9" * 5000, "data=\u00b2"]
)
def test_malformed_mesh_text_is_a_shape_error(text):
    with pytest.raises(ShapeError, match="malformed mesh"):
        MeshAxes.parse(text)


@pytest.mark.parametrize("text", ["{data}", "[{data}, data]", "[{data}"])
def test_malformed_spec_text_is_a_shape_error(text):
    with pytest.raises(ShapeError, match="malformed sharding spec"):
        S.parse_spec(text)


@pytest.mark.parametrize(
    "shape, spec, message",
    [
        ((8,), "[{data}, {}]", "2 entries for rank 1"),
        ((8, 4), "[{rows}, {}]", "axis 'rows' is not in the mesh"),
        ((8, 4), "[{data}, {data}]", "uses a mesh axis twice"),
        ((6, 4), "[{data}, {}]", "dimension 0 of size 6 is not divisible by 4"),
        ((8, 4), "[{}, {data, model}]", "dimension 1 of size 4 is not divisible by 8"),
    ],
)
def test_a_spec_that_does_not_fit_is_rejected_at_parse_time(shape, spec, message):
    dims = ",".join(map(str, shape))
    text = (
        f"graph @g(%0: f32[{dims}]) {{\n"
        f'  %1: f32[{dims}] = with_sharding(%0) {{mesh="data=4, model=2", spec="{spec}"}}\n'
        "  return %1\n}\n"
    )
    with pytest.raises(ParseError, match=message):
        parse(text)


def test_with_sharding_prints_and_parses_back():
    text = (
        "graph @g(%0: f32[8,4]) {\n"
        '  %1: f32[8,4] = with_sharding(%0) {mesh="data=4, model=2", spec="[{data}, {model}]"}\n'
        "  return %1\n}\n"
    )
    assert print_graph(parse(text)) == text


def test_a_cluster_on_a_mesh_holds_the_mesh_and_prints_it_as_before():
    text = (
        "graph @g(%0: f32[4]) {\n"
        "  %1: f32[4] = cluster(%0) {body=graph @cluster_0(%0: f32[4]) {\n"
        '      %1: f32[4] = with_sharding(%0) {mesh="data=2", spec="[{data}]"}\n'
        "      return %1\n"
        '    }} device("mesh(data=2)")\n'
        "  return %1\n"
        "}\n"
    )
    graph = parse(text)
    (cluster,) = graph.ops
    assert cluster.device == MeshAxes((("data", 2),))
    assert cluster.attrs["body"].ops[0].attrs["mesh"] is not None
    assert cluster.attrs["body"].ops[0].attrs["mesh"] == cluster.device
    assert print_graph(graph) == text
    with pytest.raises(ParseError, match="malformed mesh"):
        parse(text.replace('device("mesh(data=2)")', 'device("mesh(data=)")'))
