"""Run by test_interrupts.py in a fresh process: Ctrl-C (SIGINT, from a timer thread) lands at
random points of a tight loop of a step writing 20 variables, N times; after each, the
variables must be readable and all old or all new (one value), and fj.save must work. Prints
one JSON line."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading

import numpy as np

import flowjit as fj

trials, folder = int(sys.argv[1]), sys.argv[2]
user_calls = []
if sys.argv[3:] == ["user-handler"]:  # the user's own handler runs for each Ctrl-C

    def user_handler(signum, frame):
        user_calls.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, user_handler)

variables = [fj.Variable(np.zeros(64, np.float32), name=f"v{i}") for i in range(20)]


@fj.compile
def step(x):
    for v in variables:
        v.assign_add(x)
    return x.sum()


x = np.ones(64, np.float32)
step(x)
bad, saved, rng = [], 0, random.Random(0)
for trial in range(trials):
    timer = threading.Timer(rng.uniform(0.0005, 0.01), os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()  # (on a busy machine it may fire before start() returns)
        while True:
            step(x)
    except KeyboardInterrupt:
        deleted = [v.name for v in variables if v.value.is_deleted()]
        values = {float(np.asarray(v.value)[0]) for v in variables if v.name not in deleted}
        if deleted or len(values) != 1:
            bad.append({"trial": trial, "deleted": deleted, "values": sorted(values)})
            for v in variables:
                v.assign(np.zeros(64, np.float32))
        else:
            fj.save(os.path.join(folder, "after.safetensors"), variables)
            saved += 1
    timer.join()
print(json.dumps({"trials": trials, "bad": bad, "saved": saved, "user_calls": len(user_calls)}))
