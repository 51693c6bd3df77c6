"""The sweep over jax's namespaces (issue 22): each public function of jax.numpy,
jax.numpy.linalg, jax.numpy.fft and jax.nn, called on random inputs through flowjit's
namespace (``flowjit.numpy``, ``fnp.linalg``, ``fnp.fft``, ``fj.nn``) inside ``fj.compile``,
against the same call under ``jax.jit``.

A function's call is the one ``CALLS`` names, else the first of the generic ``PATTERNS`` (one
float32 (3, 4) array, two, three, integer arrays, an array and a Python int, vectors, a
square matrix, Python ints alone, ...) that ``jax.jit`` traces with arrays as results. Float
inputs come from the first of ``RANGES`` (signed, in (0, 1), above 1) on which jax's result
has no NaN or infinity, so that ``log`` or ``arccosh`` are compared on their domain. A
function no call reaches is in ``EXCLUDED``, with why.

tests/compiler/test_jax_namespace_sweep.py asserts that every function is called or
excluded and that flowjit's results equal jax's; scripts/jax_coverage.py counts them."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import flowjit as fj
import flowjit.numpy as fnp


@dataclass(frozen=True)
class Namespace:
    """One of jax's namespaces and flowjit's counterpart; ``prefix`` begins its names in the
    tables (``"linalg."``)."""

    label: str
    jax_module: Any
    flowjit: Any
    prefix: str


NAMESPACES = {
    ns.label: ns
    for ns in (
        Namespace("jax.numpy", jnp, fnp, ""),
        Namespace("jax.numpy.linalg", jnp.linalg, fnp.linalg, "linalg."),
        Namespace("jax.numpy.fft", jnp.fft, fnp.fft, "fft."),
        Namespace("jax.nn", jax.nn, fj.nn, "nn."),
    )
}


@dataclass(frozen=True)
class A:
    """An array argument (traced) of ``shape``; ``kind`` is "f" (float32), "i" (int32 from 1
    to 9), "idx" (int32 from 0 to 2: an index into any axis of length 3 or more), "b" (bool),
    "u8" (uint8), "spd" (a symmetric positive definite float32 matrix), "fp8" (float8_e4m3fn)
    or "e8m0" (float8_e8m0fnu scales, all 1)."""

    shape: tuple[int, ...] = (3, 4)
    kind: str = "f"

    def __repr__(self) -> str:
        return f"{self.kind}{list(self.shape)}"

    def random(self, rng: np.random.Generator, low: float, high: float) -> np.ndarray:
        if self.kind == "f":
            return rng.uniform(low, high, self.shape).astype(np.float32)
        if self.kind in ("i", "idx"):
            low, high = (1, 10) if self.kind == "i" else (0, 3)
            return rng.integers(low, high, self.shape).astype(np.int32)
        if self.kind == "b":
            return rng.random(self.shape) < 0.5
        if self.kind == "u8":
            return rng.integers(0, 256, self.shape).astype(np.uint8)
        if self.kind == "spd":
            m = rng.uniform(-1, 1, self.shape)
            return (m @ m.T + self.shape[0] * np.eye(self.shape[0])).astype(np.float32)
        if self.kind == "fp8":
            return rng.uniform(-2, 2, self.shape).astype(jnp.float8_e4m3fn)
        return np.ones(self.shape, jnp.float8_e8m0fnu)


def _is_array(x: Any) -> bool:
    return isinstance(x, A)


@dataclass(frozen=True)
class Call:
    """How a function is called: ``args`` and ``kwargs`` hold ``A`` (traced arrays, also
    inside lists and tuples) and Python values (passed as they are)."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"({', '.join(parts)})"

    def arrays(self, low: float, high: float) -> list[np.ndarray]:
        """Random inputs for the ``A`` arguments, floats in [low, high), the same each time."""
        rng = np.random.default_rng(0)
        leaves = jax.tree_util.tree_leaves((self.args, self.kwargs), is_leaf=_is_array)
        return [a.random(rng, low, high) for a in leaves if _is_array(a)]

    def bind(self, fn: Callable, values: Any) -> Any:
        """``fn`` called with ``values`` in place of the ``A`` arguments."""
        values = iter(values)
        args, kwargs = jax.tree_util.tree_map(
            lambda a: next(values) if _is_array(a) else a,
            (self.args, self.kwargs),
            is_leaf=_is_array,
        )
        return fn(*args, **kwargs)


