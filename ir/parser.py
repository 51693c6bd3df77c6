"""Reads the IR text form back into a Graph. Every malformed input raises ParseError with
the line and column of the offending token; nothing else escapes."""

from __future__ import annotations

import json
import math
import re
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .core import OPS, Graph, Location, MissingFunction, StateSlot, Value
from .errors import FlowjitError, ParseError, ShapeError
from .types import DTYPE_NAMES, MAX_RANK, MAX_SIZE, MeshAxes, TensorType

# Lists and subgraphs nest at most this deep: far beyond any program, and well within
# Python's recursion limit, so that a text nested deeper is a ParseError, not a RecursionError.
MAX_NESTING = 64

# Every alternative costs time linear in the text it matches and no memory beyond the match:
# the string literal's repeats are possessive, so the regex engine keeps no backtracking state
# per character (``(?:[^"\\]|\\.)*`` kept about 300 bytes per character).
_TOKEN = re.compile(
    r"""
    (?P<skip>\s+|\#[^\n]*)
  | (?P<value>%[A-Za-z0-9_.]+)
  | (?P<state>\$[A-Za-z0-9_.]+)
  | (?P<symbol>@[A-Za-z0-9_.]+)
  | (?P<number>-?(?:(?:inf|nan)(?![A-Za-z0-9_])|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+")
  | (?P<punct>->|[()\[\]{},:=])
""",
    re.VERBOSE,
)
# The longest excerpt of a token an error message quotes.
_EXCERPT = 40


def _excerpt(text: str) -> str:
    """``text`` quoted for an error message, cut short: a token may be megabytes long."""
    if len(text) <= _EXCERPT:
        return repr(text)
    return f"{text[:_EXCERPT]!r}... ({len(text)} characters)"


class _Token:
    __slots__ = ("kind", "text", "line", "column")

    def __init__(self, kind: str, text: str, line: int, column: int):
        self.kind, self.text, self.line, self.column = kind, text, line, column


def _tokenize(text: str) -> Iterator[_Token]:
    """The tokens of ``text``, made as the parser asks for them, then "eof" forever: the
    parser stops at the first error or limit without tokenizing the rest of the text."""
    pos, line, line_start = 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            column = pos - line_start + 1
            if text[pos] == '"':
                raise ParseError("the string literal does not end on its line", line, column)
            raise ParseError(f"unexpected character {text[pos]!r}", line, column)
        if m.lastgroup != "skip":
            yield _Token(m.lastgroup, m.group(), line, pos - line_start + 1)
        else:  # only whitespace and comments hold newlines
            newlines = text.count("\n", pos, m.end())
            if newlines:
                line, line_start = line + newlines, text.rindex("\n", pos, m.end()) + 1
        pos = m.end()
    eof = _Token("eof", "", line, pos - line_start + 1)
    while True:
        yield eof


