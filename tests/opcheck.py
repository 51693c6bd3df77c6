"""Checking ops against numpy: each test file declares OpCases; ``check_case`` runs one case
on fresh random inputs through the XLA backend and the reference interpreter and compares
both with the case's own numpy expression (never with the code under test)."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import pathlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import numpy as np

from flowjit.backends.reference import run_graph
from flowjit.backends.xla import Cluster, cluster_p
from flowjit.ir import Graph, OpDef, TensorType, parse, print_graph, verify
from flowjit.ir.ops.creation import constant
from flowjit.ir.types import bfloat16

# Every OpCase declared by any test module; test_completeness checks that each op has one.
CASES: dict[OpDef, list["OpCase"]] = {}
_TESTS = pathlib.Path(__file__).parent


_LOADED: dict[OpDef, list["OpCase"]] | None = None


def load_cases() -> dict[OpDef, list["OpCase"]]:
    """Every OpCase of tests/ir/test_ops_*.py, by op: the modules are loaded once more, into a
    dict of their own, so the cases are the same whichever test modules pytest has imported."""
    global CASES, _LOADED
    if _LOADED is None:
        outer, CASES = CASES, {}  # (OpCase registers itself in CASES)
        try:
            for path in sorted((_TESTS / "ir").glob("test_ops_*.py")):
                spec = importlib.util.spec_from_file_location(f"_opcases_{path.stem}", path)
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
        finally:
            _LOADED, CASES = CASES, outer
    return _LOADED


TOLERANCE = {
    np.dtype(np.float16): 2e-3,
    bfloat16: 1.6e-2,
    np.dtype(np.float32): 2e-5,
    np.dtype(np.float64): 1e-12,
}


@dataclass
class OpCase:
    """``make(rng, dtype) -> (inputs, attrs)``; ``numpy(*inputs, **attrs)`` is the expected
    result computed with numpy (a tuple for multi-output ops)."""

    opdef: OpDef
    dtypes: tuple
    make: Callable[[np.random.Generator, np.dtype], tuple[list[np.ndarray], dict[str, Any]]]
    numpy: Callable[..., Any]
    name: str = ""
    tol_scale: float = 1.0
    params: list = field(default_factory=list)
    # inputs for gradient checks when ``make``'s are not smooth points (ties of round, ...)
    grad_make: Callable | None = None
    # ``make`` gives edge values (signed zeros, infinities, NaN, zero divisors, the integer
    # range's ends): zero signs must match too, the reference must not warn, and no gradient
    # is checked there
    edges: bool = False

    def __post_init__(self) -> None:
        CASES.setdefault(self.opdef, []).append(self)
        self.name = self.name or self.opdef.name

    def ids(self) -> list:
        import pytest

        return [
            pytest.param(self, np.dtype(d), id=f"{self.name}-{np.dtype(d).name}")
            for d in self.dtypes
        ]


def params(cases: list[OpCase]) -> list:
    return [p for case in cases for p in case.ids()]


def rand(
    rng: np.random.Generator, shape: tuple[int, ...], dtype, low: float = -3, high: float = 3
) -> np.ndarray:
    """Fresh random data of ``dtype``: floats in [low, high), ints in [low, high], bools."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = max(int(low), info.min), min(int(high), info.max)
        return rng.integers(lo, hi + 1, size=shape).astype(dtype)
    return rng.uniform(low, high, size=shape).astype(np.float64).astype(dtype)


def jitted(fn: Callable) -> Callable:
    """``fn`` (a jax.numpy or lax function of the inputs, the op's attributes as keywords)
    under jax.jit, in the inputs' dtypes (64-bit ones kept): the expected result of an edge
    case, whose meaning is what jax.jit gives (docs/ir-format.md, "Edge values")."""

    def expected(*xs: np.ndarray, **attrs: Any) -> np.ndarray:
        with jax.enable_x64(True):
            return np.asarray(jax.jit(functools.partial(fn, **attrs))(*xs))

    return expected


