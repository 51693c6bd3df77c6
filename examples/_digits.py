"""Shared by the digits examples: scikit-learn's bundled handwritten digits (no download),
split into train and test sets, batches, a progress bar, and the training loop."""

from __future__ import annotations

import sys
import time
from typing import Iterator

import numpy as np


def load(test_fraction: float = 0.2, seed: int = 0):
    """(train_x, train_y, test_x, test_y): 8x8 images scaled to [0, 1], int32 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def batches(x: np.ndarray, y: np.ndarray, size: int, rng: np.random.Generator) -> Iterator:
    """Shuffled full batches (a fixed shape, so the step is traced once)."""
    order = rng.permutation(len(y))
    for start in range(0, len(y) - size + 1, size):
        index = order[start : start + size]
        yield x[index], y[index]


class Progress:
    """A one-line text progress bar on stderr."""

    def __init__(self, total: int, width: int = 30):
        self.total, self.width, self.start = total, width, time.perf_counter()

    def update(self, done: int, text: str) -> None:
        filled = int(self.width * done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(f"\r[{bar}] {done}/{self.total} {text} ({elapsed:.1f}s)")
        if done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def compiled_steps(logits, params, optimizer):
    """The compiled training step (``optimizer`` on the mean softmax cross-entropy of
    ``logits(x)``; returns the loss) and the compiled accuracy of ``logits``."""
    import flowjit as fj
    import flowjit.numpy as fnp

    @fj.compile
    def train_step(x, y):
        loss = fj.nn.softmax_cross_entropy(logits(x), y).mean()
        optimizer.apply(fj.gradients(loss, params), params)
        return loss

    @fj.compile
    def accuracy(x, y):
        return (fnp.argmax(logits(x), axis=-1) == y).astype(fnp.float32).mean()

    return train_step, accuracy


def train_and_evaluate(logits, params, data, opts, start: float) -> None:
    """Train ``params`` with Adam on ``softmax_cross_entropy(logits(x), y)`` for
    ``opts.epochs`` epochs of ``opts.batch``-sized batches, then print the test accuracy."""
    import flowjit as fj

    train_x, train_y, test_x, test_y = data
    train_step, accuracy = compiled_steps(logits, params, fj.optim.Adam(opts.lr))
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
