"""The decisions a compiled function's jitted body makes inside jax's trace and its caller acts
on: grow the state layout (StateChanged), wait for another thread's trace (Busy), run step by
step (HostCalls), or make the entries again with XLA compile options (OptionsChanged).

They are exceptions, not returned values, because jax's trace allows nothing else: whatever
the body returns becomes the traced program's result, which jax compiles and caches for the
signature; only an exception leaves the trace with nothing compiled, and it reaches the caller
of the jitted entry (api.py: CompiledFunction._recover and lower) as raised."""

from __future__ import annotations

from flowjit.runtime import Plan


class Restart(Exception):
    """A decision made inside jax's trace: the caller acts on it and calls again."""


class StateChanged(Restart):
    """The flowjit trace's ``plan`` uses variables the entry was not called with; the call
    then grows the state layout and starts over."""

    def __init__(self, plan: Plan):
        super().__init__()
        self.plan = plan


class Busy(Restart):
    """Another thread holds the tracing lock (trace_cache.TRACING). Waiting there could
    deadlock: jax lets one thread trace a jitted function for given argument types and makes
    the others wait for it, and the holder, tracing a function that calls this one, may be
    waiting for this very jax trace. The call leaves jax's trace, waits, and starts over."""


class HostCalls(Restart):
    """The flowjit trace has host calls: the function then runs step by step (compiled
    clusters and host calls) instead of under one jax.jit."""


class OptionsChanged(Restart):
    """The flowjit trace wants XLA compile options (the backend's, for a program with
    convolutions on CPU) its jitted entries lack: the function's entries are made again with
    them and the call starts over."""

    def __init__(self, options: dict):
        super().__init__()
        self.options = options
