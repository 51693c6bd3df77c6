"""Which of the user's source lines each XLA op of a compiled program comes from, read from
XLA's optimized HLO text (``Compiled.hlo()``), for profiles (``fj.profile``).

flowjit lowers each IR op under an MLIR location naming the op and its user line
(backends/xla/lowering.py); XLA keeps it through its passes as the instruction's metadata, a
``stack_frame_id`` into the module's ``FileNames`` / ``FunctionNames`` / ``FileLocations`` /
``StackFrames`` tables (the frame's function is the flowjit op, its file and line the user's).
A profile's events name top-level instructions (``fusion.3``); a fusion holds ops of several
lines, so ``HloLines.shares`` splits it by an estimate of each fused op's cost (a dot or a
convolution's multiply-adds, otherwise the elements it writes), and says it did."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_SECTION = re.compile(r"^(FileNames|FunctionNames|FileLocations|StackFrames)$")
_ENTRY = re.compile(r"^\s*(\d+)\s+(.*)$")
_COMPUTATION = re.compile(r"^(ENTRY\s+)?%([\w.\-]+)\s*\(.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.*?)\s+([\w\-]+)\((.*)$")
_ARRAY = re.compile(r"\b([a-z]+\d*)\[([\d,]*)\]")
_CALLED = re.compile(r"\b(?:calls|to_apply|body|condition)=%([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_FRAME = re.compile(r"stack_frame_id=(\d+)")
_COLLECTIVES = {
    "all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute",
    "all-reduce-start", "all-reduce-done", "all-gather-start", "all-gather-done",
    "collective-permute-start", "collective-permute-done", "collective-broadcast",
}  # fmt: skip
_TRANSFERS = {"copy", "copy-start", "copy-done", "send", "send-done", "recv", "recv-done",
              "infeed", "outfeed"}  # fmt: skip
_NO_COST = {
    "parameter", "constant", "bitcast", "tuple", "get-tuple-element", "after-all",
    "partition-id", "replica-id", "iota",
}  # fmt: skip


@dataclass(frozen=True)
class SourceLine:
    """A user's source line and the flowjit op made there (``file`` as the trace kept it)."""

    file: str
    line: int
    op: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class _Instruction:
    name: str
    opcode: str
    shapes: list[tuple[int, ...]]  # the output's arrays (a tuple's several)
    operands: list[str]
    called: list[str]
    frame: int | None
    attrs: str


def _elements(shapes: list[tuple[int, ...]]) -> int:
    return sum(math.prod(s) for s in shapes)


