"""Differential testing on random programs (tests/progen.py): over the whole op registry,
with control flow and variables, the XLA backend computes what the reference interpreter
computes, after the default pipeline and with each of its passes turned off; and each pass
(and the pipeline) keeps the reference interpreter's results.

The XLA check is made op by op. The compiled program returns every value it computes, and
each op's reference implementation runs on the very inputs XLA gave that op. So each op is
held to its own rounding only, and a difference that an earlier op's rounding carries
through a floor or a comparison is not taken for a bug. Passes are checked on the reference
interpreter, where the same program gives bit-identical results. Elementwise ops, the
reductions, cumsum and dot_general are held to their zero signs too (docs/ir-format.md, "Edge
values"), and their op cases include edge values (zero divisors, INT_MIN, negative exponents,
signed zeros, sums of -0.0, infinities, NaN).

Edge programs (tests/progen.py, ``edge_program``) chain exactly rounded elementwise ops and
exact reductions on edge values, so that every path must give the same bits: XLA with the
values as arguments, as constants (folded by the reference kernels, which eager mode runs
too) or mixed, and the reference interpreter.

``FLOWJIT_FUZZ_EXAMPLES=N`` sets how many programs each test draws (CI: a few dozen) and
``FLOWJIT_FUZZ_SEED`` where the seeded programs start; twenty seeded programs share one
compile. The counts of programs, ops checked and mismatches are printed at the end.
"""

from __future__ import annotations

import os
from collections import Counter

import jax
import numpy as np
import opcheck
import pytest
from hypothesis import HealthCheck, given, settings
from progen import CASES, EDGE_LEAVES, LEFT_OUT, Program, edge_program, programs, random_program

from flowjit.backends.reference import run_graph, run_op
from flowjit.backends.xla import Cluster, cluster_p
from flowjit.ir import Graph, OpDef, print_graph
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops import linalg as L
from flowjit.ir.ops import reduce as R
from flowjit.passes import default_pipeline, pass_name, run_pipeline, with_required

EXAMPLES = int(os.environ.get("FLOWJIT_FUZZ_EXAMPLES", "40"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=EXAMPLES <= 100,  # CI runs the same programs every time; long runs explore
)
PASSES = [pass_name(p) for p in default_pipeline()]
OPTIONAL = [p for p in PASSES if p not in ("discharge_state", "partition")]
# how many ulps an op may be off by on XLA, in its output dtype or the least precise one
# computed in its bodies (transcendental functions are not correctly rounded on either side;
# sums are compared against the sum of magnitudes)
TOLERANCE_SCALE = 16
COUNTS: Counter = Counter()
# the ops whose zero signs docs/ir-format.md defines ("Edge values"), held to them here: the
# elementwise ops, the reductions, cumsum and dot_general (whose op cases multiply no vector
# by a matrix, where they are not defined); other families may still differ
ZERO_SIGNS_DEFINED = {v for v in vars(E).values() if isinstance(v, OpDef)}
ZERO_SIGNS_DEFINED |= {R.reduce_sum, R.reduce_prod, R.reduce_max, R.reduce_min, R.cumsum}
ZERO_SIGNS_DEFINED |= {L.dot_general}
EXACT_PRECISION = {"xla_allow_excess_precision": False}


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print(
        "\ndifferential fuzz: "
        + ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items()))
        + f" (FLOWJIT_FUZZ_EXAMPLES={EXAMPLES})"
    )


# -- running -------------------------------------------------------------------------------


def run_reference(graph: Graph, program: Program) -> tuple[list, dict]:
    """The results and the variables' new values on the reference interpreter; a discharged
    graph takes and returns the variables where its state_map says."""
    with np.errstate(all="ignore"):
        if graph.state_map is None:
            state = {k: v.copy() for k, v in program.state.items()}
            return run_graph(graph, program.args, state if graph.states else None), state
        outs = run_graph(graph, xla_inputs(graph, program))
    n = len(outs) - sum(slot.output is not None for slot in graph.state_map)
    state = dict(program.state)
    state.update({s.name: outs[s.output] for s in graph.state_map if s.output is not None})
    return outs[:n], state


def xla_inputs(graph: Graph, program: Program) -> list[np.ndarray]:
    """A discharged graph's inputs: the arguments, then the variables it reads."""
    inputs = list(program.args) + [None] * (len(graph.inputs) - len(program.args))
    for slot in graph.state_map or []:
        if slot.input is not None:
            inputs[slot.input] = program.state[slot.name]
    return inputs


