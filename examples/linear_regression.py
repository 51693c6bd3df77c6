"""Train a linear model with flowjit Variables and hand-written gradients, checkpoint it,
restore it, and check the fit against numpy's least-squares solution.

    python examples/linear_regression.py [--steps N] [--features F] [--checkpoints DIR]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

import flowjit as fj


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--checkpoints", default=None, help="directory (default: a temp dir)")
    opts = parser.parse_args()

    rng = fj.random.Generator(0)
    true_w = rng.normal((opts.features,))
    x = rng.normal((512, opts.features))
    y = x @ true_w + 0.5 + 0.01 * rng.normal((512,))

    w = fj.Variable(np.zeros(opts.features, np.float32), name="w")
    b = fj.Variable(0.0, name="b")

    @fj.compile
    def train_step(x, y, lr):
        error = x @ w + b - y  # gradients of the mean squared error, written by hand
        w.assign_sub(lr * 2 * (x.T @ error) / x.shape[0])
        b.assign_sub(lr * 2 * error.mean())
        return (error * error).mean()

    for step in range(opts.steps):
        loss = train_step(x, y, 0.1)
        if step % max(1, opts.steps // 5) == 0:
            print(f"step {step:4d}: loss {float(loss):.6f}")

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = fj.Checkpoint(opts.checkpoints or tmp, [w, b], max_to_keep=2)
        ckpt.save(opts.steps)
        trained = np.asarray(w).copy()
        w.assign(np.zeros(opts.features, np.float32))
        restored_step = ckpt.restore()
        assert restored_step == opts.steps and np.array_equal(np.asarray(w), trained)
        print(f"checkpoint steps {ckpt.steps()}: restored step {restored_step} bit-exactly")
        ckpt.close()

    design = np.concatenate([np.asarray(x), np.ones((512, 1), np.float32)], 1).astype(np.float64)
    solution = np.linalg.lstsq(design, np.asarray(y, np.float64), rcond=None)[0]
    error = max(np.abs(np.asarray(w) - solution[:-1]).max(), abs(float(b.value) - solution[-1]))
    print(f"final loss {float(loss):.6f}; max distance to least squares {error:.2e}")
    assert error < 1e-3, error
    print("matches numpy")


if __name__ == "__main__":
    main()
