"""Rematerialization: ``remat`` recomputes its body's forward values in the backward pass
instead of saving them; ``optimization_barrier`` keeps XLA from merging that recomputation
with the forward one (or running it early); ``checkpoint_name`` names a value for a policy.

    optimization_barrier(*xs) -> xs                 identity; XLA sees through nothing
    checkpoint_name(x) {name} -> x                  identity; a value a policy can save by name
    remat(*consts, *args) {body, policy, names, prevent_cse}
        the results of body(*consts, *args)

The gradient rule of ``remat`` (jax's ``checkpoint``) saves only what the policy allows: the
forward op is extended to give those values as extra results (``Emit.extend``, as a scan
saves its per-step values). In the backward pass the op's inputs, the saved values and the
incoming cotangents go through one ``optimization_barrier``; the rest of the forward is
recomputed from the barrier's results, so XLA can neither merge it with the forward pass (its
inputs are different values) nor schedule it before the cotangents exist.

Policies (``policy`` attribute), as ``jax.checkpoint_policies``: ``nothing_saveable`` (the
default: only the inputs are kept), ``everything_saveable`` (as without remat),
``dots_saveable`` (results of dot_general and conv2d), ``dots_with_no_batch_dims_saveable``
(dot_general without batch dimensions) and ``save_only_these_names`` (``checkpoint_name``
values whose name is among ``names``, comma-separated)."""

from __future__ import annotations

from collections.abc import Sequence

from ..batching import batch_graph, shifted_axis_batch
from ..core import Graph, Op, OpDef, Value, register
from ..errors import ShapeError
from ..forward import jvp_subgraph, replace, tangent_outputs
from ..grad import differentiable, linearize
from . import linalg as L
from . import nn as N
from .control import as_tuple, rebuild, spread_cts, check_types

POLICIES = (
    "nothing_saveable",
    "everything_saveable",
    "dots_saveable",
    "dots_with_no_batch_dims_saveable",
    "save_only_these_names",
)


# -- optimization_barrier -----------------------------------------------------------------------
def _barrier_rule(types):
    return tuple(types)


def _barrier_ref(*xs):
    return tuple(xs)


optimization_barrier = register(
    OpDef(
        "optimization_barrier",
        _barrier_rule,
        _barrier_ref,
        doc="its operands, unchanged; XLA may not move computation across it or merge "
        "computation on its results with computation on its operands",
    )
)


@optimization_barrier.defvjp
def _barrier_vjp(emit, op, *cts):
    return list(cts)


# -- checkpoint_name -----------------------------------------------------------------------
def _name_rule(types, name: str):
    if len(types) != 1:
        raise ShapeError(f"checkpoint_name takes one operand, got {len(types)}")
    if not name or "," in name:
        raise ShapeError(f"a checkpoint name must be non-empty and hold no comma, got {name!r}")
    return types[0]


def _name_ref(x, name: str):
    return x


checkpoint_name = register(
    OpDef(
        "checkpoint_name",
        _name_rule,
        _name_ref,
        attrs={"name": "str"},
        doc="x, unchanged, named for remat's save_only_these_names policy",
    )
)


@checkpoint_name.defvjp
def _name_vjp(emit, op, ct):
    return [ct]


# -- remat ---------------------------------------------------------------------------------
def _remat_rule(types, body: Graph, policy: str, names: str, prevent_cse: bool):
    if policy not in POLICIES:
        raise ShapeError(f"unknown remat policy {policy!r}; expected one of {list(POLICIES)}")
    if names and policy != "save_only_these_names":
        raise ShapeError(f"names={names!r} given, but policy {policy} saves no named values")
    check_types("body input", tuple(v.type for v in body.inputs), types, "operand")
    return tuple(v.type for v in body.outputs)


def _remat_ref(*args, body: Graph, policy: str, names: str, prevent_cse: bool, run):
    return tuple(run(body, args))


remat = register(
    OpDef(
        "remat",
        _remat_rule,
        _remat_ref,
        attrs={"body": "graph", "policy": "str", "names": "str", "prevent_cse": "bool"},
        doc="the results of body(*operands); its gradient recomputes the body's values "
        "instead of saving them (except those the policy saves)",
    )
)


def saveable(op: Op, policy: str, names: Sequence[str]) -> bool:
    """Whether ``policy`` lets the backward pass keep ``op``'s results rather than recompute
    them (jax.checkpoint_policies' rules)."""
    if policy == "everything_saveable":
        return True
    if policy == "dots_saveable":
        return op.opdef in (L.dot_general, N.conv2d)
    if policy == "dots_with_no_batch_dims_saveable":
        return op.opdef is L.dot_general and not op.attrs["lhs_batch"]
    if policy == "save_only_these_names":
        return op.opdef is checkpoint_name and op.attrs["name"] in names
    return False


