"""Train the digits MLP data-parallel over all devices: each device takes a slice of every
batch, the weights are replicated, and XLA sums the gradients across devices (an all-reduce).
Then train it again on one device from the same weights and batches, and compare.

python examples/data_parallel.py [--epochs N] [--hidden H] [--batch B] [--lr LR] [--distributed]

With --distributed, every process of a multi-process run (each host of a Cloud TPU pod slice,
docs/tpu.md) runs this same command; the mesh then spans all their devices.
"""

from __future__ import annotations

import time

import _parallel  # (first: on a CPU it simulates 8 devices)
import numpy as np

import flowjit as fj
import flowjit.numpy as fnp


def train(initial, data, opts, mesh=None):
    """Train the MLP from the ``initial`` weights with Adam, SPMD over ``mesh`` (batches split
    on its "data" axis) or on one device: the per-step losses, the final weights, the test
    accuracy and the compiled training step."""
    test_x, test_y = data[2:]
    params = [fj.Variable(value, name=name) for name, value in initial.items()]
    w1, b1, w2, b2 = params  # no sharding: a mesh function replicates them at its first call
    optimizer = fj.optim.Adam(opts.lr)

    def logits(x):
        return fj.nn.relu(x @ w1 + b1) @ w2 + b2

    over_mesh = {}
    if mesh is not None:
        batch_split = (fj.P("data"), fj.P("data"))  # x and y: rows split over the devices
        over_mesh = dict(mesh=mesh, in_shardings=batch_split, out_shardings=fj.P())

    @fj.compile(**over_mesh)
    def train_step(x, y):
        loss = fj.nn.softmax_cross_entropy(logits(x), y).mean()
        optimizer.apply(fj.gradients(loss, params), params)
        return loss

    @fj.compile(mesh=mesh)  # the test set (359 digits) does not split evenly: replicated
    def accuracy(x, y):
        return (fnp.argmax(logits(x), axis=-1) == y).astype(fnp.float32).mean()

    losses = _parallel.train_loop(train_step, data, opts)
    weights = {p.name: np.asarray(p.value) for p in params}
    return losses, weights, float(accuracy(test_x, test_y)), train_step


def main() -> None:
    parser = _parallel.options(__doc__)
    parser.add_argument("--distributed", action="store_true", help="join a multi-process run")
    opts = parser.parse_args()
    start = time.perf_counter()
    if opts.distributed:
        fj.distributed.initialize()  # before anything touches the devices

    devices = fj.devices()
    mesh = fj.Mesh(np.array(devices), ("data",))
    print(f"{len(devices)} device(s) ({devices[0].platform}), mesh {mesh}")
    _parallel.round_batch(opts, len(devices), "devices")  # each device an equal slice
    data, initial = _parallel.digits_and_weights(opts.hidden)

    losses, weights, test_accuracy, train_step = train(initial, data, opts, mesh)
    print(
        f"test accuracy {test_accuracy:.4f} on {len(data[3])} digits "
        f"({opts.epochs} epochs, {len(losses)} steps of {opts.batch // len(devices)} digits "
        f"per device, {time.perf_counter() - start:.1f}s)"
    )
    hlo = train_step.lower(data[0][: opts.batch], data[1][: opts.batch]).compile().hlo()
    print(f"compiled step holds an all-reduce: {'all-reduce' in hlo}")

    one = train(initial, data, opts)[:3]  # no mesh
    _parallel.compare_with_one_device("data-parallel", (losses, weights, test_accuracy), one)


if __name__ == "__main__":
    main()
