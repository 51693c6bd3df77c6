"""Train a character-level LSTM language model on Python's own standard-library source with
flowjit (``fj.scan`` runs the LSTM cell over the characters of a window), print the
perplexity on held-out text as it falls, and end with a sample of generated text.

    python examples/char_lstm.py [--steps N] [--hidden H] [--embed E] [--seq T] [--batch B]
                                 [--lr LR] [--sample N] [--temperature T] [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import flowjit as fj
import flowjit.numpy as fnp

# the text: these modules of the standard library, in this order (those this Python has)
MODULES = (
    "textwrap.py", "shlex.py", "fnmatch.py", "glob.py", "heapq.py", "bisect.py",
    "colorsys.py", "string.py", "queue.py", "sched.py", "graphlib.py", "reprlib.py",
    "calendar.py", "fractions.py", "random.py",
)  # fmt: skip
ALPHABET = "\n" + "".join(map(chr, range(32, 127)))  # newline and printable ASCII
HELD_OUT = 0.1  # the last tenth of the text is for measuring perplexity


def load_text() -> str:
    """The MODULES' source concatenated, tabs as four spaces, other characters outside
    ALPHABET dropped."""
    directory = os.path.dirname(os.__file__)
    parts = []
    for name in MODULES:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                parts.append(f.read().replace("\t", "    "))
    keep = set(ALPHABET)
    return "".join(ch for ch in "\n".join(parts) if ch in keep)


class CharLSTM:
    """Character embedding, one LSTM layer (gates i, f, g, o side by side) and a linear layer
    to logits over the characters."""

    def __init__(self, vocab: int, embed: int, hidden: int, seed: int = 0):
        init = fj.random.Generator(seed)
        # scales are Python floats: a numpy float64 would make the float32 draws float64
        self.embed = fj.Variable(init.normal((vocab, embed)) * 0.1, name="embed")
        self.w_x = fj.Variable(init.normal((embed, 4 * hidden)) * embed**-0.5, name="w_x")
        self.w_h = fj.Variable(init.normal((hidden, 4 * hidden)) * hidden**-0.5, name="w_h")
        # a forget-gate bias of 1 lets the cell keep its memory from the start
        bias = np.zeros((4, hidden), np.float32)
        bias[1] = 1.0
        self.b = fj.Variable(bias.reshape(-1), name="b")
        self.w_out = fj.Variable(init.normal((hidden, vocab)) * hidden**-0.5, name="w_out")
        self.b_out = fj.Variable(np.zeros(vocab, np.float32), name="b_out")
        self.variables = [self.embed, self.w_x, self.w_h, self.b, self.w_out, self.b_out]
        self.hidden = hidden

    def zero_state(self, batch: int):
        h = fnp.zeros((batch, self.hidden), fnp.float32)
        return h, h

    def cell(self, state, ids):
        """One step: ``state`` is (h, c), ``ids`` the (batch,) input characters."""
        h, c = state
        gates = self.embed[ids] @ self.w_x + h @ self.w_h + self.b
        i, f, g, o = fnp.split(gates, 4, axis=-1)
        c = fj.nn.sigmoid(f) * c + fj.nn.sigmoid(i) * fnp.tanh(g)
        return fj.nn.sigmoid(o) * fnp.tanh(c), c

    def run(self, state, inputs):
        """The LSTM over ``inputs`` (time, batch): the last state and every step's h."""

        def step(state, ids):
            state = self.cell(state, ids)
            return state, state[0]

        return fj.scan(step, state, inputs)

    def loss(self, windows):
        """Mean cross-entropy of predicting each next character of ``windows`` (batch,
        time + 1)."""
        inputs, targets = windows[:, :-1].T, windows[:, 1:].T  # time-major
        _, hs = self.run(self.zero_state(windows.shape[0]), inputs)
        logits = hs @ self.w_out + self.b_out
        return fj.nn.softmax_cross_entropy(logits, targets).mean()

    def sample(self, prompt, gumbel, temperature):
        """Read ``prompt`` (length,) then draw one character per row of ``gumbel`` (count,
        vocab) noise: Gumbel-max sampling from softmax(logits / temperature)."""
        state, _ = self.run(self.zero_state(1), prompt[:-1, None])

        def draw(carry, noise):
            state, ids = carry
            state = self.cell(state, ids)
            logits = state[0] @ self.w_out + self.b_out
            ids = fnp.argmax(logits / temperature + noise, axis=-1).astype(fnp.int32)
            return (state, ids), ids[0]

        _, drawn = fj.scan(draw, (state, prompt[-1:]), gumbel[:, None, :])
        return drawn


