"""Eager mode: compiled functions run op by op on concrete values (Python `if` on a Tensor
works), and give what compiled mode gives: here for a step with a scan, gradients, a
variable and an optimizer, and for every example (each run small, eagerly and compiled, in
its own process, printing the same losses)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp

EXAMPLES = pathlib.Path(__file__).parent.parent.parent / "examples"


@pytest.fixture
def eager():
    fj.config.update("eager", True)
    try:
        yield
    finally:
        fj.config.update("eager", False)


def _training_step():
    w = fj.Variable(np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2), name="w")
    optimizer = fj.optim.Adam(0.1)

    @fj.compile
    def step(x):
        def body(c, xi):
            return c + fnp.tanh(xi @ w).sum(), c

        c, ys = fj.scan(body, 0.0, x)
        loss = c * c + ys.sum()
        optimizer.apply(fj.gradients(loss, [w]), [w])
        return loss, ys

    return step, w


X = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)


def test_eager_steps_equal_compiled_steps():
    step, w = _training_step()
    compiled = [step(X) for _ in range(3)]
    compiled_w = np.asarray(w.value)
    step, w = _training_step()
    fj.config.update("eager", True)
    try:
        eager = [step(X) for _ in range(3)]
    finally:
        fj.config.update("eager", False)
    for (loss_c, ys_c), (loss_e, ys_e) in zip(compiled, eager):
        np.testing.assert_allclose(loss_e, loss_c, rtol=1e-5)
        np.testing.assert_allclose(ys_e, ys_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(w.value), compiled_w, rtol=1e-5, atol=1e-6)


def test_python_control_flow_on_values_works_eagerly(eager, capsys):
    shown = []

    @fj.compile
    def clipped(x):
        total = x.sum()
        print("total is", float(total))  # a plain print sees the value
        shown.append(repr(total))
        if total > 0:  # a Python if on a Tensor
            return x / total
        return -x

    np.testing.assert_allclose(clipped(np.array([1.0, 3.0], np.float32)), [0.25, 0.75])
    np.testing.assert_allclose(clipped(np.array([-1.0, -3.0], np.float32)), [1.0, 3.0])
    assert capsys.readouterr().out.splitlines() == ["total is 4.0", "total is -4.0"]
    assert shown == [
        "Tensor(f32[], array(4., dtype=float32))",
        "Tensor(f32[], array(-4., dtype=float32))",
    ]


def test_variables_are_written_at_once_and_host_calls_run_in_order(eager, capsys):
    v = fj.Variable(np.zeros(2, np.float32), name="v")

    @fj.compile
    def step(x):
        v.assign_add(x)
        fj.print("v {}", v.read())
        v.assign_add(x)
        return v.read() * 1

    np.testing.assert_allclose(step(np.ones(2, np.float32)), [2.0, 2.0])
    np.testing.assert_allclose(v.value, [2.0, 2.0])
    assert capsys.readouterr().out == "v [1. 1.]\n"


def test_without_eager_a_python_if_on_a_tensor_says_what_to_use():
    @fj.compile
    def f(x):
        return x if x.sum() > 0 else -x

    with pytest.raises(fj.TracingError, match="fj.cond"):
        f(np.ones(2, np.float32))


def _numbers(text: str) -> list[float]:
    """The losses, perplexities and accuracies an example prints, in order."""
    pattern = r"(?:loss|perplexity|accuracy|matches numpy:) (-?\d+\.\d+)"
    return [float(x) for x in re.findall(pattern, text)]


@pytest.mark.parametrize(
    "name, args, rtol",
    [
        ("quickstart.py", [], 1e-4),
        ("linear_regression.py", ["--steps", "150"], 1e-4),
        ("digits_mlp.py", ["--epochs", "2"], 1e-3),
        ("digits_cnn.py", ["--epochs", "1"], 1e-3),
        ("data_parallel.py", ["--epochs", "1"], 1e-3),
        ("tensor_parallel.py", ["--epochs", "1"], 1e-3),
        # --quick's model, 100 Adam steps with clipping: kernels that round differently drift
        # apart a little
        (
            "char_lstm.py",
            ["--steps", "100", "--hidden", "64", "--seq", "32", "--batch", "16", "--lr", "1e-2"]
            + ["--sample", "20"],
            3e-2,
        ),
    ],
)
def test_every_example_prints_the_same_eagerly(name, args, rtol):
    runs = {}
    for mode in ("0", "1"):
        env = dict(os.environ, FLOWJIT_EAGER=mode)
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / name), *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs[mode] = _numbers(done.stdout)
    assert runs["0"] and len(runs["0"]) == len(runs["1"]), runs
    np.testing.assert_allclose(runs["1"], runs["0"], rtol=rtol)


@pytest.mark.parametrize("failure", [ValueError, KeyboardInterrupt])
def test_a_failed_eager_call_changes_no_variable(eager, failure):
    """As in compiled mode (docs/errors.md): the writes made before the failure are undone
    (issue 20, item 12; before, `w` and `b` kept them)."""
    w = fj.Variable(np.ones(3, np.float32), name="w")
    b = fj.Variable(np.zeros(3, np.float32), name="b")

    @fj.compile
    def step(x):
        w.assign_add(x)
        b.assign(w * 2)
        if float(b.sum()) > 0:  # (eager: a Python `if` on a Tensor)
            raise failure("the step fails after its writes")
        return x

    with pytest.raises(failure, match="after its writes"):
        step(np.ones(3, np.float32))
    np.testing.assert_array_equal(np.asarray(w), np.ones(3, np.float32))
    np.testing.assert_array_equal(np.asarray(b), np.zeros(3, np.float32))
    step(-np.ones(3, np.float32))  # a call that succeeds keeps its writes
    np.testing.assert_array_equal(np.asarray(w), np.zeros(3, np.float32))
