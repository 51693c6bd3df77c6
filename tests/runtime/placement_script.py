"""Run by test_placement.py in a fresh process with 8 virtual CPU devices: a step whose ops
sit in two fj.device scopes, a variable updated across them, a host call between; prints one
JSON line with where each result lives and whether it equals the one-device run."""

from __future__ import annotations

import json
import os

assert "--xla_force_host_platform_device_count=8" in os.environ.get("XLA_FLAGS", "")

import numpy as np  # noqa: E402

import flowjit as fj  # noqa: E402
import flowjit.numpy as fnp  # noqa: E402

devices = fj.devices()
rng = np.random.default_rng(0)
W0 = rng.standard_normal((8, 8)).astype(np.float32)
X = rng.standard_normal((4, 8)).astype(np.float32)


def model(w, x, placed: bool):
    first = fj.device(devices[3]) if placed else _nowhere()
    second = fj.device(devices[5]) if placed else _nowhere()
    with first:
        h = fnp.tanh(x @ w)
    # (no gradient through the host call: it only rescales)
    scale = fj.host_call(
        largest, fj.stop_gradient(h), result_shape_dtypes=fj.ShapeDtype((), np.float32)
    )
    with second:
        y = (h / scale) @ w.T
    loss = (y**2).mean()
    w.assign_sub(0.1 * fj.gradients(loss, [w])[0])
    return h, y, loss


def largest(a: np.ndarray) -> np.float32:
    return np.float32(np.abs(a).max())


class _nowhere:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


def run(placed: bool):
    w = fj.Variable(W0, name="w")
    step = fj.compile(lambda x: model(w, x, placed))
    outs = [step(X) for _ in range(3)][-1]
    return step, outs, np.asarray(w.value)


placed_step, placed_outs, placed_w = run(True)
_, plain_outs, plain_w = run(False)
graph = fj.ir.parse(placed_step.lower(X).ir())
pairs = list(zip(placed_outs, plain_outs)) + [(placed_w, plain_w)]
print(
    json.dumps(
        {
            "devices": [sorted(d.id for d in out.devices()) for out in placed_outs],
            "equal": [bool(np.allclose(a, b, rtol=1e-5, atol=1e-6)) for a, b in pairs],
            "ops": [op.opdef.name for op in graph.ops],
            "cluster_devices": [op.device for op in graph.ops if op.opdef.name == "cluster"],
            "transfers": [op.attrs["device"] for op in graph.ops if op.opdef.name == "transfer"],
        }
    )
)