def make_train_step(model: CharLSTM, optimizer: fj.optim.Optimizer):
    """One compiled training step on a batch of windows: Adam (or ``optimizer``) on the
    gradient clipped to global norm 1; returns the loss."""

    @fj.compile
    def train_step(batch):
        loss = model.loss(batch)
        grads = fj.optim.clip_by_global_norm(fj.gradients(loss, model.variables), 1.0)
        optimizer.apply(grads, model.variables)
        return loss

    return train_step


def bigram_perplexity(train: np.ndarray, held_out: np.ndarray, vocab: int) -> float:
    """The reference to beat: perplexity on ``held_out`` of next-character counts from
    ``train`` (add-one smoothed), a model that sees only the previous character."""
    counts = np.ones((vocab, vocab))
    np.add.at(counts, (train[:-1], train[1:]), 1)
    p = counts / counts.sum(axis=1, keepdims=True)
    return float(np.exp(-np.log(p[held_out[:-1], held_out[1:]]).mean()))


def windows(ids: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    return ids[starts[:, None] + np.arange(length + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--embed", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64, help="characters per training window")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--sample", type=int, default=300, help="characters to generate")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="a small, fast run")
    opts = parser.parse_args()
    if opts.quick:
        opts.steps, opts.hidden, opts.seq, opts.batch, opts.lr = 300, 64, 32, 16, 1e-2
    start = time.perf_counter()

    text = load_text()
    alphabet = sorted(set(text))
    lookup = np.zeros(128, np.int32)
    lookup[[ord(ch) for ch in alphabet]] = np.arange(len(alphabet))
    ids = lookup[np.frombuffer(text.encode("ascii"), np.uint8)]
    split = int(len(ids) * (1 - HELD_OUT))
    train, held_out = ids[:split], ids[split:]
    print(
        f"text: {len(text):,} characters of Python's standard library, "
        f"{len(alphabet)} distinct; training on {len(train):,}"
    )
    print(f"bigram counts: perplexity {bigram_perplexity(train, held_out, len(alphabet)):.1f}")

    model = CharLSTM(len(alphabet), opts.embed, opts.hidden)
    train_step = make_train_step(model, fj.optim.Adam(opts.lr))
    evaluate = fj.compile(model.loss)
    sample = fj.compile(model.sample)

    # perplexity on fixed, evenly spaced held-out windows
    starts = np.linspace(0, len(held_out) - opts.seq - 2, 64).astype(np.int64)
    eval_windows = windows(held_out, starts, opts.seq)
    every = max(1, opts.steps // 10)
    rng = np.random.default_rng(1)
    for step in range(opts.steps + 1):
        if step % every == 0 or step == opts.steps:
            perplexity = float(np.exp(float(evaluate(eval_windows))))
            elapsed = time.perf_counter() - start
            print(f"step {step}  perplexity {perplexity:.1f}  ({elapsed:.1f}s)", flush=True)
        if step < opts.steps:
            starts = rng.integers(0, len(train) - opts.seq - 1, opts.batch)
            train_step(windows(train, starts, opts.seq))

    prompt = "def "
    gumbel = -np.log(-np.log(rng.uniform(1e-9, 1.0, (opts.sample, len(alphabet)))))
    drawn = sample(lookup[[ord(ch) for ch in prompt]], gumbel.astype(np.float32), opts.temperature)
    print("sample: " + prompt + "".join(alphabet[i] for i in np.asarray(drawn)))


if __name__ == "__main__":
    main()
