"""A variable whose value is gone (issue 20, items 2 and 4): its buffer deleted by the user, or
computed by a step that failed while it ran on the device. Every use of it (a read, a step,
fj.save, an eager update) raises a VariableError naming it, never hangs or hands back jax's
error; a new value or a restored checkpoint makes it usable again; a step whose input is lost
changes no variable."""

from __future__ import annotations

import re
import threading

import jax
import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp

X = np.ones(4, np.float32)


def finishes(fn, timeout=60.0):
    """Run ``fn`` in a thread: its exception, or None; fails the test if it does not return
    (the read used to spin at 100% CPU forever)."""
    outcome = []

    def run():
        try:
            fn()
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 (handed to the test)
            outcome.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "did not return"
    return outcome[0]


def deleted_by_user(w):
    w.value.delete()


def donated_to_jax(w):
    jax.jit(lambda a: a * 2, donate_argnums=0)(w.value)


@pytest.mark.parametrize("lose", [deleted_by_user, donated_to_jax])
def test_every_use_of_a_deleted_variable_names_it(tmp_path, lose):
    w = fj.Variable(X, name="w")
    other = fj.Variable(X, name="other")

    @fj.compile
    def step(x):
        other.assign_add(x)
        w.assign_add(x)
        return x.sum()

    step(X)
    lose(w)
    err = finishes(lambda: np.asarray(w))
    assert isinstance(err, fj.VariableError), err
    assert "variable 'w' has no value: its buffer was deleted" in str(err)
    for use in (
        lambda: step(X),
        lambda: fj.save(tmp_path / "w.safetensors", [w, other]),
        lambda: w.assign_add(X),
        lambda: w.value,
    ):
        with pytest.raises(fj.VariableError, match="variable 'w' has no value"):
            use()
    np.testing.assert_array_equal(np.asarray(other), 2 * X)  # the failed step changed nothing
    assert not (tmp_path / "w.safetensors").exists()
    w.assign(X)  # a new value makes it usable again
    step(X)
    np.testing.assert_array_equal(np.asarray(w), 2 * X)
    np.testing.assert_array_equal(np.asarray(other), 3 * X)


def test_a_step_on_a_deleted_variable_with_host_calls_changes_nothing():
    w = fj.Variable(X, name="w")
    other = fj.Variable(X, name="other")

    @fj.compile
    def step(x):
        other.assign_add(fj.host_call(np.sin, x, result_shape_dtypes=x))
        w.assign_add(x)

    step(X)
    before = np.asarray(other)
    w.value.delete()
    with pytest.raises(fj.VariableError, match="variable 'w' has no value"):
        step(X)
    np.testing.assert_array_equal(np.asarray(other), before)


# A step whose intermediate (a sort of 10**15 bytes) cannot be allocated: XLA fails while the
# step runs, after it was dispatched and returned (dispatch is asynchronous).
HUGE = 250_000_000_000


def failing_step_on(w):
    @fj.compile
    def train(x):
        big = fnp.zeros((HUGE, 1024), fnp.float32) + x[0] * fnp.arange(1024.0)
        w.assign(w + fnp.sort(big, axis=0)[0, :4])
        return w.sum()

    return train


def test_a_step_that_fails_while_it_runs_loses_its_variables_loudly(tmp_path):
    w = fj.Variable(X, name="w")
    ckpt = fj.Checkpoint(tmp_path, [w])
    ckpt.save(1)
    train = failing_step_on(w)
    train(X)  # (returns: the failure happens on the device, afterwards)
    err = finishes(lambda: np.asarray(w))
    assert isinstance(err, fj.VariableError), err
    message = str(err)
    assert "variable 'w' has no value: the call of 'train' that wrote it failed" in message
    assert re.search("RESOURCE_EXHAUSTED|Out of memory", message)  # (XLA's own words)
    assert "Restore a checkpoint" in message
    for use in (lambda: train(X), lambda: fj.save(tmp_path / "w.safetensors", [w])):
        with pytest.raises(fj.VariableError, match="variable 'w' has no value"):
            use()
    ckpt.restore()  # recovers
    np.testing.assert_array_equal(np.asarray(w), X)


def test_a_failed_step_is_found_when_the_queue_of_steps_is_waited_for():
    """Nobody reads ``w``: the failure comes out of a later call, when flowjit waits for the
    steps in flight (max_steps_in_flight), naming ``w``."""
    w = fj.Variable(X, name="w")
    count = fj.Variable(np.zeros((), np.int32), name="count")
    train = failing_step_on(w)

    @fj.compile
    def tick():
        count.assign_add(1)

    tick()
    limit = fj.config.max_steps_in_flight
    fj.config.update("max_steps_in_flight", 2)
    try:
        train(X)
        with pytest.raises(fj.VariableError, match="variable 'w' has no value: the call of 'tr"):
            for _ in range(4):
                tick()
    finally:
        fj.config.update("max_steps_in_flight", limit)
    assert int(np.asarray(count)) >= 2  # (tick's own variable is fine)


def test_a_call_that_xla_fails_after_taking_the_donated_buffers_loses_them_loudly():
    """On a GPU, out of memory can be found while the call is dispatched, after XLA took the
    donated buffers: the call raises, from XLA's error, the VariableError of the variables it
    writes, which are lost. Here
    XLA's part is played by an entry that deletes what it is given, then raises as XLA does."""
    w = fj.Variable(X, name="w")
    read = fj.Variable(X, name="read")

    @fj.compile
    def train(x):
        w.assign_add(x * read)

    train(X)

    def failing_entry(written, read_only, *args):
        for buffer in written:
            buffer.delete()
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 1 TiB")

    train._state_entry = failing_entry
    with pytest.raises(fj.VariableError, match="RESOURCE_EXHAUSTED") as failed:
        train(X)
    assert isinstance(failed.value.__cause__, jax.errors.JaxRuntimeError)
    with pytest.raises(fj.VariableError) as info:
        np.asarray(w)
    assert str(info.value) == str(failed.value)
    assert str(info.value).startswith(
        "variable 'w' has no value: the call of 'train' that wrote it failed while it ran on "
        "the device, or used values of one that did (RESOURCE_EXHAUSTED: Out of memory"
    )
    np.testing.assert_array_equal(np.asarray(read), X)  # (read, not donated: as it was)