@remat.defvjp
def _remat_vjp(emit, op, *cts):
    """Extend the forward op to save what the policy allows, then recompute the rest of the
    body from its inputs behind an optimization barrier, and run the body's backward pass."""
    body: Graph = op.attrs["body"]
    active = [emit.is_active(v) for v in op.inputs]
    lin = linearize(body, active)
    fwd = lin.forward  # the body's copy the residuals belong to
    names = op.attrs["names"].split(",") if op.attrs["names"] else []
    kept: set[Value] = set()
    for inner in fwd.ops:
        # (an op with an effect, a host call, runs once: its results are kept, whatever the
        # policy)
        if saveable(inner, op.attrs["policy"], names) or inner.effects:
            kept.update(inner.outputs)
            if inner.opdef is checkpoint_name:  # (an identity: its operand is the same value)
                kept.add(inner.inputs[0])
    outer = dict(zip(fwd.inputs, op.inputs))  # a body input -> the op's operand
    kept -= set(outer)
    # recompute what is neither an input nor kept; save the kept values it (or the backward
    # pass) reads
    wanted = [v for v in lin.residuals if v not in outer and v not in kept]
    recompute = _needed(fwd.ops, wanted, kept | set(outer))
    used = {v for inner in recompute for v in inner.inputs} | set(lin.residuals)
    saved = [v for inner in fwd.ops for v in inner.outputs if v in kept and v in used]
    # a saved value the body gives as a result is that result; the others are added
    as_result = {v: op.outputs[i] for i, v in reversed(list(enumerate(fwd.outputs)))}
    extra = [v for v in dict.fromkeys(saved) if v not in as_result]
    if extra:
        forward = Graph(fwd.name, fwd.inputs)
        forward.ops, forward.outputs = fwd.ops, [*fwd.outputs, *extra]
        as_result.update(zip(extra, emit.extend(op, body=forward)))
    outer.update((v, as_result[v]) for v in saved)
    pinned = [v for v in outer if v in used]
    n_res = len(lin.residuals)
    ct_inputs = lin.backward.inputs[n_res:]
    diff_outs = [v for v in op.outputs[: len(fwd.outputs)] if differentiable(v.type)]
    diff_cts = [ct for v, ct in zip(op.outputs, cts) if differentiable(v.type)]
    given = [i for i, ct in enumerate(diff_cts) if ct is not None]
    env: dict[Value, Value] = {}
    through = [outer[v] for v in pinned] + [diff_cts[i] for i in given]
    if op.attrs["prevent_cse"] and through:
        through = list(as_tuple(emit(optimization_barrier, *through)))
    env.update(zip(pinned, through))
    ct_values = dict(zip(given, through[len(pinned) :]))
    for i, (ct_input, out) in enumerate(zip(ct_inputs, diff_outs)):
        env[ct_input] = ct_values[i] if i in ct_values else emit.zeros(out.type)
    _clone_into(emit, recompute, env)
    env.update(zip(lin.backward.inputs, (env[v] for v in lin.residuals)))
    _clone_into(emit, lin.backward.ops, env)
    grads = [env[v] for v in lin.backward.outputs]
    return [
        g if emit.is_active(v) else None for v, g in zip(op.inputs, spread_cts(op.inputs, grads))
    ]


def _needed(ops: Sequence[Op], wanted: Sequence[Value], known: set[Value]) -> list[Op]:
    """The ops among ``ops`` that compute ``wanted`` from the ``known`` values, in order."""
    need, kept = set(wanted), []
    for op in reversed(ops):
        if any(v in need for v in op.outputs):
            kept.append(op)
            need.update(v for v in op.inputs if v not in known)
    return kept[::-1]


def _clone_into(emit, ops: Sequence[Op], env: dict[Value, Value]) -> None:
    """Append copies of ``ops`` (each keeping its own line) on the values ``env`` maps their
    inputs to; their results are added to ``env``."""
    for op in ops:
        device = emit.device if op.device is None else op.device
        inputs = [env[v] for v in op.inputs]
        env.update(zip(op.outputs, emit.graph.add(op.opdef, inputs, op.attrs, op.loc, device)))


@remat.deflift
def _remat_lift(op: Op, reads, writes, values, discharge) -> tuple[Op, tuple]:
    body = discharge(op.attrs["body"], reads, writes)
    new = rebuild(
        op, [*op.inputs, *values], dict(op.attrs, body=body), [*op.outputs, *[None] * len(writes)]
    )
    return new, new.outputs[len(op.outputs) :]


# -- forward mode and batching ---------------------------------------------------------------
@remat.defjvp
def _remat_jvp(emit, op, *tangents):
    """The same remat over the body's forward sweep: the tangents are computed with the
    results, and a gradient of them (reverse over forward) still recomputes."""
    flags = [t is not None for t in tangents]
    out_flags = tangent_outputs(op.attrs["body"], flags)
    body = jvp_subgraph(op.attrs["body"], flags, out_flags)
    given = [t for t in tangents if t is not None]
    new = replace(
        emit, op, [*op.inputs, *given], [*op.outputs, *[None] * sum(out_flags)], body=body
    )
    found = iter(new[len(op.outputs) :])
    return [next(found) if f else None for f in out_flags]


@optimization_barrier.defjvp
def _barrier_jvp(emit, op, *tangents):  # (the tangents pass as they are)
    return list(tangents)


@optimization_barrier.defbatch
def _barrier_batch(e, op, args, batched):  # (each operand keeps its batch axis, or none)
    return as_tuple(e(optimization_barrier, *args)), list(batched)


checkpoint_name.defbatch(shifted_axis_batch())


@remat.defbatch
def _remat_batch(e, op, args, batched):  # the body batched, recomputed as a whole batch
    body, flags = batch_graph(op.attrs["body"], batched, e.size)
    return as_tuple(e(remat, *args, **dict(op.attrs, body=body))), flags