class HloLines:
    """One optimized HLO module's instructions and the source lines they come from."""

    def __init__(self, text: str):
        self.module = ""
        tables: dict[str, dict[int, str]] = {}
        self.computations: dict[str, list[_Instruction]] = {}
        self.entry = ""
        section, current = None, None
        for line in text.splitlines():
            if line.startswith("HloModule "):
                self.module = line.split()[1].rstrip(",")
                continue
            if _SECTION.match(line):
                section = line
                tables[section] = {}
                continue
            if section is not None:
                match = _ENTRY.match(line)
                if match:
                    tables[section][int(match.group(1))] = match.group(2)
                    continue
                section = None
            match = _COMPUTATION.match(line)
            if match:
                current = match.group(2)
                self.computations[current] = []
                if match.group(1):
                    self.entry = current
                continue
            match = _INSTRUCTION.match(line) if current is not None else None
            if match:
                self.computations[current].append(_parse(match))
        self._frames = _frames(tables)
        self._by_name = {i.name: i for body in self.computations.values() for i in body}

    def category(self, instruction: str) -> str:
        """What kind of work a top-level instruction is: "collective" (all-reduce and its
        kin), "host call" (a Python callback), "transfer" (copies, sends, in/outfeed) or
        "compute"."""
        found = self._by_name.get(instruction)
        if found is None:
            return "compute"
        if found.opcode in _COLLECTIVES:
            return "collective"
        if found.opcode == "custom-call" and "callback" in found.attrs:
            return "host call"
        if found.opcode in _TRANSFERS:
            return "transfer"
        return "compute"

    def line_of(self, instruction: str) -> SourceLine | None:
        found = self._by_name.get(instruction)
        return None if found is None or found.frame is None else self._frames.get(found.frame)

    def shares(self, instruction: str) -> tuple[list[tuple[SourceLine | None, float]], bool]:
        """How the time of ``instruction`` (a name a profile event gives) divides among the
        source lines of the ops it computes: [(line or None, fraction)], fractions summing
        to 1, and whether it was split by cost estimates (a fusion of several lines)."""
        top = self._by_name.get(instruction)
        if top is None:
            return [(None, 1.0)], False
        costs: dict[SourceLine | None, float] = {}
        for inner in self._inside(top):
            cost = self._cost(inner)
            if cost:
                where = self._frames.get(inner.frame) if inner.frame is not None else None
                costs[where] = costs.get(where, 0.0) + cost
        if not costs or set(costs) == {None}:
            return [(self.line_of(instruction), 1.0)], False
        costs.pop(None, None)  # (ops of no line: parameters' copies and the like)
        total = sum(costs.values())
        shares = sorted(((k, v / total) for k, v in costs.items()), key=lambda kv: -kv[1])
        return shares, len(shares) > 1

    def _inside(self, top: _Instruction) -> list[_Instruction]:
        """The instructions a top-level one computes: a fusion's (nested ones included), or
        itself. While loops, calls and conditionals have events of their own."""
        if top.opcode != "fusion":
            return [top]
        out, stack = [], list(top.called)
        while stack:
            for inner in self.computations.get(stack.pop(), []):
                if inner.opcode == "fusion":
                    stack.extend(inner.called)
                else:
                    out.append(inner)
        return out

    def _cost(self, inner: _Instruction) -> float:
        if inner.opcode in _NO_COST:
            return 0.0
        out = _elements(inner.shapes)
        if inner.opcode == "dot" and inner.operands:
            lhs = self._by_name.get(inner.operands[0])
            dims = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", inner.attrs)
            if lhs is not None and lhs.shapes and dims:
                shape = lhs.shapes[0]
                k = math.prod(shape[int(d)] for d in dims.group(1).split(",") if d)
                return 2.0 * out * k
        if inner.opcode == "convolution" and len(inner.operands) > 1:
            kernel = self._by_name.get(inner.operands[1])
            labels = re.search(r"dim_labels=\w+_(\w+)->", inner.attrs)
            if kernel is not None and kernel.shapes and labels and "o" in labels.group(1):
                shape = kernel.shapes[0]
                per_output = math.prod(shape) / max(shape[labels.group(1).index("o")], 1)
                return 2.0 * out * per_output
        if inner.opcode in ("reduce", "reduce-window", "scatter", "sort"):
            first = self._by_name.get(inner.operands[0]) if inner.operands else None
            return float(max(out, _elements(first.shapes) if first is not None else 0))
        return float(out)


def _parse(match: re.Match) -> _Instruction:
    name, shape, opcode, rest = match.groups()
    depth, end = 1, len(rest)
    for i, ch in enumerate(rest):  # the operands' closing parenthesis
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            end = i
            break
    operands = re.findall(r"%([\w.\-]+)", rest[:end])
    attrs = rest[end:]
    called = _CALLED.findall(attrs)
    branches = _BRANCHES.search(attrs)
    if branches:
        called += re.findall(r"%([\w.\-]+)", branches.group(1))
    frame = _FRAME.search(attrs)
    shapes = [tuple(int(d) for d in dims.split(",") if d) for _, dims in _ARRAY.findall(shape)]
    return _Instruction(
        name, opcode, shapes, operands, called, int(frame.group(1)) if frame else None, attrs
    )


def _frames(tables: dict[str, dict[int, str]]) -> dict[int, SourceLine]:
    """stack frame id -> the source line of its own location."""

    def unquote(text: str) -> str:
        return text.strip().strip('"')

    files = {k: unquote(v) for k, v in tables.get("FileNames", {}).items()}
    functions = {k: unquote(v) for k, v in tables.get("FunctionNames", {}).items()}
    locations = {}
    for k, v in tables.get("FileLocations", {}).items():
        fields = dict(re.findall(r"(\w+)=(\d+)", v))
        try:
            locations[k] = SourceLine(
                files[int(fields["file_name_id"])],
                int(fields["line"]),
                functions.get(int(fields.get("function_name_id", 0)), ""),
            )
        except (KeyError, ValueError):
            continue
    out = {}
    for k, v in tables.get("StackFrames", {}).items():
        fields = dict(re.findall(r"(\w+)=(\d+)", v))
        where = locations.get(int(fields.get("file_location_id", 0)))
        if where is not None:
            out[k] = where
    return out
