"""Train an MLP on scikit-learn's handwritten digits with flowjit and report test accuracy.

python examples/digits_mlp.py [--epochs N] [--hidden H] [--batch B] [--lr LR]
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
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    opts = parser.parse_args()
    start = time.perf_counter()

    train_x, train_y, test_x, test_y = load()
    train_x, test_x = train_x.reshape(len(train_x), -1), test_x.reshape(len(test_x), -1)
    init = fj.random.Generator(0)
    w1 = fj.Variable(init.normal((64, opts.hidden)) * math.sqrt(2 / 64), name="w1")
    b1 = fj.Variable(np.zeros(opts.hidden, np.float32), name="b1")
    w2 = fj.Variable(init.normal((opts.hidden, 10)) * math.sqrt(1 / opts.hidden), name="w2")
    b2 = fj.Variable(np.zeros(10, np.float32), name="b2")
    params = [w1, b1, w2, b2]

    def logits(x):
        return fj.nn.relu(x @ w1 + b1) @ w2 + b2

    train_and_evaluate(logits, params, (train_x, train_y, test_x, test_y), opts, start)


if __name__ == "__main__":
    main()
