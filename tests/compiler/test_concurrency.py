"""One compiled function called from many threads at once: each signature is traced once,
results are right, steps that update the same variables run one at a time (so no update is
lost and no donated buffer is used again), and eager reads and writes of a variable are atomic
with respect to steps. Threads start together at a barrier; a thread still running after the
deadline fails the test as a deadlock."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp
from flowjit.runtime import plan as runtime_plan

THREADS = 8
CALLS = 25  # per thread
DEADLINE_S = 60.0
F32, I32 = np.float32, np.int32


def in_threads(work: Callable[[int], Any], count: int = THREADS) -> list:
    """``[work(0), ..., work(count - 1)]``, each run in its own thread, all released together;
    re-raises the first error a thread raised."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list = []

    def run(i: int) -> None:
        try:
            barrier.wait(DEADLINE_S)
            results[i] = work(i)
        except BaseException as err:  # (reported below, in the test's thread)
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + DEADLINE_S
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    hung = sum(thread.is_alive() for thread in threads)
    assert not hung, f"{hung} of {count} threads still running after {DEADLINE_S} s: a deadlock"
    if errors:
        raise errors[0]
    return results


def long_sum(x: Any, terms: int = 64) -> Any:
    """``x + terms``, one op at a time: a trace long enough that threads tracing at once
    interleave."""
    for _ in range(terms):
        x = x + 1
    return x


@pytest.fixture
def few_steps_in_flight():
    """A small bound on queued steps, so that many calls wait for the queue (from many
    threads at once)."""
    before = fj.config.max_steps_in_flight
    fj.config.update("max_steps_in_flight", 2)
    yield
    fj.config.update("max_steps_in_flight", before)


# -- tracing --------------------------------------------------------------------------------
def test_one_signature_from_eight_threads_is_traced_once():
    bodies = []  # one entry per run of the Python body (list.append is atomic)

    @fj.compile
    def affine(x, scale):
        bodies.append(1)
        return long_sum(x * scale)

    x = np.arange(12, dtype=F32).reshape(3, 4)

    def work(i):
        # a Python float and a numpy float32 are one flowjit signature but two jax ones, so
        # two jax traces reach flowjit's cache at once
        scale = float(i) if i % 2 else F32(i)
        return [np.asarray(affine(x, scale)) for _ in range(CALLS)]

    for i, results in enumerate(in_threads(work)):
        for result in results:
            np.testing.assert_array_equal(result, x * F32(i) + 64)
    assert len(bodies) == 1
    info = affine.cache_info()
    assert (info.traces, info.misses, info.hits) == (1, 1, THREADS * CALLS - 1)


def test_eight_signatures_from_eight_threads_are_traced_once_each(caplog):
    bodies = []

    @fj.compile
    def shifted_double(x):
        bodies.append(x.shape)
        return long_sum(x) * 2

    def work(i):
        x = np.arange(3 * (i + 1)).reshape(i + 1, 3).astype(F32 if i % 2 else I32)
        for _ in range(CALLS):
            result = shifted_double(x)
            assert result.dtype == x.dtype
            np.testing.assert_array_equal(result, (x + 64) * 2)

    with caplog.at_level(logging.INFO, logger="flowjit"):
        in_threads(work)
    assert sorted(bodies) == [(i + 1, 3) for i in range(THREADS)]
    assert shifted_double.cache_info().traces == THREADS
    # one retrace message per trace after the first; the warning from the 7th trace on
    retraces = [r for r in caplog.records if r.getMessage().startswith("retracing")]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retraces) == THREADS - 1
    assert len(warnings) == THREADS - 6
    assert all("has been traced" in r.getMessage() for r in warnings)


def test_traced_function_calling_another_compiled_function_from_eight_threads():
    """While ``outer`` is traced it calls ``inner``, so the thread tracing it waits for jax's
    trace of ``inner``, which a thread calling ``inner`` may have started: that thread must
    not wait inside jax's trace for the first one to finish tracing."""

    @fj.compile
    def inner(x):
        return long_sum(x)

    @fj.compile
    def outer(x):
        inner(np.arange(3, dtype=F32))  # (a compiled call while outer is traced)
        return long_sum(x) * 2

    x = np.arange(3, dtype=F32)

    def work(i):
        step = outer if i % 2 else inner
        return [np.asarray(step(x)) for _ in range(5)]

    for i, results in enumerate(in_threads(work)):
        for result in results:
            np.testing.assert_array_equal(result, (x + 64) * (2 if i % 2 else 1))
    assert outer.cache_info().traces == inner.cache_info().traces == 1


