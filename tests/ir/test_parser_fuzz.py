"""Fuzzing the IR text parser. Mutated IR text either parses into a graph that verifies and
prints back to text that parses to the same text, or raises ParseError naming a line and
column of the text: never another exception, never a hang (each parse has a time limit).

The seeds are printed graphs: irgen's random graphs (plain, nested, stateful, simplifiable),
one graph per op-vs-numpy case of tests/ir/test_ops_*.py (every op, with the attributes its
tests use) and hand-built graphs for the rest of the syntax the printer emits (while loops,
variables, state_map, devices, transfers, host calls, sharding, constants of every dtype,
locations naming several lines). The mutations flip, delete, duplicate and swap characters,
tokens and lines; truncate; insert IR punctuation, keywords, edge numbers, unicode and NUL;
nest brackets deeply; and splice two programs.

``FLOWJIT_FUZZ_EXAMPLES=N`` runs N hypothesis examples and N seeded mutations (the long mode;
by default about ten seconds). The counts of the run are printed after this module's tests:
``parser fuzz: N parses, M parsed OK, K ParseErrors``."""

from __future__ import annotations

import collections
import contextlib
import os
import random
import re
import signal
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import opcheck
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from irgen import graphs, nested_graphs, parse_error_at, simplifiable_graphs, stateful_graphs

from flowjit.ir import (
    DTYPE_NAMES,
    OPS,
    Graph,
    Location,
    MeshAxes,
    ParseError,
    TensorType,
    Value,
    parse,
    print_graph,
    verify,
)
from flowjit.ir.ops import control as C
from flowjit.ir.ops import creation as Cr
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops import host as H
from flowjit.ir.ops import reduce as R
from flowjit.ir.ops import sharding as Sh
from flowjit.ir.ops import state as St
from flowjit.ir.parser import MAX_NESTING
from flowjit.passes import discharge_state

EXAMPLES = int(os.environ.get("FLOWJIT_FUZZ_EXAMPLES", "0"))
HYPOTHESIS_EXAMPLES = EXAMPLES or 400
LOOP_MUTATIONS = EXAMPLES or 10000
# Seconds one parse may take (the longest fuzzed text takes milliseconds). A parse over it is
# tried again, and fails the test only if it is slow twice: a busy machine may pause one parse,
# a slow parse is slow every time. An alarm interrupts a parse that hangs, after HANG_LIMIT.
TIME_LIMIT = 2.0
HANG_LIMIT = 10.0


@dataclass
class Tally:
    parses: int = 0
    parsed: int = 0
    parse_errors: int = 0
    # ParseErrors the parser made of a rule's exception other than a FlowjitError (a bug of
    # the rule, outside the parser), by their message
    rule_bugs: collections.Counter = field(default_factory=collections.Counter)


TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def report_tally(request):
    start = time.perf_counter()
    yield
    bugs = ", ".join(f"{n} {kind}" for kind, n in TALLY.rule_bugs.most_common())
    line = (
        f"parser fuzz: {TALLY.parses} parses, {TALLY.parsed} parsed OK, "
        f"{TALLY.parse_errors} ParseErrors in {time.perf_counter() - start:.1f} s"
        + (f"; made of rule errors: {bugs}" if bugs else "")
    )
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + line)  # shown without -s too, so that a person can quote it


# -- the check every fuzzed text gets -------------------------------------------------------
class ParseTimeout(BaseException):
    """Raised by the alarm in the middle of a parse; a BaseException so that no handler in
    the parser can swallow it."""


def _alarm(signum, frame):
    raise ParseTimeout


def timed_parse(text: str) -> Graph:
    """parse(text), failing the test if it hangs or takes over TIME_LIMIT, twice in a row."""
    for _ in range(2):
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, HANG_LIMIT)
        start = time.perf_counter()
        outcome: Graph | ParseError | None = None  # None: interrupted by the alarm
        try:
            outcome = parse(text)
        except ParseError as err:
            outcome = err
        except ParseTimeout:
            pass
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        if outcome is not None and time.perf_counter() - start < TIME_LIMIT:
            break
    else:
        raise AssertionError(f"parse took over {TIME_LIMIT} s (or hung), twice")
    if isinstance(outcome, ParseError):
        raise outcome
    return outcome