class _Parser:
    def __init__(self, text: str, functions: Sequence[Callable]):
        self.functions = functions
        self.missing: dict[int, MissingFunction] = {}  # numbers not in functions
        self.tokens = _tokenize(text)
        self.token = next(self.tokens)  # the next token, not yet consumed
        self.values: dict[str, Value] = {}
        self.enclosing: list[dict[str, TensorType]] = []  # variables of the graphs we are in
        self.depth = 0  # lists and graphs we are in

    # -- token helpers -------------------------------------------------------------------
    def peek(self) -> _Token:
        return self.token

    def advance(self) -> _Token:
        """Consume the next token and return it."""
        token, self.token = self.token, next(self.tokens)
        return token

    def error(self, message: str, token: _Token | None = None) -> ParseError:
        token = token or self.peek()
        return ParseError(message, token.line, token.column)

    def take(self, kind: str, text: str | None = None) -> _Token:
        token = self.peek()
        if token.kind != kind or (text is not None and token.text != text):
            want = repr(text) if text is not None else kind
            got = _excerpt(token.text) if token.kind != "eof" else "end of input"
            raise self.error(f"expected {want}, got {got}")
        return self.advance()

    def accept(self, kind: str, text: str | None = None) -> bool:
        token = self.peek()
        if token.kind == kind and (text is None or token.text == text):
            self.advance()
            return True
        return False

    @contextmanager
    def nested(self, token: _Token) -> Iterator[None]:
        """Inside one more list or graph; ParseError at ``token`` beyond MAX_NESTING."""
        if self.depth == MAX_NESTING:
            raise self.error(f"lists and graphs nest more than {MAX_NESTING} levels deep", token)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def comma_items(self, close: str, item) -> Iterator:
        """The items of a list ending at ``close``, each read as the caller asks for it: a
        caller that stops at a limit reads no further."""
        if self.accept("punct", close):
            return
        while True:
            yield item()
            if self.accept("punct", close):
                return
            self.take("punct", ",")

    def comma_list(self, close: str, item) -> list:
        return list(self.comma_items(close, item))

    # -- grammar -------------------------------------------------------------------------
    def graph(self) -> Graph:
        """A subgraph (an attribute) has its own value names: it sees only its own inputs,
        and may name only variables its enclosing graph declares."""
        outer, self.values = self.values, {}
        try:
            with self.nested(self.peek()):
                return self.graph_body()
        finally:
            self.values = outer

    def graph_body(self) -> Graph:
        enclosing = self.enclosing[-1] if self.enclosing else None
        self.take("ident", "graph")
        graph = Graph(self.take("symbol").text[1:])
        self.take("punct", "(")
        for name_token, type_ in self.comma_list(")", self.typed_name):
            graph.inputs.append(self.define(name_token, type_))
        if self.accept("ident", "state"):
            self.take("punct", "(")
            for name_token, type_ in self.comma_list(")", lambda: self.typed_name("state")):
                name = name_token.text[1:]
                if enclosing is not None and enclosing.get(name) != type_:
                    raise self.error(
                        f"subgraph variable {name_token.text}: {type_} is not declared by "
                        "the enclosing graph with that type",
                        name_token,
                    )
                self.define(name_token, type_, graph.add_state(name, type_))
        slots = []
        if self.peek().text == "state_map":
            if enclosing is not None:
                raise self.error("a subgraph cannot have a state_map")
            if graph.states:
                raise self.error(
                    "a graph with a state_map (discharged) cannot also declare state(...)"
                )
            self.take("ident", "state_map")
            self.take("punct", "(")
            slots = self.comma_list(")", lambda: self.state_slot(graph))
            graph.state_map = [slot for slot, _ in slots]
        self.take("punct", "{")
        self.enclosing.append({h.name: h.type for h in graph.states})
        while not (self.peek().kind == "ident" and self.peek().text == "return"):
            self.op(graph)
        self.enclosing.pop()
        self.take("ident", "return")
        if not self.accept("punct", "}"):
            graph.outputs = [self.use()]
            while self.accept("punct", ","):
                graph.outputs.append(self.use())
            self.take("punct", "}")
        for slot, token in slots:
            if slot.output is not None and slot.output >= len(graph.outputs):
                raise self.error(f"state output {slot.output} is not an output of the graph", token)
        return graph

    def typed_name(self, kind: str = "value") -> tuple[_Token, TensorType]:
        name = self.take(kind)
        self.take("punct", ":")
        return name, self.type()

    def type(self) -> TensorType:
        token = self.take("ident")
        if token.text not in DTYPE_NAMES:
            raise self.error(
                f"unknown dtype {_excerpt(token.text)}; known: {', '.join(DTYPE_NAMES)}", token
            )
        return self.shape(token)

    def shape(self, dtype: _Token) -> TensorType:
        """The ``[2,3]`` of a tensor type whose dtype was ``dtype``. The rank limit is checked
        at each dimension, so that a hostile text stops at the first one past it."""
        self.take("punct", "[")
        dims = []
        for dim in self.comma_items("]", self.nonnegative_int):
            if len(dims) == MAX_RANK:
                raise self.error(
                    f"the type {dtype.text}[...] has more than {MAX_RANK} dimensions, "
                    "the most a tensor may have",
                    dtype,
                )
            dims.append(dim)
        if max(dims, default=0) > MAX_SIZE or math.prod(dims) > MAX_SIZE:
            raise self.error(f"the type {dtype.text}[...] has more than 2**63 - 1 elements", dtype)
        return TensorType(tuple(dims), DTYPE_NAMES[dtype.text])

    def nonnegative_int(self) -> int:
        token = self.take("number")
        if not token.text.isdigit():
            raise self.error(f"expected a non-negative integer, got {_excerpt(token.text)}", token)
        return self.integer(token)

    def integer(self, token: _Token) -> int:
        """The integer ``token`` spells."""
        try:
            return int(token.text)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise self.error(
                f"the integer {token.text[:20]}... has too many digits", token
            ) from None

    def define(self, token: _Token, type_: TensorType, value: Value | None = None) -> Value:
        if token.text in self.values:
            raise self.error(f"value {token.text} is defined twice", token)
        value = value or Value(type_)
        self.values[token.text] = value
        return value

    def use(self, token: _Token | None = None) -> Value:
        """The value ``token`` (by default the next token) names: not a variable handle, which
        only a state op takes, as its first input (see ``op``)."""
        token = token or self.operand()
        if token.kind == "state":
            raise self.error(
                f"{token.text} is a variable handle, which only a state op takes (as its first "
                "input); read it with read_variable first",
                token,
            )
        return self.lookup(token)

    def operand(self) -> _Token:
        """An op's input: a value or a variable handle (``op`` checks which it may be)."""
        return self.take("state" if self.peek().kind == "state" else "value")

    def lookup(self, token: _Token) -> Value:
        if token.text not in self.values:
            raise self.error(f"value {token.text} is used before it is defined", token)
        return self.values[token.text]

    def state_slot(self, graph: Graph) -> tuple[StateSlot, _Token]:
        """A slot, and the token of its output index (checked once the outputs are read)."""
        name = self.take("state")
        self.take("punct", ":")
        indices = []
        for key, limit in (("in", len(graph.inputs)), ("out", None)):
            self.take("ident", key)
            self.take("punct", "=")
            token = self.peek()
            index = None if self.accept("ident", "none") else self.nonnegative_int()
            if index is not None and limit is not None and index >= limit:
                raise self.error(f"state input {index} is not an input of the graph", token)
            indices.append(index)
        return StateSlot(name.text[1:], *indices), token

    def op(self, graph: Graph) -> None:
        start = self.peek()
        results = []
        if start.kind == "value":  # ops without results start with their name
            results.append(self.typed_name())
            while self.accept("punct", ","):
                results.append(self.typed_name())
            self.take("punct", "=")
        name = self.take("ident")
        opdef = OPS.get(name.text)
        if opdef is None:
            raise self.error(f"unknown op {_excerpt(name.text)}", name)
        self.take("punct", "(")
        inputs = []
        for i, token in enumerate(self.comma_list(")", self.operand)):
            if i != opdef.state_operand:
                inputs.append(self.use(token))
            elif token.kind == "state":  # a state op's handle
                inputs.append(self.lookup(token))
            else:
                raise self.error(
                    f"{token.text} is not a variable handle, but {name.text} takes one first",
                    token,
                )
        attrs: dict[str, Any] = {}
        if self.accept("punct", "{"):
            for key, value in self.comma_list("}", self.attr_entry):
                if key.text in attrs:
                    raise self.error(f"attribute {key.text} given twice", key)
                if opdef.attrs.get(key.text) == "function":
                    value = self.function(key, value)
                attrs[key.text] = value
        device = None
        if self.accept("ident", "device"):
            self.take("punct", "(")
            device = self.device()
            self.take("punct", ")")
        loc = self.loc() if self.peek().kind == "ident" and self.peek().text == "loc" else None
        try:
            outputs = graph.add(opdef, inputs, attrs, loc, device)
        except FlowjitError as err:
            raise self.error(err.detail, start) from None
        except Exception as err:  # a rule's bug on inputs it did not expect; chained to show it
            message = f"{name.text} cannot take these inputs: {type(err).__name__}: {err}"
            raise self.error(message, start) from err
        if len(outputs) != len(results):
            raise self.error(
                f"{name.text} has {len(outputs)} results, the text names {len(results)}", start
            )
        for (token, declared), value in zip(results, outputs):
            if declared != value.type:
                raise self.error(
                    f"{token.text} is declared {declared} but {name.text} gives {value.type}", token
                )
            self.define(token, declared, value)

    def device(self) -> str | MeshAxes:
        """A device name, or ``mesh(<axes>)``: the mesh of a cluster that runs SPMD."""
        token = self.peek()
        name = self.string()
        if not (name.startswith("mesh(") and name.endswith(")")):
            return name
        try:
            return MeshAxes.parse(name[len("mesh(") : -1])
        except ShapeError as err:
            raise self.error(err.detail, token) from None

    def function(self, key: _Token, number: Any) -> Callable:
        """The Python function numbered ``number`` (a MissingFunction if none was given)."""
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise self.error(f"{key.text} must be a function's number, got {number!r}", key)
        if number < len(self.functions):
            return self.functions[number]
        return self.missing.setdefault(number, MissingFunction(number))

    def loc(self) -> Location:
        """``loc("f.py":3)``, or ``loc("f.py":3, "f.py":7)`` for an op standing for several."""
        self.take("ident", "loc")
        self.take("punct", "(")
        origins = self.comma_list(")", self.origin)
        if not origins:
            raise self.error('loc() needs at least one "file":line')
        first, *also = origins
        return Location(first.file, first.line, tuple(also))

    def origin(self) -> Location:
        file = self.string()
        self.take("punct", ":")
        return Location(file, self.nonnegative_int())

    def string(self) -> str:
        token = self.take("string")
        try:
            return json.loads(token.text)
        except ValueError:
            raise self.error(f"bad string literal {_excerpt(token.text)}", token) from None

    def attr_entry(self) -> tuple[_Token, Any]:
        key = self.take("ident")
        self.take("punct", "=")
        return key, self.attr_value()

    def attr_value(self) -> Any:
        token = self.peek()
        if token.kind == "string":
            return self.string()
        if token.kind == "number":
            return self.number()
        if self.accept("punct", "["):
            with self.nested(token):
                return tuple(self.comma_list("]", self.attr_value))
        if token.kind == "ident":
            words = {"true": True, "false": False, "none": None}
            if token.text == "graph":
                return self.graph()
            if token.text in words:
                self.advance()
                return words[token.text]
            if token.text == "dense":
                self.advance()
                return self.dense()
            if token.text in DTYPE_NAMES:
                self.advance()
                if self.peek().kind == "punct" and self.peek().text == "[":  # a tensor type
                    return self.shape(token)
                return DTYPE_NAMES[token.text]
        got = _excerpt(token.text) if token.kind != "eof" else "end of input"
        raise self.error(f"expected an attribute value, got {got}", token)

    def number(self) -> int | float:
        token = self.take("number")
        if any(c in token.text for c in ".eEn"):  # 'n' catches inf and nan
            return float(token.text)
        return self.integer(token)

    def dense(self) -> np.ndarray:
        start = self.peek()
        self.take("punct", "(")
        type_ = self.type()
        self.take("punct", ",")
        self.take("punct", "[")
        elements = []
        for element in self.comma_items("]", self.attr_value):  # stops at one too many
            if not isinstance(element, (bool, int, float)):
                raise self.error("dense elements must be numbers or booleans", start)
            if len(elements) == type_.size:
                raise self.error(f"dense {type_} needs {type_.size} elements, got more", start)
            elements.append(element)
        self.take("punct", ")")
        if len(elements) != type_.size:
            raise self.error(
                f"dense {type_} needs {type_.size} elements, got {len(elements)}", start
            )
        try:
            with np.errstate(all="ignore"):
                return np.array(elements, dtype=type_.dtype).reshape(type_.shape)
        except (OverflowError, ValueError, TypeError) as err:
            raise self.error(f"dense elements do not fit {type_}: {err}", start) from None


def parse(text: str, functions: Sequence[Callable] = ()) -> Graph:
    """Parse one graph from its text form. Raises ParseError (with line and column) for any
    text that is not a valid graph: what parses, verifies.

    Text cannot hold the Python functions of host calls: it numbers them (``callback=0``),
    and ``functions[n]`` is function n (``graph.functions()`` lists a graph's in that order).
    One not given is a MissingFunction, an error when the host call runs."""
    if not isinstance(text, str):
        raise TypeError(f"parse expects a str, got {type(text).__name__}")
    parser = _Parser(text, tuple(functions))
    graph = parser.graph()
    parser.take("eof")
    return graph
