"""Run by test_compile_cache.py: ``cache_script.py FOLDER [OTHER]``. Compiles and runs a
training step with the persistent compilation cache in FOLDER (through FLOWJIT_CACHE_DIR, set
by the test), then, given OTHER, points fj.config's cache_dir there and compiles another
function. Prints one JSON line: jax's cache events per phase and the results; with SHOW_HLO set
in the environment, also the step's ``Compiled.hlo()`` and this file's path."""

from __future__ import annotations

import json
import os
import sys

import numpy as np

import flowjit as fj
import flowjit.numpy as fnp
from flowjit.backends.xla.jaxshim import jax

events: list[str] = []
jax.monitoring.register_event_listener(lambda name, **_: events.append(name))


def hits_and_misses() -> dict:
    found = {
        "hits": events.count("/jax/compilation_cache/cache_hits"),
        "misses": events.count("/jax/compilation_cache/cache_misses"),
    }
    events.clear()
    return found


rng = np.random.default_rng(0)
w = fj.Variable(rng.standard_normal((256, 256)).astype(np.float32) / 16, name="w")


@fj.compile
def step(x):  # (a few layers: long enough to compile, > 10 ms, to be cached)
    h = x
    for _ in range(4):
        h = fnp.tanh(h @ w @ w) + fnp.sin(h)
    loss = h.sum()
    w.assign_sub(0.01 * fj.gradients(loss, [w])[0])
    return loss


x = rng.standard_normal((64, 256)).astype(np.float32)
report = {"losses": [float(step(x)) for _ in range(3)], "step": hits_and_misses()}
if os.environ.get("SHOW_HLO"):
    report["hlo"], report["file"] = step.lower(x).compile().hlo(), __file__
    hits_and_misses()
if len(sys.argv) > 2:
    fj.config.update("cache_dir", sys.argv[2])
    # (a gradient through a few layers: long enough to compile, > 10 ms, to be cached)
    def layers(a):
        h = a
        for _ in range(4):
            h = fnp.tanh(fnp.sin(h @ a.T @ a) @ a.T) @ fnp.cos(a)
        return h.sum()

    other = fj.compile(fj.grad(layers))
    report["other"] = float(other(x).sum())
    report["after_update"] = hits_and_misses()
print(json.dumps(report))