def check_parse(text: str) -> None:
    """The parser's contract on ``text``: a ParseError names a line of the text and a column
    at most one past its end; a graph verifies and prints as text that parses back to the
    same text."""
    TALLY.parses += 1
    try:
        graph = timed_parse(text)
    except ParseError as err:
        TALLY.parse_errors += 1
        if err.__cause__ is not None:
            TALLY.rule_bugs[str(err).split(": ", 1)[1][:100]] += 1
        lines = text.split("\n")
        assert 1 <= err.line <= len(lines), str(err)
        assert 1 <= err.column <= len(lines[err.line - 1]) + 1, str(err)
        return
    TALLY.parsed += 1
    verify(graph)
    printed = print_graph(graph)
    TALLY.parses += 1
    assert print_graph(timed_parse(printed)) == printed


def shortest_failing(text: str, fails) -> str:
    """A shorter text on which ``fails`` still holds: drops chunks, halving their size
    (delta debugging), so that a failure reports an input a person can read."""
    chunk = len(text) // 2
    while chunk:
        at = 0
        while at < len(text):
            shorter = text[:at] + text[at + chunk :]
            if fails(shorter):
                text = shorter
            else:
                at += chunk
        chunk //= 2
    return text


def check_or_report(text: str, replay: str) -> None:
    """check_parse, reporting a failure with the shortest text that fails the same way."""
    try:
        check_parse(text)
    except Exception as err:
        kind = type(err)

        def fails(candidate: str) -> bool:
            try:
                check_parse(candidate)
            except Exception as other:
                return type(other) is kind
            return False

        raise AssertionError(
            f"{kind.__name__}: {err}\n({replay}); shortest failing text:\n"
            f"{shortest_failing(text, fails)!r}"
        ) from err


def test_a_parse_that_hangs_fails(monkeypatch):
    def hang(text):
        while True:
            pass

    this = sys.modules[__name__]
    monkeypatch.setattr(this, "parse", hang)
    monkeypatch.setattr(this, "HANG_LIMIT", 0.05)
    with pytest.raises(AssertionError, match="or hung"):
        timed_parse("graph @g() {\n  return\n}\n")


# -- seeds ----------------------------------------------------------------------------------
F32 = TensorType((), np.float32)


def _while_graph() -> Graph:
    """Variables, a while loop (cond and body subgraphs, one writing the variable), a device,
    a location naming several lines and file names that need escapes."""

    def loop_graph(name: str) -> Graph:
        graph = Graph(name, [Value(F32), Value(F32)])
        graph.add_state("w", F32)
        return graph

    below = Graph("below", [Value(F32), Value(F32)])
    below.outputs = list(below.add(E.lt, below.inputs[::-1], loc=Location("loop.py", 2)))
    body = loop_graph("body")
    (step,) = body.add(St.read_variable, [body.states[0]])
    (grown,) = body.add(E.add, [body.inputs[1], step], loc=Location('a "q" é\\.py', 3))
    body.add(St.assign_add_variable, [body.states[0], grown], device="cpu:1")
    body.outputs = [grown]
    main = Graph("train.step", [Value(F32), Value(F32)])
    w = main.add_state("w", F32)
    main.add_state("unused", TensorType((2, 0), DTYPE_NAMES["bf16"]))
    attrs = {"consts": 1, "cond": below, "body": body}
    at = Location("loop.py", 9, (Location("other.py", 1), Location("loop.py", 12)))
    (result,) = main.add(C.while_loop, main.inputs, attrs, at)
    main.add(St.assign_variable, [w, result])
    main.add(St.assign_sub_variable, [w, *main.add(St.read_variable, [w])])
    main.outputs = [result, result]
    return main


