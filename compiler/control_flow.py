"""``fj.cond``, ``fj.while_loop``, ``fj.fori_loop`` and ``fj.scan`` (API.md, section 5).

Each user function is traced once into a subgraph, in a child trace context: Tensors of the
enclosing function it uses become explicit inputs (passed to the op as consts) and Variables
it reads or assigns are named in the subgraph's ``state(...)``. Operands and carries are
pytrees of Tensors; where two sides must agree (the branches of a cond, a loop's carry in and
out) a TypeMismatchError names the first leaf where they differ and the user's line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import DTypeError, Graph, ShapeError, TensorType, TypeMismatchError, Value
from flowjit.ir.ops import control as C
from flowjit.ir.types import BOOL

from .dtypes import check_fits, data_dtype
from .location import user_location
from .trace import TraceContext, current, emit


@dataclass
class _Traced:
    """A user function traced into a subgraph."""

    graph: Graph
    treedef: Any  # the structure of its result
    paths: list[str]  # each result leaf's path, for messages
    captured: list[Value]  # values of the enclosing graph it uses, in input order


def tensor_leaves(tree: Any, what: str) -> tuple[list, Any, list[str]]:
    """The leaves of ``tree`` as Tensors of the current trace, its treedef and leaf paths."""
    from .numpy_api import asarray

    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    tensors, paths = [], []
    for path, leaf in flat:
        try:
            tensors.append(asarray(leaf))
        except TypeError:
            raise TypeMismatchError(
                f"{what}{jax.tree_util.keystr(path)} is a {type(leaf).__name__}; "
                "use Tensors, arrays or numbers (in tuples, lists, dicts)",
                loc=user_location(),
            ) from None
        paths.append(f"{what}{jax.tree_util.keystr(path)}")
    return tensors, treedef, paths


def trace_function(fn: Callable, name: str, args_tree: Any, types: list[TensorType]) -> _Traced:
    """Trace ``fn`` called on Tensors of ``types`` arranged as ``args_tree`` (a treedef)."""
    parent = current()
    with TraceContext(name, parent) as ctx:
        args = jax.tree_util.tree_unflatten(args_tree, [ctx.input(t) for t in types])
        result = fn(*args)
        tensors, treedef, paths = tensor_leaves(result, "result")
        ctx.graph.outputs = [ctx.capture(t) for t in tensors]
    return _Traced(ctx.graph, treedef, paths, list(ctx.captured))


def with_inputs(traced: _Traced, declared: int, captured: list[Value]) -> Graph:
    """The traced graph with inputs ``[captures in the order of captured, declared inputs]``;
    a value this function does not capture gets an input it does not use."""
    graph = traced.graph
    own = dict(zip(traced.captured, graph.inputs[declared:]))
    consts = [own[v] if v in own else Value(v.type) for v in captured]
    graph.inputs = consts + graph.inputs[:declared]
    return graph


def captured_union(*traced: _Traced) -> list[Value]:
    seen: dict[Value, None] = {}
    for t in traced:
        seen.update(dict.fromkeys(t.captured))
    return list(seen)


def check_same(
    what: str,
    got: tuple[Any, list[str], list[TensorType]],
    want: tuple[Any, list[TensorType]],
    other: str,
) -> None:
    """TypeMismatchError unless ``got`` (treedef, leaf paths, leaf types) has the structure
    and types of ``want`` (treedef, leaf types), which ``other`` names."""
    loc = user_location()
    (got_treedef, paths, types), (want_treedef, want_types) = got, want
    if got_treedef != want_treedef:
        raise TypeMismatchError(
            f"{what} is {got_treedef} but {other} is {want_treedef}; "
            "they must have the same structure",
            loc=loc,
        )
    for path, t, w in zip(paths, types, want_types):
        if t != w:
            raise TypeMismatchError(
                f"{what} gives {t} at {path} but {other} is {w} there; "
                "make them agree (convert with .astype(), or broadcast)",
                loc=loc,
            )


def results_of(traced: _Traced, treedef: Any = None) -> tuple[Any, list[str], list[TensorType]]:
    """What ``check_same`` compares of a traced function's results (of their leading part
    of structure ``treedef``, if given)."""
    treedef = traced.treedef if treedef is None else treedef
    return treedef, traced.paths, [v.type for v in traced.graph.outputs]


def _as_tuple(results: Any) -> tuple:
    return results if isinstance(results, tuple) else (results,)


def unflatten(treedef: Any, results: Any) -> Any:
    return jax.tree_util.tree_unflatten(treedef, _as_tuple(results))


def _is_static(bound: Any) -> bool:
    return isinstance(bound, (int, np.integer)) and not isinstance(bound, bool)


def outer_tensors(values: list[Value]) -> list:
    from .tensor import Tensor

    ctx = current()
    return [Tensor(v, ctx) for v in values]


def cond(pred: Any, true_fn: Callable, false_fn: Callable, *operands: Any) -> Any:
    """``true_fn(*operands)`` if ``pred`` else ``false_fn(*operands)``; both are traced and
    must return the same structure of Tensors with the same shapes and dtypes."""
    from .numpy_api import asarray

    current()
    pred = asarray(pred)
    if pred.shape != ():
        raise TypeMismatchError(
            f"fj.cond needs a scalar predicate, got a Tensor {pred._value.type}; reduce it "
            "first (e.g. .any() or .all())",
            loc=user_location(),
        )
    if pred.dtype != BOOL:
        pred = pred != 0
    tensors, treedef, _ = tensor_leaves(operands, "operands")
    types = [t._value.type for t in tensors]
    true = trace_function(true_fn, "true_branch", treedef, types)
    false = trace_function(false_fn, "false_branch", treedef, types)
    check_same("fj.cond: false_fn", results_of(false), results_of(true)[::2], "true_fn")
    captured = captured_union(true, false)
    results = emit(
        C.cond,
        [pred, *outer_tensors(captured), *tensors],
        true_branch=with_inputs(true, len(types), captured),
        false_branch=with_inputs(false, len(types), captured),
    )
    return unflatten(true.treedef, results)


def while_loop(cond_fn: Callable, body_fn: Callable, init: Any) -> Any:
    """``carry = body_fn(carry)`` while ``cond_fn(carry)``, starting from ``init``. Not
    differentiable (use fori_loop with static bounds or scan)."""
    current()
    tensors, treedef, _ = tensor_leaves(init, "init")
    types = [t._value.type for t in tensors]
    args_tree = jax.tree_util.tree_structure((init,))
    test = trace_function(cond_fn, "cond", args_tree, types)
    if len(test.graph.outputs) != 1 or test.graph.outputs[0].type != TensorType((), BOOL):
        got = ", ".join(str(v.type) for v in test.graph.outputs) or "nothing"
        raise TypeMismatchError(
            f"fj.while_loop: cond_fn must return a scalar bool Tensor, got {got}",
            loc=user_location(),
        )
    body = trace_function(body_fn, "body", args_tree, types)
    check_same("fj.while_loop: body_fn", results_of(body), (treedef, types), "init")
    captured = captured_union(test, body)
    results = emit(
        C.while_loop,
        [*outer_tensors(captured), *tensors],
        consts=len(captured),
        cond=with_inputs(test, len(types), captured),
        body=with_inputs(body, len(types), captured),
    )
    return unflatten(treedef, results)


def scan(
    fn: Callable,
    init: Any,
    xs: Any = None,
    length: int | None = None,
    reverse: bool = False,
    remat: bool = False,
) -> tuple[Any, Any]:
    """Like ``jax.lax.scan``: ``fn(carry, x) -> (carry, y)`` over the leading axis of ``xs``;
    returns the final carry and the ys stacked along a new leading axis. With ``remat``, the
    body is wrapped in ``fj.checkpoint`` (``prevent_cse=False``: the forward and backward
    loops are apart): its gradient keeps only each step's carry and x, and recomputes the
    rest of the step in the backward loop."""
    current()
    if remat:
        from .remat import checkpoint

        fn = checkpoint(fn, prevent_cse=False)
    carry, carry_tree, _ = tensor_leaves(init, "init")
    xs_leaves, xs_tree, xs_paths = tensor_leaves(xs, "xs")
    lengths = {t.shape[0] if t.shape else None for t in xs_leaves}
    if length is not None:
        lengths.add(int(length))
    if None in lengths or len(lengths) != 1:
        sizes = ", ".join(f"{p}: {t._value.type}" for p, t in zip(xs_paths, xs_leaves))
        raise TypeMismatchError(
            "fj.scan needs xs whose leading axes all have the same length (and equal "
            f"length= if given); got {sizes or 'no xs'}"
            + (f" and length={length}" if length is not None else ""),
            loc=user_location(),
        )
    (n,) = lengths
    carry_types = [t._value.type for t in carry]
    slice_types = [TensorType(t.shape[1:], t.dtype) for t in xs_leaves]

    def step(c: Any, x: Any) -> tuple:
        out = fn(c, x)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeMismatchError(
                f"fj.scan: fn must return a pair (new carry, y), got a {type(out).__name__}",
                loc=user_location(),
            )
        return tuple(out)

    args_tree = jax.tree_util.tree_structure((init, xs))
    body = trace_function(step, "body", args_tree, carry_types + slice_types)
    carry_out, y_tree = body.treedef.children()
    check_same(
        "fj.scan: fn's new carry", results_of(body, carry_out), (carry_tree, carry_types), "init"
    )
    captured = body.captured
    results = emit(
        C.scan,
        [*outer_tensors(captured), *carry, *xs_leaves],
        consts=len(captured),
        carries=len(carry),
        length=n,
        reverse=bool(reverse),
        body=with_inputs(body, len(carry_types) + len(slice_types), captured),
    )
    results = _as_tuple(results)
    k = len(carry)
    return (
        jax.tree_util.tree_unflatten(carry_tree, results[:k]),
        jax.tree_util.tree_unflatten(y_tree, results[k:]),
    )


def _traced_bound(bound: Any, what: str) -> Any:
    """A bound of fori_loop that is not a Python int, as a Tensor: it must be an integer
    scalar; a DTypeError (a float) or ShapeError (an array) naming the user's line if not."""
    from .numpy_api import asarray

    tensor = asarray(bound)
    error = DTypeError if tensor.dtype.kind not in "iu" else ShapeError if tensor.shape else None
    if error is not None:
        raise error(
            f"fj.fori_loop: {what} must be an int or an integer scalar Tensor, got {bound!r}; "
            f"convert it: int({what}) for a Python number, {what}.astype(fnp.int32) for a "
            "Tensor",
            loc=user_location(),
        )
    return tensor


