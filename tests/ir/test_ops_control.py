"""cond, while and scan on random inputs against numpy expressions written here, and their
gradients; branches or carries that disagree raise TypeMismatchError / DTypeError /
ShapeError naming the position."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import OpCase, add_op, check_case, check_grad, params, rand

from flowjit.ir import (
    DTypeError,
    GradientError,
    Graph,
    ShapeError,
    TensorType,
    TypeMismatchError,
    parse,
)
from flowjit.ir.ops import control as C
from flowjit.ir.types import dtype_name

FLOATS = (np.float32, np.float64)
F32 = np.dtype(np.float32)


def subgraphs(dt, **texts: str) -> dict[str, Graph]:
    """Parse each subgraph, written in f32, with f32 replaced by ``dt``."""
    name = dtype_name(np.dtype(dt))
    return {key: parse(text.replace("f32", name)) for key, text in texts.items()}


# -- cond ----------------------------------------------------------------------------------
ON_TRUE = """graph @on_true(%0: f32[2,3], %1: f32[3], %2: i32[]) {
  %3: f32[2,3] = mul(%0, %1)
  %4: i32[] = constant() {value=dense(i32[], [1])}
  %5: i32[] = add(%2, %4)
  return %3, %5, %1
}"""
ON_FALSE = """graph @on_false(%0: f32[2,3], %1: f32[3], %2: i32[]) {
  %3: f32[2,3] = sub(%0, %1)
  %4: f32[3] = sin(%1)
  return %3, %2, %4
}"""


def cond_case(pred: bool):
    def make(rng, dt):
        operands = [rand(rng, (2, 3), dt), rand(rng, (3,), dt), rand(rng, (), np.int32, -9, 9)]
        branches = subgraphs(dt, true_branch=ON_TRUE, false_branch=ON_FALSE)
        return [np.array(pred), *operands], branches

    return make


def np_cond(pred, a, b, n, **_):
    return (a * b, n + 1, b) if pred else (a - b, n, np.sin(b))


CONST_TRUE = """graph @on_true() {
  %0: f32[2] = constant() {value=dense(f32[2], [2.5, -1.0])}
  return %0
}"""
CONST_FALSE = """graph @on_false() {
  %0: f32[2] = iota() {shape=[2], dimension=0, dtype=f32}
  return %0
}"""


def cond_without_operands(rng, dt):
    branches = subgraphs(dt, true_branch=CONST_TRUE, false_branch=CONST_FALSE)
    return [np.array(rng.random() < 0.5)], branches


# -- while ---------------------------------------------------------------------------------
# consts (limit, step), carry (i, x): counts i up to limit, adding step to x each time
COUNT_COND = """graph @below_limit(%0: i32[], %1: f32[], %2: i32[], %3: f32[3]) {
  %4: bool[] = lt(%2, %0)
  return %4
}"""
COUNT_BODY = """graph @count(%0: i32[], %1: f32[], %2: i32[], %3: f32[3]) {
  %4: i32[] = constant() {value=dense(i32[], [1])}
  %5: i32[] = add(%2, %4)
  %6: f32[3] = add(%3, %1)
  return %5, %6
}"""


def counting_loop(start_low: int, start_high: int):
    def make(rng, dt):
        limit = rng.integers(0, 6, dtype=np.int32)
        start = rng.integers(start_low, start_high + 1, dtype=np.int32)
        operands = [limit, rand(rng, (), dt), start, rand(rng, (3,), dt)]
        return operands, {"consts": 2, **subgraphs(dt, cond=COUNT_COND, body=COUNT_BODY)}

    return make


def np_counting_loop(limit, step, i, x, **_):
    trips = max(int(limit) - int(i), 0)
    return np.int32(i + trips), x + trips * step


# no consts: halve x until every |x| <= 1 (halving is exact, so every dtype counts alike)
HALVE_COND = """graph @too_big(%0: f32[4]) {
  %1: f32[4] = abs(%0)
  %2: f32[] = reduce_max(%1) {axes=[0], keepdims=false}
  %3: f32[] = constant() {value=dense(f32[], [1.0])}
  %4: bool[] = gt(%2, %3)
  return %4
}"""
HALVE_BODY = """graph @halve(%0: f32[4]) {
  %1: f32[] = constant() {value=dense(f32[], [0.5])}
  %2: f32[4] = mul(%0, %1)
  return %2
}"""


def halving_loop(rng, dt):
    return [rand(rng, (4,), dt, -40, 40)], {
        "consts": 0,
        **subgraphs(dt, cond=HALVE_COND, body=HALVE_BODY),
    }


def np_halving_loop(x, **_):
    halvings = max(0.0, np.ceil(np.log2(np.max(np.abs(x)))))
    return x / 2**halvings


# -- scan ----------------------------------------------------------------------------------
# const w, carry (c, k), xs x: c <- c * x * w, k <- k + 1; ys: the new c, the old c + x, the old k
SCAN_BODY = """graph @step(%0: f32[3], %1: f32[3], %2: i32[], %3: f32[3]) {
  %4: f32[3] = mul(%3, %0)
  %5: f32[3] = mul(%1, %4)
  %6: i32[] = constant() {value=dense(i32[], [1])}
  %7: i32[] = add(%2, %6)
  %8: f32[3] = add(%1, %3)
  return %5, %7, %5, %8, %2
}"""


def product_scan(length: int, reverse: bool):
    def make(rng, dt):
        w, c = rand(rng, (3,), dt, 0.5, 1.5), rand(rng, (3,), dt)
        k, x = rand(rng, (), np.int32, -9, 9), rand(rng, (length, 3), dt, 0.5, 1.5)
        attrs = {"consts": 1, "carries": 2, "length": length, "reverse": reverse}
        return [w, c, k, x], {**attrs, **subgraphs(dt, body=SCAN_BODY)}

    return make


def np_product_scan(w, c, k, x, length, reverse, **_):
    steps = np.arange(length)[::-1] if reverse else np.arange(length)  # xs index of each step
    products = np.cumprod(x[steps] * w, axis=0)  # in step order
    new = np.zeros_like(x)
    new[steps] = c * products
    old = np.zeros_like(x)
    old[steps] = np.concatenate([c[None], c * products[:-1]])[:length]
    old_k = np.zeros(length, np.int32)
    old_k[steps] = k + np.arange(length)
    last = new[steps[-1]] if length else c
    return last, np.int32(k + length), new, old + x, old_k


# no xs: length alone sets the trip count
RAMP_BODY = """graph @ramp(%0: f32[2]) {
  %1: f32[] = constant() {value=dense(f32[], [1.5])}
  %2: f32[2] = add(%0, %1)
  %3: f32[2] = sin(%0)
  return %2, %3
}"""


def ramp_scan(rng, dt):
    attrs = {"consts": 0, "carries": 1, "length": 4, "reverse": False}
    return [rand(rng, (2,), dt)], {**attrs, **subgraphs(dt, body=RAMP_BODY)}


def np_ramp_scan(c, **_):
    return c + 4 * 1.5, np.sin(c + 1.5 * np.arange(4)[:, None])


# a body without ops: the carry becomes the last x, ys are the previous carries and w each step
SHIFT_BODY = """graph @shift(%0: f32[2], %1: f32[2], %2: f32[2]) {
  return %2, %1, %0
}"""


def shift_scan(rng, dt):
    attrs = {"consts": 1, "carries": 1, "length": 3, "reverse": False}
    operands = [rand(rng, (2,), dt), rand(rng, (2,), dt), rand(rng, (3, 2), dt)]
    return operands, {**attrs, **subgraphs(dt, body=SHIFT_BODY)}


def np_shift_scan(w, c, x, **_):
    return x[-1], np.concatenate([c[None], x[:-1]]), np.broadcast_to(w, (3, 2))


CASES = [
    OpCase(C.cond, FLOATS, cond_case(True), np_cond, name="cond_true"),
    OpCase(C.cond, FLOATS, cond_case(False), np_cond, name="cond_false"),
    OpCase(
        C.cond,
        (np.float32,),
        cond_without_operands,
        lambda pred, **_: np.array([2.5, -1.0]) if pred else np.array([0.0, 1.0]),
        name="cond_no_operands",
    ),
    OpCase(C.while_loop, FLOATS, counting_loop(0, 3), np_counting_loop, name="while_count"),
    OpCase(
        C.while_loop, (np.float32,), counting_loop(6, 8), np_counting_loop, name="while_no_trip"
    ),
    OpCase(C.while_loop, FLOATS, halving_loop, np_halving_loop, name="while_halve"),
    OpCase(C.scan, FLOATS, product_scan(5, False), np_product_scan, name="scan"),
    OpCase(C.scan, FLOATS, product_scan(5, True), np_product_scan, name="scan_reverse"),
    OpCase(C.scan, FLOATS, product_scan(0, False), np_product_scan, name="scan_empty"),
    OpCase(C.scan, (np.float32,), ramp_scan, np_ramp_scan, name="scan_no_xs"),
    OpCase(C.scan, FLOATS, shift_scan, np_shift_scan, name="scan_no_ops"),
]


@pytest.mark.parametrize("case, dtype", params(CASES))
def test_op_against_numpy(case, dtype):
    check_case(case, dtype)


GRAD_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


@pytest.mark.parametrize(
    "case, dtype",
    [
        p
        for p in params(CASES)
        if p.values[0].opdef in (C.cond, C.scan)
        and p.values[0].name != "cond_no_operands"
        and p.values[1] in GRAD_DTYPES
    ],
)
def test_gradient(case, dtype):
    check_grad(case, dtype)


def test_while_has_no_gradient():
    import flowjit as fj
    import flowjit.numpy as fnp
    from flowjit.compiler.trace import emit

    inputs, attrs = counting_loop(0, 3)(np.random.default_rng(0), F32)

    def loss(limit, step, start, x):
        return fnp.sum(emit(C.while_loop, [limit, step, start, x], **attrs)[1])

    with pytest.raises(GradientError, match="cannot differentiate through a while loop") as info:
        fj.grad(loss, argnums=(1, 3))(*inputs)
    assert info.value.op == "while"


# -- shape rules ---------------------------------------------------------------------------
def branch(name: str, inputs: str, results: str, body: str = "") -> Graph:
    """A branch or body graph: its results are its inputs %<i> named in ``results``."""
    return parse(f"graph @{name}({inputs}) {{\n{body}  return {results}\n}}")


TWO_IN = "%0: f32[3], %1: i32[]"
COND_TYPES = [((), np.bool_), ((3,), F32), ((), np.int32)]


@pytest.mark.parametrize(
    "types, true_branch, false_branch, error, message",
    [
        (
            [((), np.bool_), ((2,), F32), ((), np.int32)],
            branch("t", TWO_IN, "%0"),
            branch("f", TWO_IN, "%0"),
            TypeMismatchError,
            r"true_branch input 0 is f32\[3\] but operand 0 is f32\[2\]",
        ),
        (
            COND_TYPES,
            branch("t", TWO_IN, "%0"),
            branch("f", "%0: f32[3], %1: i64[]", "%0"),
            TypeMismatchError,
            r"false_branch input 1 is i64\[\] but operand 1 is i32\[\]",
        ),
        (
            COND_TYPES,
            branch("t", "%0: f32[3]", "%0"),
            branch("f", TWO_IN, "%0"),
            TypeMismatchError,
            "true_branch input has 1 values but operand has 2",
        ),
        (
            COND_TYPES,
            branch("t", TWO_IN, "%0, %1"),
            branch(
                "f",
                TWO_IN,
                "%0, %2",
                "  %2: f32[] = convert(%1) {dtype=f32}\n",
            ),
            TypeMismatchError,
            r"false_branch result 1 is f32\[\] but true_branch result 1 is i32\[\]",
        ),
        (
            COND_TYPES,
            branch("t", TWO_IN, "%0, %1"),
            branch("f", TWO_IN, "%0"),
            TypeMismatchError,
            "false_branch result has 1 values but true_branch result has 2",
        ),
        (
            [((), np.int32), ((3,), F32), ((), np.int32)],
            branch("t", TWO_IN, "%0"),
            branch("f", TWO_IN, "%0"),
            DTypeError,
            r"the predicate must be bool\[\], got i32\[\]",
        ),
        (
            [((1,), np.bool_), ((3,), F32), ((), np.int32)],
            branch("t", TWO_IN, "%0"),
            branch("f", TWO_IN, "%0"),
            DTypeError,
            r"the predicate must be bool\[\], got bool\[1\]",
        ),
    ],
)
def test_cond_branches_that_disagree(types, true_branch, false_branch, error, message):
    with pytest.raises(error, match=message) as info:
        add_op(C.cond, types, true_branch=true_branch, false_branch=false_branch)
    assert info.value.op == "cond"


WHILE_IN = "%0: f32[], %1: i32[], %2: f32[3]"
WHILE_TYPES = [((), F32), ((), np.int32), ((3,), F32)]
LESS = branch("c", WHILE_IN, "%3", "  %3: bool[] = lt(%1, %1)\n")


@pytest.mark.parametrize(
    "cond, body, error, message",
    [
        (
            LESS,
            branch("b", WHILE_IN, "%1, %3", "  %3: f64[3] = convert(%2) {dtype=f64}\n"),
            TypeMismatchError,
            r"body result 1 is f64\[3\] but carry 1 is f32\[3\]",
        ),
        (
            LESS,
            branch("b", WHILE_IN, "%2, %1"),
            TypeMismatchError,
            r"body result 0 is f32\[3\] but carry 0 is i32\[\]",
        ),
        (
            LESS,
            branch("b", WHILE_IN, "%1"),
            TypeMismatchError,
            "body result has 1 values but carry has 2",
        ),
        (
            LESS,
            branch("b", "%0: f32[], %1: i64[], %2: f32[3]", "%1, %2"),
            TypeMismatchError,
            r"body input 1 is i64\[\] but operand 1 is i32\[\]",
        ),
        (
            branch("c", "%0: f32[], %1: i32[]", "%1"),
            branch("b", WHILE_IN, "%1, %2"),
            TypeMismatchError,
            "cond input has 2 values but operand has 3",
        ),
        (
            branch("c", WHILE_IN, "%1"),
            branch("b", WHILE_IN, "%1, %2"),
            DTypeError,
            r"cond must return one bool\[\], got \['i32\[\]'\]",
        ),
        (
            branch("c", WHILE_IN, "%3, %3", "  %3: bool[] = lt(%1, %1)\n"),
            branch("b", WHILE_IN, "%1, %2"),
            DTypeError,
            "cond must return one bool",
        ),
        (
            branch("c", WHILE_IN, "%3", "  %3: bool[3] = lt(%2, %2)\n"),
            branch("b", WHILE_IN, "%1, %2"),
            DTypeError,
            r"cond must return one bool\[\], got \['bool\[3\]'\]",
        ),
    ],
)
def test_while_carry_that_disagrees(cond, body, error, message):
    with pytest.raises(error, match=message) as info:
        add_op(C.while_loop, WHILE_TYPES, consts=1, cond=cond, body=body)
    assert info.value.op == "while"


def test_while_cond_must_not_write_variables():
    writes = parse(
        "graph @c(%0: f32[], %1: i32[], %2: f32[3]) state($w: f32[3]) {\n"
        "  assign_variable($w, %2)\n"
        "  %3: bool[] = lt(%1, %1)\n"
        "  return %3\n"
        "}"
    )
    body = branch("b", WHILE_IN, "%1, %2")
    with pytest.raises(ShapeError, match="cond of a while loop must not write variables"):
        add_op(C.while_loop, WHILE_TYPES, consts=1, cond=writes, body=body)
    # reading one is fine
    reads = parse(
        "graph @c(%0: f32[], %1: i32[], %2: f32[3]) state($w: f32[3]) {\n"
        "  %3: f32[3] = read_variable($w)\n"
        "  %4: bool[3] = lt(%2, %3)\n"
        "  %5: bool[] = reduce_and(%4) {axes=[0], keepdims=false}\n"
        "  return %5\n"
        "}"
    )
    (i, x) = add_op(C.while_loop, WHILE_TYPES, consts=1, cond=reads, body=body)
    assert (i.type, x.type) == (TensorType((), np.int32), TensorType((3,), F32))


@pytest.mark.parametrize("consts", [-1, 4])
def test_while_consts_out_of_range(consts):
    with pytest.raises(ShapeError, match=f"consts={consts} but the op has 3 inputs"):
        add_op(C.while_loop, WHILE_TYPES, consts=consts, cond=LESS, body=branch("b", WHILE_IN, ""))


SCAN_IN = "%0: f32[], %1: i32[], %2: f32[3]"  # const, carry, x slice
SCAN_TYPES = [((), F32), ((), np.int32), ((5, 3), F32)]


@pytest.mark.parametrize(
    "types, body, attrs, error, message",
    [
        (
            [((), F32), ((), np.int32), ((4, 3), F32)],
            branch("b", SCAN_IN, "%1, %2"),
            {},
            ShapeError,
            r"xs 0 has shape \(4, 3\); scanned inputs need length 5",
        ),
        (
            [((), F32), ((), np.int32), ((5, 3), F32), ((), F32)],
            branch("b", SCAN_IN + ", %3: f32[]", "%1, %2"),
            {},
            ShapeError,
            r"xs 1 has shape \(\); scanned inputs need length 5",
        ),
        (
            SCAN_TYPES,
            branch("b", SCAN_IN, "%3, %2", "  %3: i64[] = convert(%1) {dtype=i64}\n"),
            {},
            TypeMismatchError,
            r"body carry result 0 is i64\[\] but carry 0 is i32\[\]",
        ),
        (
            SCAN_TYPES,
            branch("b", "%0: f32[], %1: i32[], %2: f32[5,3]", "%1, %2"),
            {},
            TypeMismatchError,
            r"body input 2 is f32\[5,3\] but operand 2 is f32\[3\]",
        ),
        (
            SCAN_TYPES,
            branch("b", SCAN_IN, ""),
            {},
            TypeMismatchError,
            "body carry result has 0 values but carry has 1",
        ),
        (
            SCAN_TYPES,
            branch("b", SCAN_IN, "%1, %2"),
            {"consts": 2, "carries": 2},
            ShapeError,
            "consts=2, carries=2, length=5 do not fit 3 inputs",
        ),
        (
            SCAN_TYPES,
            branch("b", SCAN_IN, "%1, %2"),
            {"length": -1},
            ShapeError,
            "length=-1 do not fit",
        ),
    ],
)
def test_scan_carry_or_xs_that_disagree(types, body, attrs, error, message):
    attrs = {"consts": 1, "carries": 1, "length": 5, "reverse": False, **attrs}
    with pytest.raises(error, match=message) as info:
        add_op(C.scan, types, body=body, **attrs)
    assert info.value.op == "scan"


def test_scan_result_types():
    body = branch("b", SCAN_IN, "%1, %2, %0")
    for length in (5, 0):
        types = [((), F32), ((), np.int32), ((length, 3), F32)]
        outs = add_op(C.scan, types, consts=1, carries=1, length=length, reverse=True, body=body)
        assert [v.type for v in outs] == [
            TensorType((), np.int32),
            TensorType((length, 3), F32),
            TensorType((length,), F32),
        ]