def _placed_graph() -> Graph:
    """What partition and sharding print: a cluster on a mesh, a transfer, a host call with
    result types and sharding constraints."""
    t = TensorType((8, 4), np.float32)
    mesh = "data=4, model=2"
    body = Graph("cluster_1", [Value(t)])
    (sharded,) = body.add(Sh.with_sharding, body.inputs, {"mesh": mesh, "spec": "[{data}, {}]"})
    body.outputs = list(body.add(E.tanh, [sharded]))
    main = Graph("main", [Value(t), Value(TensorType((), np.int64))])
    placed = MeshAxes.parse(mesh)  # (a cluster running SPMD over the mesh)
    (clustered,) = main.add(H.cluster, main.inputs[:1], {"body": body}, device=placed)
    (moved,) = main.add(H.transfer, [clustered], {"device": "cpu:1"})
    result_types = (t, TensorType((0,), np.uint8))
    attrs = {"callback": print, "name": "log\tit", "result_types": result_types}
    main.outputs = list(main.add(H.host_call, [moved, main.inputs[1]], attrs))
    spec = "[{data, model}, {}]"
    main.outputs += main.add(Sh.with_sharding, [moved], {"mesh": mesh, "spec": spec})
    return main


def _constants_graph() -> Graph:
    """Constants of every dtype holding edge values, dtype attributes, axes lists, a bool
    attribute, empty and scalar shapes."""
    graph = Graph("consts", [Value(TensorType((2, 3), np.float32))])
    edges = {
        "f": [np.nan, np.inf, -np.inf, -0.0, 1.5e-7, 65504.0],
        "i": [-(2**63), 2**63 - 1, 0, -1, 7, 8],
        "u": [0, 2**64 - 1, 1, 2, 3, 4],
        "b": [True, False, True, True, False, False],
    }
    for dtype in DTYPE_NAMES.values():
        kind = "f" if dtype.kind in "fV" else dtype.kind
        values = edges[kind]
        if kind in "iu":
            info = np.iinfo(dtype)
            values = [min(max(v, int(info.min)), int(info.max)) for v in values]
        array = np.array(values, np.float64 if kind == "f" else dtype).astype(dtype)
        for shape in [(2, 3), (), (0, 2)]:
            value = array[: int(np.prod(shape))].reshape(shape)
            graph.outputs += graph.add(Cr.constant, [], {"value": value})
        graph.outputs += graph.add(E.convert, graph.inputs, {"dtype": dtype})
    attrs = {"shape": (2, 3), "dimension": 1, "dtype": DTYPE_NAMES["bf16"]}
    graph.outputs += graph.add(Cr.iota, [], attrs, Location("", 0))
    graph.outputs += graph.add(R.reduce_sum, graph.inputs, {"axes": (0, 1), "keepdims": True})
    graph.outputs += graph.add(R.reduce_max, graph.inputs, {"axes": (), "keepdims": False})
    return graph


def syntax_seeds() -> list[str]:
    """Printed graphs covering every syntax feature the printer emits."""
    stateful = _while_graph()
    discharged, _ = discharge_state(stateful)
    texts = [print_graph(g) for g in (stateful, discharged, _placed_graph(), _constants_graph())]
    return texts + [print_graph(stateful, locs=False), "graph @e() {\n  return\n}\n"]


def op_case_seeds() -> list[str]:
    """One printed graph per op-vs-numpy case: every op, with attributes its tests use (the
    same list whichever test modules pytest has imported already)."""
    cases = [case for group in opcheck.load_cases().values() for case in group]
    texts = []
    rng = np.random.default_rng(0)
    for case in cases:
        inputs, attrs = case.make(rng, np.dtype(case.dtypes[0]))
        graph = Graph(case.name)
        args = [graph.add_input(TensorType(np.shape(x), np.asarray(x).dtype)) for x in inputs]
        graph.outputs = list(graph.add(case.opdef, args, attrs, Location("case.py", 1)))
        texts.append(print_graph(graph))
    return texts


IRGEN = graphs() | nested_graphs() | stateful_graphs() | simplifiable_graphs()


def irgen_seeds(count: int) -> list[str]:
    """``count`` printed graphs drawn from irgen's strategies, the same on every run."""
    texts = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(IRGEN)
    def collect(graph):
        texts.append(print_graph(graph))

    collect()
    return texts


@pytest.fixture(scope="module")
def seeds() -> list[str]:
    return syntax_seeds() + op_case_seeds() + irgen_seeds(60)


