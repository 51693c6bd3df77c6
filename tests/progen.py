"""Random programs over the whole op registry, for differential tests (tests/backends/
test_differential.py).

A program is built op by op. Each op comes with valid operands and attributes from one of
the op-vs-numpy cases of tests/ir/test_ops_*.py (``opcheck.CASES``: every registered op has
one). An operand is an earlier value of the same type, an earlier float value adapted to the
type (converted, flattened, cycled and reshaped), a constant or a new argument. Between the
ops come control flow (cond, scan and while, with random bodies) and variable reads and
writes, at the top level and inside bodies.

A ``Program`` holds the graph, its arguments and the variables' first values; hypothesis
draws its structure and a seed for the numbers, so a failure shrinks and replays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import opcheck
from hypothesis import strategies as st

from flowjit.ir import OPS, Graph, TensorType, Value
from flowjit.ir.ops import control as Ctl
from flowjit.ir.ops import creation as C
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops import host as H
from flowjit.ir.ops import reduce as R
from flowjit.ir.ops import sharding as Sh
from flowjit.ir.ops import shape as S
from flowjit.ir.ops import state as St

# ops a random program leaves out: host ops need the partition pass's step-by-step runtime
# (tests/compiler/test_host.py), with_sharding a mesh (tests/runtime/test_sharding.py), and
# the state ops come from the program's own variables
LEFT_OUT = {H.host_call, H.cluster, H.transfer, Sh.with_sharding}
LEFT_OUT |= {opdef for opdef in OPS.values() if opdef.state_operand is not None}
STATE_TYPES = [TensorType((3,), np.float32), TensorType((2, 2), np.float32)]
BOOL = np.dtype(np.bool_)
INT32 = np.dtype(np.int32)


CASES = [c for op, cases in opcheck.load_cases().items() if op not in LEFT_OUT for c in cases]


@dataclass
class Program:
    graph: Graph
    args: list[np.ndarray] = field(default_factory=list)
    state: dict[str, np.ndarray] = field(default_factory=dict)  # the variables' first values

    def describe(self) -> str:
        from flowjit.ir import print_graph

        shown = ", ".join(f"{a.dtype}{list(a.shape)}" for a in self.args)
        return f"{print_graph(self.graph)}args: {shown}\nstate: {sorted(self.state)}"


class _Builder:
    """Appends random ops to one graph (the program's, or a body's: a body cannot take new
    arguments, so its fresh operands are constants)."""

    def __init__(self, choices, rng, graph: Graph, program: Program, depth: int):
        self.c, self.rng, self.graph, self.program = choices, rng, graph, program
        self.depth = depth
        self.values: list[Value] = list(graph.inputs)

    # -- operands ----------------------------------------------------------------------------
    def add(self, opdef, inputs, attrs=None) -> tuple[Value, ...]:
        outs = self.graph.add(opdef, list(inputs), attrs or {})
        self.values += outs
        return outs

    def fresh(self, array: np.ndarray, argument: bool = False) -> Value:
        """``array`` as a new argument (at the top level: always if ``argument``, else
        mostly) or a constant."""
        top = self.graph is self.program.graph
        if top and (argument or self.c.integer(0, 3) < 3):
            self.program.args.append(array)
            value = self.graph.add_input(TensorType(array.shape, array.dtype))
            self.values.append(value)
            return value
        return self.add(C.constant, [], {"value": array})[0]

    def operand(self, array: np.ndarray, argument: bool = False) -> Value:
        """A value of ``array``'s type: an earlier one, an earlier float adapted, or fresh.
        Integer and boolean operands (indices, predicates, shifts) are always the case's own:
        their ranges matter."""
        t = TensorType(array.shape, array.dtype)
        if array.dtype.kind in "fV":
            same = [v for v in self.values if v.type == t]
            floats = [v for v in self.values if v.type.dtype.kind in "fV" and v.type.size]
            choice = self.c.pick(["fresh", "same", "adapt", "fresh"])
            if choice == "same" and same:
                return self.c.pick(same)
            if choice == "adapt" and floats and array.size:
                return self.adapt(self.c.pick(floats), t)
        return self.fresh(array, argument)

    def adapt(self, value: Value, t: TensorType) -> Value:
        """``value`` made of type ``t``: converted, flattened, repeated or cut to t's size and
        reshaped."""
        if value.type.dtype != t.dtype:
            value = self.add(E.convert, [value], {"dtype": t.dtype})[0]
        n, size = value.type.size, t.size
        flat = self.add(S.reshape, [value], {"shape": (n,)})[0]
        if n < size:
            times = -(-size // n)
            tiled = self.add(S.broadcast_to, [flat], {"shape": (times, n)})[0]
            flat = self.add(S.reshape, [tiled], {"shape": (times * n,)})[0]
            n = times * n
        if n > size:
            flat = self.add(S.slice_, [flat], {"start": (0,), "limit": (size,), "strides": (1,)})[0]
        return self.add(S.reshape, [flat], {"shape": t.shape})[0]

    def of_type(self, t: TensorType) -> Value:
        """An earlier value of type ``t`` if there is one, else a fresh constant."""
        same = [v for v in self.values if v.type == t]
        if same:
            return self.c.pick(same)
        return self.fresh(opcheck.rand(self.rng, t.shape, t.dtype))

    # -- steps -------------------------------------------------------------------------------
    def step(self) -> None:
        kinds = ["op"] * 6
        if self.graph.states:
            kinds += ["read", "write"]
        if self.depth < 2:
            kinds += ["cond", "scan", "while"]
        kind = self.c.pick(kinds)
        getattr(self, f"step_{kind}")()

    def step_op(self, case: opcheck.OpCase | None = None) -> None:
        """An op of ``case`` (else of a random case); a given case's fresh operands are
        arguments, so that constant folding leaves its op to the backend."""
        forced, case = case is not None, case or self.c.pick(CASES)
        dtype = np.dtype(self.c.pick(case.dtypes))
        arrays, attrs = case.make(self.rng, dtype)
        self.add(case.opdef, [self.operand(np.asarray(a), forced) for a in arrays], attrs)

    def step_read(self) -> None:
        self.add(St.read_variable, [self.c.pick(self.graph.states)])

    def step_write(self) -> None:
        handle = self.c.pick(self.graph.states)
        opdef = self.c.pick([St.assign_variable, St.assign_add_variable, St.assign_sub_variable])
        self.graph.add(opdef, [handle, self.of_type(handle.type)])

    def body(self, name: str, types: list[TensorType]) -> _Builder:
        """A random subgraph taking ``types``, declaring the enclosing graph's variables."""
        graph = Graph(name, [Value(t) for t in types])
        for handle in self.graph.states:
            graph.add_state(handle.name, handle.type)
        inner = _Builder(self.c, self.rng, graph, self.program, self.depth + 1)
        for _ in range(self.c.integer(0, 3)):
            inner.step()
        used = {op.state_handle.name for op in graph.ops if op.state_handle is not None}
        used |= {h.name for op in graph.ops for sub in op.subgraphs for h in sub.states}
        graph.states = [h for h in graph.states if h.name in used]  # as the tracer declares
        return inner

    def operands(self, most: int) -> list[Value]:
        return self.c.some(self.values, 1, most)

    def step_cond(self) -> None:
        if not self.values:
            return self.step_op()
        operands = self.operands(2)
        types = [v.type for v in operands]
        taken = self.body("true_branch", types)
        taken.graph.outputs = self.c.some(taken.values, 1, 2)
        other = self.body("false_branch", types)
        other.graph.outputs = [other.of_type(v.type) for v in taken.graph.outputs]
        pred = self.fresh(np.asarray(self.rng.random() < 0.5))
        branches = {"true_branch": taken.graph, "false_branch": other.graph}
        self.add(Ctl.cond, [pred, *operands], branches)

    def step_scan(self) -> None:
        if not self.values:
            return self.step_op()
        length = self.c.integer(0, 3)
        consts = self.c.some(self.values, 0, 1)
        carries = self.operands(2)
        xs = []
        if self.c.boolean():
            x = self.c.pick(self.values)
            xs = [self.add(S.broadcast_to, [x], {"shape": (length, *x.type.shape)})[0]]
            if length and self.c.boolean():  # steps that differ
                xs = [self.operand(opcheck.rand(self.rng, xs[0].type.shape, xs[0].type.dtype))]
        slices = [TensorType(x.type.shape[1:], x.type.dtype) for x in xs]
        body = self.body("body", [v.type for v in consts + carries] + slices)
        ys = self.c.some(body.values, 0, 1)
        body.graph.outputs = [body.of_type(v.type) for v in carries] + ys
        attrs = {"consts": len(consts), "carries": len(carries), "length": length}
        attrs.update(reverse=self.c.boolean(), body=body.graph)
        self.add(Ctl.scan, [*consts, *carries, *xs], attrs)

    def step_while(self) -> None:
        """A loop counting an int32 carry up to a bound (0 to 3 steps), with random carries."""
        if not self.values:
            return self.step_op()
        bound = self.fresh(np.asarray(self.c.integer(0, 3), INT32))
        start = self.fresh(np.asarray(0, INT32))
        carries = self.operands(2)
        types = [bound.type, start.type, *(v.type for v in carries)]
        cond = Graph("cond", [Value(t) for t in types])
        cond.outputs = list(cond.add(E.lt, [cond.inputs[1], cond.inputs[0]]))
        body = self.body("body", types[1:])  # consts: the bound; carry: the counter, ...
        body.graph.inputs = [Value(types[0]), *body.graph.inputs]
        counter = body.graph.inputs[1]
        (one,) = body.graph.add(C.constant, [], {"value": np.asarray(1, INT32)})
        (step,) = body.graph.add(E.add, [counter, one])
        body.graph.outputs = [step] + [body.of_type(v.type) for v in carries]
        attrs = {"consts": 1, "cond": cond, "body": body.graph}
        self.add(Ctl.while_loop, [bound, start, *carries], attrs)


