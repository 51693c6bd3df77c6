"""Recording a profile through jax's profiler and reading back the time of each XLA op
(``fj.profile``; the attribution to source lines is compiler/profiling.py's).

jax's profiler writes, under ``<logdir>/plugins/profile/<run>/``, the XProf trace
(``<host>.xplane.pb``, what TensorBoard's profile plugin reads) and, asked for it, the same
events as a Perfetto JSON trace (``perfetto_trace.json.gz``), which is read here: every XLA
op that ran is an event with ``args.hlo_module`` (the program, ``jit_<function name>``),
``args.hlo_op`` (the instruction) and ``args.run_id`` (one per execution of the program).
An op's own time is its event's duration less that of the events nested in it on its thread
(a while loop's body ops inside the loop's event)."""

from __future__ import annotations

import glob
import gzip
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field

from flowjit.backends.xla.jaxshim import jax

from .steps import HOST_CALL_EVENT


# XLA compile time (jax's persistent-cache lookups included) per jitted function name, since
# the first compiled function was made: jax reports each compile to its monitoring listeners
# (fj.profile's summary). Importing flowjit registers nothing with jax.
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compile_seconds: dict[str, float] = defaultdict(float)
_listening: list[bool] = []


def _on_duration(event: str, seconds: float, **kwargs: object) -> None:
    if event == _COMPILE_EVENT:
        _compile_seconds[str(kwargs.get("fun_name", ""))] += seconds


def listen_for_compiles() -> None:
    """(Once per process, when a compiled function is made.)"""
    if not _listening:
        _listening.append(True)
        jax.monitoring.register_event_duration_secs_listener(_on_duration)


def compile_seconds() -> dict[str, float]:
    """program (``jit_train_step``) -> its XLA compile time so far (jax reports the function
    as ``jit(train_step)``)."""
    return {
        f"jit_{name[4:-1]}": seconds
        for name, seconds in list(_compile_seconds.items())
        if name.startswith("jit(") and name.endswith(")")
    }


def start(logdir: str) -> None:
    jax.profiler.start_trace(logdir, create_perfetto_trace=True)


def stop() -> None:
    jax.profiler.stop_trace()


def latest_trace(logdir: str) -> str:
    """The Perfetto trace of the latest run under ``logdir``."""
    runs = sorted(
        glob.glob(os.path.join(logdir, "plugins", "profile", "*", "perfetto_trace.json.gz"))
    )
    if not runs:
        raise FileNotFoundError(f"no profile under {logdir}/plugins/profile")
    return runs[-1]


@dataclass
class ProgramTimes:
    """One program's XLA ops over a profile: seconds of own time per instruction, and the
    executions seen (``run_id``s)."""

    module: str
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    runs: set = field(default_factory=set)
    spans: dict = field(default_factory=dict)  # run_id -> [first start, last end] (s)

    @property
    def executions(self) -> int:
        return len(self.runs)

    def wall_per_execution(self) -> float:
        """The mean span from an execution's first op starting to its last op ending."""
        if not self.spans:
            return 0.0
        return sum(end - begin for begin, end in self.spans.values()) / len(self.spans)


@dataclass
class HostCallTimes:
    """A host call's runs in a profile (``name at file:line``)."""

    seconds: float = 0.0
    calls: int = 0


@dataclass
class Trace:
    """What a profile's trace says: each program's op times (module name -> times) and the
    host calls of functions run step by step (``name at file:line`` -> runs; runtime/steps.py
    names each run)."""

    programs: dict[str, ProgramTimes]
    host_calls: dict[str, HostCallTimes]


def read_trace(path: str) -> Trace:
    """The Perfetto trace at ``path``, read once."""
    with gzip.open(path, "rt") as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    by_thread: dict = defaultdict(list)
    calls: dict[str, HostCallTimes] = {}
    for event in events:
        if event.get("ph") != "X" or "dur" not in event:
            continue
        by_thread[(event.get("pid"), event.get("tid"))].append(event)
        name = event.get("name", "")
        if name.startswith(HOST_CALL_EVENT):
            times = calls.setdefault(name[len(HOST_CALL_EVENT) :], HostCallTimes())
            times.seconds += event["dur"] * 1e-6
            times.calls += 1
    return Trace(_op_times(by_thread), calls)


def read_op_times(path: str) -> dict[str, ProgramTimes]:
    """Each program's op times in the Perfetto trace at ``path`` (module name -> times)."""
    return read_trace(path).programs


def _op_times(by_thread: dict) -> dict[str, ProgramTimes]:
    out: dict[str, ProgramTimes] = {}
    for thread_events in by_thread.values():
        thread_events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[list] = []  # [end, event, children's time]
        for event in thread_events + [None]:
            start = float("inf") if event is None else event["ts"]
            while stack and stack[-1][0] <= start:
                end, done, nested = stack.pop()
                _count(out, done, (done["dur"] - nested) * 1e-6)
                if stack:
                    stack[-1][2] += done["dur"]
            if event is not None:
                stack.append([event["ts"] + event["dur"], event, 0.0])
    return out


def _count(out: dict[str, ProgramTimes], event: dict, own_seconds: float) -> None:
    args = event.get("args") or {}
    module, op = args.get("hlo_module"), args.get("hlo_op")
    if not module or not op:
        return
    times = out.setdefault(module, ProgramTimes(module))
    times.seconds[op] += max(own_seconds, 0.0)
    run = args.get("run_id")
    times.runs.add(run)
    begin, end = event["ts"] * 1e-6, (event["ts"] + event["dur"]) * 1e-6
    span = times.spans.setdefault(run, [begin, end])
    span[0], span[1] = min(span[0], begin), max(span[1], end)
