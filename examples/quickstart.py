"""flowjit quickstart: compile a small classifier's forward pass, run it, read its IR.

python examples/quickstart.py [--batch N] [--show-ir]
"""

from __future__ import annotations

import argparse

import numpy as np

import flowjit as fj
import flowjit.numpy as fnp


@fj.compile
def predict(params, images, labels):
    """A two-layer MLP: returns the mean loss and the accuracy of the batch."""
    hidden = fj.nn.relu(images @ params["w1"] + params["b1"])
    logits = hidden @ params["w2"] + params["b2"]
    loss = fj.nn.softmax_cross_entropy(logits, labels).mean()
    accuracy = (fnp.argmax(logits, axis=-1) == labels).astype(fnp.float32).mean()
    return loss, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--show-ir", action="store_true", help="print the optimized IR")
    opts = parser.parse_args()

    rng = np.random.default_rng(0)
    params = {
        "w1": (rng.standard_normal((784, 128)) * 0.05).astype(np.float32),
        "b1": np.zeros(128, np.float32),
        "w2": (rng.standard_normal((128, 10)) * 0.05).astype(np.float32),
        "b2": np.zeros(10, np.float32),
    }
    for step in range(3):
        images = rng.standard_normal((opts.batch, 784)).astype(np.float32)
        labels = rng.integers(0, 10, opts.batch).astype(np.int32)
        loss, accuracy = predict(params, images, labels)
        print(f"batch {step}: loss {float(loss):.4f}  accuracy {float(accuracy):.3f}")

    # the same computation in numpy, to show the compiled result is right
    hidden = np.maximum(images @ params["w1"] + params["b1"], 0)
    logits = hidden @ params["w2"] + params["b2"]
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    expected = -logp[np.arange(opts.batch), labels].mean()
    assert abs(float(loss) - expected) < 1e-4, (float(loss), expected)
    print(f"matches numpy: {expected:.4f}")

    lowered = predict.lower(params, images, labels)
    ir_text = lowered.ir()
    if opts.show_ir:
        print(ir_text)
    print(f"IR: {ir_text.count(' = ')} ops; {predict.cache_info()}")


if __name__ == "__main__":
    main()
