"""Hostile IR text costs time and memory linear in its length (issue 20, item 7): the rank
limit stops a type at its 65th dimension, a dense constant at its first element too many, a
string literal costs a few bytes per character, and error messages quote long tokens cut short.

The costs are measured as traced peak memory (tracemalloc), which a busy machine does not
change, rather than as time. Before the fix, the tokenizer held every token of the text, a
string literal took about 300 bytes per character, and a type of 160,000 dimensions took
seconds to count its elements (minutes for a 10 MB text)."""

from __future__ import annotations

import tracemalloc
from typing import Any, Callable

import numpy as np
import pytest

from irgen import parse_error_at

from flowjit.ir import ParseError, ShapeError, TensorType, parse, print_graph, verify

# numpy's limit on the dimensions of an array, which flowjit's types follow.
NUMPY_MAX_RANK = 64


def traced_peak(work: Callable[[], Any]) -> int:
    """The most bytes ``work`` had allocated at once, beyond what was live when it started."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        try:
            work()
        except ParseError:
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


def identity(type_text: str) -> str:
    return f"graph @g(%0: {type_text}) {{\n  return %0\n}}\n"


def with_loc(file: str) -> str:
    return f'graph @g(%0: f32[]) {{\n  %1: f32[] = neg(%0) loc("{file}":1)\n  return %1\n}}\n'


def dims(n: int, dim: int = 1) -> str:
    return ",".join([str(dim)] * n)


# -- the rank limit ----------------------------------------------------------------------------
def test_numpy_max_rank_is_what_the_tests_assume():
    np.zeros((1,) * NUMPY_MAX_RANK)
    with pytest.raises(ValueError):
        np.zeros((1,) * (NUMPY_MAX_RANK + 1))


def test_a_type_of_the_most_dimensions_parses_and_prints_back():
    text = identity(f"f32[{dims(NUMPY_MAX_RANK)}]")
    graph = parse(text)
    verify(graph)
    assert graph.inputs[0].type.shape == (1,) * NUMPY_MAX_RANK
    assert print_graph(graph) == text


@pytest.mark.parametrize("rank", [NUMPY_MAX_RANK + 1, 200_000])
def test_a_type_of_more_dimensions_is_a_parse_error_at_the_type(rank):
    parse_error_at(
        parse,
        identity(f"^f32[{dims(rank, 2**62)}]"),
        f"has more than {NUMPY_MAX_RANK} dimensions",
    )


def test_an_attribute_type_of_more_dimensions_is_a_parse_error_at_the_type():
    text = (
        "graph @g() {\n  %0: i32[2] = iota() "
        f"{{shape=[2], dimension=0, dtype=^i32[{dims(NUMPY_MAX_RANK + 1)}]}}\n  return %0\n}}\n"
    )
    parse_error_at(parse, text, f"has more than {NUMPY_MAX_RANK} dimensions")


def test_the_parser_stops_at_the_rank_limit_without_reading_on():
    """A character no token starts with, far past the limit: the rank error comes first (the
    tokenizer used to read the whole text before parsing, and this was 'unexpected
    character'), and the work does not grow with the dimensions after the limit."""
    text = identity(f"f32[{dims(1_000_000)},?]")
    with pytest.raises(ParseError, match="more than 64 dimensions"):
        parse(text)
    assert traced_peak(lambda: parse(text)) < 100_000  # bytes; the text is 2 MB


def test_tensor_type_has_at_most_the_most_dimensions():
    assert TensorType((1,) * NUMPY_MAX_RANK, np.float32).ndim == NUMPY_MAX_RANK
    with pytest.raises(ShapeError, match="shape has 200000 dimensions; a tensor has at most 64"):
        TensorType((2,) * 200_000, np.float32)


# -- dense constants -------------------------------------------------------------------------
def dense(type_text: str, elements: str) -> str:
    return (
        "graph @g() {\n"
        f"  %0: {type_text} = constant() {{value=dense^({type_text}, [{elements}])}}\n"
        "  return %0\n}\n"
    )


def test_a_dense_with_too_many_elements_stops_at_the_first_extra_one():
    text = dense("f32[2]", ",".join(["1.5"] * 1_000_000))
    parse_error_at(parse, text, "dense f32[2] needs 2 elements, got more")
    unmarked = text.replace("^", "")
    assert traced_peak(lambda: parse(unmarked)) < 100_000  # bytes; the text is 4 MB


def test_a_dense_with_too_few_elements_says_how_many():
    parse_error_at(parse, dense("f32[3]", "1, 2"), "dense f32[3] needs 3 elements, got 2")


def test_a_dense_of_a_non_number_is_an_error():
    parse_error_at(parse, dense("f32[2]", '1, "a"'), "dense elements must be numbers")


# -- string literals and long tokens -------------------------------------------------------------
@pytest.mark.parametrize(
    "body, decoded",
    [("a", "a"), ("\\n", "\n"), ('a\\"', 'a"'), ("\\u00e9\\\\", "\u00e9\\")],
    ids=["plain", "escapes", "quotes", "unicode-and-backslash"],
)
def test_a_long_string_literal_costs_a_few_bytes_per_character(body, decoded):
    """The tokenizer and the decoded string take a small multiple of the literal's length:
    the regex engine used to keep about 300 bytes per character (a 20 MB file name was a
    MemoryError)."""
    repeats = 1_000_000 // len(body)
    text = with_loc(body * repeats)
    graph = parse(text)
    assert graph.ops[0].loc.file == decoded * repeats
    assert traced_peak(lambda: parse(text)) < 8 * len(text)


def test_an_unterminated_string_literal_says_so():
    marked = with_loc("f.py").replace('"f.py"', '^"' + "a" * 100_000 + "\n")
    parse_error_at(parse, marked, "the string literal does not end on its line")


@pytest.mark.parametrize(
    "marked, message",
    [
        (identity("^" + "q" * 1_000_000 + "[2]"), "unknown dtype 'qqqq"),
        (
            "graph @g(%0: f32[]) {\n  %1: f32[] = ^" + "z" * 1_000_000 + "(%0)\n  return %1\n}\n",
            "unknown op 'zzzz",
        ),
        (
            'graph @g(%0: f32[]) {\n  return ^"' + "s" * 1_000_000 + '"\n}\n',
            "expected value, got '\"ssss",
        ),
        (identity("f32[^" + "7" * 100_000 + ".5]"), "expected a non-negative integer, got '7777"),
    ],
    ids=["dtype", "op", "string", "number"],
)
def test_errors_quote_a_long_token_cut_short(marked, message):
    error, _ = parse_error_at(parse, marked, message)
    assert len(str(error)) < 200, str(error)[:300]


def test_lines_are_counted_across_long_whitespace_and_comments():
    blank = "\n" * 10_000 + "  # a comment\n" * 10_000 + " " * 100_000
    parse_error_at(parse, f"graph @g() {{{blank}  ^% \n}}", "unexpected character '%'")