class _Drawn:
    """The builder's choices, drawn by hypothesis (so that failures shrink)."""

    def __init__(self, draw):
        self.draw = draw

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def boolean(self) -> bool:
        return self.draw(st.booleans())

    def some(self, options, low: int, high: int) -> list:
        return self.draw(st.lists(st.sampled_from(options), min_size=low, max_size=high))


class _Random:
    """The builder's choices, made by a seeded generator (uniform: no bias to small
    programs, as hypothesis's first examples have)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def integer(self, low: int, high: int) -> int:
        return int(self.rng.integers(low, high + 1))

    def boolean(self) -> bool:
        return bool(self.rng.integers(2))

    def some(self, options, low: int, high: int) -> list:
        return [self.pick(options) for _ in range(self.integer(low, high))]


def _build(choices, seed: int, max_steps: int, variables: bool, case) -> Program:
    graph = Graph("fuzz")
    program = Program(graph)
    rng = np.random.default_rng(seed)
    if variables:
        for i, t in enumerate(choices.some(STATE_TYPES, 0, 2)):
            graph.add_state(f"v{i}", t)
            program.state[f"v{i}"] = opcheck.rand(rng, t.shape, t.dtype)
    builder = _Builder(choices, rng, graph, program, depth=0)
    steps = choices.integer(1, max_steps)
    forced = choices.integer(0, steps - 1) if case else -1
    for i in range(steps):
        builder.step_op(case) if i == forced else builder.step()
    # every value no op uses is a result (up to 6), so each op's work shows in the results
    used = {v for op in graph.ops for v in op.inputs}
    unused = [v for v in builder.values if v not in used and v not in graph.inputs]
    graph.outputs = unused[-6:]
    return program


@st.composite
def programs(
    draw, max_steps: int = 8, variables: bool = True, case: opcheck.OpCase | None = None
) -> Program:
    """A random program of 1 to ``max_steps`` steps; with ``case``, one of them is that op
    case's op."""
    seed = draw(st.integers(0, 2**32 - 1))
    return _build(_Drawn(draw), seed, max_steps, variables, case)