def run_xla_every_value(graphs: list[Graph], inputs: list[list]) -> dict:
    """Every top-level value of each of ``graphs`` (discharged) as XLA computes it, by value
    (inputs included). The graphs are compiled together, as one program with all their ops'
    results as outputs: one compile for many small programs."""
    union = Graph("batch", [v for g in graphs for v in g.inputs])
    union.ops = [op for g in graphs for op in g.ops]
    values = [v for op in union.ops for v in op.outputs]
    union.outputs = values
    cluster = Cluster(union)
    flat = [np.asarray(x) for xs in inputs for x in xs]
    # XLA may carry f16/bf16 values at a higher precision between fused ops (as jax lets it by
    # default); the reference rounds every op's result: compare without that
    jitted = jax.jit(lambda *xs: tuple(cluster_p.bind(*xs, cluster=cluster)))
    with opcheck.x64_for(union):  # (programs of 64-bit values run with jax's x64 on)
        compiled = jitted.lower(*flat).compile(compiler_options=EXACT_PRECISION)
        outs = [np.asarray(o) for o in compiled(*flat)]
    env = dict(zip(union.inputs, flat))
    env.update(zip(values, outs))
    return env


# -- comparing -----------------------------------------------------------------------------


def _wide(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.float64) if x.dtype.kind in "fV" else x


def _magnitude(op, inputs: list, want: np.ndarray, k: int) -> np.ndarray:
    """What an op's rounding error scales with: its result's magnitude, and for sums and
    products of many terms the same op on the inputs' magnitudes (the sum of |terms|)."""
    scale = np.abs(_wide(want))
    if any(x.dtype.kind in "fV" for x in inputs):
        absolute = [np.abs(x) if x.dtype.kind in "fV" else x for x in inputs]
        try:
            with np.errstate(all="ignore"):
                other = _ref(op, absolute)[k]
            other = np.abs(_wide(other))
            if other.shape == scale.shape:
                scale = np.fmax(scale, np.where(np.isfinite(other), other, 0))
        except (ValueError, TypeError, ArithmeticError):  # (inputs it refuses made >= 0)
            pass  # the result's magnitude alone bounds the error
    return scale


def _ref(op, inputs: list) -> tuple:
    """The reference interpreter's results of ``op`` on ``inputs``."""
    return tuple(run_op(op, dict(zip(op.inputs, inputs)), run_graph))


def mismatch(op, inputs: list, got: np.ndarray, want: np.ndarray, k: int) -> str | None:
    """Why XLA's output ``k`` of ``op`` differs from the reference's, or None."""
    want = np.asarray(want).astype(op.outputs[k].type.dtype)
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"type {got.dtype}{list(got.shape)} != {want.dtype}{list(want.shape)}"
    if got.dtype.kind not in "fV":
        bad = got != want
        return f"{int(bad.sum())} elements differ" if bad.any() else None
    g, w = _wide(got), _wide(want)
    same_nan = np.isnan(g) == np.isnan(w)
    finite = np.isfinite(w)
    same_inf = np.where(np.isinf(w), g == w, True)
    # an op with a body is held to the rounding of the least precise floats computed in it
    eps = max(_eps(d) for d in [got.dtype, *_body_dtypes(op)] if d.kind in "fV")
    steps = 1 if op.opdef.name == "constant" else TOLERANCE_SCALE * max(1, _loop_steps(op))
    limit = steps * eps * (1 + _magnitude(op, inputs, want, k))
    with np.errstate(invalid="ignore"):
        close = np.where(finite & ~np.isnan(g), np.abs(g - w) <= limit, True)
    bad = ~(same_nan & same_inf & close & (np.isfinite(g) | ~finite))
    if op.opdef in ZERO_SIGNS_DEFINED:
        bad |= (g == 0) & (w == 0) & (np.signbit(g) != np.signbit(w))
    if _padding_meets_infinity(op, inputs):
        bad &= ~(np.isnan(g) | np.isnan(w))  # (see docs/ir-format.md, "Semantics")
    if not bad.any():
        return None
    i = tuple(int(j) for j in np.argwhere(bad)[0])
    return f"{int(bad.sum())} elements differ; first at {i}: xla {g[i]!r}, reference {w[i]!r}"


def _padding_meets_infinity(op, inputs: list) -> bool:
    """A conv2d whose kernel has a non-finite weight and whose input is padded or dilated:
    XLA multiplies that weight by the padding's zeros (NaN) in some programs and skips the
    padding in others, so NaN there is implementation-defined. Likewise a grouped conv2d
    (feature_group_count > 1) with a non-finite input value: XLA may multiply it by the zero
    weights another group's channels have in one dense convolution."""
    if op.opdef.name != "conv2d":
        return False
    if op.attrs["feature_group_count"] > 1 and not np.isfinite(inputs[0].astype(np.float64)).all():
        return True
    if np.isfinite(inputs[1].astype(np.float64)).all():
        return False
    return any(op.attrs["padding"]) or any(d > 1 for d in op.attrs["lhs_dilation"])


