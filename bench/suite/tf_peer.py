"""TensorFlow peer of the benchmark suite: the workloads of ``workloads.py`` as ``tf.function``
steps (plain: graph mode with TF's default oneDNN kernels, no XLA; ``--jit``:
``tf.function(jit_compile=True)``, XLA on CPU).

Runs in its own interpreter (a TensorFlow virtualenv, e.g. /work/tfenv/bin/python) and imports
only numpy, tensorflow and the sibling ``workloads`` module. Prints exactly one line on stdout
starting with ``RESULT `` followed by a JSON object (see ``main``); TensorFlow's own log lines
go to stderr.

    python tf_peer.py WORKLOAD [--jit] [--steps N] [--rounds R] [--warmup W]

WORKLOAD is one of dispatch, mlp, cnn, lstm, compile_mlp, compile_lstm. The compile_*
workloads only time the very first call (trace + compile + run) of the mlp/lstm step in a
fresh process.

Every training step is ``loss = step(*batch)`` with the weights (and Adam slots) held as
tf.Variables updated in place inside the step. The losses of the first CHECKED_STEPS steps
are recorded from the initial weights on ``workloads.batches(name, CHECKED_STEPS)``; timing
then continues from that state, cycling through a few batches converted to tensors once.
A round ends by reading its last loss with ``.numpy()``, so the work of the round is done.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf
import workloads as W

WORKLOADS = ("dispatch", "mlp", "cnn", "lstm", "compile_mlp", "compile_lstm")
DEFAULT_STEPS = {"dispatch": 10_000, "mlp": 100, "cnn": 20, "lstm": 20}
DEFAULT_WARMUP = {"dispatch": 1_000, "mlp": 5, "cnn": 3, "lstm": 3}
TIMED_BATCHES = 4  # batches cycled through during timing
# The LSTM recurrence: "scan" (tf.scan, a While loop) or "unroll" (a Python loop, unrolled
# into the graph at trace time). Measured with TF 2.21 on CPU, scan is as fast or a little
# faster per step in both modes (the step is dominated by the 10k-vocab output layer and the
# dense Adam updates) and compiles much faster under jit_compile (~2 s vs ~5-9 s unrolled),
# so it is the default; ``--lstm-loop unroll`` selects the other.
LSTM_LOOP = "scan"


def _xent(logits, labels):
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    )


def _sgd_step(loss_fn, params, lr):
    """A step ``(x, y) -> loss`` that takes one SGD step on ``params`` (tf.Variables)."""

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(params, x, y)
        grads = tape.gradient(loss, params)
        for p, g in zip(params, grads):
            p.assign_sub(lr * g)
        return loss

    return step


def mlp_loss(params, x, y):
    w1, b1, w2, b2, w3, b3 = params
    h = tf.nn.relu(tf.matmul(x, w1) + b1)
    h = tf.nn.relu(tf.matmul(h, w2) + b2)
    return _xent(tf.matmul(h, w3) + b3, y)


def cnn_loss(params, x, y):
    k1, c1, k2, c2, w, b = params
    h = tf.nn.relu(tf.nn.conv2d(x, k1, strides=1, padding="SAME") + c1)
    h = tf.nn.max_pool2d(h, 2, 2, "VALID")
    h = tf.nn.relu(tf.nn.conv2d(h, k2, strides=1, padding="SAME") + c2)
    h = tf.nn.max_pool2d(h, 2, 2, "VALID")
    h = tf.reshape(h, (tf.shape(h)[0], -1))  # NHWC, row-major: as workloads.cnn_params says
    return _xent(tf.matmul(h, w) + b, y)


LSTM_NAMES = ("embed", "w_x", "w_h", "b", "w_out", "b_out")


def lstm_loss(params, tokens, loop=None):
    """tokens (batch, seq + 1): inputs tokens[:, :seq], targets tokens[:, 1:]; the loss is the
    mean cross-entropy over all batch * seq predictions."""
    embed, w_x, w_h, b, w_out, b_out = params
    loop = loop or LSTM_LOOP
    seq, hidden = W.LSTM_SEQ, W.LSTM_HIDDEN
    inputs, targets = tokens[:, :seq], tokens[:, 1:]
    x = tf.gather(embed, tf.transpose(inputs))  # (seq, batch, embed)
    # The input projection of every step at once: one (seq*batch, embed) @ (embed, 4h) matmul.
    xz = tf.reshape(tf.matmul(tf.reshape(x, (-1, W.LSTM_EMBED)), w_x) + b, (seq, -1, 4 * hidden))
    batch = tf.shape(tokens)[0]
    h0 = tf.zeros((batch, hidden), tf.float32)

    def cell(carry, z_x):
        h, c = carry
        z = z_x + tf.matmul(h, w_h)
        i, f, g, o = tf.split(z, 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, c

    if loop == "scan":
        hs, _ = tf.scan(cell, xz, initializer=(h0, h0))
    else:
        carry, outs = (h0, h0), []
        for t in range(seq):
            carry = cell(carry, xz[t])
            outs.append(carry[0])
        hs = tf.stack(outs)
    logits = tf.matmul(tf.reshape(hs, (-1, hidden)), w_out) + b_out  # (seq*batch, vocab)
    return _xent(logits, tf.reshape(tf.transpose(targets), (-1,)))


def _lstm_step(params, slots_m, slots_v, t):
    def step(tokens):
        with tf.GradientTape() as tape:
            loss = lstm_loss(params, tokens)
        grads = tape.gradient(loss, params)
        t.assign_add(1.0)
        for p, g, m, v in zip(params, grads, slots_m, slots_v):
            g = tf.convert_to_tensor(g)  # the embedding's IndexedSlices -> dense, as in Adam
            new_p, new_m, new_v = W.adam(p, g, m, v, t, xp=tf.math)
            m.assign(new_m)
            v.assign(new_v)
            p.assign(new_p)
        return loss

    return step


def build(name: str):
    """The (undecorated) training step of ``name``, over fresh tf.Variables holding the
    initial weights of ``workloads`` (and, for the LSTM, Adam's slots and step count)."""
    if name == "mlp":
        params = [tf.Variable(a) for a in W.mlp_params()]
        return _sgd_step(mlp_loss, params, W.MLP_LR)
    if name == "cnn":
        params = [tf.Variable(a) for a in W.cnn_params()]
        return _sgd_step(cnn_loss, params, W.CNN_LR)
    if name == "lstm":
        init = W.lstm_params()
        params = [tf.Variable(init[k]) for k in LSTM_NAMES]
        slots_m = [tf.Variable(tf.zeros_like(p)) for p in params]
        slots_v = [tf.Variable(tf.zeros_like(p)) for p in params]
        t = tf.Variable(0.0, dtype=tf.float32)
        return _lstm_step(params, slots_m, slots_v, t)
    raise ValueError(name)


def _tensors(batches):
    return [tuple(tf.constant(a) for a in b) for b in batches]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", choices=WORKLOADS)
    ap.add_argument("--jit", action="store_true", help="tf.function(jit_compile=True)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--lstm-loop", choices=("unroll", "scan"), default=None)
    args = ap.parse_args(argv)
    global LSTM_LOOP
    if args.lstm_loop:
        LSTM_LOOP = args.lstm_loop

    name = args.workload
    base = name.removeprefix("compile_")
    steps = args.steps if args.steps is not None else DEFAULT_STEPS[base]
    warmup = args.warmup if args.warmup is not None else DEFAULT_WARMUP[base]
    compile_only = name.startswith("compile_")

    def fn(f):
        return tf.function(f, jit_compile=True) if args.jit else tf.function(f)

    losses: list[float] = []
    round_seconds: list[float] = []

    if name == "dispatch":
        step = fn(lambda x: x + 1)
        x = tf.constant(1.0, dtype=tf.float32)
        t0 = time.perf_counter()
        step(x).numpy()
        first = time.perf_counter() - t0
        for _ in range(warmup):
            r = step(x)
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for _ in range(steps):
                r = step(x)
            r.numpy()
            round_seconds.append(time.perf_counter() - t0)
    else:
        step = fn(build(base))
        checked = _tensors(W.batches(base, 1 if compile_only else W.CHECKED_STEPS))
        t0 = time.perf_counter()
        loss = step(*checked[0])
        losses.append(float(loss.numpy()))
        first = time.perf_counter() - t0
        for b in checked[1:]:
            losses.append(float(step(*b).numpy()))
        if not compile_only:
            timed = checked[:TIMED_BATCHES]
            for i in range(warmup):
                loss = step(*timed[i % len(timed)])
            loss.numpy()
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                for i in range(steps):
                    loss = step(*timed[i % len(timed)])
                loss.numpy()
                round_seconds.append(time.perf_counter() - t0)

    result = {
        "peer": "tf.function(jit_compile)" if args.jit else "tf.function",
        "workload": name,
        "version": tf.__version__,
        "steps": steps,
        "round_seconds": round_seconds,
        "per_step_seconds": [t / steps for t in round_seconds],
        "first_call_seconds": first,
        "losses": losses,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if base == "lstm":
        result["lstm_loop"] = LSTM_LOOP
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