F, I, B, V, SQ = A(), A(kind="i"), A(kind="b"), A((4,)), A((4, 4), "spd")

PATTERNS = [
    Call((F,)),
    Call((F, F)),
    Call((F, F, F)),
    Call((I,)),
    Call((I, I)),
    Call((F, 1)),
    Call((F, 0, 1)),
    Call((V,)),
    Call((V, V)),
    Call((V, V, V)),
    Call((SQ,)),
    Call((SQ, SQ)),
    Call((B,)),
    Call((3,)),
    Call((3, 4)),
]

# The ranges of float inputs, tried in order until jax's result is finite.
RANGES = [(-2.0, 2.0), (0.1, 0.9), (1.1, 3.0)]

IDX = A((3, 4), "idx")
ROWS = A((4,), "idx")  # (indices into an axis of length 3 or 4)
VI = A((4,), "i")
CUBE = A((2, 3, 4))

# Calls no generic pattern finds, or that say more than the one it finds (the axis of a
# reduction, a list of arrays, in-bounds indices, the size of a result jax.jit cannot infer).
CALLS: dict[str, Call] = {
    "apply_along_axis": Call((jnp.sum, 0, F)),
    "apply_over_axes": Call((jnp.sum, F, [0])),
    "arange": Call((1, 7, 2)),
    "argmax": Call((F,), {"axis": 1}),
    "argmin": Call((F,), {"axis": 0, "keepdims": True}),
    "argwhere": Call((B,), {"size": 12}),
    "astype": Call((F, jnp.int32)),
    "bincount": Call((VI,), {"length": 10}),
    "broadcast_to": Call((V, (3, 4))),
    "choose": Call((IDX, [F, F, F]), {"mode": "clip"}),
    "clip": Call((F, -1.0, 1.0)),
    "compress": Call((A((4,), "b"), F), {"axis": 1, "size": 4}),
    "concatenate": Call(([F, F],), {"axis": 1}),
    "cross": Call((A((4, 3)), A((4, 3)))),
    "cumsum": Call((F,), {"axis": 1}),
    "dot": Call((F, A((4, 2)))),
    "dsplit": Call((CUBE, 2)),
    "einsum": Call(("ij,kj->ik", F, F)),
    "expand_dims": Call((F, (0, 2))),
    "extract": Call((B, F), {"size": 12}),
    "eye": Call((3, 4, 1)),
    "fill_diagonal": Call((F, 0.0), {"inplace": False}),
    "flatnonzero": Call((B,), {"size": 12}),
    "fromfunction": Call((lambda i, j: i * 4 + j, (3, 4)), {"dtype": jnp.float32}),
    "full": Call(((2, 3), 1.5)),
    "indices": Call(((3, 4),)),
    "intersect1d": Call((VI, VI), {"size": 4}),
    "interp": Call((V, jnp.linspace(-2, 2, 4), V)),
    "mask_indices": Call((3, jnp.triu), {"size": 6}),
    "matmul": Call((F, A((4, 2)))),
    "max": Call((F,), {"axis": 1, "keepdims": True}),
    "mean": Call((F,), {"axis": 0}),
    "min": Call((F,), {"axis": 0}),
    "nonzero": Call((B,), {"size": 12}),
    "pad": Call((F, ((1, 0), (0, 2)))),
    "percentile": Call((F, 30.0)),
    "permute_dims": Call((F, (1, 0))),
    "piecewise": Call((F, [B, B], [0.0, 1.0])),
    "place": Call((F, B, V), {"inplace": False}),
    "polyfit": Call((V, V, 2)),
    "polyint": Call((V,)),
    "prod": Call((F,), {"axis": 1}),
    "put": Call((F, ROWS, V), {"inplace": False}),
    "put_along_axis": Call((F, A((3, 1), "idx"), A((3, 1)), 1), {"inplace": False}),
    "quantile": Call((F, 0.3)),
    "nanquantile": Call((F, 0.3)),
    "ravel_multi_index": Call(((ROWS, ROWS), (3, 4)), {"mode": "clip"}),
    "reshape": Call((F, (4, 3))),
    "roots": Call((V,), {"strip_zeros": False}),
    "round": Call((F, 1)),
    "setdiff1d": Call((VI, VI), {"size": 4}),
    "setxor1d": Call((VI, VI), {"size": 8}),
    "split": Call((F, 2), {"axis": 1}),
    "squeeze": Call((A((3, 1, 4)), 1)),
    "stack": Call(([F, F],), {"axis": 1}),
    "std": Call((F,), {"axis": 1, "ddof": 1}),
    "sum": Call((F,), {"axis": 1}),
    "take": Call((F, ROWS), {"axis": 1}),
    "take_along_axis": Call((F, IDX, 0)),
    "tile": Call((F, (2, 1))),
    "top_k": Call((F, 2)),
    "union1d": Call((VI, VI), {"size": 8}),
    "unique": Call((VI,), {"size": 4}),
    "unique_all": Call((VI,), {"size": 4}),
    "unique_counts": Call((VI,), {"size": 4}),
    "unique_inverse": Call((VI,), {"size": 4}),
    "unique_values": Call((VI,), {"size": 4}),
    "unpackbits": Call((A((3, 4), "u8"),)),
    "unravel_index": Call((IDX, (3, 4))),
    "var": Call((F,), {"axis": 0}),
    "where": Call((B, F, F)),
    "linalg.cross": Call((A((4, 3)), A((4, 3)))),
    "linalg.matrix_power": Call((SQ, 3)),
    "linalg.multi_dot": Call(([F, A((4, 2)), A((2, 3))],)),
    "linalg.tensorinv": Call((SQ,), {"ind": 1}),
    "linalg.tensorsolve": Call((SQ, V)),
    "nn.dot_product_attention": Call((A((2, 3, 2, 4)),) * 3),
    "nn.logsumexp": Call((F,), {"axis": 1}),
    "nn.one_hot": Call((IDX, 3)),
    "nn.scaled_matmul": Call(
        (A((2, 32, 64), "fp8"), A((2, 32, 64), "fp8"), A((2, 32, 2), "e8m0"), A((2, 32, 2), "e8m0"))
    ),
    "nn.scaled_dot_general": Call((CUBE, A((2, 5, 4)), (((2,), (2,)), ((0,), (0,))))),
    "nn.softmax": Call((F,), {"axis": 0}),
}