def x64_for(graph: Graph) -> Any:
    """A scope with jax_enable_x64 on if ``graph`` has a 64-bit value, in subgraphs too (jax
    narrows 64-bit arguments at the jit boundary with x64 off, tests/conftest.py, and a host
    callback's 64-bit results), else no change."""
    if _has_64_bit_value(graph):
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def _has_64_bit_value(graph: Graph) -> bool:
    values = [*graph.inputs, *(v for op in graph.ops for v in op.outputs)]
    return any(v.type.dtype.itemsize == 8 for v in values) or any(
        _has_64_bit_value(sub) for op in graph.ops for sub in op.subgraphs
    )


def run_xla(graph: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    cluster = Cluster(graph)
    with x64_for(graph):
        outs = jax.jit(lambda *xs: tuple(cluster_p.bind(*xs, cluster=cluster)))(*inputs)
        return [np.asarray(o) for o in outs]


def assert_matches(
    got: np.ndarray,
    want: np.ndarray,
    dtype: np.dtype,
    scale: float,
    what: str,
    zero_signs: bool = False,
) -> None:
    """``got`` equals ``want`` (integers and bools exactly, floats within the dtype's tolerance
    times ``scale``, NaN where NaN); with ``zero_signs``, a zero's sign too."""
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if got.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        tol = TOLERANCE[np.dtype(got.dtype)] * scale
        np.testing.assert_allclose(
            got.astype(np.float64),
            want.astype(np.float64),
            rtol=tol,
            atol=tol,
            equal_nan=True,
            err_msg=what,
        )
        if zero_signs:
            assert_zero_signs(got, want, what)


def assert_zero_signs(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Where both are zero, both are +0.0 or both -0.0."""
    g, w = np.asarray(got, np.float64), np.asarray(want, np.float64)
    differ = (g == 0) & (w == 0) & (np.signbit(g) != np.signbit(w))
    if differ.any():
        at = tuple(int(i) for i in np.argwhere(differ)[0])
        raise AssertionError(
            f"{what}: {int(differ.sum())} zeros of the other sign; first at {at}: "
            f"got {g[at]!r}, want {w[at]!r}"
        )


def check_case(case: OpCase, dtype: np.dtype, seed: int | None = None) -> None:
    if seed is None:  # a fresh seed each run, reported on failure so it can be replayed
        seed = int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    inputs, attrs = case.make(rng, dtype)
    inputs = [np.asarray(x) for x in inputs]
    graph = Graph(case.name)
    args = [graph.add_input(TensorType(x.shape, x.dtype)) for x in inputs]
    graph.outputs = list(graph.add(case.opdef, args, attrs))
    verify(graph)
    text = print_graph(graph)
    assert print_graph(parse(text)) == text, "the op's graph does not round-trip through text"
    # numpy computes in float64 (exact for every input); the result is rounded to the output type
    wide = [x.astype(np.float64) if x.dtype.kind in "fV" else x for x in inputs]
    expected = case.numpy(*wide, **attrs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(expected) == len(graph.outputs)
    for value, want in zip(graph.outputs, expected):
        assert value.type.shape == np.shape(want), (
            f"shape rule gives {value.type} for {np.shape(want)}"
        )
    with warnings.catch_warnings():
        if case.edges:  # (the reference kernels compute edge values without numpy's warnings)
            warnings.simplefilter("error", RuntimeWarning)
        reference = run_graph(graph, inputs)
    runs = [("reference", reference), ("xla", run_xla(graph, inputs))]
    if case.edges:
        runs.append(("xla, the inputs constants", run_xla(on_constants(graph, inputs), [])))
    for backend, outs in runs:
        for i, (got, want) in enumerate(zip(outs, expected)):
            want = np.asarray(want).astype(graph.outputs[i].type.dtype)
            assert_matches(
                np.asarray(got),
                want,
                dtype,
                case.tol_scale,
                f"{case.name}[{dtype}] output {i} on {backend} "
                f"(replay with check_case(case, dtype, seed={seed}))",
                zero_signs=case.edges,
            )


def on_constants(graph: Graph, inputs: list[np.ndarray]) -> Graph:
    """``graph`` (of one op) with constants of ``inputs`` for its inputs: compiled without
    flowjit's passes, XLA sees them at compile time, as where constant folding is off."""
    (op,) = graph.ops
    out = Graph(f"{graph.name}_on_constants")
    values = [out.add(constant, [], {"value": x})[0] for x in inputs]
    out.outputs = list(out.add(op.opdef, values, op.attrs))
    return out


def add_op(opdef: OpDef, types: list[tuple[tuple[int, ...], Any]], **attrs: Any) -> tuple:
    """Add ``opdef`` to a fresh graph with inputs of ``(shape, dtype)`` types (for rule tests)."""
    graph = Graph("g")
    return graph.add(opdef, [graph.add_input(TensorType(s, d)) for s, d in types], attrs)


def _graph_with_gradient(case: OpCase, inputs: list[np.ndarray], attrs: dict, weights):
    """A graph computing sum_i <w_i, out_i> and its gradients with respect to the float
    inputs, built by the autodiff rules (through fj.compile's tracer)."""
    import flowjit as fj
    import flowjit.numpy as fnp
    from flowjit.compiler.trace import emit

    float_at = [i for i, x in enumerate(inputs) if x.dtype.kind in "fV"]

    def objective(*xs):
        outs = emit(case.opdef, list(xs), **attrs)
        outs = outs if isinstance(outs, tuple) else (outs,)
        total = 0.0
        for out, w in zip(outs, weights):
            if w is not None:
                total = total + fnp.sum(out.astype(fnp.float64) * w)
        return total

    def with_grads(*xs):
        value, grads = fj.value_and_grad(objective, argnums=tuple(float_at))(*xs)
        return value, grads

    return with_grads, float_at


def check_grad(case: OpCase, dtype: np.dtype, seed: int | None = None, eps: float = 1e-6) -> None:
    """The op's gradient rule against central finite differences of its reference
    implementation in float64, and the XLA gradient against the reference gradient in the
    case's dtype. The objective is a random weighted sum of the (float) outputs, in float64:
    it is computed with jax_enable_x64 on."""
    with jax.enable_x64(True):
        _check_grad(case, dtype, seed, eps)


def _check_grad(case: OpCase, dtype: np.dtype, seed: int | None, eps: float) -> None:
    import flowjit as fj

    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    inputs, attrs = (case.grad_make or case.make)(rng, dtype)
    inputs = [np.asarray(x) for x in inputs]
    graph = Graph(case.name)
    args = [graph.add_input(TensorType(x.shape, x.dtype)) for x in inputs]
    outs = graph.add(case.opdef, args, attrs)
    weights = [
        rng.standard_normal(v.type.shape) if v.type.dtype.kind in "fV" else None for v in outs
    ]
    fn, float_at = _graph_with_gradient(case, inputs, attrs, weights)
    where = f"{case.name}[{dtype}] (replay with check_grad(case, dtype, seed={seed}))"
    if not float_at:
        return
    compiled = fj.compile(fn)
    (value, grads), _ = compiled.lower(*inputs).run_reference(*inputs)

    # finite differences of the reference implementation, in float64
    extra = {"run": run_graph} if case.opdef.graph_attrs else {}  # ops with subgraphs

    def objective(xs):
        with np.errstate(all="ignore"):
            got = case.opdef.ref(*xs, **attrs, **extra)
        got = got if isinstance(got, tuple) else (got,)
        return sum(
            float(np.sum(np.asarray(o, np.float64) * w))
            for o, w in zip(got, weights)
            if w is not None
        )

    wide = [x.astype(np.float64) if x.dtype.kind in "fV" else x for x in inputs]
    for k, i in enumerate(float_at):
        numeric = np.zeros(inputs[i].shape)
        for index in np.ndindex(inputs[i].shape):
            plus = [x.copy() for x in wide]
            minus = [x.copy() for x in wide]
            plus[i][index] += eps
            minus[i][index] -= eps
            numeric[index] = (objective(plus) - objective(minus)) / (2 * eps)
        # finite differences only mean something where the op computes in float64 too
        if dtype == np.float64 and all(
            v.type.dtype == np.float64 for v in outs if v.type.dtype.kind in "fV"
        ):
            np.testing.assert_allclose(
                np.asarray(grads[k], np.float64),
                numeric,
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"reference gradient {i} of {where}",
            )
    xla_value, xla_grads = compiled(*inputs)
    for k, i in enumerate(float_at):
        got = np.asarray(xla_grads[k]).astype(np.float64)
        want = np.asarray(grads[k]).astype(np.float64)
        tol = TOLERANCE[np.dtype(dtype)] * 10 * case.tol_scale
        np.testing.assert_allclose(
            got, want, rtol=tol, atol=tol, err_msg=f"XLA vs reference gradient {i} of {where}"
        )


def check_jvp(case: OpCase, dtype: np.dtype, seed: int | None = None, eps: float = 1e-6) -> None:
    """The op's tangents by ``fj.jvp`` (its forward rule, or its gradient rule transposed)
    along random tangents, against central finite differences of its reference
    implementation in float64, and the XLA tangents against the reference interpreter's in
    the case's dtype. (jax_enable_x64 on, as ``check_grad``.)"""
    with jax.enable_x64(True):
        _check_jvp(case, dtype, seed, eps)


def _check_jvp(case: OpCase, dtype: np.dtype, seed: int | None, eps: float) -> None:
    import flowjit as fj
    from flowjit.compiler.trace import emit

    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    inputs, attrs = (case.grad_make or case.make)(rng, dtype)
    inputs = [np.asarray(x) for x in inputs]
    is_float = [x.dtype.kind in "fV" for x in inputs]
    tangents = [
        rng.standard_normal(x.shape).astype(x.dtype) if f else np.zeros_like(x)
        for x, f in zip(inputs, is_float)
    ]
    where = f"{case.name}[{dtype}] (replay with check_jvp(case, dtype, seed={seed}))"

    def op_fn(*xs):
        outs = emit(case.opdef, list(xs), **attrs)
        return outs if isinstance(outs, tuple) else (outs,)

    compiled = fj.compile(lambda xs, ts: fj.jvp(op_fn, tuple(xs), tuple(ts)))
    (outs, out_tangents), _ = compiled.lower(inputs, tangents).run_reference(inputs, tangents)
    float_outs = [i for i, o in enumerate(outs) if np.asarray(o).dtype.kind in "fV"]
    if not float_outs or not any(is_float):  # (a float to int conversion, say)
        for i, t in enumerate(out_tangents):
            assert not np.asarray(t).any(), f"{where}: output {i} has a nonzero tangent"
        return

    extra = {"run": run_graph} if case.opdef.graph_attrs else {}  # ops with subgraphs

    def reference(xs):
        with np.errstate(all="ignore"):
            got = case.opdef.ref(*xs, **attrs, **extra)
        return got if isinstance(got, tuple) else (got,)

    wide = [x.astype(np.float64) if f else x for x, f in zip(inputs, is_float)]
    plus = [x + eps * t if f else x for x, t, f in zip(wide, tangents, is_float)]
    minus = [x - eps * t if f else x for x, t, f in zip(wide, tangents, is_float)]
    high, low = reference(plus), reference(minus)
    # finite differences only mean something where the op computes in float64 too
    if dtype == np.float64 and all(np.asarray(outs[i]).dtype == np.float64 for i in float_outs):
        for i in float_outs:
            numeric = (np.asarray(high[i], np.float64) - np.asarray(low[i], np.float64)) / (2 * eps)
            np.testing.assert_allclose(
                np.asarray(out_tangents[i], np.float64),
                numeric,
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"reference tangent of output {i} of {where}",
            )
    xla_outs, xla_tangents = compiled(inputs, tangents)
    tol = TOLERANCE[np.dtype(dtype)] * 10 * case.tol_scale
    for i in float_outs:
        for what, got, want in (
            ("output", xla_outs[i], outs[i]),
            ("tangent", xla_tangents[i], out_tangents[i]),
        ):
            np.testing.assert_allclose(
                np.asarray(got, np.float64),
                np.asarray(want, np.float64),
                rtol=tol,
                atol=tol,
                err_msg=f"XLA vs reference {what} {i} of {where}",
            )