def fori_loop(lower: Any, upper: Any, body_fn: Callable, init: Any) -> Any:
    """``carry = body_fn(i, carry)`` for ``i`` in ``range(lower, upper)``. With Python ints
    as bounds it is a scan (differentiable); with Tensor bounds a while_loop."""
    from .numpy_api import asarray

    current()

    def body(i: Any, value: Any) -> Any:
        """body_fn, its carry checked here so that a mismatch is reported as fori_loop's."""
        new = body_fn(i, value)
        got, got_tree, paths = tensor_leaves(new, "carry")
        want, want_tree, _ = tensor_leaves(value, "carry")
        check_same(
            "fj.fori_loop: body_fn",
            (got_tree, paths, [t._value.type for t in got]),
            (want_tree, [t._value.type for t in want]),
            "init",
        )
        return new

    if _is_static(lower) and _is_static(upper):
        lower, upper = int(lower), int(upper)
        dtype = data_dtype([lower, upper])  # (int32; int64 under x64 where a bound needs it)
        check_fits([lower, upper], dtype, "fj.fori_loop's bounds", loc=user_location())

        def step(carry, _):
            i, value = carry
            return (i + 1, body(i, value)), None

        start = asarray(np.asarray(lower, dtype))
        (_, out), _ = scan(step, (start, init), None, length=max(upper - lower, 0))
        return out
    lower, upper = _traced_bound(lower, "lower"), _traced_bound(upper, "upper")
    (_, _, out) = while_loop(
        lambda c: c[0] < c[1],
        lambda c: (c[0] + 1, c[1], body(c[0], c[2])),
        (lower, upper.astype(lower.dtype), init),
    )
    return out
