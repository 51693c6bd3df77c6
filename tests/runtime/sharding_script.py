"""Run by test_sharding.py in a fresh process with 8 virtual CPU devices: trains small MLPs
on one device and SPMD over meshes (data parallel, tensor parallel, 2D), places sharded
variables, saves and restores them, and provokes bad shardings; prints one JSON report."""

from __future__ import annotations

import json
import os
import sys
import tempfile

assert "--xla_force_host_platform_device_count=8" in os.environ.get("XLA_FLAGS", "")

import numpy as np  # noqa: E402

import flowjit as fj  # noqa: E402
import flowjit.numpy as fnp  # noqa: E402

STEPS = 20
rng = np.random.default_rng(0)
X = rng.standard_normal((32, 16)).astype(np.float32)
Y = rng.integers(0, 4, 32).astype(np.int32)
INIT = {
    "w1": (rng.standard_normal((16, 32)) / 4).astype(np.float32),
    "b1": np.zeros(32, np.float32),
    "w2": (rng.standard_normal((32, 4)) / 6).astype(np.float32),
    "b2": np.zeros(4, np.float32),
}
devices = fj.devices()
report: dict = {"device_count": len(devices)}


def train(mesh=None, specs=None, x_spec=None, hidden_spec=None, optimizer=fj.optim.Adam):
    """Train the MLP for STEPS steps: the losses, the final weights, the variables, the
    compiled step and the optimizer."""
    specs = specs or {}
    with mesh if mesh is not None else _nothing():
        params = {k: fj.Variable(v, name=k, sharding=specs.get(k)) for k, v in INIT.items()}
    opt = optimizer(0.05)

    def loss_fn(x, y):
        h = fj.nn.relu(x @ params["w1"] + params["b1"])
        if hidden_spec is not None:
            h = fj.with_sharding(h, hidden_spec)
        logits = h @ params["w2"] + params["b2"]
        return fj.nn.softmax_cross_entropy(logits, y).mean()

    options = {}
    if mesh is not None:
        options = dict(mesh=mesh, in_shardings=(x_spec, x_spec), out_shardings=fj.P())

    @fj.compile(**options)
    def step(x, y):
        loss = loss_fn(x, y)
        variables = list(params.values())
        opt.apply(fj.gradients(loss, variables), variables)
        return loss

    losses = [float(step(X, Y)) for _ in range(STEPS)]
    weights = {k: np.asarray(v.value) for k, v in params.items()}
    return losses, weights, params, step, opt


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def compare(name, run, reference):
    losses, weights = run[0], run[1]
    ref_losses, ref_weights = reference[0], reference[1]
    report[name] = {
        "losses_close": bool(np.allclose(losses, ref_losses, rtol=1e-5, atol=1e-6)),
        "weights_close": all(
            np.allclose(weights[k], ref_weights[k], rtol=1e-5, atol=1e-6) for k in weights
        ),
        "max_loss_diff": float(np.max(np.abs(np.subtract(losses, ref_losses)))),
        "loss_first_last": [losses[0], losses[-1]],
    }


one = train()
report["one_device_losses"] = one[0]

# data parallel: batch over all 8 devices, weights replicated
dp_mesh = fj.Mesh(np.array(devices), ("data",))
dp = train(dp_mesh, x_spec=fj.P("data"))
compare("data_parallel", dp, one)
hlo = dp[3].lower(X, Y).compile().hlo()
report["data_parallel"]["all_reduce"] = "all-reduce" in hlo
report["data_parallel"]["w1_sharding"] = str(dp[2]["w1"].value.sharding.spec)
report["data_parallel"]["w1_devices"] = len(dp[2]["w1"].value.sharding.device_set)

# tensor parallel: hidden units over 8 devices (Megatron: w1 by columns, w2 by rows)
tp_mesh = fj.Mesh(np.array(devices), ("model",))
tp_specs = {"w1": fj.P(None, "model"), "b1": fj.P("model"), "w2": fj.P("model", None)}
tp = train(tp_mesh, tp_specs, x_spec=fj.P())
compare("tensor_parallel", tp, one)
# the optimizer's state (optax's Adam moments) is laid out as its variable
report["tensor_parallel"]["w1_moments_sharding"] = [
    str(tp[4].slots(tp[2]["w1"])[name].value.sharding.spec) for name in ("mu", "nu")
]

