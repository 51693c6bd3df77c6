"""The workloads of the benchmark suite, as plain data every peer (flowjit, jax.jit,
TensorFlow) builds its own step from: shapes, hyperparameters, initial weights and batches,
all numpy, all from fixed seeds, so that every peer computes the same function from the same
start and their losses can be compared.

Each peer implements, per workload, ``step(params_state, batch) -> loss`` with the update
rule given here (SGD: w -= LR * g; Adam: as in ``adam`` below) and runs it on
``batches(name, n)``."""

from __future__ import annotations

import numpy as np

# -- MLP: 784-512-512-10, batch 128, SGD, softmax cross-entropy ---------------------------
MLP_SIZES = (784, 512, 512, 10)
MLP_BATCH, MLP_LR = 128, 0.01

# -- CNN: conv 3x3 3->32 + relu + 2x2 max pool, conv 3x3 32->64 + relu + 2x2 max pool, dense
#    8*8*64 -> 10; NHWC 32x32x3, batch 64, SAME padding, stride 1, SGD ------------------------
CNN_IMAGE, CNN_CHANNELS, CNN_BATCH, CNN_LR = 32, (3, 32, 64), 64, 0.01
CNN_CLASSES = 10

# -- LSTM language model: vocab 10k, embed 256, hidden 256, seq 20, batch 32, Adam ------------
LSTM_VOCAB, LSTM_EMBED, LSTM_HIDDEN, LSTM_SEQ, LSTM_BATCH = 10_000, 256, 256, 20, 32
ADAM_LR, ADAM_B1, ADAM_B2, ADAM_EPS = 1e-3, 0.9, 0.999, 1e-8

CHECKED_STEPS = 10  # every peer's losses over this many steps must agree
LOSS_RTOL = 1e-4


def _normal(rng: np.random.Generator, shape: tuple, scale: float) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def mlp_params(seed: int = 0) -> list[np.ndarray]:
    """[w1, b1, w2, b2, w3, b3]; logits = relu(relu(x @ w1 + b1) @ w2 + b2) @ w3 + b3."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(MLP_SIZES, MLP_SIZES[1:]):
        params += [
            _normal(rng, (fan_in, fan_out), 1 / np.sqrt(fan_in)),
            np.zeros(fan_out, np.float32),
        ]
    return params


def cnn_params(seed: int = 0) -> list[np.ndarray]:
    """[k1 (3,3,3,32) HWIO, c1, k2 (3,3,32,64), c2, w (4096, 10), b]:
    h = max_pool(relu(conv(x, k1) + c1)); h = max_pool(relu(conv(h, k2) + c2));
    logits = h.reshape(batch, -1) @ w + b (the reshape flattens NHWC in row-major order)."""
    rng = np.random.default_rng(seed)
    c0, c1, c2 = CNN_CHANNELS
    side = CNN_IMAGE // 4
    return [
        _normal(rng, (3, 3, c0, c1), np.sqrt(2 / (9 * c0))),
        np.zeros(c1, np.float32),
        _normal(rng, (3, 3, c1, c2), np.sqrt(2 / (9 * c1))),
        np.zeros(c2, np.float32),
        _normal(rng, (side * side * c2, CNN_CLASSES), np.sqrt(1 / (side * side * c2))),
        np.zeros(CNN_CLASSES, np.float32),
    ]


def lstm_params(seed: int = 0) -> dict[str, np.ndarray]:
    """Embedding, one LSTM layer (gates i, f, g, o side by side in w_x, w_h, b) and the output
    layer. Per step: z = x @ w_x + h @ w_h + b; i, f, g, o = split(z, 4); c = sigmoid(f) * c +
    sigmoid(i) * tanh(g); h = sigmoid(o) * tanh(c); starting from h = c = 0. The loss is the
    mean softmax cross-entropy of h @ w_out + b_out against the next token."""
    rng = np.random.default_rng(seed)
    e, h, v = LSTM_EMBED, LSTM_HIDDEN, LSTM_VOCAB
    return {
        "embed": _normal(rng, (v, e), 0.1),
        "w_x": _normal(rng, (e, 4 * h), 1 / np.sqrt(e)),
        "w_h": _normal(rng, (h, 4 * h), 1 / np.sqrt(h)),
        "b": np.zeros(4 * h, np.float32),
        "w_out": _normal(rng, (h, v), 1 / np.sqrt(h)),
        "b_out": np.zeros(v, np.float32),
    }


def batches(name: str, count: int, seed: int = 1) -> list[tuple[np.ndarray, ...]]:
    """``count`` batches of workload ``name``: (x float32, y int32) for mlp and cnn, (tokens
    int32 of shape (batch, seq + 1),) for lstm: inputs are the first seq, targets the last."""
    rng = np.random.default_rng(seed)
    if name == "mlp":
        return [
            (
                _normal(rng, (MLP_BATCH, MLP_SIZES[0]), 1.0),
                rng.integers(0, 10, MLP_BATCH).astype(np.int32),
            )
            for _ in range(count)
        ]
    if name == "cnn":
        shape = (CNN_BATCH, CNN_IMAGE, CNN_IMAGE, CNN_CHANNELS[0])
        # pixels in [0, 0.1): small enough that SGD at CNN_LR moves smoothly (random labels)
        return [
            (
                (rng.random(shape) * 0.1).astype(np.float32),
                rng.integers(0, CNN_CLASSES, CNN_BATCH).astype(np.int32),
            )
            for _ in range(count)
        ]
    if name == "lstm":
        p = 1 / np.arange(1, LSTM_VOCAB + 1)  # Zipf's law, as words are: the loss falls early
        return [
            (rng.choice(LSTM_VOCAB, (LSTM_BATCH, LSTM_SEQ + 1), p=p / p.sum()).astype(np.int32),)
            for _ in range(count)
        ]
    raise ValueError(f"no workload {name!r}")


def adam(param, grad, m, v, t: int, xp=np):
    """One Adam update (t counts from 1), in any array namespace ``xp``: (param, m, v)."""
    m = ADAM_B1 * m + (1 - ADAM_B1) * grad
    v = ADAM_B2 * v + (1 - ADAM_B2) * grad * grad
    m_hat = m / (1 - ADAM_B1**t)
    v_hat = v / (1 - ADAM_B2**t)
    return param - ADAM_LR * m_hat / (xp.sqrt(v_hat) + ADAM_EPS), m, v