# -- steps that update variables --------------------------------------------------------------
def test_assign_add_from_eight_threads_counts_every_call(few_steps_in_flight):
    counter = fj.Variable(0, dtype=I32, name="counter")
    bodies = []

    @fj.compile
    def tick():
        bodies.append(1)
        counter.assign_add(1)
        return counter + 0  # the count after this call's update

    # the threads' first calls all find the function untraced: the first trace discovers the
    # variable and the call starts over with it
    counts = in_threads(lambda i: [int(tick()) for _ in range(CALLS)])
    total = THREADS * CALLS
    assert int(np.asarray(counter)) == total
    # each call saw the count its own update made: no two calls read the same old value
    assert sorted(c for per_thread in counts for c in per_thread) == list(range(1, total + 1))
    assert len(bodies) == 1 and tick.cache_info().traces == 1
    assert len(runtime_plan._in_flight) <= 2  # the threads' steps share one bounded queue


def test_threads_finding_different_variables_grow_one_layout():
    counters = [fj.Variable(0, dtype=I32, name=f"counter{i}") for i in range(THREADS)]

    @fj.compile(static_argnums=0)
    def bump(which):
        counters[which].assign_add(1)
        return counters[which] + 0

    # each thread's first trace finds a variable the others' did not: the state layout grows
    # while other threads' steps hold the variables it had
    counts = in_threads(lambda i: [int(bump(i)) for _ in range(CALLS)])
    for i, per_thread in enumerate(counts):
        assert per_thread == list(range(1, CALLS + 1))
        assert int(np.asarray(counters[i])) == CALLS
    assert bump.cache_info().traces == THREADS


def make_trainer(data: tuple[np.ndarray, np.ndarray]) -> tuple[Callable, list]:
    """A linear model's SGD step with momentum (its slot variables are made on first trace)
    on one fixed batch; returns the step and the model's variables."""
    x, y = data
    w = fj.Variable(np.zeros((x.shape[1], 1), F32), name="w")
    b = fj.Variable(np.zeros((1,), F32), name="b")
    opt = fj.optim.SGD(0.05, momentum=0.9)

    @fj.compile
    def train_step():
        return opt.minimize(lambda: fnp.mean((fnp.matmul(x, w) + b - y) ** 2), [w, b])

    return train_step, [w, b]


def test_sgd_step_from_eight_threads_equals_the_same_steps_in_one_thread():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5)).astype(F32)
    y = (x @ rng.standard_normal((5, 1)) + 0.5).astype(F32)
    threaded, threaded_vars = make_trainer((x, y))
    losses = in_threads(lambda i: [float(threaded()) for _ in range(CALLS)])
    # every step is the same function of the variables (one batch), so however the threads
    # interleave, N steps must give the variables N steps in one thread give
    alone, alone_vars = make_trainer((x, y))
    expected_losses = [float(alone()) for _ in range(THREADS * CALLS)]
    for got, want in zip(threaded_vars, alone_vars):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
    # the losses, seen from all threads together, are the single thread's losses
    seen = sorted(loss for per_thread in losses for loss in per_thread)
    np.testing.assert_allclose(seen, sorted(expected_losses), rtol=1e-6)
    assert threaded.cache_info().traces == 1


def test_two_functions_updating_one_variable_from_eight_threads():
    total = fj.Variable(0, dtype=I32, name="total")

    @fj.compile
    def add_one():
        total.assign_add(1)
        return total + 0

    @fj.compile
    def add_thousand():
        total.assign_add(1000)
        return total + 0

    def work(i):
        step = add_one if i % 2 else add_thousand
        return [int(step()) for _ in range(CALLS)]

    seen = [c for per_thread in in_threads(work) for c in per_thread]
    half = THREADS // 2 * CALLS
    assert int(np.asarray(total)) == half * 1 + half * 1000
    assert len(set(seen)) == len(seen)  # no two steps saw the same count


def test_function_with_a_host_call_from_eight_threads():
    counter = fj.Variable(0, dtype=I32, name="counter")
    seen_on_host = []

    def note(count):
        seen_on_host.append(int(count))
        return count * 10

    @fj.compile
    def tick():
        counter.assign_add(1)
        return fj.host_call(note, counter + 0, result_shape_dtypes=fj.ShapeDtype((), I32))

    results = in_threads(lambda i: [int(tick()) for _ in range(CALLS)])
    total = THREADS * CALLS
    assert int(np.asarray(counter)) == total
    assert sorted(seen_on_host) == list(range(1, total + 1))
    assert sorted(r for per_thread in results for r in per_thread) == [
        10 * c for c in range(1, total + 1)
    ]
    assert tick.cache_info().traces == 1