# Functions no call reaches, and why (test_jax_namespace_sweep.py checks that these are exactly
# the functions with no call).
PYTHON_VALUE = "returns a Python value, not an array: it is about dtypes or shapes, not values"
READS = "builds an array from a file, a buffer or a Python iterable: concrete data, not traced"
PRINTS = "numpy's print settings or an array's text: no array result"
FUNCTION = "returns a function of a Python function, not an array"
EXCLUDED: dict[str, str] = {
    "array_repr": PRINTS,
    "array_str": PRINTS,
    "broadcast_shapes": PYTHON_VALUE + " (a shape)",
    "can_cast": PYTHON_VALUE + " (a bool)",
    "einsum_path": PYTHON_VALUE + " (the contraction order and its description)",
    "from_dlpack": READS,
    "frombuffer": READS,
    "fromfile": READS,
    "fromiter": READS,
    "frompyfunc": FUNCTION,
    "fromstring": READS,
    "get_printoptions": PRINTS,
    "iscomplexobj": PYTHON_VALUE + " (a bool, from the dtype)",
    "isdtype": PYTHON_VALUE + " (a bool)",
    "isrealobj": PYTHON_VALUE + " (a bool, from the dtype)",
    "isscalar": PYTHON_VALUE + " (a bool, from the type)",
    "issubdtype": PYTHON_VALUE + " (a bool)",
    "iterable": PYTHON_VALUE + " (a bool, from the type)",
    "load": READS,
    "ndim": PYTHON_VALUE + " (an int)",
    "printoptions": PRINTS,
    "promote_types": PYTHON_VALUE + " (a dtype)",
    "result_type": PYTHON_VALUE + " (a dtype)",
    "save": "writes a file: no array result",
    "savez": "writes a file: no array result",
    "set_printoptions": PRINTS,
    "shape": PYTHON_VALUE + " (a tuple)",
    "size": PYTHON_VALUE + " (an int)",
    "trim_zeros": "its result's shape depends on the values and it takes no size=: jax.jit fails",
    "vectorize": FUNCTION,
    "nn.get_scaled_dot_general_config": "returns a configuration object, not an array",
}