# 2D: 4 (data) x 2 (model), with a constraint on the hidden activations
mesh2 = fj.Mesh(np.array(devices).reshape(4, 2), ("data", "model"))
specs2 = {"w1": fj.P(None, "model"), "b1": fj.P("model"), "w2": fj.P("model", None)}
two_d = train(
    mesh2, specs2, x_spec=fj.P("data"), hidden_spec=fj.P("data", "model"), optimizer=fj.optim.SGD
)
compare("mesh_2d", two_d, train(optimizer=fj.optim.SGD))
lowered = two_d[3].lower(X, Y)
report["mesh_2d"]["ir_has_with_sharding"] = 'spec="[{data}, {model}]"' in lowered.ir()
report["mesh_2d"]["stablehlo_has_sdy"] = "sdy.sharding_constraint" in lowered.stablehlo()

# where the shards of a sharded variable sit (device ids in the mesh's order)
w1 = two_d[2]["w1"].value
report["shards"] = sorted(
    (s.device.id, list(s.data.shape), str(s.index)) for s in w1.addressable_shards
)
report["mesh_2d"]["w1_sharding"] = str(w1.sharding.spec)

# a variable sharded at creation is never whole on one device
with mesh2:
    big = fj.Variable(
        np.arange(64 * 8, dtype=np.float32).reshape(64, 8), sharding=fj.P("data", "model")
    )
report["created_shards"] = sorted({tuple(s.data.shape) for s in big.value.addressable_shards})
big.assign_add(np.ones(8, np.float32))  # eager updates keep the layout
report["eager_update_sharding"] = str(big.value.sharding.spec)
report["eager_update_right"] = bool(
    np.array_equal(np.asarray(big.value), np.arange(64 * 8, dtype=np.float32).reshape(64, 8) + 1)
)

# checkpoints: save sharded variables, restore them into new sharded variables
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "ckpt.safetensors")
    fj.save(path, [two_d[2]["w1"], big])
    with mesh2:
        w1_new = fj.Variable(
            np.zeros((16, 32), np.float32), name="w1", sharding=fj.P(None, "model")
        )
        big_new = fj.Variable(np.zeros((64, 8), np.float32), name=big.name, sharding=fj.P("data"))
    fj.restore(path, [w1_new, big_new])
    report["restored"] = {
        "w1_equal": bool(np.array_equal(np.asarray(w1_new.value), np.asarray(w1))),
        "w1_sharding": str(w1_new.value.sharding.spec),
        "big_equal": bool(np.array_equal(np.asarray(big_new.value), np.asarray(big.value))),
        "big_sharding": str(big_new.value.sharding.spec),
        "big_shard_shapes": sorted({tuple(s.data.shape) for s in big_new.value.addressable_shards}),
    }

# a host call between two SPMD clusters (the step runs cluster by cluster)
with mesh2:
    v = fj.Variable(np.ones((8, 4), np.float32), name="v", sharding=fj.P("data"))


@fj.compile(mesh=mesh2, in_shardings=(fj.P("data"),), out_shardings=fj.P("data"))
def with_host(x):
    scale = fj.host_call(
        lambda a: np.float32(np.abs(a).max()), x, result_shape_dtypes=fj.ShapeDtype((), np.float32)
    )
    v.assign(v * 2 + x / scale)
    return v * 1


xs = np.arange(32, dtype=np.float32).reshape(8, 4)
out = with_host(xs)
report["host_call"] = {
    "equal": bool(np.allclose(np.asarray(out), 2 + xs / 31)),
    "out_sharding": str(out.sharding.spec),
    "v_sharding": str(v.value.sharding.spec),
    "marked_spmd": 'device("mesh(data=4, model=2)")' in with_host.lower(xs).ir(),
}


# shardings as trees: a dict argument with a spec per entry, a static argument, a single spec
# for every argument, a tuple of results with a spec each
@fj.compile(
    mesh=mesh2,
    static_argnums=1,
    in_shardings=({"x": fj.P("data"), "y": fj.P()}, fj.P(None, "model")),
    out_shardings=(fj.P("data"), fj.P()),
)
def trees(batch, power, w):
    return batch["x"] ** power @ w, (batch["y"] * 2).sum()