# -- mutations ------------------------------------------------------------------------------
# Roughly the parser's tokens; whatever else is one character.
_TOKENS = re.compile(
    r'%[\w.]+|\$[\w.]+|@[\w.]+|"(?:[^"\\\n]|\\.)*"|-?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\w+|->|\S'
)
PUNCTUATION = list('()[]{},:=%$@"#-.\\') + ["->", "\n", " ", "\t", "\r"]
KEYWORDS = "graph return state state_map in out none loc device dense true false".split()
KEYWORDS += ["inf", "-inf", "nan", "@g", "%0", "%99", "$w", "$x", *DTYPE_NAMES]
KEYWORDS += ['""', '"\\u0000"', '"\\ud800"', '"\\x"']  # strings: empty, NUL, a lone surrogate, bad
NUMBERS = "0 -0 -1 1 2 3 -0.0 1.5 1e999 -1e999 1e-400 2147483648 4294967296".split()
NUMBERS += ["9223372036854775807", "9223372036854775808", "18446744073709551616", "9" * 30]
NUMBERS += ["9" * 5000, "0" * 5000 + "1", "1" + "0" * 400 + ".0"]  # past int()'s 4300 digits
UNICODE = ["é", "٣", "٣.٥", "\u00a0", "\u2028", "\ufeff", "\U0001f600", "\ud800", "\x00", "\x7f"]
UNICODE += ["\x0b", "\x0c", "İ", "ﬁ", "𝟗"]
ALPHABET = "".join(PUNCTUATION) + "abcdefgxyz0123456789_+*;/!?'`~<>|&^" + "".join(UNICODE)
BRACKETS = ["[", "(", "{", "graph @g(", "dense(", "[1, ", "loc("]


def _span(rng: random.Random, text: str) -> tuple[int, int]:
    start = rng.randrange(len(text) + 1)
    return start, min(len(text), start + rng.choice([1, 1, 2, 3, 8, 40]))


def _flip(rng, text, seeds):
    at = rng.randrange(len(text)) if text else 0
    if rng.random() < 0.5 and text:  # one bit of the character
        new = chr(ord(text[at]) ^ (1 << rng.randrange(8)))
    else:
        new = rng.choice(ALPHABET)
    return text[:at] + new + text[at + 1 :]


def _delete(rng, text, seeds):
    start, end = _span(rng, text)
    return text[:start] + text[end:]


def _duplicate(rng, text, seeds):
    start, end = _span(rng, text)
    return text[:end] + text[start:end] + text[end:]


def _tokens(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _TOKENS.finditer(text)] or [(0, 0)]


def _token_edit(rng, text, seeds):
    """Delete, duplicate or replace a token, or swap two."""
    tokens = _tokens(text)
    start, end = rng.choice(tokens)
    edit = rng.choice(["delete", "duplicate", "replace", "swap"])
    if edit == "delete":
        return text[:start] + text[end:]
    if edit == "duplicate":
        return text[:end] + " " + text[start:end] + text[end:]
    if edit == "replace":
        other = rng.choice([*KEYWORDS, *NUMBERS, *PUNCTUATION, *OPS])
        if rng.random() < 0.3:  # a token of this text elsewhere
            a, b = rng.choice(tokens)
            other = text[a:b]
        return text[:start] + other + text[end:]
    (a, b), (c, d) = sorted([(start, end), rng.choice(tokens)])
    if b > c:
        return text
    return text[:a] + text[c:d] + text[b:c] + text[a:b] + text[d:]


def _numbers(rng, text, seeds):
    """Replace a number (a dimension, an attribute, an element, a line) with an edge one."""
    numbers = [m.span() for m in re.finditer(r"-?\d+(?:\.\d*)?(?:e[+-]?\d+)?|inf|nan", text)]
    if not numbers:
        return text
    start, end = rng.choice(numbers)
    return text[:start] + rng.choice(NUMBERS) + text[end:]