# Functions jax.jit takes that flowjit refuses, with a clear error (test_jax_namespace_sweep.py
# checks that these, and only these, fail, and that each fails with an fj error naming dtypes).
NO_COMPLEX = "complex results or intermediates: flowjit has no complex dtype"
UNSUPPORTED: dict[str, str] = {
    "sort_complex": NO_COMPLEX,
    "roots": NO_COMPLEX + " (eigenvalues)",
    "linalg.eig": NO_COMPLEX,
    "linalg.eigvals": NO_COMPLEX,
    **{
        f"fft.{name}": NO_COMPLEX
        for name in (
            "fft",
            "fft2",
            "fftn",
            "hfft",
            "ifft",
            "ifft2",
            "ifftn",
            "ihfft",
            "irfft",
            "irfft2",
            "irfftn",
            "rfft",
            "rfft2",
            "rfftn",
        )
    },
    "nn.scaled_matmul": "float8 operands: flowjit has no float8 dtypes",
}


def public_functions(module: Any) -> list[str]:
    """The public functions of ``module``: callables that are not classes or modules."""
    names = []
    for name in dir(module):
        value = getattr(module, name)
        public = not name.startswith("_") and callable(value)
        if public and not isinstance(value, type) and not inspect.ismodule(value):
            names.append(name)
    return names


def is_native(ns: Namespace, name: str) -> bool:
    """Whether flowjit defines ``name`` itself (not ``from_jax`` of jax's function)."""
    ours = getattr(ns.flowjit, name)
    return getattr(ours, "__wrapped__", None) is not getattr(ns.jax_module, name)


def _leaves(result: Any) -> list:
    return jax.tree_util.tree_leaves(result)


def accepted(fn: Callable, call: Call) -> bool:
    """Whether ``jax.jit`` traces ``fn`` called as ``call``, its results all arrays."""
    results: list[bool] = []

    def traced(*values: Any) -> Any:
        out = call.bind(fn, values)
        leaves = _leaves(out)
        results.append(bool(leaves) and all(isinstance(x, jax.Array) for x in leaves))
        return out

    try:
        jax.eval_shape(traced, *call.arrays(*RANGES[0]))
    except Exception:  # noqa: BLE001 (any error: jax does not take this call)
        return False
    return results == [True]


@dataclass
class Case:
    """One function's call, its inputs and jax's results."""

    name: str
    call: Call
    inputs: list[np.ndarray]
    want: list[np.ndarray]


