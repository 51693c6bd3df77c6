"""Random programs written once against a numpy-like module run three ways: with
``flowjit.numpy`` under ``fj.compile``, with ``jax.numpy`` under ``jax.jit`` and with numpy.
flowjit must agree with jax (both run on XLA: to rounding) and with numpy where numpy means
the same (on values without NaN or infinities, numpy's float64 result rounded).

A program is a list of steps over a pool of values (arguments of several shapes and
dtypes, then results): elementwise functions, broadcasting binary functions, reductions over
an axis, shape functions, ``where``, ``matmul``, sorting and scans along an axis, a branch
(``fj.cond`` / ``lax.cond``) and a variable updated in place (``fj.Variable`` / a carried
array). ``FLOWJIT_FUZZ_EXAMPLES=N`` sets how many programs run."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowjit as fj
import flowjit.numpy as fnp

EXAMPLES = int(os.environ.get("FLOWJIT_FUZZ_EXAMPLES", "40"))
SHAPES = [(), (4,), (3, 4), (2, 3, 4)]

UNARY = ["exp", "tanh", "sin", "abs", "negative", "floor", "square", "log1p", "sqrt", "sign"]
BINARY = ["add", "subtract", "multiply", "maximum", "minimum", "divide", "arctan2"]
REDUCE = ["sum", "mean", "max", "min", "argmax", "prod"]
ALONG = ["cumsum", "sort", "flip"]
# functions that map a value domain numpy and XLA treat alike onto one they may not (NaN
# from sqrt of a negative, from inf - inf, ...): their programs are compared to jax only
GUARDED = {"sqrt": "abs", "log1p": "abs"}


@dataclass
class Step:
    text: str  # the step as Python, for the failure message
    run: Callable  # run(xp, values, state) -> new value


def _unary(name: str, i: int) -> Step:
    guard = GUARDED.get(name)
    if guard:
        return Step(
            f"{name}({guard}(v{i}))", lambda xp, v, s: getattr(xp, name)(getattr(xp, guard)(v[i]))
        )
    return Step(f"{name}(v{i})", lambda xp, v, s: getattr(xp, name)(v[i]))


def _binary(name: str, i: int, j: int) -> Step:
    if name == "divide":  # away from zero: 1 + |y|
        return Step(
            f"divide(v{i}, 1 + abs(v{j}))", lambda xp, v, s: xp.divide(v[i], 1 + xp.abs(v[j]))
        )
    return Step(f"{name}(v{i}, v{j})", lambda xp, v, s: getattr(xp, name)(v[i], v[j]))


@st.composite
def programs(draw) -> tuple[list[np.ndarray], list[Step]]:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=3))
    args = [rng.uniform(-2, 2, shape).astype(np.float32) for shape in shapes]
    pool = [a.shape for a in args]  # the shape of each value so far
    steps: list[Step] = []

    def pick(predicate=lambda shape: True) -> int | None:
        options = [i for i, shape in enumerate(pool) if predicate(shape)]
        return draw(st.sampled_from(options)) if options else None

    for _ in range(draw(st.integers(1, 8))):
        kind = draw(
            st.sampled_from(
                [
                    "unary",
                    "binary",
                    "reduce",
                    "along",
                    "shape",
                    "where",
                    "matmul",
                    "cond",
                    "variable",
                ]
            )
        )
        if kind == "unary":
            i = pick()
            step, shape = _unary(draw(st.sampled_from(UNARY)), i), pool[i]
        elif kind == "binary":
            i = pick()
            j = pick(lambda s, a=pool[i]: _broadcasts(a, s))
            step, shape = (
                _binary(draw(st.sampled_from(BINARY)), i, j),
                np.broadcast_shapes(pool[i], pool[j]),
            )
        elif kind == "reduce":
            i = pick(lambda s: len(s) > 0)
            if i is None:
                continue
            name, axis = draw(st.sampled_from(REDUCE)), draw(st.integers(0, len(pool[i]) - 1))
            keep = name != "argmax" and draw(st.booleans())
            step = Step(f"{name}(v{i}, axis={axis}, keepdims={keep})", _reduce(name, i, axis, keep))
            shape = tuple(1 if k == axis else d for k, d in enumerate(pool[i]) if keep or k != axis)
        elif kind == "along":
            i = pick(lambda s: len(s) > 0)
            if i is None:
                continue
            name, axis = draw(st.sampled_from(ALONG)), draw(st.integers(0, len(pool[i]) - 1))
            step = Step(f"{name}(v{i}, axis={axis})", _along(name, i, axis))
            shape = pool[i]
        elif kind == "shape":
            i = pick(lambda s: len(s) > 0)
            if i is None:
                continue
            perm = tuple(draw(st.permutations(range(len(pool[i])))))
            step = Step(
                f"reshape(transpose(v{i}, {perm}), (-1,))",
                lambda xp, v, s, i=i, perm=perm: xp.reshape(xp.transpose(v[i], perm), (-1,)),
            )
            shape = (int(np.prod(pool[i])),)
        elif kind == "where":
            i = pick()
            j = pick(lambda s, a=pool[i]: _broadcasts(a, s))
            step = Step(
                f"where(v{i} > 0, v{i}, v{j})",
                lambda xp, v, s, i=i, j=j: xp.where(v[i] > 0, v[i], v[j]),
            )
            shape = np.broadcast_shapes(pool[i], pool[j])
        elif kind == "matmul":
            i = pick(lambda s: len(s) >= 1)
            if i is None:
                continue
            k = pool[i][-1]
            j = pick(lambda s, k=k: len(s) in (1, 2) and s[0] == k)
            if j is None:
                continue
            step = Step(f"matmul(v{i}, v{j})", lambda xp, v, s, i=i, j=j: xp.matmul(v[i], v[j]))
            shape = np.matmul(np.zeros(pool[i]), np.zeros(pool[j])).shape
        elif kind == "cond":
            i = pick()
            step = Step(f"cond(sum(v{i}) > 0, tanh, cos, v{i})", _cond(i))
            shape = pool[i]
        else:  # a variable of v's shape, updated in place, then read
            i = pick()
            step = Step(f"state[v{i}.shape] += v{i}; read it", _accumulate(i))
            shape = pool[i]
        steps.append(step)
        pool.append(tuple(shape))
    return args, steps


def _broadcasts(a: tuple, b: tuple) -> bool:
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return True


def _reduce(name, i, axis, keep):
    if name == "argmax":
        return lambda xp, v, s: xp.argmax(v[i], axis=axis).astype(xp.float32)
    if name == "prod":  # (a product of many values overflows differently: keep it small)
        return lambda xp, v, s: xp.prod(xp.tanh(v[i]), axis=axis, keepdims=keep)
    return lambda xp, v, s: getattr(xp, name)(v[i], axis=axis, keepdims=keep)


def _along(name, i, axis):
    if name == "flip":
        return lambda xp, v, s: xp.flip(v[i], axis=axis)
    return lambda xp, v, s: getattr(xp, name)(v[i], axis=axis)


def _cond(i):
    def run(xp, v, s):
        if xp is np:
            return np.tanh(v[i]) if v[i].sum() > 0 else np.cos(v[i])
        branch = fj.cond if xp is fnp else jax.lax.cond
        return branch(xp.sum(v[i]) > 0, xp.tanh, xp.cos, v[i])

    return run


def _accumulate(i):
    def run(xp, v, s):
        s.add(v[i])
        return s.read(v[i].shape)

    return run


class FlowjitState:
    """Variables by shape, updated with ``assign_add`` (inside fj.compile)."""

    def __init__(self):
        self.cells = {}

    def add(self, x):
        if x.shape not in self.cells:
            self.cells[x.shape] = fj.Variable(
                np.ones(x.shape, np.float32), name=f"s{len(self.cells)}"
            )
        self.cells[x.shape].assign_add(x)

    def read(self, shape):
        return self.cells[shape] * 1.0


class ArrayState:
    """The same with arrays (jax's functional state, and numpy)."""

    def __init__(self, xp):
        self.xp, self.cells = xp, {}

    def add(self, x):
        self.cells[x.shape] = self.cells.get(x.shape, self.xp.ones(x.shape, self.xp.float32)) + x

    def read(self, shape):
        return self.cells[shape] * 1.0


def run_program(xp, args, steps, state):
    values = list(args)
    for step in steps:
        values.append(step.run(xp, values, state))
    return values[len(args) :]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(programs())
def test_flowjit_equals_jax_and_numpy(program):
    args, steps = program
    text = "\n".join(f"v{len(args) + k} = {s.text}" for k, s in enumerate(steps))
    ours = fj.compile(lambda *xs: run_program(fnp, xs, steps, FlowjitState()))(*args)
    theirs = jax.jit(lambda *xs: run_program(jnp, xs, steps, ArrayState(jnp)))(*args)
    with np.errstate(all="ignore"):
        wide = [a.astype(np.float64) for a in args]
        numpy = run_program(np, wide, steps, ArrayState(np))
    for k, (a, b, c) in enumerate(zip(ours, theirs, numpy)):
        a, b, c = np.asarray(a), np.asarray(b), np.asarray(c)
        where = f"v{len(args) + k} of\n{text}\nargs: {[x.shape for x in args]}"
        assert a.shape == b.shape == c.shape, where
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5, equal_nan=True, err_msg=where)
        if np.isfinite(c).all():
            np.testing.assert_allclose(a, c, rtol=1e-3, atol=1e-3, err_msg=where)
