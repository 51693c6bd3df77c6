"""``fj.profile``: where the steps' time goes, by the user's source line (API.md section 12).

``with fj.profile(logdir) as prof:`` records the steps run inside it through jax's profiler
(runtime/profile.py: the XProf trace TensorBoard's profile plugin reads, and its Perfetto
copy) and notes each compiled function called, with the arguments of its first call (to read
its program's HLO). Asked for figures, it reads every XLA op's time back and attributes it
to the flowjit ops and source lines it came from through the HLO's metadata
(backends/xla/hlo_lines.py): a fusion of ops from several lines is split by their estimated
costs, and the table says which lines got such a share. ``prof.top_lines()`` is the table,
time per step; ``prof.summary()`` every program's.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowjit.backends.xla import cluster_of_program
from flowjit.backends.xla.hlo_lines import HloLines, SourceLine
from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import LoweringError
from flowjit.runtime import config
from flowjit.runtime import profile as recording
from flowjit.runtime.plan import wait_for_steps_in_flight

from .lowered import optimized_hlo

if TYPE_CHECKING:
    from .api import CompiledFunction

_ACTIVE: list["Profile"] = []
_LOCK = threading.Lock()
_START_LOCK = threading.Lock()


def note_call(function: "CompiledFunction", args: tuple, kwargs: dict) -> None:
    """(A compiled function's call while a profile records: its first call per program is
    kept, to read the program's HLO afterwards. With FLOWJIT_PROFILE set and no profile
    recording, the first call starts the program-long one.)"""
    if not _ACTIVE and config.profile_dir is not None:
        with _START_LOCK:  # (two threads' first calls start one profile)
            if not _ACTIVE and config.profile_dir is not None:
                _start_program_profile(config.profile_dir)
    with _LOCK:
        for prof in _ACTIVE:
            calls = prof._calls.setdefault(function.program, [])
            if not calls:  # (the first call gives the program's HLO)
                calls.append((function, args, kwargs))


@functools.cache
def _internal_folders() -> tuple[str, ...]:
    """The folders of flowjit's and jax's own code (an op located there has no user line)."""
    import flowjit

    from .. import backends, ir, passes, runtime  # (flowjit.compiler's siblings)

    modules = (flowjit, ir, passes, backends, runtime, jax)
    here = [os.path.dirname(os.path.abspath(__file__)) + os.sep]
    return tuple(here + [os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in modules])


def _user_line(where: SourceLine | None) -> SourceLine | None:
    """The line a row is for: a user's, or None for ops whose only location is inside
    flowjit or jax (XLA's copies of donated buffers, say)."""
    if where is None or os.path.abspath(where.file).startswith(_internal_folders()):
        return None
    return SourceLine(where.file, where.line, "")


@dataclass
class LineTime:
    """A source line's share of the profiled steps."""

    line: SourceLine | None
    seconds_per_step: float
    share: float  # of all the attributed time
    ops: list[str] = field(default_factory=list)  # the flowjit ops made there
    estimated: bool = False  # part of its time is a share of a fusion, by cost estimates

    def __str__(self) -> str:
        where = "(no user line)" if self.line is None else str(self.line)
        return f"{where}: {self.seconds_per_step * 1e3:.3f} ms per step, {self.share:.1%}"


class Profile:
    """A recording of the steps run inside ``with fj.profile(logdir):``."""

    def __init__(self, logdir: str | os.PathLike):
        self.logdir = os.fspath(logdir)
        self._calls: dict[str, list] = {}
        self._trace: str | None = None
        self._trace_read: recording.Trace | None = None
        self._compiled: dict[str, float] = {}  # program -> XLA compile seconds, to its end
        self._lines: dict[str, list[LineTime]] | None = None
        self._step_seconds: dict[str, float] = {}
        self._executions: dict[str, int] = {}
        self._busy: dict[str, float] = {}
        self._categories: dict[str, dict[str, float]] = {}

    def __enter__(self) -> "Profile":
        os.makedirs(self.logdir, exist_ok=True)
        with _LOCK:
            if _ACTIVE:
                raise RuntimeError("fj.profile: a profile is recording already; end it first")
            _ACTIVE.append(self)
            config._set_profiling(True)
        try:
            wait_for_steps_in_flight()  # (steps dispatched before are not this profile's)
            recording.start(self.logdir)
        except BaseException:
            with _LOCK:
                _ACTIVE.remove(self)
                config._set_profiling(False)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            wait_for_steps_in_flight()  # (the steps dispatched inside have run)
        finally:
            recording.stop()
            with _LOCK:
                _ACTIVE.remove(self)
                config._set_profiling(False)
            # (compiles until now: not the profile's own, which reads the programs' HLO)
            self._compiled = recording.compile_seconds()
            # (this profile's run, even if later profiles write to the same folder)
            with contextlib.suppress(FileNotFoundError):
                self._trace = recording.latest_trace(self.logdir)

    # (read from the trace, and the programs' HLO, on first use)
    @property
    def executions(self) -> dict[str, int]:
        """program -> how many times it ran while the profile recorded."""
        self._attribute()
        return self._executions

    @property
    def step_seconds(self) -> dict[str, float]:
        """program -> the mean time of one execution (its first op's start to its last's
        end)."""
        self._attribute()
        return self._step_seconds

    @property
    def busy(self) -> dict[str, float]:
        """program -> its ops' own time over its executions' time (above 1 when ops ran side
        by side: several devices, say)."""
        self._attribute()
        return self._busy

    @property
    def categories(self) -> dict[str, dict[str, float]]:
        """program -> seconds per step in "compute", "collective", "transfer", "host call"."""
        self._attribute()
        return self._categories

    @property
    def compile_seconds(self) -> dict[str, float]:
        """program -> its XLA compile time in this process until the profile ended (jax's
        persistent-cache lookups included; not the profile's own compiles)."""
        return dict(self._compiled)

    @property
    def host_calls(self) -> dict[str, "recording.HostCallTimes"]:
        """``name at file:line`` -> the time and number of runs of each host call that ran
        between clusters (a function run step by step)."""
        return self._read().host_calls

    @property
    def trace_path(self) -> str:
        """The Perfetto trace; the XProf trace is beside it (``<host>.xplane.pb``)."""
        if self._trace is None:
            raise RuntimeError("fj.profile: the profile has not recorded yet (use it in `with`)")
        return self._trace

    def top_lines(self, program: str | None = None, n: int = 10) -> list[LineTime]:
        """The source lines that took the most time per step, most first, for ``program``
        (``jit_<function name>``; default: the program that took the most time)."""
        lines = self._attribute()
        if not lines:
            return []
        if program is None:
            program = max(lines, key=lambda p: sum(t.seconds_per_step for t in lines[p]))
        return lines[program][:n]

    def table(self, program: str | None = None, n: int = 10) -> str:
        rows = self.top_lines(program, n)
        out = ["| line | flowjit ops | ms per step | share |", "|---|---|---:|---:|"]
        for row in rows:
            where = "(no user line)" if row.line is None else str(row.line)
            mark = " *" if row.estimated else ""
            ops = ", ".join(row.ops[:4]) + (", ..." if len(row.ops) > 4 else "")
            out.append(
                f"| {where}{mark} | {ops} | {row.seconds_per_step * 1e3:.3f} | {row.share:.1%} |"
            )
        if any(row.estimated for row in rows):
            out.append(
                "\n* part of the time is a share of a fusion of several lines, split by "
                "the ops' estimated costs"
            )
        return "\n".join(out)

    def summary(self, n: int = 10) -> str:
        """Every program's table, the one that took the most time first."""
        lines = self._attribute()
        order = sorted(lines, key=lambda p: -self.step_seconds[p] * self.executions[p])
        parts = []
        for program in order:
            kinds = ", ".join(
                f"{kind} {seconds * 1e3:.3f} ms"
                for kind, seconds in sorted(self.categories[program].items(), key=lambda kv: -kv[1])
            )
            compiled = self._compiled.get(program, 0.0)
            parts.append(
                f"## {program}: {self.executions[program]} executions, "
                f"{self.step_seconds[program] * 1e3:.3f} ms each (its ops busy "
                f"{self.busy[program]:.0%} of it): {kinds}; XLA compile "
                f"{compiled:.3f} s\n\n{self.table(program, n)}\n"
            )
        calls = self.host_calls
        if calls:
            rows = ["| host call | calls | ms per call |", "|---|---:|---:|"]
            for name, t in sorted(calls.items(), key=lambda kv: -kv[1].seconds):
                rows.append(f"| {name} | {t.calls} | {t.seconds / t.calls * 1e3:.3f} |")
            parts.append("## host calls (between clusters)\n\n" + "\n".join(rows) + "\n")
        return "\n".join(parts) or "no compiled function ran while the profile recorded\n"

    def write_summary(self, n: int = 10) -> str:
        """``summary`` written to ``<logdir>/flowjit-profile.md``; returns its path."""
        path = os.path.join(self.logdir, SUMMARY)
        with open(path, "w") as f:
            f.write(f"# flowjit profile\n\n{self.summary(n)}")
        return path

    def _read(self) -> "recording.Trace":
        """The trace, read once (after the profile has recorded)."""
        if self in _ACTIVE:
            raise RuntimeError(
                "fj.profile: the profile is still recording; read its figures after the "
                "`with fj.profile(...)` block"
            )
        if self._trace_read is None:
            self._trace_read = recording.read_trace(self.trace_path)
        return self._trace_read

    def _hlo_text(self, module: str) -> str | None:
        """XLA's optimized HLO, with its source lines, of the program ``module``: a compiled
        function called in the profile, or one of the clusters a function with host calls
        runs one after another (jit_<function>_cluster_<n>)."""
        calls = self._calls.get(module)
        if calls:
            function, args, kwargs = calls[0]
            try:
                return function.lower(*args, **kwargs).compile().hlo()
            except LoweringError:  # (its clusters are programs of their own: below)
                return None
        cluster = cluster_of_program(module)
        if cluster is None:
            return None
        specs = [jax.ShapeDtypeStruct(v.type.shape, v.type.dtype) for v in cluster.graph.inputs]
        return optimized_hlo(cluster.jitted(None, True).lower(*specs))

    def _attribute(self) -> dict[str, list[LineTime]]:
        if self._lines is not None:
            return self._lines
        times = self._read().programs
        self._lines = {}
        for module, program_times in times.items():
            text = self._hlo_text(module)
            if text is None or not program_times.executions:
                continue
            hlo = HloLines(text)
            steps = program_times.executions
            self._executions[module] = steps
            span = self._step_seconds[module] = program_times.wall_per_execution()
            own = sum(program_times.seconds.values())
            # each execution's span (first op's start to last op's end) is divided among the
            # lines in proportion to their ops' own times; the ops cover this much of it
            self._busy[module] = own * 1.0 / (span * steps) if span else 0.0
            scale = span * steps / own if own else 0.0
            per_line: dict[SourceLine | None, LineTime] = {}
            kinds = self._categories[module] = {}
            for op, seconds in program_times.seconds.items():
                seconds *= scale
                kind = hlo.category(op)
                kinds[kind] = kinds.get(kind, 0.0) + seconds / steps
                shares, split = hlo.shares(op)
                lines_here = {_user_line(where) for where, _ in shares}
                for where, fraction in shares:
                    key = _user_line(where)
                    row = per_line.setdefault(key, LineTime(key, 0.0, 0.0))
                    row.seconds_per_step += seconds * fraction / steps
                    if key is not None and where.op and where.op not in row.ops:
                        row.ops.append(where.op)
                    row.estimated |= split and len(lines_here) > 1
            total = sum(r.seconds_per_step for r in per_line.values()) or 1.0
            for row in per_line.values():
                row.share = row.seconds_per_step / total
            self._lines[module] = sorted(per_line.values(), key=lambda r: -r.seconds_per_step)
        self._calls.clear()  # (the arguments kept for lowering: no longer needed)
        return self._lines


SUMMARY = "flowjit-profile.md"


def _start_program_profile(logdir: str | os.PathLike) -> None:
    """FLOWJIT_PROFILE: a profile from now to the end of the process, its table written to
    ``<logdir>/flowjit-profile.md`` then (the trace beside it, as for ``fj.profile``)."""
    prof = Profile(logdir)
    config.update("profile_dir", None)  # (started: the calls after this one only record)
    prof.__enter__()

    def finish() -> None:
        prof.__exit__(None, None, None)
        prof.write_summary()
        print(f"flowjit: profile in {prof.logdir} ({SUMMARY})", file=sys.stderr)

    atexit.register(finish)


def profile(logdir: str | os.PathLike) -> Profile:
    """``with fj.profile(logdir) as prof:`` records the steps run inside it; then
    ``prof.top_lines()`` (or ``print(prof.table())``) says which source lines took the time,
    and ``logdir`` holds the XProf trace for TensorBoard's profile plugin."""
    return Profile(logdir)
