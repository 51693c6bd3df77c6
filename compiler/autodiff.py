"""Reverse-mode autodiff as a graph transformation (API.md, section 4).

``gradients(y, xs)`` walks the ops traced so far from ``y`` backwards and appends the
gradient ops each op's rule (``OpDef.vjp``, declared beside the op) builds. An op without a
rule stops the gradient (comparisons, integer ops, ``stop_gradient``): its inputs get zeros
from it, as in jax. A Variable's gradient is taken at its reads, summed over them."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence


from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import DTypeError, ShapeError, Value
from flowjit.ir.grad import Emit, backward
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops import state as S
from flowjit.ir.types import is_float
from flowjit.passes.discharge import lift_state

from .location import check_argnums, positional_parameters, user_location
from .trace import current, emit, tracing


def gradients(y: Any, xs: Sequence[Any]) -> list[Any]:
    """d y / d x for each of ``xs`` (Tensors or Variables), as Tensors of their shapes; zeros
    where ``y`` does not depend on ``x``. ``y`` must be a float scalar Tensor."""
    from .numpy_api import asarray

    y = asarray(y)
    if y.shape != ():
        raise ShapeError(
            f"gradients needs a scalar y, got a Tensor {y._value.type}; "
            "reduce it first (e.g. .sum() or .mean())",
            op="gradients",
            loc=user_location(),
        )
    if not is_float(y.dtype):
        raise DTypeError(
            f"gradients needs a float y, got a Tensor {y._value.type}; differentiate a float "
            "value (compute in floats, or convert with .astype(fnp.float32))",
            op="gradients",
            loc=user_location(),
        )
    return pull_back([(y, None)], xs)


def pull_back(seeds: Sequence[tuple[Any, Any]], xs: Sequence[Any]) -> list[Any]:
    """The reverse sweep ``gradients`` and ``fj.vjp`` share: for ``seeds``, pairs (a Tensor
    of the current trace, its cotangent: a Tensor of its type, or None for ones), the sum over
    them of <cotangent, d y / d x> for each of ``xs`` (Tensors or Variables), as Tensors of
    their shapes (zeros where no y depends on x)."""
    from .numpy_api import asarray, zeros
    from .tensor import Tensor
    from .variable import Variable

    ctx = current()
    # Loops and branches that use variables get them as operands, read just before them:
    # a variable's gradient is then taken at its reads in this graph.
    ctx.graph.ops = lift_state(ctx.graph)[0].ops
    ops = list(ctx.graph.ops)
    xs = [x if isinstance(x, (Tensor, Variable)) else asarray(x) for x in xs]
    reads: dict[Any, list[Value]] = {}  # each variable's reads, by handle
    for op in ops:
        if op.opdef is S.read_variable:
            reads.setdefault(op.state_handle, []).append(op.outputs[0])
    wrt = [_wrt_values(ctx, reads, x) for x in xs]
    cts: dict[Value, Value] = {}
    for y, ct in seeds:
        value = ctx.capture(y)
        if not is_float(value.type.dtype):
            continue
        ct = (
            Emit(ctx.graph, user_location()).constant(1, y.dtype) if ct is None else ctx.capture(ct)
        )
        cts[value] = ct if value not in cts else ctx.graph.add(E.add, [cts[value], ct])[0]
    backward(ctx.graph, ops, cts, [v for values in wrt for v in values])
    results = []
    for x, values in zip(xs, wrt):
        found = [cts[v] for v in values if v in cts]
        if not found:
            results.append(zeros(x.shape, x.dtype))
            continue
        total = functools.reduce(lambda a, b: ctx.graph.add(E.add, [a, b])[0], found)
        results.append(Tensor(total, ctx))
    return results


def _wrt_values(ctx: Any, reads: dict[Any, list[Value]], x: Any) -> list[Value]:
    """The values of this graph the gradient with respect to ``x`` is taken at: a Variable's
    reads (its gradient is summed over them; ``reads`` has them by state handle), or a
    Tensor's value here, which for a Tensor of an enclosing trace (a loop or branch body's
    closure) is the input that received it; none where the graph never used it."""
    from .variable import Variable

    if isinstance(x, Variable):
        return reads.get(ctx.variables.get(x), [])
    found = ctx.find(x)
    return [] if found is None else [found]


def stop_gradient(x: Any) -> Any:
    """``x``, but gradients do not flow through it."""
    from .numpy_api import asarray

    return emit(E.stop_gradient, [asarray(x)])


def fresh(x: Any) -> Any:
    """A new value equal to float Tensor ``x``, so that only the function's uses of its
    argument are differentiated: a closure over ``x`` itself is a constant, as in jax. (The
    same-dtype convert is removed by the simplify pass.)"""
    return emit(E.convert, [x], dtype=x.dtype) if is_float(x.dtype) else x


def value_and_grad(
    fn: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False
) -> Callable:
    """Like ``jax.value_and_grad``: returns ``(value, grads)`` (``((value, aux), grads)`` with
    ``has_aux``); grads has the structure of the chosen argument(s). Works inside compiled
    functions and on its own (it then compiles itself)."""
    name = getattr(fn, "__name__", "fn")
    single = not isinstance(argnums, (tuple, list))
    positions = check_argnums(argnums, "argnums", name, positional_parameters(fn))
    compiled = None

    def traced(*args: Any, **kwargs: Any) -> Any:
        from .numpy_api import asarray

        args = list(args)
        leaves_of, treedefs = [], []
        for i in positions:
            leaves, treedef = jax.tree_util.tree_flatten(args[i])
            leaves = [fresh(asarray(leaf)) for leaf in leaves]
            args[i] = jax.tree_util.tree_unflatten(treedef, leaves)
            leaves_of.append(leaves)
            treedefs.append(treedef)
        out = fn(*args, **kwargs)
        value = out[0] if has_aux else out
        flat = gradients(value, [leaf for leaves in leaves_of for leaf in leaves])
        grads, start = [], 0
        for leaves, treedef in zip(leaves_of, treedefs):
            grads.append(jax.tree_util.tree_unflatten(treedef, flat[start : start + len(leaves)]))
            start += len(leaves)
        return out, (grads[0] if single else tuple(grads))

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal compiled
        check_argnums(argnums, "argnums", name, given=len(args))
        if tracing():
            return traced(*args, **kwargs)
        if compiled is None:
            from .api import compile

            compiled = compile(traced, name=f"value_and_grad_{name}")
        return compiled(*args, **kwargs)

    return wrapped


def grad(fn: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """Like ``jax.grad``: the gradient (``(grads, aux)`` with ``has_aux``)."""
    both = value_and_grad(fn, argnums, has_aux)

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        out, grads = both(*args, **kwargs)
        return (grads, out[1]) if has_aux else grads

    return wrapped


__all__ = ["gradients", "pull_back", "stop_gradient", "grad", "value_and_grad"]