def random_program(
    seed: int, max_steps: int = 8, variables: bool = True, case: opcheck.OpCase | None = None
) -> Program:
    """``programs()``'s kind of program, from a seed alone (for loops of many programs)."""
    return _build(_Random(np.random.default_rng([seed, 1])), seed, max_steps, variables, case)


# -- edge programs: exact arithmetic on edge values -----------------------------------------
# Ops whose every result is exactly rounded (or exact) on both backends, so that a program of
# them gives the same bits on every path: a difference is a difference of meaning, never of
# rounding. Their edge values are where meanings part: signed zeros, infinities and NaN,
# zero divisors, the integer range's ends, negative and large exponents. Reductions take
# fresh edge values only: sums and products of up to 6 of them are exact in any order.
EDGE_DTYPES = [np.dtype(d) for d in (np.float32, np.float64, np.int8, np.int32, np.int64)]
EDGE_DTYPES += [np.dtype(d) for d in (np.uint8, np.uint32)]
EDGE_BINARY = [E.add, E.sub, E.mul, E.floor_divide, E.remainder, E.max_, E.min_]
EDGE_BINARY_FLOAT = [E.div]
EDGE_BINARY_INT = [E.pow_]
EDGE_UNARY = [E.abs_, E.sign]
EDGE_UNARY_FLOAT = [E.neg, E.floor, E.ceil, E.round_, E.sqrt]
EDGE_UNARY_SIGNED = [E.neg]
EDGE_REDUCTIONS = [R.reduce_sum, R.reduce_prod, R.reduce_max, R.reduce_min]
EDGE_LEAVES = ("mixed", "arguments", "constants")


