"""A hypothesis strategy for random valid graphs (text round trips, pass properties)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from flowjit.ir import DTYPE_NAMES, Graph, Location, TensorType, Value
from flowjit.ir.ops import control as Ctl
from flowjit.ir.ops import creation as C
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops.rules import FLOATS, NUMERIC

DTYPES = list(DTYPE_NAMES.values())
UNARY_FLOAT = [E.exp, E.log, E.sin, E.tanh, E.neg, E.abs_, E.floor, E.sqrt]
BINARY = [E.add, E.sub, E.mul, E.max_, E.min_]
COMPARE = [E.eq, E.lt, E.ge]


@st.composite
def graphs(draw) -> Graph:
    graph = Graph(draw(st.sampled_from(["main", "step", "f_1", "a.b"])))
    shapes = st.lists(st.integers(0, 3), max_size=3).map(tuple)
    values = [
        graph.add_input(TensorType(draw(shapes), draw(st.sampled_from(DTYPES))))
        for _ in range(draw(st.integers(0, 3)))
    ]
    loc = st.none() | st.builds(Location, st.text(max_size=8), st.integers(0, 9999))
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["constant", "unary", "binary", "compare", "convert", "iota"]))
        at = draw(loc)
        if kind == "constant" or not values:
            dtype = draw(st.sampled_from(DTYPES))
            shape = draw(shapes)
            size = int(np.prod(shape))
            if dtype.kind in "fV":
                elems = st.floats(allow_nan=True, allow_infinity=True, width=16)
            elif dtype.kind == "b":
                elems = st.booleans()
            else:
                info = np.iinfo(dtype)
                elems = st.integers(int(info.min), int(info.max))
            array = np.array(
                draw(st.lists(elems, min_size=size, max_size=size)),
                dtype=dtype if dtype.kind != "V" else np.float32,
            ).astype(dtype)
            values += graph.add(C.constant, [], {"value": array.reshape(shape)}, at)
            continue
        x = draw(st.sampled_from(values))
        if kind == "unary" and x.type.dtype in FLOATS:
            values += graph.add(draw(st.sampled_from(UNARY_FLOAT)), [x], loc=at)
        elif kind in ("binary", "compare") and x.type.dtype in NUMERIC:
            ops = BINARY if kind == "binary" else COMPARE
            values += graph.add(draw(st.sampled_from(ops)), [x, x], loc=at)
        elif kind == "convert":
            values += graph.add(E.convert, [x], {"dtype": draw(st.sampled_from(DTYPES))}, at)
        elif kind == "iota":
            shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple))
            values += graph.add(
                C.iota,
                [],
                {
                    "shape": shape,
                    "dimension": draw(st.integers(0, len(shape) - 1)),
                    "dtype": draw(st.sampled_from(NUMERIC)),
                },
                at,
            )
    graph.outputs = draw(st.lists(st.sampled_from(values), max_size=3)) if values else []
    return graph


@st.composite
def nested_graphs(draw) -> Graph:
    """A random graph as both branches of a cond, and that cond as the body of a scan."""
    inner = draw(graphs())
    branch = Graph("branch", inner.inputs)
    branch.ops, branch.outputs = inner.ops, inner.outputs
    pred = Value(TensorType((), np.bool_))
    body = Graph("body", [pred, *(Value(v.type) for v in inner.inputs)])
    attrs = {"true_branch": branch, "false_branch": inner}
    loc = draw(st.none() | st.just(Location("f.py", 7)))
    body.outputs = list(body.add(Ctl.cond, body.inputs, attrs, loc))
    outer = Graph(inner.name, [Value(v.type) for v in body.inputs])
    attrs = {"consts": len(body.inputs), "carries": 0, "length": 2, "reverse": False}
    outer.outputs = list(outer.add(Ctl.scan, outer.inputs, {**attrs, "body": body}))
    return outer