def _eps(dtype: np.dtype) -> float:
    return 2.0**-8 if dtype.kind == "V" else float(np.finfo(dtype).eps)  # (V: bfloat16)


def _body_dtypes(op) -> set:
    """The dtypes of every value computed in ``op``'s subgraphs, nested ones included."""
    found = set()
    for sub in op.subgraphs:
        for inner in sub.ops:
            found |= {v.type.dtype for v in inner.outputs} | _body_dtypes(inner)
    return found


def _loop_steps(op) -> int:
    """A loop's ops round once per step and per op: how much more an op with a body may be
    off by."""
    inner = sum(len(sub.ops) for sub in op.subgraphs)
    return inner * max(1, int(op.attrs.get("length", 3)))


def check_xla(items: list[tuple[Graph, Program, str]]) -> None:
    """Each (pipelined graph, program, where) computes on XLA, op by op, what the reference
    implementation of the op computes on the same inputs."""
    env = run_xla_every_value([g for g, _, _ in items], [xla_inputs(g, p) for g, p, _ in items])
    failures = []
    for graph, _, where in items:
        problems = []
        for op in graph.ops:
            inputs = [env[v] for v in op.inputs]
            with np.errstate(all="ignore"):
                want = _ref(op, inputs)
            for k, value in enumerate(op.outputs):
                COUNTS["op results checked on XLA"] += 1
                why = mismatch(op, inputs, env[value], want[k], k)
                if why:
                    COUNTS[f"XLA mismatches in {op.opdef.name}"] += 1
                    problems.append(f"{op.opdef.name} result {k} ({op.loc}): {why}")
        if problems:
            COUNTS["XLA mismatches"] += 1
            failures.append(
                f"{where}\nXLA differs from the reference op by op:\n" + "\n".join(problems)
            )
    if failures:
        pytest.fail("\n\n".join(failures))


