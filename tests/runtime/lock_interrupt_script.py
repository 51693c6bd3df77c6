"""Run by test_interrupts.py in a fresh process: Ctrl-C lands while the main thread waits for a
variable's lock. A step of another thread holds ``b`` (its host call sleeps); the main thread's
step on ``a`` and ``b`` has taken ``a`` and waits for ``b`` when SIGINT comes. After each of N
trials no lock may be left taken: another thread must get ``a`` and ``b`` (a step on them
finishes), and the variables must be readable. Prints one JSON line."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time

import numpy as np

import flowjit as fj

trials = int(sys.argv[1])
a = fj.Variable(np.zeros(4, np.float32), name="a")  # (created first: its lock is taken first)
b = fj.Variable(np.zeros(4, np.float32), name="b")


def slow(x):
    time.sleep(0.3)
    return x


@fj.compile
def hold_b(x):
    b.assign_add(fj.host_call(slow, x, result_shape_dtypes=x))
    return x


@fj.compile
def step_ab(x):
    a.assign_add(x)
    b.assign_add(x)
    return x


x = np.ones(4, np.float32)
hold_b(x), step_ab(x)  # (traced and compiled before the trials)
leaked, interrupted, rng = [], 0, random.Random(0)
for trial in range(trials):
    holder = threading.Thread(target=hold_b, args=(x,))
    holder.start()
    time.sleep(0.05)  # (the holder has b's lock now)
    timer = threading.Timer(rng.uniform(0.01, 0.2), os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        step_ab(x)
        timer.join()  # the step got b before the Ctrl-C: it lands in the loop below
        time.sleep(0.5)
    except KeyboardInterrupt:
        interrupted += 1
    timer.join()
    holder.join()
    other = threading.Thread(target=step_ab, args=(x,), daemon=True)  # needs a and b
    other.start()
    other.join(timeout=10)
    if other.is_alive():
        leaked.append(trial)
        break  # (a lock is leaked for good: later trials would only wait on it)
    np.asarray(a), np.asarray(b)
print(json.dumps({"trials": trials, "leaked": leaked, "interrupted": interrupted}))