def find_case(ns: Namespace, name: str) -> Case | None:
    """The call of ``name`` (``CALLS``' or the first pattern jax.jit takes) on the first
    range of inputs where jax's result is finite (else the first range); None when no call
    reaches it."""
    fn = getattr(ns.jax_module, name)
    calls = [CALLS[ns.prefix + name]] if ns.prefix + name in CALLS else PATTERNS
    call = next((c for c in calls if accepted(fn, c)), None)
    if call is None:
        return None
    jitted = jax.jit(lambda *values: call.bind(fn, values))
    first = None
    for low, high in RANGES:
        inputs = call.arrays(low, high)
        want = [np.asarray(x) for x in _leaves(jitted(*inputs))]
        first = first or (inputs, want)
        if all(np.isfinite(x).all() for x in want if np.issubdtype(x.dtype, np.inexact)):
            return Case(name, call, inputs, want)
    return Case(name, call, *first)


@functools.cache
def cases(label: str) -> tuple[dict[str, Case], list[str]]:
    """The cases of a namespace's functions, and the names no call reaches."""
    ns = NAMESPACES[label]
    found, missing = {}, []
    for name in public_functions(ns.jax_module):
        case = find_case(ns, name)
        if case is None:
            missing.append(name)
        else:
            found[name] = case
    return found, missing


# float results: (rtol, atol) by namespace, else by name
TOLERANCE = {"": (2e-5, 1e-6), "linalg.": (1e-4, 1e-5), "fft.": (1e-4, 1e-5), "nn.": (2e-5, 1e-6)}


def compare(case: Case, got: Any, prefix: str) -> None:
    """Raises AssertionError where flowjit's results differ from jax's (shapes, dtypes,
    values: floats to rounding, others exactly)."""
    got = [np.asarray(x) for x in _leaves(got)]
    assert len(got) == len(case.want), f"{len(got)} results, jax gives {len(case.want)}"
    rtol, atol = TOLERANCE.get(prefix + case.name, TOLERANCE[prefix])
    for i, (g, w) in enumerate(zip(got, case.want)):
        where = f"result {i}: " if len(got) > 1 else ""
        assert g.shape == w.shape, f"{where}shape {g.shape}, jax's {w.shape}"
        assert g.dtype == w.dtype, f"{where}dtype {g.dtype}, jax's {w.dtype}"
        if np.issubdtype(w.dtype, np.inexact):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=where)
        else:
            np.testing.assert_array_equal(g, w, err_msg=where)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"


def run_flowjit(ns: Namespace, batch: list[Case]) -> list[Any]:
    """Each case's call through flowjit's namespace, all in one compiled function."""
    sizes = [len(case.inputs) for case in batch]

    def program(*values: Any) -> list:
        outs, start = [], 0
        for case, n in zip(batch, sizes):
            fn = getattr(ns.flowjit, case.name)
            outs.append(tuple(_leaves(case.call.bind(fn, values[start : start + n]))))
            start += n
        return outs

    return fj.compile(program)(*[x for case in batch for x in case.inputs])


BATCH = 24


def sweep(label: str) -> dict[str, str]:
    """The functions of a namespace whose flowjit call fails or differs from jax's, with the
    error (one line). Cases run in batches, each one compiled function; a batch that fails
    runs again one case at a time, to find which."""
    ns = NAMESPACES[label]
    found = list(cases(label)[0].values())
    failures: dict[str, str] = {}
    for start in range(0, len(found), BATCH):
        batch = found[start : start + BATCH]
        try:
            results = run_flowjit(ns, batch)
        except Exception:  # noqa: BLE001 (one case's error: found below)
            results = None
        for i, case in enumerate(batch):
            try:
                got = results[i] if results is not None else run_flowjit(ns, [case])[0]
                compare(case, got, ns.prefix)
            except Exception as err:  # noqa: BLE001 (a mismatch, or flowjit's error)
                failures[case.name] = f"{case.name}{case.call}: {_one_line(err)}"
    return failures
