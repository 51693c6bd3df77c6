"""The pass pipeline on two real steps: each pass's time and the op counts before and after
it (ops in loop bodies counted), for the digits MLP training step (examples/digits_mlp.py's
model, Adam) and the char LSTM training step (examples/char_lstm.py's model, Adam, global-norm
clipping). The pipeline's growth with graph size is measured by tests/passes/test_scale.py
(run it with -s for its table).

    python bench/pipeline.py
"""

from __future__ import annotations

import math
import pathlib
import sys

import numpy as np

import flowjit as fj

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "examples"))
from char_lstm import CharLSTM, make_train_step  # noqa: E402


def digits_mlp_step():
    init = fj.random.Generator(0)
    w1 = fj.Variable(init.normal((64, 128)) * math.sqrt(2 / 64), name="w1")
    b1 = fj.Variable(np.zeros(128, np.float32), name="b1")
    w2 = fj.Variable(init.normal((128, 10)) * math.sqrt(1 / 128), name="w2")
    b2 = fj.Variable(np.zeros(10, np.float32), name="b2")
    params, optimizer = [w1, b1, w2, b2], fj.optim.Adam(3e-3)

    @fj.compile
    def train_step(x, y):
        logits = fj.nn.relu(x @ w1 + b1) @ w2 + b2
        loss = fj.nn.softmax_cross_entropy(logits, y).mean()
        optimizer.apply(fj.gradients(loss, params), params)
        return loss

    return train_step, (np.zeros((64, 64), np.float32), np.zeros(64, np.int32))


def char_lstm_step():
    train_step = make_train_step(CharLSTM(96, 32, 256), fj.optim.Adam(3e-3))
    return train_step, (np.zeros((32, 65), np.int32),)


def main() -> None:
    for name, make in (("digits MLP step", digits_mlp_step), ("char LSTM step", char_lstm_step)):
        step, args = make()
        records = step.lower(*args).passes()
        print(f"\n{name}: {records[0].ops_before} ops traced -> {records[-1].ops_after} ops\n")
        print("| pass | ms | ops before | ops after |")
        print("|---|---:|---:|---:|")
        for r in records:
            print(f"| {r.name} | {r.seconds * 1e3:.2f} | {r.ops_before} | {r.ops_after} |")
        print(f"| total | {sum(r.seconds for r in records) * 1e3:.2f} | | |")


if __name__ == "__main__":
    main()