bx, by, bw = (
    np.ones((8, 4), np.float32) * 2,
    np.arange(6, dtype=np.float32),
    np.ones((4, 6), np.float32),
)
first, second = trees({"x": bx, "y": by}, 3, bw)


@fj.compile(mesh=mesh2, in_shardings=fj.P("data"))
def every_argument(a, b):
    return a + b


both = every_argument(np.ones((8, 2), np.float32), np.ones((8, 2), np.float32))
report["trees"] = {
    "first_equal": bool(np.allclose(np.asarray(first), (bx**3) @ bw)),
    "first_sharding": str(first.sharding.spec),
    "second_equal": float(second) == float((by * 2).sum()),
    "second_sharding": str(second.sharding.spec),
    "every_argument": str(both.sharding.spec),
    "every_argument_equal": bool(np.allclose(np.asarray(both), 2.0)),
}


# bad shardings: each a ShardingError naming the variable or argument
def error_of(fn):
    try:
        fn()
    except fj.ShardingError as err:
        return str(err)
    except Exception as err:  # reported, so that the test shows what else came
        return f"UNEXPECTED {type(err).__name__}: {err}"
    return "NO ERROR"


def bad_variable_axis():
    with mesh2:
        fj.Variable(np.zeros((8, 8), np.float32), name="emb", sharding=fj.P(None, "modle"))


def bad_variable_divisible():
    with mesh2:
        fj.Variable(np.zeros((6, 8), np.float32), name="table", sharding=fj.P("data"))


def bad_argument_divisible():
    @fj.compile(mesh=mesh2, in_shardings=(fj.P("data"),))
    def f(batch):
        return batch * 2

    f(np.zeros((6, 3), np.float32))


def bad_argument_axis():
    fj.compile(lambda x: x, mesh=mesh2, in_shardings=(fj.P("rows"),))


def bad_with_sharding():
    @fj.compile(mesh=mesh2)
    def f(x):
        return fj.with_sharding(x * 2, fj.P("model", "data"))

    f(np.zeros((3, 4), np.float32))


def variable_without_mesh():
    fj.Variable(np.zeros((8, 8), np.float32), name="lonely", sharding=fj.P("data"))


def spec_without_mesh():
    fj.compile(lambda x: x, in_shardings=(fj.P("data"),))


def too_long_spec():
    with mesh2:
        fj.Variable(np.zeros(8, np.float32), name="bias", sharding=fj.P("data", "model"))


def by_keyword():
    @fj.compile(mesh=mesh2, in_shardings=(fj.P("data"),))
    def f(x):
        return x * 2

    f(x=np.ones((8, 2), np.float32))


def too_few_shardings():
    @fj.compile(mesh=mesh2, in_shardings=(fj.P("data"),))
    def f(x, y):
        return x * y

    f(np.ones((8, 2), np.float32), np.ones((8, 2), np.float32))


def bad_result_sharding():
    @fj.compile(mesh=mesh2, out_shardings=(fj.P(), fj.P("model")))
    def f(x):
        return x, x.sum(axis=0)

    f(np.ones((8, 3), np.float32))


def other_mesh():
    with dp_mesh:
        u = fj.Variable(np.zeros(8, np.float32), name="u", sharding=fj.P("data"))

    @fj.compile(mesh=mesh2)
    def f():
        return u * 1

    f()


report["errors"] = {
    name: error_of(fn)
    for name, fn in {
        "variable_axis": bad_variable_axis,
        "variable_divisible": bad_variable_divisible,
        "argument_divisible": bad_argument_divisible,
        "argument_axis": bad_argument_axis,
        "with_sharding": bad_with_sharding,
        "variable_without_mesh": variable_without_mesh,
        "spec_without_mesh": spec_without_mesh,
        "too_long_spec": too_long_spec,
        "other_mesh": other_mesh,
        "by_keyword": by_keyword,
        "too_few_shardings": too_few_shardings,
        "bad_result_sharding": bad_result_sharding,
    }.items()
}
print(json.dumps(report))
sys.stdout.flush()
