"""Input pipelines: batches moved to their devices ahead of the step that takes them
(``fj.data.prefetch``, API.md section 12).

A ``Prefetcher`` pulls batches from any Python iterator on a background thread, places each
array of each batch on its devices (``jax.device_put``, or, over a mesh spanning several
processes, ``jax.make_array_from_process_local_data``: each process supplies its own slice of
the global batch) and queues at most ``size`` of them, so the host work of making the next
batches (reading, decoding, augmenting) and their host-to-device copies run while the current
step computes. The data itself comes from wherever the user has it: a generator, a
``tf.data``/``torch`` loader, or Grain (``grain.DataLoader``, ``grain.MapDataset``), flowjit
owns only the prefetching (DESIGN.md).

A source whose iterator has ``get_state``/``set_state`` (Grain's do) makes the prefetcher
resumable: ``get_state()`` is the source's state after the last batch the user took (not after
the batches queued ahead), and ``set_state`` restarts the source there, dropping what was
queued, so ``fj.Checkpoint(..., data=prefetcher)`` resumes a run on the same batches.

An exception raised by the source (the user's augmentation code, say) ends the prefetching and
is raised, as it was, by the ``next`` that would have returned that batch.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable

import numpy as np

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import ArgumentError, ShardingError

_BATCH, _END, _ERROR = "batch", "end", "error"
_PUT_POLL_S = 0.05  # how often a worker waiting for room in the queue looks for a stop


def _is_sharding_leaf(x: Any) -> bool:
    return x is None or isinstance(x, jax.sharding.Sharding)


def placer(shardings: Any) -> Callable[[Any], Any]:
    """The function placing one batch (a pytree of arrays) as ``shardings`` says: None (every
    array on the default device), one ``jax.sharding.Sharding`` for every array, or a pytree of
    them (and None) that is a prefix of the batch's structure."""

    def put(leaf: Any, sharding: Any) -> Any:
        if isinstance(leaf, (str, bytes)) or leaf is None:
            return leaf  # (not array data: passed through as it is)
        if sharding is None:
            return jax.device_put(leaf)
        if not sharding.is_fully_addressable:  # (a mesh over several processes)
            return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))
        return jax.device_put(leaf, sharding)

    if _is_sharding_leaf(shardings):
        return lambda batch: jax.tree_util.tree_map(lambda leaf: put(leaf, shardings), batch)

    def place(batch: Any) -> Any:
        try:
            return jax.tree_util.tree_map(
                lambda s, sub: jax.tree_util.tree_map(lambda leaf: put(leaf, s), sub),
                shardings,
                batch,
                is_leaf=_is_sharding_leaf,
            )
        except ValueError as err:  # (the batch's structure is not the shardings')
            raise ShardingError(
                f"fj.data.prefetch: the batch's structure {jax.tree_util.tree_structure(batch)} "
                f"does not start with the shardings' {jax.tree_util.tree_structure(shardings)} "
                f"({err}); give one sharding for every array, or a tree of them shaped as "
                "the batches are"
            ) from None

    return place


def _work(
    source: Any, place: Callable, resumable: bool, out: queue.Queue, stop: threading.Event
) -> None:
    """The worker: the next batch of ``source``, placed, with the source's state after it,
    into ``out``, until the source ends, raises, or ``stop`` is set."""
    try:
        while not stop.is_set():
            try:
                batch = next(source)
            except StopIteration:
                _put(out, stop, (_END, None, None))
                return
            state = source.get_state() if resumable else None
            _put(out, stop, (_BATCH, place(batch), state))
    except BaseException as err:  # (raised by the consumer's next, as it was)
        _put(out, stop, (_ERROR, err, None))


def _put(out: queue.Queue, stop: threading.Event, item: tuple) -> None:
    while not stop.is_set():
        try:
            out.put(item, timeout=_PUT_POLL_S)
            return
        except queue.Full:
            continue


class Prefetcher:
    """An iterator over the batches of ``source``, each placed on its devices by ``place``,
    made ``size`` batches ahead on a background thread (module docstring)."""

    def __init__(self, source: Iterable, size: int, place: Callable[[Any], Any]):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ArgumentError(f"fj.data.prefetch: size must be an int >= 1, got {size!r}")
        try:
            self._source = iter(source)
        except TypeError:
            raise ArgumentError(
                f"fj.data.prefetch takes an iterable of batches, got {type(source).__name__}"
            ) from None
        self._place, self._size = place, size
        self._resumable = callable(getattr(self._source, "get_state", None)) and callable(
            getattr(self._source, "set_state", None)
        )
        self._state = self._source.get_state() if self._resumable else None
        self._done = False
        self._start()

    # -- the worker --------------------------------------------------------------------------
    def _start(self) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=self._size)
        self._stop = threading.Event()
        # (the thread holds no reference to self: a prefetcher dropped mid-iteration is
        # collected, and its __del__ stops the thread)
        self._thread = threading.Thread(
            target=_work,
            args=(self._source, self._place, self._resumable, self._queue, self._stop),
            name="flowjit-prefetch",
            daemon=True,  # (a program that stops iterating early still exits)
        )
        self._thread.start()

    def _halt(self) -> None:
        """Stop the worker and wait for it (it finishes the batch it is making)."""
        self._stop.set()
        self._thread.join()

    # -- the iterator ------------------------------------------------------------------------
    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        kind, payload, state = self._queue.get()
        if kind is _BATCH:
            self._state = state
            return payload
        self._done = True
        if kind is _ERROR:
            raise payload
        raise StopIteration

    # -- resuming ----------------------------------------------------------------------------
    @property
    def resumable(self) -> bool:
        """Whether the source's iterator has a state (get_state/set_state), as Grain's do."""
        return self._resumable

    def get_state(self) -> Any:
        """The source's state after the last batch taken from this prefetcher."""
        self._need_state("get_state")
        return self._state

    def set_state(self, state: Any) -> None:
        """Restart the source at ``state`` (from ``get_state``); batches queued are dropped."""
        self._need_state("set_state")
        self._halt()
        self._source.set_state(state)
        self._state, self._done = state, False
        self._start()

    def _need_state(self, what: str) -> None:
        if not self._resumable:
            raise ArgumentError(
                f"fj.data.prefetch: {what} needs a source whose iterator has get_state and "
                f"set_state (as Grain's DataLoader and datasets do); "
                f"{type(self._source).__name__} has none, so where it stands cannot be saved"
            )

    # -- closing -----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop prefetching (batches queued are dropped); iterating ends."""
        self._halt()
        self._done = True

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
