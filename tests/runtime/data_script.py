"""Run by test_data.py in a fresh process with 8 virtual CPU devices: fj.data.prefetch with a
NamedSharding, with a tree of specs under a mesh, and with a compiled function's in_shardings;
a data-parallel loop fed by prefetch against the same loop fed numpy. Prints one JSON report."""

from __future__ import annotations

import json
import os

assert "--xla_force_host_platform_device_count=8" in os.environ.get("XLA_FLAGS", "")

import numpy as np  # noqa: E402

import flowjit as fj  # noqa: E402
from flowjit.backends.xla.jaxshim import jax  # noqa: E402


def spec(array) -> str:
    sharding = array.sharding
    if isinstance(sharding, jax.sharding.NamedSharding):
        return f"P{tuple(sharding.spec)!r}"
    return type(sharding).__name__


rng = np.random.default_rng(0)
X = rng.standard_normal((6, 16, 4)).astype(np.float32)
Y = rng.standard_normal((6, 16)).astype(np.float32)
mesh = fj.Mesh(np.array(fj.devices()), ("data",))
report: dict = {}

data = fj.NamedSharding(mesh.jax, fj.P("data"))
first = next(fj.data.prefetch(zip(X, Y), sharding=data))
report["named"] = [spec(a) for a in first]
report["named_devices"] = [len(a.sharding.device_set) for a in first]

with mesh:
    pairs = ({"x": x, "y": y} for x, y in zip(X, Y))
    tree = next(fj.data.prefetch(pairs, sharding={"x": fj.P("data"), "y": None}))
report["tree"] = {"x": spec(tree["x"]), "y": spec(tree["y"])}


def losses(prefetched: bool) -> list[float]:
    w = fj.Variable(np.zeros(4, np.float32))
    opt = fj.optim.SGD(0.05)

    @fj.compile(mesh=mesh, in_shardings=(fj.P("data", None), fj.P("data")))
    def step(x, y):
        loss = ((x @ w - y) ** 2).mean()
        opt.apply(fj.gradients(loss, [w]), [w])
        return loss

    source = zip(X, Y)
    if prefetched:
        source = fj.data.prefetch(source, sharding=step)
        x0, y0 = next(fj.data.prefetch(zip(X, Y), sharding=step))
        report["from_step"] = [spec(x0), spec(y0)]
    return [float(step(x, y)) for x, y in source]


report["losses_equal"] = losses(True) == losses(False)
print(json.dumps(report))