def _line_edit(rng, text, seeds):
    """Delete, duplicate, swap or move lines."""
    lines = text.split("\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    edit = rng.choice(["delete", "duplicate", "swap", "move"])
    if edit == "delete":
        del lines[i]
    elif edit == "duplicate":
        lines.insert(i, lines[i])
    elif edit == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines.insert(j, lines.pop(i))
    return "\n".join(lines)


def _truncate(rng, text, seeds):
    """Cut the text anywhere, or right after a character of a chosen kind."""
    kind = rng.choice(["anywhere", *'({["%:=,\n@$ ', "digit"])
    if kind == "anywhere":
        at = rng.randrange(len(text) + 1)
    else:
        pattern = r"\d" if kind == "digit" else re.escape(kind)
        ends = [m.end() for m in re.finditer(pattern, text)] or [len(text)]
        at = rng.choice(ends)
    return text[:at]


def _insert(rng, text, seeds):
    """Insert punctuation, a keyword, an op name, an edge number or unicode."""
    pool = rng.choice([PUNCTUATION, KEYWORDS, NUMBERS, UNICODE, list(OPS)])
    word = rng.choice(pool)
    at = rng.choice(_tokens(text))[rng.randrange(2)] if rng.random() < 0.7 else len(text) // 2
    sep = rng.choice(["", " "])
    return text[:at] + sep + word + sep + text[at:]


def _nest(rng, text, seeds):
    """Open (and maybe close) brackets tens to thousands of levels deep."""
    depth = rng.choice([40, 70, 130, 400, 1500])
    opener = rng.choice(BRACKETS)
    closer = {"[": "]", "(": ")", "{": "}"}.get(opener[-1], "")
    nested = opener * depth + (closer * depth if rng.random() < 0.5 else "")
    at = rng.choice(_tokens(text))[0]
    return text[:at] + nested + text[at:]


def _splice(rng, text, seeds):
    """The start of this text followed by the end of another (at any character or line)."""
    other = rng.choice(seeds)
    if rng.random() < 0.5:
        return text[: rng.randrange(len(text) + 1)] + other[rng.randrange(len(other) + 1) :]
    a, b = text.split("\n"), other.split("\n")
    return "\n".join(a[: rng.randrange(len(a) + 1)] + b[rng.randrange(len(b) + 1) :])


MUTATIONS = [_flip, _delete, _duplicate, _token_edit, _token_edit, _numbers, _line_edit]
MUTATIONS += [_truncate, _insert, _insert, _nest, _splice]


def mutate(rng: random.Random, seeds: list[str]) -> str:
    """One to four mutations of a random seed."""
    text = rng.choice(seeds)
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])):
        text = rng.choice(MUTATIONS)(rng, text, seeds)
    return text


# -- the fuzz tests -------------------------------------------------------------------------
def test_seeds_parse_and_round_trip(seeds):
    for text in seeds:
        check_parse(text)
        assert print_graph(parse(text)) == text


