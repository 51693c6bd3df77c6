"""Train a small convolutional net (conv2d + max_pool2d) on scikit-learn's handwritten digits
with flowjit and report test accuracy.

    python examples/digits_cnn.py [--epochs N] [--batch B] [--lr LR]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from _digits import load, train_and_evaluate

import flowjit as fj


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
        return fj.Variable(init.normal(shape) * math.sqrt(2 / fan_in))

    k1, c1 = he((3, 3, 1, 16), 9), fj.Variable(np.zeros(16, np.float32))
    k2, c2 = he((3, 3, 16, 32), 9 * 16), fj.Variable(np.zeros(32, np.float32))
    w, b = he((2 * 2 * 32, 10), 128), fj.Variable(np.zeros(10, np.float32))
    params = [k1, c1, k2, c2, w, b]

    def logits(x):
        h = fj.nn.max_pool2d(fj.nn.relu(fj.nn.conv2d(x, k1) + c1))  # 8x8 -> 4x4
        h = fj.nn.max_pool2d(fj.nn.relu(fj.nn.conv2d(h, k2) + c2))  # 4x4 -> 2x2
        return h.reshape(h.shape[0], -1) @ w + b

    train_and_evaluate(logits, params, (train_x, train_y, test_x, test_y), opts, start)


if __name__ == "__main__":
    main()