def assert_same(before: tuple, after: tuple, where: str) -> None:
    (outs, state), (outs_after, state_after) = before, after
    assert len(outs) == len(outs_after), where
    for i, (a, b) in enumerate(
        zip(
            outs + [state[k] for k in sorted(state)],
            outs_after + [state_after[k] for k in sorted(state)],
        )
    ):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: result {i}"
        np.testing.assert_array_equal(_wide(a), _wide(b), err_msg=f"{where}: result {i}")
        assert same_bits(a, b), f"{where}: result {i}: zeros of the other sign"


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """The same type and elements, a zero's sign included (any NaN equals any NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind not in "fV":
        return bool(np.array_equal(a, b))
    a, b = _wide(a), _wide(b)
    nan = np.isnan(a)
    if not np.array_equal(nan, np.isnan(b)):
        return False
    a, b = np.where(nan, 0, a), np.where(nan, 0, b)
    return bool(np.array_equal(a, b) and np.array_equal(np.signbit(a), np.signbit(b)))


def pipeline(graph: Graph, disabled=()) -> Graph:
    passes = with_required(default_pipeline())
    return run_pipeline(graph, passes, verify_each=True, disabled=disabled).graph


# -- the tests -----------------------------------------------------------------------------


def variants(program: Program) -> list[tuple[Graph, Program, str]]:
    """The program after the pipeline and after the pipeline without each optional pass
    (those that come out the same as another once)."""
    out, seen = [], set()
    for disabled in [(), *((p,) for p in OPTIONAL)]:
        graph = pipeline(program.graph, disabled)
        text = print_graph(graph)
        if text not in seen:
            seen.add(text)
            where = "pipeline" if not disabled else f"pipeline without {disabled[0]}"
            out.append((graph, program, f"{where}\n{program.describe()}"))
    return out


@SETTINGS
@given(programs())
def test_xla_equals_the_reference_after_the_pipeline_and_without_each_pass(program):
    COUNTS["programs (hypothesis)"] += 1
    text = print_graph(program.graph)
    check_xla(variants(program))
    assert print_graph(program.graph) == text  # no pass changed the program it was given


BATCH = 20  # programs compiled together


@pytest.mark.parametrize("first", range(0, EXAMPLES, BATCH))
def test_xla_equals_the_reference_on_seeded_programs(first):
    """Programs from seeds (``FLOWJIT_FUZZ_SEED`` + i), twenty to a compile: the cheap way
    to run many (the long mode)."""
    base = int(os.environ.get("FLOWJIT_FUZZ_SEED", "0"))
    items = []
    for seed in range(base + first, base + min(first + BATCH, EXAMPLES)):
        program = random_program(seed)
        items += variants(program)
        COUNTS["programs (seeded)"] += 1
    check_xla(items)


CHUNKS = [CASES[i : i + BATCH] for i in range(0, len(CASES), BATCH)]


@pytest.mark.parametrize("chunk", range(len(CHUNKS)))
def test_every_op_case_in_a_random_program(chunk):
    """Each op case of the registry, in a random program of up to 4 steps, on XLA and
    through the pipeline (random programs reach a given op only now and then)."""
    items = []
    for i, case in enumerate(CHUNKS[chunk]):
        program = random_program(chunk * BATCH + i, max_steps=4, case=case)
        COUNTS["programs (one per op case)"] += 1
        graph = pipeline(program.graph)
        where = f"{case.name}: pipeline\n{program.describe()}"
        items.append((graph, program, where))
        assert_same(run_reference(program.graph, program), run_reference(graph, program), where)
    check_xla(items)


@SETTINGS
@given(programs())
def test_each_pass_and_the_pipeline_keep_the_reference_results(program):
    COUNTS["programs (passes)"] += 1
    want = run_reference(program.graph, program)
    variants = {"pipeline": pipeline(program.graph)}
    for p in default_pipeline():
        variants[pass_name(p)] = run_pipeline(program.graph, [p], verify_each=True).graph
    for name, graph in variants.items():
        assert_same(want, run_reference(graph, program), f"{name}\n{program.describe()}")


@pytest.mark.parametrize("first", range(0, EXAMPLES, BATCH))
def test_edge_programs_give_the_same_bits_on_every_path(first):
    """Programs of exactly rounded elementwise ops and exact reductions on edge values
    (tests/progen.py, ``edge_program``): XLA gives the reference interpreter's bits, zero
    signs included, with the edge values as arguments, as constants (constant folding
    computes the program with the reference kernels, as eager mode does) and mixed, after
    the pipeline and without each of its passes. Each differing variant counts once, by its
    first differing op."""
    base = int(os.environ.get("FLOWJIT_FUZZ_SEED", "0"))
    items, expected, failures = [], [], []
    for seed in range(base + first, base + min(first + BATCH, EXAMPLES)):
        reference = edge_program(seed)
        COUNTS["edge programs"] += 1
        try:
            want, _ = run_reference(reference.graph, reference)
        except Exception as err:  # (reported with the others, not one at a time)
            COUNTS["edge programs the reference cannot run"] += 1
            failures.append(f"{reference.describe()}\nthe reference raises {err!r}")
            continue
        names = {v: op.opdef.name for op in reference.graph.ops for v in op.outputs}
        ops = [names[v] for v in reference.graph.outputs]
        for leaves in EDGE_LEAVES:
            program = edge_program(seed, leaves)
            for graph, _, where in variants(program):
                items.append((graph, program, f"{leaves} leaves, {where}"))
                expected.append((want, ops))
    env = run_xla_every_value([g for g, _, _ in items], [xla_inputs(g, p) for g, p, _ in items])
    for (graph, program, where), (want, ops) in zip(items, expected):
        got = [env[v] for v in graph.outputs]
        bad = [i for i, (g, w) in enumerate(zip(got, want)) if not same_bits(g, w)]
        if bad:
            i = bad[0]
            COUNTS[f"edge program mismatches in {ops[i]}"] += 1
            args = [a.tolist() for a in program.args]
            failures.append(
                f"{where}\nargument values: {args}\n"
                f"result {i} ({ops[i]}): xla {got[i]!r}, reference {want[i]!r}"
            )
    if failures:
        pytest.fail(f"{len(failures)} failures, {len(items)} variants:\n\n" + "\n\n".join(failures))


def test_programs_use_every_kind_of_step():
    """The generator reaches control flow, variables and most of the registry."""
    seen = Counter()
    ops = set()

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(programs())
    def collect(program):
        def walk(graph):
            for op in graph.ops:
                ops.add(op.opdef.name)
                for sub in op.subgraphs:
                    walk(sub)

        walk(program.graph)
        seen["with variables"] += bool(program.graph.states)
        seen["with arguments"] += bool(program.args)

    collect()
    assert {"cond", "scan", "while", "read_variable"} <= ops
    # (which write kinds a fixed draw of 150 reaches depends on the registry's order: the
    # full suite's collection draws no plain assign in them, the file alone 15)
    assert ops & {"assign_variable", "assign_add_variable", "assign_sub_variable"}
    assert seen["with variables"] and seen["with arguments"]
    covered = {opdef.name for opdef in opcheck.load_cases() if opdef not in LEFT_OUT}
    assert len(ops & covered) >= 0.6 * len(covered), sorted(covered - ops)
