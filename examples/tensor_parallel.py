"""Train an MLP on the digits over a 2D mesh of devices, data x model: batches split on "data",
and the layers split Megatron style on "model" (the first layer's weight and bias by output
columns, the second layer's weight by input rows), so no device holds a whole weight. Then
train it again on one device from the same weights and batches, and compare.

python examples/tensor_parallel.py [--epochs N] [--hidden H] [--batch B] [--lr LR]
"""

from __future__ import annotations

import contextlib
import re
import time

import _parallel  # (first: on a CPU it simulates 8 devices)
import numpy as np

import flowjit as fj
import flowjit.numpy as fnp

# how each weight is laid out over the mesh; b2 (10 numbers) is replicated
SHARDINGS = {"w1": fj.P(None, "model"), "b1": fj.P("model"), "w2": fj.P("model", None)}


def train(initial, data, opts, mesh=None):
    """Train the MLP from the ``initial`` weights with Adam, SPMD over ``mesh`` (sharded as
    SHARDINGS says) or on one device: the per-step losses, the final weights, the test
    accuracy, the variables and the compiled training step."""
    test_x, test_y = data[2:]
    with mesh if mesh is not None else contextlib.nullcontext():
        params = [
            fj.Variable(
                value, name=name, sharding=SHARDINGS.get(name) if mesh is not None else None
            )
            for name, value in initial.items()
        ]
    w1, b1, w2, b2 = params
    optimizer = fj.optim.Adam(opts.lr)  # its slots are sharded like their variables

    def logits(x, rows="data"):
        h = fj.nn.relu(x @ w1 + b1)  # each device computes its columns of h...
        if mesh is not None:  # (rows split by ``rows``, columns by "model")
            h = fj.with_sharding(h, fj.P(rows, "model"))
        return h @ w2 + b2  # ...and the partial products over "model" are summed

    over_mesh = {}
    if mesh is not None:
        batch_split = (fj.P("data"), fj.P("data"))
        over_mesh = dict(mesh=mesh, in_shardings=batch_split, out_shardings=fj.P())

    @fj.compile(**over_mesh)
    def train_step(x, y):
        loss = fj.nn.softmax_cross_entropy(logits(x), y).mean()
        optimizer.apply(fj.gradients(loss, params), params)
        return loss

    @fj.compile(mesh=mesh)  # the test set (359 digits) does not split evenly: not on "data"
    def accuracy(x, y):
        return (fnp.argmax(logits(x, rows=None), axis=-1) == y).astype(fnp.float32).mean()

    losses = _parallel.train_loop(train_step, data, opts)
    weights = {p.name: np.asarray(p.value) for p in params}
    test_accuracy = float(accuracy(test_x, test_y))
    return losses, weights, test_accuracy, params, train_step


def describe(variable) -> str:
    """Where a variable's shards live, e.g. "w1 (64, 128): shards (64, 64) on devices [0, 1,
    ...]; [:, 0:64] on [0, 2, ...], [:, 64:128] on [1, 3, ...]"."""
    shards = variable.value.addressable_shards
    shapes = ", ".join(map(str, sorted({s.data.shape for s in shards})))
    text = f"{variable.name} {variable.shape}: shards {shapes} on devices "
    text += str(sorted(s.device.id for s in shards))
    parts: dict[str, list[int]] = {}  # which part of the value each device holds
    for s in shards:
        index = ", ".join(
            ":" if (i.start or 0) == 0 and i.stop in (None, n) else f"{i.start}:{i.stop}"
            for i, n in zip(s.index, variable.shape)
        )
        parts.setdefault(f"[{index}]", []).append(s.device.id)
    if len(parts) > 1:
        text += "; " + ", ".join(f"{part} on {sorted(ids)}" for part, ids in parts.items())
    return text


def main() -> None:
    parser = _parallel.options(__doc__)
    opts = parser.parse_args()
    start = time.perf_counter()

    devices = fj.devices()
    model = 2 if len(devices) % 2 == 0 else 1
    mesh = fj.Mesh(np.array(devices).reshape(len(devices) // model, model), ("data", "model"))
    print(f"{len(devices)} device(s) ({devices[0].platform}), mesh {mesh}")
    # every row of the mesh gets an equal slice of the batch
    _parallel.round_batch(opts, mesh.shape["data"], "rows of the mesh")
    if opts.hidden % model:
        parser.error(f"--hidden must be a multiple of the model axis ({model})")
    data, initial = _parallel.digits_and_weights(opts.hidden)

    losses, weights, test_accuracy, params, train_step = train(initial, data, opts, mesh)
    print(
        f"test accuracy {test_accuracy:.4f} on {len(data[3])} digits "
        f"({opts.epochs} epochs, {len(losses)} steps, {time.perf_counter() - start:.1f}s)"
    )
    for p in params:
        print(describe(p))
    hlo = train_step.lower(data[0][: opts.batch], data[1][: opts.batch]).compile().hlo()
    collectives = sorted(set(re.findall(r"\b(all-reduce|all-gather|reduce-scatter)\b", hlo)))
    print(f"compiled step's collectives: {', '.join(collectives) or 'none'}")

    one = train(initial, data, opts)[:3]  # no mesh
    _parallel.compare_with_one_device("tensor-parallel", (losses, weights, test_accuracy), one)


if __name__ == "__main__":
    main()
