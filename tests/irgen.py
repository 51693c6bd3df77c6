"""Hypothesis strategies for random valid graphs (text round trips, pass properties)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

from flowjit.ir import DTYPE_NAMES, Graph, Location, ParseError, TensorType, Value
from flowjit.ir.ops import control as Ctl
from flowjit.ir.ops import creation as C
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops import shape as S
from flowjit.ir.ops import state as St
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


# -- graphs where simplify's rules fire ------------------------------------------------------
SIMPLE_DTYPES = [np.dtype(np.float32), np.dtype(np.int32), DTYPE_NAMES["bf16"], np.dtype(np.uint8)]
# square shapes: there a wrong permutation still type-checks, and only values tell
SIMPLE_SHAPES = [(), (2,), (2, 3), (3, 3), (2, 3, 4), (2, 2, 2)]


def _splat(draw, dtype: np.dtype, shape: tuple[int, ...], elements) -> np.ndarray:
    element = draw(st.sampled_from(elements))
    return np.full(shape, element, np.float32 if dtype.kind == "V" else dtype).astype(dtype)


@st.composite
def simplifiable_graphs(draw) -> Graph:
    """Random graphs full of what simplify rewrites: neutral constants (0 and 1, as scalars,
    at the operand's shape or broadcasting it), negation chains, transposes (identity, square,
    composed), reshape and broadcast_to chains, broadcasts of reshaped scalars, converts,
    stop_gradient and selects on constant and computed predicates; and near misses."""
    dtype = draw(st.sampled_from(SIMPLE_DTYPES))
    graph = Graph("simple")
    values = [
        graph.add_input(TensorType(draw(st.sampled_from(SIMPLE_SHAPES)), dtype))
        for _ in range(draw(st.integers(1, 3)))
    ]
    # transposes twice as often: composing them has the most cases
    kinds = ["neutral", "neg", "transpose", "transpose", "reshape", "broadcast"]
    kinds += ["scalar_broadcast", "operand_broadcast", "stop_gradient", "convert", "select"]

    def add(opdef, inputs, attrs=None) -> Value:
        (out,) = graph.add(opdef, inputs, attrs)
        values.append(out)
        return out

    def constant(shape, elements) -> Value:
        return add(C.constant, [], {"value": _splat(draw, dtype, shape, elements)})

    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(kinds))
        x = draw(st.sampled_from([v for v in values if v.type.dtype == dtype]))
        shape = x.type.shape
        if kind == "neutral":
            ops = [E.add, E.sub, E.mul] + ([E.div, E.pow_] if dtype.kind in "fV" else [E.pow_])
            opdef = draw(st.sampled_from(ops))
            at = draw(st.sampled_from([(), shape, (2, *shape)]))  # a scalar, x's shape, bigger
            c = constant(at, [0, -0.0, 1, 2])  # (-0.0: the float zero that x + 0 drops)
            # pow's exponent stays on the right: integer powers of a negative exponent raise
            left = opdef is not E.pow_ and draw(st.booleans())
            add(opdef, [c, x] if left else [x, c])
        elif kind == "neg":
            for _ in range(draw(st.integers(1, 4))):
                x = add(E.neg, [x])
        elif kind == "transpose":
            for _ in range(draw(st.integers(2, 3))):
                perm = draw(st.permutations(range(x.type.ndim)))
                x = add(S.transpose, [x], {"perm": tuple(perm)})
        elif kind == "reshape":
            size = x.type.size
            for _ in range(draw(st.integers(1, 3))):
                target = draw(st.sampled_from([(size,), (1, size), (size, 1), x.type.shape, shape]))
                x = add(S.reshape, [x], {"shape": target})
        elif kind == "broadcast":
            for _ in range(draw(st.integers(1, 2))):
                target = draw(st.sampled_from([x.type.shape, (2, *x.type.shape)]))
                x = add(S.broadcast_to, [x], {"shape": target})
        elif kind == "scalar_broadcast":
            s = x if shape == () else constant((), [0, 1, 2])
            ones = draw(st.sampled_from([(), (1,), (1, 1)]))
            add(S.broadcast_to, [add(S.reshape, [s], {"shape": ones})], {"shape": (2, 3)})
        elif kind == "operand_broadcast":
            s = constant(draw(st.sampled_from([(), (1,)])), [0, 1, 2])
            target = draw(st.sampled_from([shape, (2, *shape)]))
            b = add(S.broadcast_to, [s], {"shape": target if len(target) >= 1 else (1,)})
            opdef = draw(st.sampled_from([E.add, E.mul, E.max_, E.sub]))
            add(opdef, [x, b] if draw(st.booleans()) else [b, x])
        elif kind == "stop_gradient":
            add(E.stop_gradient, [x])
        elif kind == "convert":
            target = draw(st.sampled_from([dtype, np.dtype(np.float32), np.dtype(np.int32)]))
            add(E.convert, [x], {"dtype": target})
        elif kind == "select":
            if draw(st.booleans()):
                at = draw(st.sampled_from([(), shape]))
                pred = add(C.constant, [], {"value": np.full(at, draw(st.booleans()))})
            else:
                pred = add(E.lt, [x, add(E.neg, [x])])
            other = draw(st.sampled_from([v for v in values if v.type == x.type]))
            add(E.select, [pred, x, other] if draw(st.booleans()) else [pred, other, x])
    # every value no op uses is a result, so that each rewrite shows in the results
    used = {v for op in graph.ops for v in op.inputs}
    graph.outputs = [v for v in values if v not in used]
    return graph


# -- graphs with variables -------------------------------------------------------------------
STATE_TYPES = [
    TensorType((2,), np.float32),
    TensorType((), np.int32),
    TensorType((2, 3), np.float32),
]
BOOL_SCALAR = TensorType((), np.bool_)


@st.composite
def stateful_graphs(draw) -> Graph:
    """Random graphs that read and write variables, in order with pure ops, at the top level
    and inside the branches of a cond and the body of a scan (whose subgraphs declare the
    enclosing graph's variables)."""
    graph = Graph("step")
    for i, t in enumerate(draw(st.lists(st.sampled_from(STATE_TYPES), min_size=1, max_size=3))):
        graph.add_state(f"v{i}", t)
    values = [graph.add_input(t) for t in draw(st.lists(st.sampled_from(STATE_TYPES), max_size=2))]
    _stateful_ops(draw, graph, values, nested=False)
    graph.outputs = draw(st.lists(st.sampled_from(values), max_size=3)) if values else []
    return graph


def _stateful_ops(draw, graph: Graph, values: list[Value], nested: bool) -> None:
    """Append random ops to ``graph`` (values they define go to ``values``)."""
    kinds = ["read", "assign", "assign_add", "assign_sub", "pure", "constant"]
    kinds += [] if nested else ["cond", "scan"]
    writes = {
        "assign": St.assign_variable,
        "assign_add": St.assign_add_variable,
        "assign_sub": St.assign_sub_variable,
    }

    def constant(t: TensorType) -> Value:
        array = np.array(draw(st.integers(-3, 3)), t.dtype)
        (value,) = graph.add(C.constant, [], {"value": np.broadcast_to(array, t.shape).copy()})
        values.append(value)
        return value

    def subgraph(name: str, operands: list[Value]) -> tuple[Graph, list[Value]]:
        sub = Graph(name, [Value(v.type) for v in operands])
        for handle in graph.states:
            sub.add_state(handle.name, handle.type)
        inner = list(sub.inputs)
        _stateful_ops(draw, sub, inner, nested=True)
        used = {op.state_handle for op in sub.ops}
        sub.states = [h for h in sub.states if h in used]  # as the tracer declares them
        return sub, inner

    def pick(among: list[Value], t: TensorType) -> Value:
        return draw(st.sampled_from([v for v in among if v.type == t]))

    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(kinds))
        handle = draw(st.sampled_from(graph.states))
        if kind == "read":
            values += graph.add(St.read_variable, [handle])
        elif kind in writes:
            same = [v for v in values if v.type == handle.type]
            value = draw(st.sampled_from(same)) if same else constant(handle.type)
            graph.add(writes[kind], [handle, value])
        elif kind == "constant" or not values:
            constant(draw(st.sampled_from(STATE_TYPES)))
        elif kind == "pure":
            x = draw(st.sampled_from(values))
            opdef = draw(st.sampled_from([E.neg, E.add, E.mul, E.sub]))
            values += graph.add(opdef, [x] if opdef is E.neg else [x, x])
        elif kind == "cond":
            operands = draw(st.lists(st.sampled_from(values), min_size=1, max_size=2))
            branches = {}
            for key in ("true_branch", "false_branch"):
                sub, inner = subgraph(key, operands)
                sub.outputs = [pick(inner, operands[0].type)]
                branches[key] = sub
            pred = graph.add_input(BOOL_SCALAR)
            values += graph.add(Ctl.cond, [pred, *operands], branches)
        else:  # a scan carrying operands, with no consts or xs, stacking one value per step
            carry = draw(st.lists(st.sampled_from(values), min_size=1, max_size=2))
            body, inner = subgraph("body", carry)
            body.outputs = [pick(inner, v.type) for v in carry] + [draw(st.sampled_from(inner))]
            attrs = {"consts": 0, "carries": len(carry), "length": draw(st.integers(1, 3))}
            attrs.update(reverse=draw(st.booleans()), body=body)
            values += graph.add(Ctl.scan, carry, attrs)


def unmark(marked: str) -> tuple[str, int, int]:
    """IR text with a ``^`` before the token an error must point at: the text without it, and
    that token's 1-based line and column."""
    at = marked.index("^")
    text = marked.replace("^", "", 1)
    return text, text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1


def parse_error_at(parse, marked: str, message: str):
    """``parse`` of ``marked`` (see unmark) raises a ParseError at the marked token whose text
    holds ``message``; returns the error and the unmarked text."""
    text, line, column = unmark(marked)
    with pytest.raises(ParseError) as info:
        parse(text)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert message in str(info.value)
    return info.value, text