@settings(
    max_examples=HYPOTHESIS_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(rng=st.randoms(use_true_random=False))
def test_mutated_text_raises_only_parse_error(seeds, rng):
    """Hypothesis draws the seed and every choice of the mutations (and shrinks them)."""
    check_parse(mutate(rng, seeds))


def test_seeded_random_mutations_raise_only_parse_error(seeds):
    """Many mutations per second: mutation i of this test is mutate(random.Random(i), ...),
    so a failure names the i that replays it."""
    for i in range(LOOP_MUTATIONS):
        text = mutate(random.Random(i), seeds)
        check_or_report(text, f"replay: mutate(random.Random({i}), seeds)")


# -- what the fuzzing found ------------------------------------------------------------------
def nested_clusters(depth: int, mark_at: int | None = None) -> str:
    """A graph whose cluster op's body is a graph whose cluster op's body ... ``depth`` graphs
    deep; "^" (see REGRESSIONS) before the graph numbered ``mark_at`` from 1."""
    head = "graph @g(%0: f32[]) {\n  %1: f32[] = cluster(%0) {body="
    heads = [("^" if i + 1 == mark_at else "") + head for i in range(depth - 1)]
    return (
        "".join(heads) + "graph @g(%0: f32[]) {\n  return %0\n}" + "}\n  return %1\n}" * (depth - 1)
    )


def state_text(header: str, body: str) -> str:
    return f"graph @g(%0: f32[]){header} {{\n{body}\n}}\n"


W = " state($w: f32[])"
DEEP = "9" * 5000  # more digits than Python's int() converts
BIG = str(2**64)  # a dimension whose element count does not fit in an int64
# The shortest inputs on which the parser failed the contract, and the error they now give;
# "^" marks the line and column the ParseError must name (it is removed before parsing).
REGRESSIONS = [
    pytest.param(  # was ValueError (int() of too many digits)
        state_text("", f'  %1: f32[] = neg(%0) loc("f.py":^{DEEP})\n  return %1'),
        "too many digits",
        id="line-number-with-5000-digits",
    ),
    pytest.param(  # was ValueError (int() of too many digits)
        "graph @g() {\n"
        f"  %0: i32[2] = iota() {{shape=[2], dimension=^{DEEP}, dtype=i32}}\n"
        "  return %0\n}\n",
        "too many digits",
        id="attribute-with-5000-digits",
    ),
    pytest.param(  # was RecursionError
        "graph @g(%0: f32[2]) {\n  %1: f32[] = reduce_sum(%0) {axes="
        + "[" * (MAX_NESTING - 1)
        + "^"
        + "[" * 2000
        + "]" * (MAX_NESTING + 2000)
        + ", keepdims=false}\n  return %1\n}\n",
        f"nest more than {MAX_NESTING} levels deep",
        id="lists-nested-2000-deep",
    ),
    pytest.param(  # was RecursionError
        nested_clusters(400, mark_at=MAX_NESTING + 1),
        f"nest more than {MAX_NESTING} levels deep",
        id="subgraphs-nested-400-deep",
    ),
    pytest.param(  # was OverflowError (numpy counting the elements in an int64)
        "graph @g() {\n"
        f"  %0: bool[0] = constant() {{value=dense(^bool[{BIG}], [])}}\n"
        "  return %0\n}\n",
        "more than 2**63 - 1 elements",
        id="dense-with-2**64-elements",
    ),
    pytest.param(  # was OverflowError, in reshape's shape rule
        f"graph @g(%0: ^f32[{BIG}]) {{\n"
        "  %1: f32[2] = reshape(%0) {shape=[2]}\n"
        "  return %1\n}\n",
        "more than 2**63 - 1 elements",
        id="input-with-2**64-elements",
    ),
    pytest.param(  # was OverflowError, from TensorType.size in reshape's shape rule; the
        # message is the rule's (today the OverflowError's, once the rule raises it a ShapeError's)
        "graph @g(%0: f32[2,3]) {\n"
        f"  ^%1: f32[6] = reshape(%0) {{shape=[{BIG}, 6]}}\n"
        "  return %1\n}\n",
        "",
        id="reshape-to-2**64-elements",
    ),
    pytest.param(  # was ValueError, from int() in with_sharding's shape rule (parse_mesh)
        "graph @g(%0: f32[4]) {\n"
        f'  ^%1: f32[4] = with_sharding(%0) {{mesh="data={DEEP}", spec="[{{data}}]"}}\n'
        "  return %1\n}\n",
        "",
        id="mesh-axis-size-with-5000-digits",
    ),
    pytest.param(  # parsed, then failed verify: a handle is not a value
        state_text(W, "  %1: f32[] = neg(^$w)\n  return %1"),
        "$w is a variable handle",
        id="handle-as-an-operand",
    ),
    pytest.param(  # parsed, then failed verify
        state_text(W, "  assign_variable($w, ^$w)\n  return %0"),
        "$w is a variable handle",
        id="handle-as-a-state-ops-second-operand",
    ),
    pytest.param(  # parsed, then failed verify: a state op takes a handle first
        state_text(W, "  %1: f32[] = read_variable(^%0)\n  return %1"),
        "%0 is not a variable handle, but read_variable takes one",
        id="value-for-a-handle",
    ),
    pytest.param(  # parsed, then failed verify
        state_text(W, "  return ^$w"),
        "$w is a variable handle",
        id="handle-as-a-result",
    ),
    pytest.param(  # parsed, then failed verify: state_map replaces state(...)
        state_text(W + " ^state_map($w: in=0 out=none)", "  return %0"),
        "cannot also declare state",
        id="state-and-state_map",
    ),
    pytest.param(  # parsed, then failed verify
        state_text(" state_map($w: in=0 out=^1)", "  return %0"),
        "state output 1 is not an output of the graph",
        id="state_map-output-out-of-range",
    ),
]


@pytest.mark.parametrize("marked, message", REGRESSIONS)
def test_regressions_raise_parse_error_at_the_marked_token(marked, message):
    _, text = parse_error_at(timed_parse, marked, message)
    check_parse(text)


def test_subgraphs_nest_up_to_the_limit():
    text = nested_clusters(MAX_NESTING)
    graph = timed_parse(text)
    verify(graph)
    assert print_graph(timed_parse(print_graph(graph))) == print_graph(graph)
