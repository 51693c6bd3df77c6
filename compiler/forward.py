"""Forward mode and the pullback, as jax has them (API.md, section 11): ``fj.jvp``,
``fj.linearize`` and ``fj.vjp``; ``fj.jacfwd``, ``fj.jacrev`` and ``fj.hessian`` on ``fj.vmap``.

Inside a compiled function each appends to the trace: ``jvp`` traces the function on fresh
values of the primals and runs the tangent sweep (ir/forward.py) over the ops it traced;
``vjp``'s pullback runs the reverse sweep autodiff.py's ``gradients`` runs, seeded with the
given cotangents. Outside one, each compiles itself (once per function, signature and
transformation), as ``fj.value_and_grad`` does."""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import ArgumentError, ShapeError, TracingError, TypeMismatchError
from flowjit.ir.forward import forward
from flowjit.ir.types import is_float
from flowjit.passes.discharge import lift_state

from .autodiff import fresh, pull_back
from .location import check_argnums, positional_parameters, user_location
from .trace import current, tracing
from .vmap import vmap


def jvp(fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """Like ``jax.jvp``: ``(fn(*primals), the derivative of fn at primals along tangents)``.
    ``primals`` and ``tangents`` are tuples (or lists) of the same structure, each tangent of
    its primal's shape and dtype (an integer or bool primal's tangent is ignored: it may be
    jax's float0). An integer or bool result's tangent is zeros of its dtype."""
    _check_sequences("jvp", primals, tangents, "primals", "tangents")
    if tracing():
        return _jvp_traced(fn, tuple(primals), tuple(tangents))
    compiled = _compiled(fn, "jvp", lambda p, t: _jvp_traced(fn, p, t))
    return compiled(tuple(primals), tuple(tangents))


def linearize(fn: Callable, *primals: Any) -> tuple[Any, Callable]:
    """Like ``jax.linearize``: ``(fn(*primals), f_jvp)`` where ``f_jvp(*tangents)`` is the
    derivative of ``fn`` at ``primals`` along ``tangents``. ``f_jvp`` runs the forward sweep
    again (inside a compiled function, the CSE pass merges the forward values it
    recomputes with ``fn``'s; outside, its compiled program is made once)."""
    out = fn(*primals) if tracing() else _compiled(fn, "call", fn)(*primals)
    outer = current() if tracing() else None

    def f_jvp(*tangents: Any) -> Any:
        _check_sequences("linearize", primals, tangents, "primals", "tangents")
        if outer is not None:
            _check_same_trace(outer, "linearize", "f_jvp")
        return jvp(fn, primals, tangents)[1]

    return out, f_jvp


def vjp(fn: Callable, *primals: Any, has_aux: bool = False) -> tuple[Any, ...]:
    """Like ``jax.vjp``: ``(fn(*primals), vjp_fn)`` (``(out, vjp_fn, aux)`` with
    ``has_aux``), where ``vjp_fn(cotangent)``, the cotangent of ``out``'s structure, shapes and
    dtypes, gives a tuple with the cotangent of each primal."""
    if tracing():
        return _vjp_traced(fn, primals, has_aux)
    both = _compiled(fn, "call", fn)(*primals)
    out, aux = both if has_aux else (both, None)

    def pullback(primals: tuple, cotangent: Any) -> tuple:
        return _vjp_traced(fn, primals, has_aux)[1](cotangent)

    def vjp_fn(cotangent: Any) -> tuple:
        return _compiled(fn, f"vjp_aux{has_aux}", pullback)(tuple(primals), cotangent)

    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


def jacfwd(fn: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """Like ``jax.jacfwd``: the Jacobian of ``fn`` with respect to the argument(s)
    ``argnums``, by forward mode: ``fj.vmap`` of ``fj.jvp`` over the standard basis of the
    arguments. Each result leaf's Jacobian has shape ``(*result shape, *argument shape)``."""
    return _jacobian(fn, argnums, has_aux, "jacfwd")


def jacrev(fn: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """Like ``jax.jacrev``: the Jacobian by reverse mode: ``fj.vmap`` of ``fj.vjp``'s pullback
    over the standard basis of the results."""
    return _jacobian(fn, argnums, has_aux, "jacrev")


def hessian(fn: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """Like ``jax.hessian``: ``jacfwd(jacrev(fn))``, forward over reverse."""
    return jacfwd(jacrev(fn, argnums, has_aux), argnums, has_aux)


def _jacobian(fn: Callable, argnums: Any, has_aux: bool, kind: str) -> Callable:
    name = getattr(fn, "__name__", "fn")
    single = not isinstance(argnums, (tuple, list))
    positions = check_argnums(argnums, "argnums", name, positional_parameters(fn))
    compiled = None

    def traced(*args: Any) -> Any:
        from .numpy_api import asarray

        def partial(*dyn: Any) -> Any:
            full = list(args)
            for i, value in zip(positions, dyn):
                full[i] = value
            both = fn(*full)
            return both if has_aux else (both, None)

        dyn = tuple(jax.tree_util.tree_map(asarray, args[i]) for i in positions)
        out, aux = partial(*dyn)
        leaves, tree = jax.tree_util.tree_flatten(dyn)
        out_leaves, out_tree = jax.tree_util.tree_flatten(out)
        out_leaves = [asarray(y) for y in out_leaves]
        if kind == "jacfwd":
            tangents = _basis(leaves, tree)
            pushed = vmap(lambda *t: jvp(lambda *d: partial(*d)[0], dyn, t)[1])(*tangents)
            # (n inputs, *out) -> (*out, *input shape) for each output and input leaf
            blocks = [_split_last(_move_first_last(t), leaves) for t in _leaves(pushed)]
        else:
            cotangents = _basis(out_leaves, out_tree)
            pulled = vmap(lambda ct: vjp(lambda *d: partial(*d)[0], *dyn)[1](ct))(cotangents)
            # (n outputs, *in) per input leaf -> (*out, *in) for each output and input leaf
            per_input = [_split_first(g, out_leaves) for g in _leaves(pulled)]
            blocks = [list(row) for row in zip(*per_input)] if per_input else []
        jac = [jax.tree_util.tree_unflatten(tree, row) for row in blocks]
        jac = [j[0] if single else j for j in jac]
        result = jax.tree_util.tree_unflatten(out_tree, jac)
        return (result, aux) if has_aux else result

    @functools.wraps(fn)
    def wrapped(*args: Any) -> Any:
        nonlocal compiled
        check_argnums(argnums, "argnums", name, given=len(args))
        if tracing():
            return traced(*args)
        if compiled is None:
            from .api import compile

            compiled = compile(traced, name=f"{kind}_{name}")
        return compiled(*args)

    return wrapped


def _leaves(tree: Any) -> list:
    return jax.tree_util.tree_leaves(tree)


def _basis(leaves: list, tree: Any) -> tuple:
    """The standard basis of the space of ``leaves`` (``tree``'s): for each leaf, a Tensor
    ``(n, *its shape)``, n the leaves' total size; as ``tree`` unflattened."""
    from .numpy_api import eye, reshape

    sizes = [int(np.prod(x.shape, dtype=np.int64)) for x in leaves]
    total, start, parts = sum(sizes), 0, []
    for x, size in zip(leaves, sizes):
        rows = eye(total, dtype=x.dtype)[:, start : start + size]
        parts.append(reshape(rows, (total, *x.shape)))
        start += size
    return jax.tree_util.tree_unflatten(tree, parts)


def _move_first_last(t: Any) -> Any:
    from .numpy_api import transpose

    return transpose(t, (*range(1, len(t.shape)), 0))


def _split_last(t: Any, leaves: list) -> list:
    """``t`` of shape (*out, n) cut along its last axis into ``(*out, *leaf shape)`` pieces."""
    from .numpy_api import reshape

    out, start = [], 0
    for x in leaves:
        size = int(np.prod(x.shape, dtype=np.int64))
        out.append(reshape(t[..., start : start + size], (*t.shape[:-1], *x.shape)))
        start += size
    return out


def _split_first(t: Any, leaves: list) -> list:
    """``t`` of shape (n, *in) cut along its first axis into ``(*leaf shape, *in)`` pieces."""
    from .numpy_api import reshape

    out, start = [], 0
    for y in leaves:
        size = int(np.prod(y.shape, dtype=np.int64))
        out.append(reshape(t[start : start + size], (*y.shape, *t.shape[1:])))
        start += size
    return out


# -- inside a trace ---------------------------------------------------------------------------
def _jvp_traced(fn: Callable, primals: tuple, tangents: tuple) -> tuple[Any, Any]:
    from .numpy_api import asarray, zeros
    from .tensor import Tensor

    ctx = current()
    flat, tree = jax.tree_util.tree_flatten_with_path(primals)
    t_flat, t_tree = jax.tree_util.tree_flatten(tangents)
    if t_tree != jax.tree_util.tree_structure(primals):
        raise TypeMismatchError(
            f"tangents has the structure {t_tree} but primals has {tree}; give one tangent "
            "per primal, in the same structure (tuples, lists, dicts)",
            op="jvp",
            loc=user_location(),
        )
    # Loops and branches already traced are made pure now, so that a gradient taken inside
    # fn (which makes them pure too) leaves the ops before fn's as they are.
    ctx.graph.ops = lift_state(ctx.graph)[0].ops
    leaves = [fresh(asarray(x)) for _, x in flat]
    seeds = {}
    for (path, _), x, t in zip(flat, leaves, t_flat):
        if is_float(x.dtype):
            where = f"primals{jax.tree_util.keystr(path)}"
            seeds[ctx.capture(x)] = ctx.capture(_tangent_of(x, t, where))
    start = len(ctx.graph.ops)
    out = fn(*jax.tree_util.tree_unflatten(tree, leaves))
    out_flat, out_tree = jax.tree_util.tree_flatten(out)
    out_flat = [asarray(y) for y in out_flat]
    found = forward(ctx.graph, ctx.graph.ops[start:], seeds)
    out_tangents = []
    for y in out_flat:
        value = ctx.capture(y)
        out_tangents.append(
            Tensor(found[value], ctx) if value in found else zeros(y.shape, y.dtype)
        )
    unflatten = functools.partial(jax.tree_util.tree_unflatten, out_tree)
    return unflatten(out_flat), unflatten(out_tangents)


def _tangent_of(primal: Any, tangent: Any, where: str) -> Any:
    """``tangent`` as a Tensor of float ``primal``'s type; an error at the user's line saying
    how to fix it otherwise."""
    from .numpy_api import asarray

    try:
        t = asarray(tangent)
    except TypeError:
        raise TypeMismatchError(
            f"the tangent of {where} is a {type(tangent).__name__}; give an array of its "
            f"primal's shape {primal.shape} and dtype {primal.dtype}",
            op="jvp",
            loc=user_location(),
        ) from None
    if t.shape != primal.shape:
        raise ShapeError(
            f"the tangent of {where} has shape {t.shape} but its primal has shape "
            f"{primal.shape}; a tangent has its primal's shape and dtype",
            op="jvp",
            loc=user_location(),
        )
    if t.dtype != primal.dtype:
        raise TypeMismatchError(
            f"the tangent of {where} is {t.dtype} but its primal is {primal.dtype}; a tangent "
            f"has its primal's dtype: convert it with .astype({primal.dtype.name})",
            op="jvp",
            loc=user_location(),
        )
    return t


def _vjp_traced(fn: Callable, primals: tuple, has_aux: bool) -> tuple[Any, ...]:
    from .numpy_api import asarray

    ctx = current()
    flat, tree = jax.tree_util.tree_flatten(tuple(primals))
    leaves = [fresh(asarray(x)) for x in flat]
    both = fn(*jax.tree_util.tree_unflatten(tree, leaves))
    if has_aux and not (isinstance(both, (tuple, list)) and len(both) == 2):
        raise ArgumentError(
            "with has_aux=True the function must return a pair (output, aux), got a "
            f"{type(both).__name__}",
            op="vjp",
            loc=user_location(),
        )
    out, aux = both if has_aux else (both, None)
    out_flat, out_tree = jax.tree_util.tree_flatten_with_path(out)
    outs = [asarray(y) for _, y in out_flat]
    out = jax.tree_util.tree_unflatten(out_tree, outs)

    def vjp_fn(cotangent: Any) -> tuple:
        _check_same_trace(ctx, "vjp", "vjp_fn")
        ct_flat, ct_tree = jax.tree_util.tree_flatten(cotangent)
        if ct_tree != out_tree:
            raise TypeMismatchError(
                f"the cotangent has the structure {ct_tree} but the function's output has "
                f"{out_tree}; give one cotangent per output, in the output's structure",
                op="vjp",
                loc=user_location(),
            )
        seeds = []
        for (path, _), y, ct in zip(out_flat, outs, ct_flat):
            if is_float(y.dtype):
                where = f"output{jax.tree_util.keystr(path)}"
                seeds.append((y, _cotangent_of(y, ct, where)))
        grads = pull_back(seeds, leaves)
        return tuple(jax.tree_util.tree_unflatten(tree, grads))

    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


def _cotangent_of(out: Any, cotangent: Any, where: str) -> Any:
    """``cotangent`` as a Tensor of float ``out``'s type, or an error saying how to fix it."""
    try:
        return _tangent_of(out, cotangent, where)
    except (ShapeError, TypeMismatchError) as err:
        detail = err.detail.replace("tangent", "cotangent").replace("primal", "output")
        raise type(err)(detail, op="vjp", loc=err.loc) from None


# -- checks and compiling ---------------------------------------------------------------------
def _check_sequences(op: str, primals: Any, tangents: Any, a: str, b: str) -> None:
    for name, value in ((a, primals), (b, tangents)):
        if not isinstance(value, (tuple, list)):
            raise ArgumentError(
                f"{name} must be a tuple or list (one entry per argument of the function), got "
                f"a {type(value).__name__}; for one argument write ({name[:-1]},)",
                op=op,
                loc=user_location(),
            )
    if len(primals) != len(tangents):
        raise ArgumentError(
            f"{len(primals)} {a} but {len(tangents)} {b}: give one tangent per primal",
            op=op,
            loc=user_location(),
        )


def _check_same_trace(ctx: Any, op: str, what: str) -> None:
    if not tracing() or current() is not ctx:
        raise TracingError(
            f"{what} was made inside one traced function and called in another (a loop or "
            f"branch body, or a later call): call fj.{op} where {what} is used",
            op=op,
            loc=user_location(),
        )


_COMPILED: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 64  # compiled transformations of functions called outside a compiled function


def _compiled(fn: Callable, kind: str, traced: Callable) -> Any:
    """The compiled ``traced`` for transformation ``kind`` of ``fn`` (made once per function:
    the compiled function keeps one program per signature)."""
    from .api import compile

    key = (fn, kind)
    try:
        found = _COMPILED.get(key)
    except TypeError:  # (an unhashable callable: compiled each time)
        return compile(traced, name=f"{kind}_{getattr(fn, '__name__', 'fn')}")
    if found is None:
        found = compile(traced, name=f"{kind}_{getattr(fn, '__name__', 'fn')}")
        _COMPILED[key] = found
        while len(_COMPILED) > _CACHE_SIZE:
            _COMPILED.popitem(last=False)
    _COMPILED.move_to_end(key)
    return found


__all__ = ["hessian", "jacfwd", "jacrev", "jvp", "linearize", "vjp"]
