"""fj.data.prefetch (runtime/data.py): batches from any iterator, moved to their devices on a
background thread ahead of the loop; errors raised where the batch would have been; Grain's
iterator state saved and restored through the prefetcher; shardings on 8 virtual devices
(data_script.py, in a fresh process)."""

from __future__ import annotations

import gc
import json
import pathlib
import threading
import traceback

import grain
import jax
import numpy as np
import pytest
from devices import run_on_eight_devices

import flowjit as fj

HERE = pathlib.Path(__file__).parent
WAIT_S = 60  # generous: an event that never comes fails the test, a busy machine does not


def batches(count: int, made: list | None = None, events: dict | None = None):
    for i in range(count):
        if made is not None:
            made.append(i)
        if events is not None and i in events:
            events[i].set()
        yield {"x": np.full((4, 3), i, np.float32), "y": np.arange(4, dtype=np.int32) + i}


def test_batches_arrive_in_order_as_device_arrays():
    with fj.data.prefetch(batches(6), size=2) as it:
        got = list(it)
    assert len(got) == 6
    for i, batch in enumerate(got):
        assert isinstance(batch["x"], jax.Array) and isinstance(batch["y"], jax.Array)
        np.testing.assert_array_equal(batch["x"], np.full((4, 3), i, np.float32))
        np.testing.assert_array_equal(batch["y"], np.arange(4) + i)
    with pytest.raises(StopIteration):
        next(it)


def test_the_next_batch_is_made_while_the_loop_works_and_no_more_than_size_ahead():
    made: list[int] = []
    second = threading.Event()
    it = fj.data.prefetch(batches(50, made, {1: second}), size=3)
    first = next(it)
    # the loop has not asked for batch 1, yet the worker makes it
    assert second.wait(WAIT_S)
    np.testing.assert_array_equal(first["x"], np.zeros((4, 3)))
    # bounded: `size` queued, one being put, none beyond (the worker blocks on the queue)
    it._thread.join(0.5)
    assert len(made) <= 1 + 3 + 1
    it.close()
    assert not it._thread.is_alive()
    with pytest.raises(StopIteration):
        next(it)


def augment(i: int):
    if i == 2:
        raise ValueError("bad image 2")  # the user's line
    return np.ones(3, np.float32) * i


def test_an_error_in_the_source_is_raised_by_the_next_that_would_return_its_batch():
    it = fj.data.prefetch((augment(i) for i in range(5)), size=2)
    assert float(next(it)[0]) == 0.0 and float(next(it)[0]) == 1.0
    with pytest.raises(ValueError, match="bad image 2") as info:
        next(it)
    lines = "".join(traceback.format_tb(info.value.__traceback__))
    assert "raise ValueError" in lines and "augment" in lines  # names the user's line
    with pytest.raises(StopIteration):
        next(it)


def test_strings_pass_through_and_scalars_become_arrays():
    source = iter([("name", np.float32(2.5), [np.int32(1), np.int32(2)])])
    (batch,) = list(fj.data.prefetch(source))
    assert batch[0] == "name"
    assert isinstance(batch[1], jax.Array) and float(batch[1]) == 2.5
    assert [int(a) for a in batch[2]] == [1, 2]


def test_bad_arguments_are_clear_errors():
    with pytest.raises(fj.ArgumentError, match="size must be an int >= 1"):
        fj.data.prefetch([1, 2], size=0)
    with pytest.raises(fj.ArgumentError, match="takes an iterable of batches"):
        fj.data.prefetch(42)
    with pytest.raises(fj.ShardingError, match="no mesh"):
        fj.data.prefetch([np.ones(2)], sharding=fj.P("data"))
    with pytest.raises(fj.ShardingError, match="got str"):
        fj.data.prefetch([np.ones(2)], sharding="data")
    it = fj.data.prefetch(batches(2))
    with pytest.raises(fj.ArgumentError, match="generator has none"):
        it.get_state()
    it.close()


def grain_batches(count: int = 20):
    return grain.MapDataset.range(count).map(lambda i: np.full((2,), i, np.float32)).batch(2)


def test_grain_state_is_where_the_loop_stands_not_where_the_worker_does():
    it = fj.data.prefetch(grain_batches(), size=4)
    assert it.resumable
    taken = [next(it) for _ in range(3)]
    state = it.get_state()
    following = [np.asarray(next(it)) for _ in range(2)]
    it.set_state(state)  # drops what was queued, restarts the source there
    again = [np.asarray(next(it)) for _ in range(2)]
    for a, b in zip(following, again):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(taken[2], [[4, 4], [5, 5]])
    np.testing.assert_array_equal(again[0], [[6, 6], [7, 7]])
    # a fresh pipeline resumed from the saved state sees the same batches
    fresh = fj.data.prefetch(grain_batches(), size=4)
    fresh.set_state(json.loads(json.dumps(state)))
    np.testing.assert_array_equal(np.asarray(next(fresh)), following[0])
    fresh.close()
    it.close()


def test_a_prefetched_training_loop_equals_the_plain_one():
    def run(prefetched: bool) -> list[float]:
        w = fj.Variable(np.zeros(3, np.float32))
        opt = fj.optim.SGD(0.1)

        @fj.compile
        def step(x, y):
            loss = ((x @ w - y.astype(np.float32)[:, None].mean()) ** 2).mean()
            opt.apply(fj.gradients(loss, [w]), [w])
            return loss

        source = ((b["x"], b["y"]) for b in batches(8))
        loop = fj.data.prefetch(source, sharding=step) if prefetched else source
        return [float(step(x, y)) for x, y in loop]

    assert run(True) == run(False)


def test_shardings_on_eight_devices():
    report = run_on_eight_devices([str(HERE / "data_script.py")])
    assert report["named"] == ["P('data',)", "P('data',)"]
    assert report["named_devices"] == [8, 8]
    assert report["tree"] == {"x": "P('data',)", "y": "SingleDeviceSharding"}  # None: default
    assert report["from_step"] == ["P('data', None)", "P('data',)"]
    assert report["losses_equal"]


def test_a_prefetcher_dropped_mid_iteration_stops_its_thread():
    it = fj.data.prefetch(batches(100), size=2)
    next(it)
    thread = it._thread
    del it
    gc.collect()
    thread.join(WAIT_S)
    assert not thread.is_alive()
