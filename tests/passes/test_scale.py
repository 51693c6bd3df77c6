"""The default pipeline's work grows about linearly with the program: on generated graphs, ten
times the ops take about ten times the work (n log n would take 13 times; a pass that is
quadratic anywhere about 100 times).

Work is measured in ways a busy machine does not change: the Python lines the pipeline runs and
the calls it makes, counted (deterministic, so the bound is tight: 15), and the CPU time of this
process, best of three rounds. CPU time also sees work done inside C calls (``x in some_list``)
that the counts cannot, but moves with cache misses as the graph outgrows the caches (10 to 12
times here, idle or loaded), so its bound is looser: 25. Wall-clock times against graph size are the benchmark suite's
(``bench/suite/suite.py``'s ``pipeline`` workload, reported in docs/performance.md)."""

from __future__ import annotations

import functools
import gc
import operator
import sys
import time
from typing import Callable

import numpy as np

from flowjit.backends.reference import run_graph
from flowjit.ir import Graph, TensorType
from flowjit.ir.ops import creation as C
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops import shape as S
from flowjit.passes import count_ops, default_pipeline, run_pipeline

F32 = np.dtype(np.float32)
COUNTED_GROWTH_LIMIT = 15  # counted work(10 n) / work(n)
CPU_GROWTH_LIMIT = 25  # CPU time(10 n) / CPU time(n)


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


def optimize(graph: Graph) -> Graph:
    """The default pipeline, verifying after every pass (as flowjit's tests compile)."""
    return run_pipeline(graph, default_pipeline(), verify_each=True).graph


def counted_work(fn: Callable[[], object]) -> int:
    """How many Python lines ``fn()`` runs, loop iterations and branches it takes (a loop on one
    line is one line) and calls (to Python or C) it makes."""
    events = sys.monitoring.events
    tool = next(i for i in (3, 4, 2, 0) if sys.monitoring.get_tool(i) is None)
    count = 0

    def seen(*_) -> None:
        nonlocal count
        count += 1

    sys.monitoring.use_tool_id(tool, "flowjit test_scale")
    try:
        counted = (events.LINE, events.JUMP, events.BRANCH, events.CALL)
        for event in counted:
            sys.monitoring.register_callback(tool, event, seen)
        sys.monitoring.set_events(tool, functools.reduce(operator.or_, counted))
        fn()
    finally:
        sys.monitoring.set_events(tool, 0)
        sys.monitoring.free_tool_id(tool)
    return count


def best_cpu_seconds(fns: list[Callable[[], object]], rounds: int = 3) -> list[float]:
    """The least CPU time of this process that each of ``fns`` takes over ``rounds`` rounds,
    interleaved, so that a machine busy for part of the run slows each about alike. The
    objects alive before a call are frozen: the collector does not rescan the input graph."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            gc.collect()
            gc.freeze()
            try:
                start = time.process_time()
                fn()
                best[i] = min(best[i], time.process_time() - start)
            finally:
                gc.unfreeze()
    return best


def test_the_optimized_long_program_computes_the_same_and_keeps_3_ops_a_block():
    for n in (1_000, 3_000):
        graph = long_program(n)
        optimized = optimize(graph)
        # each block keeps 3 of its 17 ops, tanh(x), add(t, t) and mul(z, k); its folded k is
        # one of 7 constants, which cse shares between blocks
        before = count_ops(graph)
        assert before % 17 == 0 and count_ops(optimized) == 3 * before // 17 + 7, n
    x = np.linspace(-1, 1, 6, dtype=F32).reshape(2, 3)
    np.testing.assert_allclose(run_graph(optimized, [x]), run_graph(graph, [x]), rtol=1e-6)


def test_pipeline_work_counted_grows_linearly():
    small, large = long_program(1_000), long_program(10_000)
    work = [counted_work(lambda g=g: optimize(g)) for g in (small, large)]
    assert work[0] > 100 * count_ops(small), work  # the count sees the passes' work
    assert work[1] / work[0] < COUNTED_GROWTH_LIMIT, work


def test_pipeline_cpu_time_grows_linearly():
    small, large = long_program(3_000), long_program(30_000)
    seconds = best_cpu_seconds([lambda: optimize(small), lambda: optimize(large)])
    assert seconds[1] / seconds[0] < CPU_GROWTH_LIMIT, seconds


def test_the_count_tells_quadratic_from_linear_work():
    def pairs(n: int) -> int:  # quadratic: compares every pair
        items = list(range(n))
        return sum(1 for a in items for b in items if a < b)

    def total(n: int) -> int:  # linear
        return sum(1 for a in range(n) if a >= 0)

    assert counted_work(lambda: pairs(300)) / counted_work(lambda: pairs(30)) > 80
    assert counted_work(lambda: total(3000)) / counted_work(lambda: total(300)) < 11
