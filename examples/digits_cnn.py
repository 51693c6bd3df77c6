"""Train a small convolutional net (conv2d + max_pool2d) on scikit-learn's handwritten digits
with flowjit and report test accuracy.

    python examples/digits_cnn.py [--epochs N] [--batch B] [--lr LR]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _digits import Progress, batches, load

import flowjit as fj
import flowjit.numpy as fnp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    opts = parser.parse_args()
    start = time.perf_counter()

    train_x, train_y, test_x, test_y = load()
    train_x, test_x = train_x[..., None], test_x[..., None]  # NHWC, one channel
    init = fj.random.Generator(0)

    def he(shape, fan_in):
        return fj.Variable(init.normal(shape) * np.sqrt(2 / fan_in))

    k1, c1 = he((3, 3, 1, 16), 9), fj.Variable(np.zeros(16, np.float32))
    k2, c2 = he((3, 3, 16, 32), 9 * 16), fj.Variable(np.zeros(32, np.float32))
    w, b = he((2 * 2 * 32, 10), 128), fj.Variable(np.zeros(10, np.float32))
    params = [k1, c1, k2, c2, w, b]
    optimizer = fj.optim.Adam(opts.lr)

    def logits(x):
        h = fj.nn.max_pool2d(fj.nn.relu(fj.nn.conv2d(x, k1) + c1))  # 8x8 -> 4x4
        h = fj.nn.max_pool2d(fj.nn.relu(fj.nn.conv2d(h, k2) + c2))  # 4x4 -> 2x2
        return h.reshape(h.shape[0], -1) @ w + b

    @fj.compile
    def train_step(x, y):
        loss = fj.nn.softmax_cross_entropy(logits(x), y).mean()
        optimizer.apply(fj.gradients(loss, params), params)
        return loss

    @fj.compile
    def accuracy(x, y):
        return (fnp.argmax(logits(x), axis=-1) == y).astype(fnp.float32).mean()

    rng = np.random.default_rng(1)
    progress = Progress(opts.epochs)
    for epoch in range(opts.epochs):
        for x, y in batches(train_x, train_y, opts.batch, rng):
            loss = train_step(x, y)
        progress.update(epoch + 1, f"loss {float(loss):.4f}")
    test_accuracy = float(accuracy(test_x, test_y))
    print(
        f"test accuracy {test_accuracy:.4f} on {len(test_y)} digits "
        f"({opts.epochs} epochs, {time.perf_counter() - start:.1f}s)"
    )


if __name__ == "__main__":
    main()
