"""A host call inside a compiled loop body runs as a callback of the compiled program; when it
raises, the step raises what it raised (issue 20, item 11): a HostCallError naming the user's
line, in the thread whose step failed, with that thread's exception as its cause, however many
threads run such steps at once; and a KeyboardInterrupt (Ctrl-C while the callback runs) as a
KeyboardInterrupt, with the step's variables left all old."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import flowjit as fj

F32 = np.float32
THREADS = 6
TOTAL_CALLS = 150


class ThreadError(Exception):
    """What thread ``number``'s host function raises."""

    def __init__(self, number: int):
        super().__init__(f"raised in thread {number}")
        self.number = number


def fail_in_thread(c: np.ndarray, number: np.ndarray) -> np.ndarray:
    raise ThreadError(int(number))


def host(c, number):
    return fj.host_call(fail_in_thread, c, number, result_shape_dtypes=fj.ShapeDtype((2,), F32))


LOOPS = {
    "scan": lambda x, n: fj.scan(lambda c, _: (host(c, n), None), x, None, length=3)[0],
    "fori_loop": lambda x, n: fj.fori_loop(0, 3, lambda i, c: host(c, n), x),
    "while_loop": lambda x, n: fj.while_loop(
        lambda carry: carry[0] < 3, lambda carry: (carry[0] + 1, host(carry[1], n)), (0, x)
    )[1],
}


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_each_thread_gets_the_error_of_its_own_step(loop):
    step = fj.compile(LOOPS[loop])
    barrier = threading.Barrier(THREADS)
    outcomes: list[list[str]] = [[] for _ in range(THREADS)]

    def run(number: int) -> None:
        barrier.wait(60)
        for _ in range(TOTAL_CALLS // THREADS):
            try:
                step(np.ones(2, F32), np.int32(number))
                outcomes[number].append("no error")
            except fj.HostCallError as err:
                cause = err.__cause__
                own = isinstance(cause, ThreadError) and cause.number == number
                own = own and f"raised in thread {number}" in str(err)
                outcomes[number].append("own" if own else f"another's: {err}")
            except Exception as err:  # (before the fix: XLA's error, when another thread
                outcomes[number].append(f"{type(err).__name__}: {err}")  # took the record)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    calls = [outcome for per_thread in outcomes for outcome in per_thread]
    wrong = [outcome for outcome in calls if outcome != "own"]
    assert len(calls) == TOTAL_CALLS
    # (before the fix, 27 to 43 of 150 here: another thread's error, or XLA's generic one)
    assert wrong == [], f"{len(wrong)} of {TOTAL_CALLS} calls: {wrong[:3]}"


def test_a_callback_raising_keyboard_interrupt_in_a_scan_raises_it_from_the_step():
    v = fj.Variable(np.zeros(2, F32), name="v")
    interrupting = [True]

    def check(c):
        if interrupting[0]:
            raise KeyboardInterrupt
        return c

    def body(c, _):
        return fj.host_call(check, c, result_shape_dtypes=fj.ShapeDtype((2,), F32)), None

    def step(x):
        v.assign_add(x)
        return fj.scan(body, x, None, length=3)[0]

    f = fj.compile(step)
    with pytest.raises(KeyboardInterrupt):  # (before: jax's JaxRuntimeError)
        f(np.ones(2, F32))
    np.testing.assert_array_equal(np.asarray(v.value), [0, 0])  # all old
    interrupting[0] = False
    np.testing.assert_array_equal(np.asarray(f(np.ones(2, F32))), [1, 1])
    np.testing.assert_array_equal(np.asarray(v.value), [1, 1])  # and the next step runs


# A real Ctrl-C (SIGINT) arriving while the loop body's callback runs, in a fresh process: in
# this one, a SIGINT that did not come out of the step would stop pytest.
CTRL_C_IN_CALLBACK = """
    import json, os, signal, time
    import numpy as np, flowjit as fj

    v = fj.Variable(np.zeros(2, np.float32), name="v")

    def wait_for_ctrl_c(c):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # (the KeyboardInterrupt comes before this ends)
        return c

    def step(x):
        v.assign_add(x)
        def body(c, _):
            shape = fj.ShapeDtype((2,), np.float32)
            return fj.host_call(wait_for_ctrl_c, c, result_shape_dtypes=shape), None
        return fj.scan(body, x, None, length=3)[0]

    f, outcomes = fj.compile(step), []
    for _ in range(3):
        try:
            f(np.ones(2, np.float32))
            outcomes.append("no error")
        except KeyboardInterrupt:
            outcomes.append("KeyboardInterrupt")
        except Exception as err:
            outcomes.append(type(err).__name__)
    print(json.dumps({"outcomes": outcomes, "v": np.asarray(v).tolist()}))
"""


def test_ctrl_c_while_a_loop_body_callback_runs_is_a_keyboard_interrupt():
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CTRL_C_IN_CALLBACK)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"outcomes": ["KeyboardInterrupt"] * 3, "v": [0.0, 0.0]}


ROUNDS = 200


def test_two_threads_tracing_and_running_host_calls_in_loops_get_their_own_outcomes():
    """Issue 21: two threads each trace, lower and run a new compiled function ROUNDS times,
    with a host call in a scan body; one thread's host function raises, the other's returns
    the round number. Each call gives its own thread's result or error: the host function
    belongs to the function that traced it, and a failure travels with the step that ran it."""
    barrier = threading.Barrier(2)
    outcomes: dict[int, list[str]] = {0: [], 1: []}

    def run(number: int) -> None:
        barrier.wait(60)
        for round_ in range(ROUNDS):

            def host_fn(c, round_=round_):
                if number == 1:
                    raise ThreadError(round_)
                return c + round_

            def body(c, _):
                shape = fj.ShapeDtype((2,), F32)
                return fj.host_call(host_fn, c, result_shape_dtypes=shape), None

            step = fj.compile(lambda x: fj.scan(body, x, None, length=2)[0])
            try:
                got = np.asarray(step(np.zeros(2, F32))).tolist()
                outcomes[number].append("own" if got == [2 * round_] * 2 else f"result {got}")
            except fj.HostCallError as err:
                own = isinstance(err.__cause__, ThreadError) and err.__cause__.number == round_
                outcomes[number].append("own" if own and number == 1 else f"error: {err}")
            except Exception as err:
                outcomes[number].append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert not any(thread.is_alive() for thread in threads)
    for number in (0, 1):
        wrong = [outcome for outcome in outcomes[number] if outcome != "own"]
        assert len(outcomes[number]) == ROUNDS
        assert wrong == [], f"thread {number}: {len(wrong)} of {ROUNDS}: {wrong[:3]}"
