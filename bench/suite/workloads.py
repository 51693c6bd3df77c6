"""The workloads of the benchmark suite, as plain data every peer (flowjit, jax.jit,
TensorFlow) builds its own step from: shapes, hyperparameters, initial weights and batches,
all numpy, all from fixed seeds, so that every peer computes the same function from the same
start and their losses can be compared.

Each peer implements, per workload, ``step(params_state, batch) -> loss`` with the update
rule given here (SGD: w -= LR * g; Adam: as in ``adam`` below) and runs it on
``batches(name, n)``."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import optax

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

# -- GPT (examples/gpt.py's model): bytes of the standard library's source, AdamW ------------
GPT_SIZES = {
    "small": dict(layers=4, d_model=128, heads=4, seq=128, batch=16),
    "medium": dict(layers=6, d_model=384, heads=6, seq=256, batch=8),
    "tiny": dict(layers=2, d_model=64, heads=4, seq=64, batch=8),  # (tests)
}
GPT_VOCAB, GPT_LR, GPT_SCHEDULE_STEPS = 256, 3e-3, 1000
GPT_TEXT = ("argparse.py", "dataclasses.py", "textwrap.py", "random.py")

# -- Adam over many small variables: N float32[64] vectors --------------------------------
ADAM_SIZE = 64

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


def gpt_options(name: str) -> SimpleNamespace:
    """examples/gpt.py's options of workload ``name`` (``gpt_small``, ``gpt_medium_bf16``,
    ...): its size, bfloat16 compute if named, no dropout, layers unrolled."""
    size, _, dtype = name.removeprefix("compile_").removeprefix("gpt_").partition("_")
    return SimpleNamespace(
        **GPT_SIZES[size],
        bf16=dtype == "bf16",
        dropout=0.0,
        scan=False,
        remat=False,
        lr=GPT_LR,
        steps=GPT_SCHEDULE_STEPS,
    )


def gpt_tx() -> optax.GradientTransformation:
    """examples/gpt.py's optimizer: global-norm clipping to 1, then AdamW (decay on matrices
    only) with a warmup-cosine schedule."""
    import jax

    schedule = optax.warmup_cosine_decay_schedule(
        0.0, GPT_LR, GPT_SCHEDULE_STEPS // 10, GPT_SCHEDULE_STEPS, GPT_LR / 10
    )
    decay = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
    return optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(schedule, b2=0.95, weight_decay=0.1, mask=decay),
    )


def gpt_text() -> np.ndarray:
    """GPT_TEXT's bytes, as int32."""
    directory = os.path.dirname(os.__file__)
    parts = [open(os.path.join(directory, name), "rb").read() for name in GPT_TEXT]
    return np.frombuffer(b"\n".join(parts), np.uint8).astype(np.int32)


def adam_params(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [_normal(rng, (ADAM_SIZE,), 1.0) for _ in range(count)]


def adam_count(name: str) -> int:
    """N of workload ``adam_N`` (or ``compile_adam_N``)."""
    return int(name.rsplit("_", 1)[1])


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
    if name.startswith("gpt_"):
        opts, text = gpt_options(name), gpt_text()
        starts = rng.integers(0, len(text) - opts.seq - 1, (count, opts.batch))
        return [(text[s[:, None] + np.arange(opts.seq + 1)],) for s in starts]
    if name.startswith("adam_"):
        # the loss: sum over variables v of mean((v - x) ** 2)
        return [(_normal(rng, (ADAM_SIZE,), 1.0),) for _ in range(count)]
    raise ValueError(f"no workload {name!r}")


def adam(param, grad, m, v, t: int, xp=np):
    """One Adam update (t counts from 1), in any array namespace ``xp``: (param, m, v)."""
    m = ADAM_B1 * m + (1 - ADAM_B1) * grad
    v = ADAM_B2 * v + (1 - ADAM_B2) * grad * grad
    m_hat = m / (1 - ADAM_B1**t)
    v_hat = v / (1 - ADAM_B2**t)
    return param - ADAM_LR * m_hat / (xp.sqrt(v_hat) + ADAM_EPS), m, v
