"""Run by test_no_growth.py in a fresh process: create, call and drop N compiled functions
(each with a variable, a host call inside an fj.scan and one between clusters); print the live
Cluster, Graph and host-function objects (after gc.collect(), and after jax.clear_caches(): what jax caches by
a cluster is what keeps it alive) before and after, as one JSON line."""

from __future__ import annotations

import gc
import json
import sys

import jax
import numpy as np

import flowjit as fj
import flowjit.numpy as fnp
from flowjit.backends.xla import Cluster
from flowjit.compiler.host import HostFunction
from flowjit.ir import Graph


def live() -> dict:
    gc.collect()
    objects = gc.get_objects()
    return {
        "clusters": sum(isinstance(o, Cluster) for o in objects),
        "graphs": sum(isinstance(o, Graph) for o in objects),
        "host_functions": sum(isinstance(o, HostFunction) for o in objects),
    }


def make_and_run(i: int) -> None:
    w = fj.Variable(np.ones(3, np.float32), name=f"w{i}")

    @fj.compile
    def step(x):
        def body(c, xi):
            return c + fj.host_call(np.tanh, xi, result_shape_dtypes=xi), c

        s, _ = fj.scan(body, fnp.zeros(3), x)
        w.assign_add(s + i)
        return fj.host_call(np.sin, s, result_shape_dtypes=s)

    step(np.ones((2, 3), np.float32))


make_and_run(-1)
jax.clear_caches()
before = live()
for i in range(int(sys.argv[1])):
    make_and_run(i)
held_by_jax = live()
jax.clear_caches()
print(json.dumps({"before": before, "held_by_jax": held_by_jax, "after": live()}))
