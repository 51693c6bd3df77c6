"""The default pipeline's time grows about linearly with the program: on generated graphs of
1k, 10k and 100k ops, ten times the ops may take at most 15 times as long (a pass that is
quadratic anywhere takes about 100 times). Run with -s to see the table."""

from __future__ import annotations

import gc
import time

import numpy as np

from flowjit.backends.reference import run_graph
from flowjit.ir import Graph, TensorType
from flowjit.ir.ops import creation as C
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops import shape as S
from flowjit.passes import count_ops, default_pipeline, run_pipeline

F32 = np.dtype(np.float32)
SIZES = (1_000, 10_000, 100_000)


def long_program(n_ops: int) -> Graph:
    """A chain of blocks of 17 ops over f32[2,3], each giving every pass work: constants that
    fold, a neutral element, a double negation and transposes and reshapes that cancel for
    simplify, a duplicate for cse, a dead op for dce. Each block depends on the last."""
    graph = Graph("long")
    x = graph.add_input(TensorType((2, 3), F32))

    def add(opdef, *inputs, **attrs):
        (out,) = graph.add(opdef, list(inputs), attrs)
        return out

    step = 0
    while len(graph.ops) < n_ops:
        step += 1
        a = add(C.constant, value=np.array(step % 7, F32))
        b = add(C.constant, value=np.array(0.125, F32))
        k = add(E.mul, add(E.add, a, b), b)  # folds: (s + 1/8) / 8
        one = add(C.constant, value=np.array(1.0, F32))
        y = add(E.mul, x, one)  # x * 1
        t1, t2 = add(E.tanh, y), add(E.tanh, y)  # one for cse
        add(E.sin, t1)  # dead
        t = add(S.transpose, add(S.transpose, t2, perm=(1, 0)), perm=(1, 0))
        r = add(S.reshape, add(S.reshape, t, shape=(6,)), shape=(2, 3))
        z = add(E.neg, add(E.neg, add(E.add, t1, r)))
        x = add(E.mul, z, k)
    graph.outputs = [x]
    return graph


def best_time(graph: Graph) -> tuple[float, Graph]:
    """The best of two runs of the default pipeline, verifying after every pass (as flowjit's
    tests compile)."""
    best, out = float("inf"), graph
    for _ in range(2):
        gc.collect()
        start = time.perf_counter()
        out = run_pipeline(graph, default_pipeline(), verify_each=True).graph
        best = min(best, time.perf_counter() - start)
    return best, out


def test_pipeline_time_grows_linearly():
    rows = []
    for n in SIZES:
        graph = long_program(n)
        seconds, optimized = best_time(graph)
        rows.append((n, count_ops(graph), count_ops(optimized), seconds))
        if n == SIZES[1]:  # fail fast: a quadratic pass would take minutes on 100k ops
            assert seconds / rows[0][3] < 30, rows
        if n == SIZES[0]:  # the optimized program still computes the same thing
            x = np.linspace(-1, 1, 6, dtype=F32).reshape(2, 3)
            np.testing.assert_allclose(run_graph(optimized, [x]), run_graph(graph, [x]), rtol=1e-6)
    print("\n     ops   ops after   seconds")
    for n, before, after, seconds in rows:
        print(f"{before:8d}  {after:10d}  {seconds:8.3f}")
    times = {n: seconds for n, _, _, seconds in rows}
    # each block keeps 3 of its 17 ops, tanh(x), add(t, t) and mul(z, k); its folded k is
    # one of 7 constants, which cse shares between blocks
    for n, before, after, _ in rows:
        assert before % 17 == 0 and after == 3 * before // 17 + 7, (n, before, after)
    ratio = times[100_000] / times[10_000]
    print(f"time(100k) / time(10k) = {ratio:.1f}")
    assert ratio < 15, rows