def test_host_callback_calling_a_function_on_the_same_variable():
    """The host callback runs while its function's call holds the variable: a compiled call
    from the callback, in the same thread, on the same variable does not wait for it."""
    counter = fj.Variable(0, dtype=I32, name="counter")

    @fj.compile
    def peek():
        return counter + 0

    def check(count):
        # the call's updates are written back after all its steps: the callback sees the
        # value before this call
        assert int(peek()) == int(count) - 1
        return count

    @fj.compile
    def tick():
        counter.assign_add(1)
        return fj.host_call(check, counter + 0, result_shape_dtypes=fj.ShapeDtype((), I32))

    in_threads(lambda i: [tick() for _ in range(CALLS)], count=4)
    assert int(np.asarray(counter)) == 4 * CALLS


# -- eager reads and writes against steps ------------------------------------------------------
def test_eager_assign_add_and_reads_race_with_steps(few_steps_in_flight):
    counter = fj.Variable(0, dtype=I32, name="counter")

    @fj.compile
    def tick():
        counter.assign_add(1)
        return counter + 0

    tick()  # traced before the race: the race is between steps and eager operations

    def work(i):
        if i < 4:  # compiled steps
            return [int(tick()) for _ in range(CALLS)]
        if i < 6:  # eager updates
            for _ in range(CALLS):
                counter.assign_add(1)
            return []
        reads = [int(np.asarray(counter)) for _ in range(CALLS)]  # atomic reads
        assert reads == sorted(reads), "a read went back in time"
        return reads

    in_threads(work)
    assert int(np.asarray(counter)) == 1 + 6 * CALLS


def test_set_value_is_atomic_with_steps():
    """Sets of 10**6 * k (k = 1, 2, ...) race with steps adding one. Were every operation
    atomic, the steps that follow set k see 10**6 * k + 1, + 2, ... with no gap and no
    repeat; a lost set or a lost step breaks that."""
    counter = fj.Variable(0, dtype=I32, name="counter")
    big, sets = 10**6, 10

    @fj.compile
    def tick():
        counter.assign_add(1)
        return counter + 0

    tick()  # traced before the race (so the count starts at 1 and continues)

    def work(i):
        if i == 0:
            for k in range(1, sets + 1):
                counter.set_value(big * k)
            return []
        return [int(tick()) for _ in range(CALLS)]

    seen = [1] + [c for per_thread in in_threads(work) for c in per_thread]
    by_set: dict[int, list[int]] = {}
    for count in seen:
        by_set.setdefault(count // big, []).append(count % big)
    for k, after in by_set.items():
        assert sorted(after) == list(range(1, len(after) + 1)), f"steps after set {k}"
    final = int(np.asarray(counter))
    assert final // big == sets
    assert final % big == len(by_set.get(sets, []))


def test_eager_updates_while_other_threads_trace():
    """Tracing is per thread: an eager update in one thread while others trace new
    signatures is neither taken for a traced op nor lost."""
    v = fj.Variable(np.zeros((), F32), name="eager_count")

    def traced(x, n):
        return long_sum(x) * n

    f = fj.compile(traced, static_argnums=1)

    def work(i: int) -> None:
        for k in range(CALLS):
            if i % 2:
                f(np.ones(3, F32), i * CALLS + k)  # a new signature: a trace every call
            else:
                v.assign_add(1.0)

    in_threads(work)
    assert float(np.asarray(v)) == (THREADS // 2) * CALLS


def test_checkpoint_save_and_restore_while_steps_run(tmp_path):
    """A save reads, and a restore writes, all its variables at once with respect to steps:
    a saved pair of counters is always equal, and no save meets a donated buffer."""
    a = fj.Variable(np.zeros((), I32), name="a")
    b = fj.Variable(np.zeros((), I32), name="b")

    @fj.compile
    def step():
        a.assign_add(1)
        b.assign_add(1)

    def work(i: int) -> list:
        seen = []
        for k in range(CALLS):
            if i % 2:
                step()
            else:
                path = tmp_path / f"ckpt{i}_{k}.safetensors"
                fj.save(path, [a, b])
                x = fj.Variable(np.zeros((), I32), name="a")
                y = fj.Variable(np.zeros((), I32), name="b")
                fj.restore(path, [x, y])
                seen.append((int(np.asarray(x)), int(np.asarray(y))))
        return seen

    for pairs in in_threads(work)[::2]:
        assert all(x == y for x, y in pairs), pairs
    assert int(np.asarray(a)) == int(np.asarray(b)) == (THREADS // 2) * CALLS
