"""Joining a multi-process run through jax's distributed runtime (``jax.distributed``).

Every process runs the same program. After ``initialize``, ``fj.devices()`` lists the devices
of all processes, and a compiled function over a mesh of them runs SPMD across processes: XLA
inserts the collectives (on CPU they go through gloo, jax's default).

Two things keep a multi-process run from hanging (docs/tpu.md, "When a multi-process run
hangs"):

- On CPU the persistent compilation cache is turned off. jax keys a cache entry with the
  process's own part of the topology and only process 0 writes entries, so from the second
  run on process 0 loaded its step from the cache while the others compiled it afresh; a
  loaded XLA:CPU executable and a freshly compiled one (same optimized HLO) deadlock in their
  first gloo all-reduce.
- A watchdog thread ends the process, with a report on stderr, when a computation has not
  finished ``collective_timeout`` seconds after it was queued: a collective whose peers never
  join otherwise waits 30 minutes in gloo on CPU, and may wait indefinitely on TPU or GPU."""

from __future__ import annotations

import atexit
import faulthandler
import os
import sys
import threading
import time
import weakref
from typing import Any

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import FlowjitError
from flowjit.runtime.config import config

# Seconds a queued computation may go unfinished in a multi-process run before the watchdog
# ends the process. It must exceed the longest step and the longest wait for a slower peer
# (a peer still compiling the step, or loading data): generous by default.
DEFAULT_COLLECTIVE_TIMEOUT = 600.0
# The exit status of a process the watchdog ended.
HUNG_EXIT_STATUS = 75

_watchdog: _Watchdog | None = None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    collective_timeout: float | None = DEFAULT_COLLECTIVE_TIMEOUT,
    **options: Any,
) -> None:
    """Join a multi-process run: call it once per process, before any computation (before
    ``fj.devices()`` too). On a Cloud TPU VM pod slice (or under SLURM or Open MPI) give no
    arguments: jax finds the coordinator and this process's id. Elsewhere give the
    coordinator's ``host:port`` (a port of the machine running process 0), the number of
    processes and this process's id (0 .. num_processes - 1).

    ``collective_timeout`` (seconds, default 600; None: wait forever): when a computation of
    this process (a compiled step, a gather) has not finished that long after it was queued,
    which is what a collective whose peers never join looks like, the process prints a report
    (the Python stacks of its threads) to stderr and exits with status 75.

    ``options`` go to ``jax.distributed.initialize`` (e.g. ``initialization_timeout``,
    ``heartbeat_timeout_seconds``, ``shutdown_timeout_seconds``, all in seconds;
    ``local_device_ids``). Joining starts jax's backend. On CPU it turns off the persistent
    compilation cache (``fj.config.cache_dir``): see this module's docstring."""
    if collective_timeout is not None and not collective_timeout > 0:
        raise ValueError(
            f"collective_timeout must be a number of seconds > 0, or None; got "
            f"{collective_timeout!r}"
        )
    if jax.distributed.is_initialized():
        raise FlowjitError(
            "fj.distributed.initialize was called twice in this process; call it once, at "
            "the start of the program"
        )
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            **options,
        )
    except RuntimeError as err:
        if "before any JAX" in str(err):
            raise FlowjitError(
                "fj.distributed.initialize must run before any computation, and before "
                "fj.devices(): move it to the start of the program"
            ) from err
        raise
    if jax.process_count() < 2:
        return
    if jax.default_backend() == "cpu":
        config.update("cache_dir", None)
    if collective_timeout is not None:
        global _watchdog
        _watchdog = _Watchdog(collective_timeout)
        _watchdog.start()
        atexit.register(_watchdog.stop)  # (before jax's exit handlers, registered earlier)


def process_index() -> int:
    """This process's id (0 in a single-process run)."""
    return jax.process_index()


def process_count() -> int:
    """The number of processes (1 in a single-process run)."""
    return jax.process_count()


def shutdown() -> None:
    """Leave the multi-process run (jax also does this at exit)."""
    global _watchdog
    if _watchdog is not None:
        _watchdog.stop()
        _watchdog = None
    jax.distributed.shutdown()


class _Watchdog(threading.Thread):
    """Every ``timeout / 10`` seconds (0.5 to 10), look at this process's live arrays: one that
    has stayed not ready for more than ``timeout`` seconds belongs to a computation that does
    not finish, and the process reports it and exits. The watchdog holds no array between
    looks (a weak reference tells a new array from an old one at a reused id)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(name="flowjit-collective-watchdog", daemon=True)
        self.timeout = timeout
        self.period = min(max(timeout / 10, 0.5), 10.0)
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        pending: dict[int, tuple[weakref.ref, float, str]] = {}
        while not self._stopped.wait(self.period):
            now = time.monotonic()
            pending = _not_ready_since(pending, now)
            if pending:
                since, what = min((t, w) for _, t, w in pending.values())
                if now - since > self.timeout and not self._stopped.is_set():
                    _report_hang_and_exit(now - since, self.timeout, what)


def _not_ready_since(
    pending: dict[int, tuple[weakref.ref, float, str]], now: float
) -> dict[int, tuple[weakref.ref, float, str]]:
    """The arrays not ready now, each with the time it was first seen not ready."""
    seen = {}
    for array in jax.live_arrays():
        try:
            if array.is_ready():
                continue
        except Exception:  # (deleted or donated meanwhile)
            continue
        old = pending.get(id(array))
        if old is not None and old[0]() is array:
            seen[id(array)] = old
        else:
            seen[id(array)] = (weakref.ref(array), now, f"{array.dtype}{list(array.shape)}")
    return seen


def _report_hang_and_exit(waited: float, timeout: float, what: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(
        f"\nflowjit: process {jax.process_index()} of {jax.process_count()}: a computation "
        f"(result {what}) has not finished {waited:.0f} s after it was queued "
        f"(collective_timeout={timeout:g} s, fj.distributed.initialize). A collective whose "
        "peers never join it: another process stopped, waits elsewhere, or runs a different "
        "program (one that was not called in the same order, with the same shapes, in every "
        "process). Ending this process (exit status "
        f"{HUNG_EXIT_STATUS}); its threads' Python stacks follow. See docs/tpu.md, 'When a "
        "multi-process run hangs'.\n"
    )
    sys.stderr.flush()
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    # (not an exception: the main thread sits in XLA, and jax's exit handlers would wait on
    # the same peers at the shutdown barrier)
    os._exit(HUNG_EXIT_STATUS)
