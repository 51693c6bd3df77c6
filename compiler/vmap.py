"""``fj.vmap`` (API.md, section 11): a function of one example, run on a batch.

The function is traced once on one example's types, in a child trace (as a loop body is);
its ops are then batched into the enclosing graph by each op's batching rule
(ir/batching.py). Tensors of the enclosing trace it uses are shared by every example;
Variables it reads are too, and a write of a value that differs across the examples is an
error. It composes with itself and with fj.grad in either order, because each works on the
IR the other emits."""

from __future__ import annotations

import functools
from typing import Any, Callable

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import BatchingError, TensorType, Value
from flowjit.ir.batching import BatchEmit, batch_ops

from .control_flow import tensor_leaves
from .location import user_location
from .trace import TraceContext, current, tracing


def vmap(
    fn: Callable, in_axes: Any = 0, out_axes: Any = 0, axis_size: int | None = None
) -> Callable:
    """Like ``jax.vmap``: ``fn`` mapped over axis ``in_axes`` of its arguments (an int or
    None for all, or a tuple with an entry per positional argument, each an int, None (not
    mapped) or a pytree prefix of the argument); results get the mapped axis at
    ``out_axes``. Keyword arguments are mapped over their first axis. ``axis_size`` is
    needed only when no argument is mapped. Works inside compiled functions and on its own
    (it then compiles itself)."""
    name = getattr(fn, "__name__", "fn")
    compiled = None

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal compiled
        if tracing():
            return _vmapped(fn, in_axes, out_axes, axis_size, args, kwargs)
        if compiled is None:
            from .api import compile

            def whole(*a: Any, **k: Any) -> Any:
                return _vmapped(fn, in_axes, out_axes, axis_size, a, k)

            compiled = compile(whole, name=f"vmap_{name}")
        return compiled(*args, **kwargs)

    return wrapped


def _axes_per_leaf(axes: Any, tree: Any, what: str) -> list[Any]:
    """``axes`` (a pytree prefix of ``tree``, None meaning not mapped) as one entry per leaf
    of ``tree``."""
    try:
        per = jax.tree_util.tree_map(
            lambda ax, sub: [ax] * len(jax.tree_util.tree_leaves(sub)),
            axes,
            tree,
            is_leaf=lambda x: x is None,
        )
    except ValueError:
        raise BatchingError(
            f"fj.vmap: {what} does not match the structure of the "
            f"{'arguments' if what == 'in_axes' else 'results'}; give an int or None, or a "
            "tuple with an entry per argument (each a prefix of that argument's structure)",
            loc=user_location(),
        ) from None
    leaves = jax.tree_util.tree_leaves(per, is_leaf=lambda x: isinstance(x, list))
    return [ax for group in leaves for ax in group]


def _check_axis(axis: Any, ndim: int, what: str) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, int) or not -ndim <= axis < ndim:
        raise BatchingError(
            f"fj.vmap: {what} {axis!r} is not an axis of a rank-{ndim} value; give an int in "
            f"[{-ndim}, {ndim}) or None",
            loc=user_location(),
        )
    return axis % ndim


def _vmapped(
    fn: Callable, in_axes: Any, out_axes: Any, axis_size: Any, args: tuple, kwargs: dict
) -> Any:
    from .tensor import Tensor

    ctx = current()
    if isinstance(in_axes, list):
        in_axes = tuple(in_axes)
    if isinstance(in_axes, tuple) and len(in_axes) != len(args):
        raise BatchingError(
            f"fj.vmap: in_axes has {len(in_axes)} entries but the function got {len(args)} "
            "arguments; give an entry per positional argument",
            loc=user_location(),
        )
    tensors, treedef, paths = tensor_leaves((args, kwargs), "")
    paths = [("args" if p.startswith("[0]") else "kwargs") + p[3:] for p in paths]
    per_arg = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    axes = _axes_per_leaf((per_arg, 0), (args, kwargs), "in_axes")
    axes = [_check_axis(a, t.ndim, "in_axes") for a, t in zip(axes, tensors)]
    sizes = {p: t.shape[a] for p, t, a in zip(paths, tensors, axes) if a is not None}
    if axis_size is not None:
        sizes["axis_size"] = int(axis_size)
    if len(set(sizes.values())) != 1:
        got = ", ".join(f"{p}: {n}" for p, n in sizes.items())
        raise BatchingError(
            "fj.vmap needs mapped axes of one size"
            + (f"; got {got}" if got else ": no argument is mapped; give axis_size=")
            + ("" if not got else ". Check in_axes (None for an argument shared by all)"),
            loc=user_location(),
        )
    (size,) = set(sizes.values())
    outer = [ctx.capture(t) for t in tensors]
    emit = BatchEmit(ctx.graph, size, user_location())
    values = [v if a is None else emit.moveaxis(v, a, 0) for v, a in zip(outer, axes)]
    example = [
        v.type if a is None else TensorType(v.type.shape[1:], v.type.dtype)
        for v, a in zip(values, axes)
    ]
    with TraceContext(f"vmap_{getattr(fn, '__name__', 'fn')}", ctx) as child:
        inner, inner_kwargs = jax.tree_util.tree_unflatten(
            treedef, [child.input(t) for t in example]
        )
        result = fn(*inner, **inner_kwargs)
        out_tensors, out_tree, _ = tensor_leaves(result, "result")
        outputs = [child.capture(t) for t in out_tensors]
    graph = child.graph
    env: dict[Value, Value] = dict(zip(graph.inputs, values))
    env.update((graph.inputs[len(values) + i], v) for i, v in enumerate(child.captured))
    batched = {v for v, a in zip(values, axes) if a is not None}
    for variable, handle in child.variables.items():
        env[handle] = ctx.handle(variable)
    batch_ops(ctx.graph, graph.ops, env, batched, size)
    out_axes = _axes_per_leaf(out_axes, jax.tree_util.tree_unflatten(out_tree, outputs), "out_axes")
    results = []
    for v, axis in zip(outputs, out_axes):
        value = env[v]
        if axis is None:
            if value in batched:
                raise BatchingError(
                    "fj.vmap: out_axes is None for a result that differs across the examples; "
                    "give it an axis",
                    loc=user_location(),
                )
            results.append(Tensor(value, ctx))
            continue
        value = emit.materialize(value, value in batched)
        axis = _check_axis(axis, value.type.ndim, "out_axes")
        results.append(Tensor(emit.moveaxis(value, 0, axis), ctx))
    return jax.tree_util.tree_unflatten(out_tree, results)


__all__ = ["vmap"]
