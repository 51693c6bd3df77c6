"""The IR text form: print -> parse -> print is identical; malformed text -> ParseError with
line and column, never another exception."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irgen import graphs, nested_graphs, parse_error_at

from flowjit.ir import (
    Effect,
    Graph,
    Location,
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
from flowjit.ir.ops import state as St

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
    err, _ = parse_error_at(parse, marked, message)
    assert str(err).startswith(f"line {err.line}, column {err.column}: ")


# -- hypothesis: random graphs round-trip; mangled text fails only with ParseError ----------
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs() | nested_graphs())
def test_random_graphs_round_trip(graph):
    verify(graph)
    text = print_graph(graph)
    again = parse(text)
    verify(again)
    assert print_graph(again) == text
    assert print_graph(again, locs=False) == print_graph(graph, locs=False)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs() | nested_graphs(), st.data())
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


# -- nested graphs (the subgraphs of cond, while and scan) ----------------------------------
NESTED = """\
graph @outer(%0: f32[], %1: f32[4]) state($w: f32[]) {
  %2: f32[], %3: f32[4] = scan(%0, %1) {consts=0, carries=1, length=4, reverse=false, \
body=graph @step(%0: f32[], %1: f32[]) state($w: f32[]) {
      %2: bool[] = gt(%1, %0)
      %3: f32[] = cond(%2, %0, %1) {true_branch=graph @grow(%0: f32[], %1: f32[]) \
state($w: f32[]) {
          %2: f32[] = while(%1, %0) {consts=1, cond=graph @below(%0: f32[], %1: f32[]) {
              %2: bool[] = lt(%1, %0)
              return %2
            }, body=graph @double(%0: f32[], %1: f32[]) state($w: f32[]) {
              %2: f32[] = constant() {value=dense(f32[], [2.0])}
              %3: f32[] = mul(%1, %2) loc("nested.py":4)
              assign_add_variable($w, %3)
              return %3
            }} loc("nested.py":3)
          return %2
        }, false_branch=graph @shrink(%0: f32[], %1: f32[]) {
          %2: f32[] = sub(%0, %1)
          return %2
        }} loc("nested.py":2)
      %4: f32[] = neg(%3)
      return %3, %4
    }} loc("nested.py":1)
  %4: f32[] = read_variable($w)
  return %2, %3, %4
}
"""


def nested_graph() -> Graph:
    """NESTED, built op by op: a scan whose body holds a cond whose true branch holds a
    while loop that writes $w."""
    f32 = TensorType((), np.float32)

    def graph(name: str, *, state: bool = False) -> tuple[Graph, Value, Value]:
        g = Graph(name, [Value(f32), Value(f32)])
        if state:
            g.add_state("w", f32)
        return g, g.inputs[0], g.inputs[1]

    below, limit, x = graph("below")
    below.outputs = list(below.add(E.lt, [x, limit]))
    double, _, x = graph("double", state=True)
    (two,) = double.add(Cr.constant, [], {"value": np.array(2.0, np.float32)})
    (doubled,) = double.add(E.mul, [x, two], loc=Location("nested.py", 4))
    double.add(St.assign_add_variable, [double.states[0], doubled])
    double.outputs = [doubled]
    grow, c, x = graph("grow", state=True)
    grow.outputs = list(
        grow.add(
            C.while_loop,
            [x, c],
            {"consts": 1, "cond": below, "body": double},
            Location("nested.py", 3),
        )
    )
    shrink, c, x = graph("shrink")
    shrink.outputs = list(shrink.add(E.sub, [c, x]))
    step, c, x = graph("step", state=True)
    (bigger,) = step.add(E.gt, [x, c])
    (chosen,) = step.add(
        C.cond,
        [bigger, c, x],
        {"true_branch": grow, "false_branch": shrink},
        Location("nested.py", 2),
    )
    step.outputs = [chosen, *step.add(E.neg, [chosen])]
    outer = Graph("outer", [Value(f32), Value(TensorType((4,), np.float32))])
    w = outer.add_state("w", f32)
    attrs = {"consts": 0, "carries": 1, "length": 4, "reverse": False, "body": step}
    results = outer.add(C.scan, outer.inputs, attrs, Location("nested.py", 1))
    outer.outputs = [*results, *outer.add(St.read_variable, [w])]
    return outer


def test_nested_golden_print_and_round_trip():
    graph = nested_graph()
    verify(graph)
    assert print_graph(graph) == NESTED
    again = parse(NESTED)
    verify(again)
    assert print_graph(again) == NESTED
    text = print_graph(again, locs=False)
    assert "loc(" not in text and print_graph(parse(text), locs=False) == text
    body = again.ops[0].attrs["body"]
    loop = body.ops[1].attrs["true_branch"].ops[0]
    assert loop.opdef is C.while_loop and loop.loc == Location("nested.py", 3)
    assert loop.attrs["body"].ops[1].loc == Location("nested.py", 4)
    # the write deep inside makes every enclosing op write
    assert all(Effect.WRITE in op.effects for op in (again.ops[0], body.ops[1], loop))


def test_nested_value_names_are_local():
    text = """graph @g(%x: f32[3], %0: i32[]) {
  %y: f32[3] = scan(%x) {consts=0, carries=1, length=0, reverse=false, \
body=graph @b(%0: f32[3]) {
      %x: f32[3] = neg(%0)
      %y: f32[3] = exp(%x)
      return %y
    }}
  %1: f32[3] = add(%x, %y)
  return %1, %0
}
"""
    graph = parse(text)
    body = graph.ops[0].attrs["body"]
    # the body's %0 is its own input (not the outer i32 %0); its %x and %y are its own values
    assert body.inputs[0] is not graph.inputs[1] and body.inputs[0].type.shape == (3,)
    assert body.ops[0].inputs == (body.inputs[0],)
    assert graph.ops[1].inputs == (graph.inputs[0], graph.ops[0].outputs[0])
    assert graph.outputs[1] is graph.inputs[1]
    # printing numbers each graph's values from %0
    assert print_graph(graph) == (
        "graph @g(%0: f32[3], %1: i32[]) {\n"
        "  %2: f32[3] = scan(%0) {consts=0, carries=1, length=0, reverse=false, "
        "body=graph @b(%0: f32[3]) {\n"
        "      %1: f32[3] = neg(%0)\n"
        "      %2: f32[3] = exp(%1)\n"
        "      return %2\n"
        "    }}\n"
        "  %3: f32[3] = add(%0, %2)\n"
        "  return %3, %1\n"
        "}\n"
    )


def cond_text(true_body: str, false_body: str = "      return %0", outer: str = "") -> str:
    """A graph with one cond whose branches take one f32[2] and hold the given lines."""
    return (
        "graph @g(%0: bool[], %1: f32[2]) {\n"
        "  %2: f32[2] = cond(%0, %1) {true_branch=graph @t(%0: f32[2]) {\n"
        f"{true_body}\n"
        "    }, false_branch=graph @f(%0: f32[2]) {\n"
        f"{false_body}\n"
        "    }}\n"
        f"{outer}"
        "  return %2\n"
        "}"
    )


# As in MALFORMED, "^" marks where the error must be reported.
NESTED_MALFORMED = [
    (cond_text("      %1: f32[2] = ^nope(%0)\n      return %1"), "unknown op 'nope'"),
    (  # a branch sees only its own inputs, not the enclosing graph's values
        cond_text("      %2: f32[2] = neg(^%1)\n      return %2"),
        "%1 is used before it is defined",
    ),
    (  # ... and its values are not visible after the op
        cond_text("      %5: f32[2] = neg(%0)\n      return %5", outer="  return ^%5\n"),
        "%5 is used before it is defined",
    ),
    (
        cond_text("      ^%1: f32[3] = neg(%0)\n      return %1"),
        "%1 is declared f32[3] but neg gives f32[2]",
    ),
    (cond_text("      %1: f32[2] = neg(%0)\n      return ^%2"), "%2 is used before"),
    (  # in the second branch
        cond_text("      return %0", "      %1: f32[2] = neg(%0)\n      return %1, ^%9"),
        "%9 is used before",
    ),
    (cond_text("      %1: f32[2] = neg(%0)\n      ^%1: f32[2] = neg(%0)"), "defined twice"),
    (  # the branches disagree: the cond (in the outer graph) is at fault
        (
            "graph @g(%0: bool[], %1: f32[2]) {\n"
            "  ^%2: f32[2] = cond(%0, %1) {true_branch=graph @t(%0: f32[2]) {\n"
            "      return %0\n"
            "    }, false_branch=graph @f(%0: f32[2]) {\n"
            "      %1: f64[2] = convert(%0) {dtype=f64}\n"
            "      return %1\n"
            "    }}\n"
            "  return %2\n"
            "}"
        ),
        "false_branch result 0 is f64[2] but true_branch result 0 is f32[2]",
    ),
    (
        (
            "graph @g(%0: bool[], %1: f32[2]) {\n"
            "  ^%2: f32[2] = cond(%0, %1) {true_branch=graph @t(%0: f32[2]) {\n"
            "      return %0\n"
            "    }, false_branch=3}\n"
            "  return %2\n"
            "}"
        ),
        "attribute false_branch=3 is not a valid graph",
    ),
    (  # a while body three levels down: scan > cond > while
        (
            "graph @g(%0: f32[]) {\n"
            "  %1: f32[] = scan(%0) {consts=0, carries=1, length=3, reverse=false, "
            "body=graph @b(%0: f32[]) {\n"
            "      %1: bool[] = constant() {value=dense(bool[], [true])}\n"
            "      %2: f32[] = cond(%1, %0) {true_branch=graph @t(%0: f32[]) {\n"
            "          %1: f32[] = while(%0) {consts=0, cond=graph @c(%0: f32[]) {\n"
            "              %1: bool[] = lt(%0, %0)\n"
            "              return %1\n"
            "            }, body=graph @d(%0: f32[]) {\n"
            "              ^%1: f32[] = exp(%0) {base=2}\n"
            "              return %1\n"
            "            }}\n"
            "          return %1\n"
            "        }, false_branch=graph @f(%0: f32[]) {\n"
            "          return %0\n"
            "        }}\n"
            "      return %2\n"
            "    }}\n"
            "  return %1\n"
            "}"
        ),
        "unknown attributes ['base']",
    ),
    (cond_text("      return %0\n    ^)"), "expected '}', got ')'"),
]


@pytest.mark.parametrize("marked, message", NESTED_MALFORMED)
def test_malformed_nested_graph_reports_line_and_column(marked, message):
    test_malformed_text_reports_line_and_column(marked, message)


def test_subgraph_variables_must_be_declared_by_the_enclosing_graph():
    """What parses verifies (see test_mangled_text_raises_only_parse_error), so a branch
    naming a variable its enclosing graph lacks, or has with another type, is a ParseError."""
    for outer in ("", " state($v: f32[3])"):
        text = (
            f"graph @g(%0: bool[], %1: f32[]){outer} {{\n"
            "  %2: f32[] = cond(%0, %1) {true_branch=graph @t(%0: f32[]) state($v: f32[]) {\n"
            "      assign_variable($v, %0)\n"
            "      return %0\n"
            "    }, false_branch=graph @f(%0: f32[]) {\n"
            "      return %0\n"
            "    }}\n"
            "  return %2\n"
            "}\n"
        )
        with pytest.raises(ParseError, match=r"\$v") as info:
            parse(text)
        assert info.value.line == 2, str(info.value)


def test_graph_names_print_as_text_that_parses_back():
    # a function named <lambda> (or any name the text form cannot read) still round-trips
    graph = Graph("<lambda>", [Value(TensorType((2,), np.float32))])
    graph.outputs = list(graph.inputs)
    text = print_graph(graph)
    assert text.startswith("graph @_lambda_(")
    assert print_graph(parse(text)) == text