def edge_values(dtype: np.dtype) -> list:
    if dtype.kind == "f":
        return [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, np.inf, -np.inf, np.nan]
    info = np.iinfo(dtype)
    small = [0, 1, 2, 3, 7, 64] + ([-1, -2, -3, -7, -64] if info.min < 0 else [])
    return small + [int(info.min), int(info.max)]


def edge_program(seed: int, leaves: str = "mixed", steps: int = 6) -> Program:
    """A program of ``steps`` ops of one dtype from the EDGE_* lists (and selects on their
    comparisons, and cumsums), on values of ``edge_values``, every op's result an output.
    Each leaf (a vector, a vector of one element or a scalar) is an argument or a constant:
    drawn at random (``leaves="mixed"``), or all ``"arguments"``, or all ``"constants"``
    (then constant folding computes it all). The same seed gives the same computation
    whatever ``leaves`` is."""
    assert leaves in EDGE_LEAVES
    rng = np.random.default_rng([seed, 2])
    dtype = EDGE_DTYPES[int(rng.integers(len(EDGE_DTYPES)))]
    pool = np.array(edge_values(dtype)).astype(dtype)
    zero_heavy = np.concatenate([pool] + [pool[pool == 0]] * 4)  # (for reductions)
    binary = EDGE_BINARY + (EDGE_BINARY_FLOAT if dtype.kind == "f" else EDGE_BINARY_INT)
    unary = EDGE_UNARY + {"f": EDGE_UNARY_FLOAT, "i": EDGE_UNARY_SIGNED}.get(dtype.kind, [])
    graph = Graph("edges")
    program = Program(graph)
    values: list[Value] = []

    def leaf(among: np.ndarray = pool) -> Value:
        shape = [(), (1,), (6,)][int(rng.choice(3, p=[0.3, 0.1, 0.6]))]
        array = np.asarray(rng.choice(among, size=shape), dtype)
        as_argument = rng.random() < 0.5
        if leaves != "mixed":
            as_argument = leaves == "arguments"
        if as_argument:
            program.args.append(array)
            return graph.add_input(TensorType(array.shape, dtype))
        return graph.add(C.constant, [], {"value": array})[0]

    def operand() -> Value:
        return values[int(rng.integers(len(values)))] if values and rng.random() < 0.5 else leaf()

    def reduction() -> tuple[Value, ...]:
        """A reduction of a fresh leaf drawn mostly from the zeros (of both signs, for
        floats), over its axis or none (kept, to broadcast with the rest), or its cumsum."""
        x = leaf(zero_heavy)
        if x.type.ndim and rng.random() < 0.25:
            return graph.add(R.cumsum, [x], {"axis": 0, "reverse": bool(rng.random() < 0.5)})
        opdef = EDGE_REDUCTIONS[int(rng.integers(len(EDGE_REDUCTIONS)))]
        axes = (0,) if x.type.ndim and rng.random() < 0.7 else ()
        return graph.add(opdef, [x], {"axes": axes, "keepdims": True})

    for _ in range(steps):
        kind = rng.random()
        if kind < 0.15:
            out = reduction()
        elif kind < 0.3:
            out = graph.add(unary[int(rng.integers(len(unary)))], [operand()])
        elif kind < 0.4:
            a, b = operand(), operand()
            compare = [E.lt, E.le, E.eq][int(rng.integers(3))]
            (pred,) = graph.add(compare, [a, b])
            out = graph.add(E.select, [pred, a, b])
        else:
            out = graph.add(binary[int(rng.integers(len(binary)))], [operand(), operand()])
        values += out
    graph.outputs = list(values)
    return program
