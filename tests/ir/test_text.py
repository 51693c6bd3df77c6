"""The IR text form: print -> parse -> print is identical; malformed text -> ParseError with
line and column, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irgen import graphs

from flowjit.ir import Location, ParseError, parse, print_graph, verify

GOLDEN = """\
graph @step(%0: f32[2,3], %1: f32[], %2: i32[3]) {
  %3: f32[2,3] = add(%0, %1) loc("train.py":5)
  %4: f32[3] = constant() {value=dense(f32[3], [1.5, -0.0, inf])} loc("a \\"quoted\\" file.py":6)
  %5: f32[2,3] = mul(%3, %4)
  %6: bool[2,3] = gt(%5, %1)
  %7: i32[2,3] = convert(%6) {dtype=i32}
  %8: f32[2,3] = select(%6, %5, %0)
  return %8, %7, %2
}
"""


def test_golden_round_trip():
    graph = parse(GOLDEN)
    verify(graph)
    assert print_graph(graph) == GOLDEN
    assert graph.ops[0].loc == Location("train.py", 5)
    assert graph.ops[1].loc.file == 'a "quoted" file.py'
    assert graph.outputs[2] is graph.inputs[2]


def test_print_without_locations_and_parse_it():
    text = print_graph(parse(GOLDEN), locs=False)
    assert "loc(" not in text
    assert print_graph(parse(text), locs=False) == text


def test_names_are_renumbered_and_comments_ignored():
    text = (
        "# after pass cse\ngraph @g(%x: f32[2]) {\n  %y: f32[2] = neg(%x)  # negate\n"
        "  return %y\n}\n"
    )
    assert (
        print_graph(parse(text))
        == "graph @g(%0: f32[2]) {\n  %1: f32[2] = neg(%0)\n  return %1\n}\n"
    )


def test_empty_graph_and_attribute_kinds():
    assert print_graph(parse("graph @e() {\n  return\n}\n")) == "graph @e() {\n  return\n}\n"
    text = (
        "graph @k() {\n  %0: bf16[2,2] = iota() {shape=[2, 2], dimension=1, dtype=bf16}\n"
        "  %1: bool[2] = constant() {value=dense(bool[2], [true, false])}\n  return %0, %1\n}\n"
    )
    assert print_graph(parse(text)) == text


# Each text marks the position the error must name with "^" (removed before parsing).
MALFORMED = [
    ("^", "expected 'graph'"),
    ("graph @g(%0: ^f33[2]) {\n  return\n}", "unknown dtype 'f33'"),
    ("graph @g(%0: f32[2]) {\n  %1: f32[2] = ^nope(%0)\n  return %1\n}", "unknown op 'nope'"),
    ("graph @g(%0: f32[2]) {\n  %1: f32[2] = neg(^%7)\n  return %1\n}", "%7 is used before"),
    (
        "graph @g(%0: f32[2]) {\n  ^%1: f32[3] = neg(%0)\n  return %1\n}",
        "declared f32[3] but neg gives f32[2]",
    ),
    ("graph @g(%0: f32[2]) {\n  ^%0: f32[2] = neg(%0)\n  return %0\n}", "defined twice"),
    (
        "graph @g(%0: f32[2], %1: i32[2]) {\n  ^%2: f32[2] = add(%0, %1)\n  return %2\n}",
        "different dtypes",
    ),
    (
        "graph @g() {\n  %0: f32[2] = constant() {value=dense^(f32[2], [1.0])}\n  return %0\n}",
        "needs 2 elements",
    ),
    (
        "graph @g(%0: f32[2]) {\n  ^%1: f32[2] = neg(%0) {bogus=1}\n  return %1\n}",
        "unknown attributes",
    ),
    ("graph @g(%0: f32[2]) {\n  %1: f32[2] = neg(%0) ^$\n  return %1\n}", "unexpected character"),
    ("graph @g(%0: f32[^-2]) {\n  return\n}", "non-negative integer"),
    ("graph @g(%0: f32[2]) {\n  return %0\n} ^extra", "expected eof"),
]


@pytest.mark.parametrize("marked, message", MALFORMED)
def test_malformed_text_reports_line_and_column(marked, message):
    at = marked.index("^")
    text = marked.replace("^", "", 1)
    line = text.count("\n", 0, at) + 1
    column = at - (text.rfind("\n", 0, at) + 1) + 1
    with pytest.raises(ParseError) as info:
        parse(text)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert message in str(info.value)
    assert str(info.value).startswith(f"line {line}, column {column}: ")


# -- hypothesis: random graphs round-trip; mangled text fails only with ParseError ----------
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_random_graphs_round_trip(graph):
    verify(graph)
    text = print_graph(graph)
    again = parse(text)
    verify(again)
    assert print_graph(again) == text
    assert print_graph(again, locs=False) == print_graph(graph, locs=False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(), st.data())
def test_mangled_text_raises_only_parse_error(graph, data):
    text = print_graph(graph)
    edit = data.draw(st.sampled_from(["delete", "insert", "truncate", "swap"]))
    at = data.draw(st.integers(0, len(text)))
    if edit == "delete":
        text = text[:at] + text[at + 1 :]
    elif edit == "insert":
        text = text[:at] + data.draw(st.sampled_from(list('%@()[]{},:=-"#x9.e\n '))) + text[at:]
    elif edit == "truncate":
        text = text[:at]
    else:
        other = data.draw(st.integers(0, len(text)))
        chars = list(text)
        if at < len(chars) and other < len(chars):
            chars[at], chars[other] = chars[other], chars[at]
        text = "".join(chars)
    try:
        graph = parse(text)
    except ParseError as err:
        assert err.line >= 1 and err.column >= 1
    else:
        verify(graph)  # what parses is a valid graph


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_raises_only_parse_error(text):
    with pytest.raises(ParseError):
        parse("graph @g(" + text)
