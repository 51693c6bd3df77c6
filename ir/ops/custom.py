"""Functions with user-defined derivatives (``fj.custom_vjp`` and ``fj.custom_jvp``): the
primal function and its rule are closed subgraphs of one op, as a cond's branches are.

    custom_vjp_call(*consts, *args) {consts=k, with_residuals, body, fwd, bwd}
        body(*consts, *args) -> outs
        fwd(*consts, *args) -> (*outs, *residuals)
        bwd(*consts, *residuals, *out cotangents) -> a cotangent per arg
    custom_jvp_call(*consts, *args) {consts=k, body, jvp}
        body(*consts, *args) -> outs
        jvp(*consts, *args, *tangents) -> (*outs, *out tangents)

``consts`` are the values the functions close over (differentiating with respect to one is
an error, as in jax: the rule only says how to differentiate the arguments). A cotangent or
tangent has the type of its value (an integer one is ignored). The op computes ``body``; a
``custom_vjp_call`` ``with_residuals`` computes ``fwd`` instead and gives all its results:
its gradient rule sets it, so that the forward pass saves what ``bwd`` needs (the primal runs
once), then inlines ``bwd``. Further results of such an ``fwd`` are values saved for its own
gradient (a second derivative differentiates ``fwd``'s residuals as plain ops). A
``custom_jvp_call``'s gradient is the transpose of its ``jvp`` subgraph, which must be linear
in the tangents. Subgraphs may read variables (lift_state makes them consts), not write them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..batching import BatchEmit, batch_graph
from ..core import Effect, Graph, Op, OpDef, Value, register
from ..errors import GradientError, ShapeError
from ..forward import transposed_vjp
from ..grad import Emit, live_ops, backward, differentiable, linearize
from .control import Discharge, Run, rebuild, spread_cts, check_types


def _types(values) -> tuple:
    return tuple(v.type for v in values)


def _check_consts(types, consts: int, subgraphs: dict[str, Graph]) -> None:
    if not 0 <= consts <= len(types):
        raise ShapeError(f"consts={consts} but the op has {len(types)} inputs")
    for name, graph in subgraphs.items():
        if any(Effect.WRITE in op.effects for op in graph.ops):
            raise ShapeError(
                f"the {name} of a function with a custom gradient writes a variable; assign "
                "variables outside it (return the new value and assign it after the call)"
            )


# -- custom_vjp_call -----------------------------------------------------------------------
def _custom_vjp_rule(types, consts: int, with_residuals: bool, body, fwd, bwd):
    _check_consts(types, consts, {"body": body, "fwd": fwd, "bwd": bwd})
    check_types("body input", _types(body.inputs), types, "operand")
    check_types("fwd input", _types(fwd.inputs), types, "operand")
    outs = _types(body.outputs)
    n, fwd_outs = len(outs), _types(fwd.outputs)
    r = len(bwd.inputs) - consts - n
    if r < 0 or len(fwd_outs) < n + r:
        raise ShapeError(
            f"bwd takes {len(bwd.inputs)} values and fwd gives {len(fwd_outs)}, but bwd "
            f"needs the {consts} consts, the residuals fwd gives after its {n} results, and "
            f"a cotangent per result"
        )
    check_types("fwd result", fwd_outs[:n], outs, "body result")
    bwd_in = _types(bwd.inputs)
    check_types("bwd input", bwd_in[:consts], types[:consts], "const")
    check_types("bwd residual input", bwd_in[consts : consts + r], fwd_outs[n : n + r], "residual")
    check_types("bwd cotangent input", bwd_in[consts + r :], outs, "body result")
    check_types("bwd result", _types(bwd.outputs), types[consts:], "argument")
    return fwd_outs if with_residuals else outs


def _custom_vjp_ref(*operands, consts, with_residuals, body, fwd, bwd, run: Run):
    return tuple(run(fwd if with_residuals else body, operands))


custom_vjp_call = register(
    OpDef(
        "custom_vjp_call",
        _custom_vjp_rule,
        _custom_vjp_ref,
        attrs={
            "consts": "int",
            "with_residuals": "bool",
            "body": "graph",
            "fwd": "graph",
            "bwd": "graph",
        },
        doc="body(*operands), differentiated by the user's bwd (fwd's results if with_residuals)",
    )
)


@custom_vjp_call.defvjp
def _custom_vjp_vjp(emit: Emit, op: Op, *cts):
    """The user's ``bwd`` for the body's results' cotangents: the op is extended to run
    ``fwd`` and give its residuals, and ``bwd`` is inlined. Cotangents of the residuals
    themselves (a second derivative) flow through ``fwd`` as through any function."""
    k, body = op.attrs["consts"], op.attrs["body"]
    n = len(body.outputs)
    r = len(op.attrs["bwd"].inputs) - k - n
    in_cts: list[Value | None] = [None] * len(op.inputs)
    if any(ct is not None for ct in cts[:n]):
        _no_active_consts(emit, op)
        if op.attrs["with_residuals"]:
            residuals = op.outputs[n : n + r]
        else:
            residuals = emit.extend(op, with_residuals=True)
        out_cts = [_or_zeros(emit, v, ct) for v, ct in zip(body.outputs, cts[:n])]
        arg_cts = inline(emit, op.attrs["bwd"], [*op.inputs[:k], *residuals, *out_cts])
        in_cts[k:] = _differentiable_only(op.inputs[k:], arg_cts)
    if any(ct is not None for ct in cts[n:]):
        _add_into(emit, in_cts, _through_fwd(emit, op, n, cts))
    return in_cts


def _through_fwd(emit: Emit, op: Op, n: int, cts: Sequence[Value | None]) -> list:
    """Cotangents of ``op``'s inputs for those of fwd's results after the body's (its
    residuals), ``fwd`` differentiated as plain ops: the op is extended to save what that
    needs, as a scan's forward loop is."""
    fwd: Graph = op.attrs["fwd"]
    lin = linearize(fwd, [emit.is_active(v) for v in op.inputs])
    outer = dict(zip(lin.forward.inputs, op.inputs))
    given = dict(zip(lin.forward.outputs, op.outputs))  # (a residual already given)
    saved = list(dict.fromkeys(v for v in lin.residuals if v not in outer and v not in given))
    extended = Graph(fwd.name, lin.forward.inputs)
    extended.ops, extended.outputs = lin.forward.ops, [*lin.forward.outputs, *saved]
    given.update(zip(saved, emit.extend(op, fwd=extended)))
    residuals = [outer[v] if v in outer else given[v] for v in lin.residuals]
    out_cts = [
        _or_zeros(emit, v, None if i < n else ct)  # (the body's results: the user's rule)
        for i, (v, ct) in enumerate(zip(op.outputs, cts))
        if differentiable(v.type)
    ]
    return spread_cts(op.inputs, inline(emit, lin.backward, residuals + out_cts))


# forward mode: the user's bwd transposed (so fj.jvp agrees with fj.grad; jax has none)
custom_vjp_call.defjvp(transposed_vjp)


# -- custom_jvp_call -----------------------------------------------------------------------
def _custom_jvp_rule(types, consts: int, body, jvp):
    _check_consts(types, consts, {"body": body, "jvp": jvp})
    check_types("body input", _types(body.inputs), types, "operand")
    args = types[consts:]
    check_types("jvp input", _types(jvp.inputs), (*types, *args), "operand or its tangent")
    outs = _types(body.outputs)
    check_types("jvp result", _types(jvp.outputs), outs + outs, "body result or its tangent")
    return outs


def _custom_jvp_ref(*operands, consts, body, jvp, run: Run):
    return tuple(run(body, operands))


custom_jvp_call = register(
    OpDef(
        "custom_jvp_call",
        _custom_jvp_rule,
        _custom_jvp_ref,
        attrs={"consts": "int", "body": "graph", "jvp": "graph"},
        doc="body(*operands), differentiated by the user's jvp",
    )
)


@custom_jvp_call.defjvp
def _custom_jvp_jvp(emit: Emit, op: Op, *tangents):
    """The user's ``jvp``, inlined: its tangent results."""
    k = op.attrs["consts"]
    if any(t is not None and differentiable(v.type) for v, t in zip(op.inputs[:k], tangents)):
        raise _closure_error(op)
    args = op.inputs[k:]
    tangents = [_or_zeros(emit, v, t) for v, t in zip(args, tangents[k:])]
    results = inline(emit, op.attrs["jvp"], [*op.inputs, *tangents])
    n = len(op.outputs)
    return [t if differentiable(t.type) else None for t in results[n:]]


@custom_jvp_call.defvjp
def _custom_jvp_vjp(emit: Emit, op: Op, *cts):
    """The transpose of the user's ``jvp`` (linear in the tangents), inlined."""
    _no_active_consts(emit, op)
    k = op.attrs["consts"]
    cts = [_or_zeros(emit, v, ct) for v, ct in zip(op.outputs, cts) if differentiable(v.type)]
    arg_cts = inline(emit, _transposed_jvp(op), [*op.inputs, *op.outputs, *cts])
    return [None] * k + spread_cts(op.inputs[k:], arg_cts)


def _transposed_jvp(op: Op) -> Graph:
    """(operands, the op's results, a cotangent per differentiable result) -> a cotangent per
    differentiable argument: ``jvp``'s tangent results transposed with respect to its tangent
    inputs. The primal results ``jvp`` computes are taken to be the op's, so that the
    backward pass does not compute them again: softmax's transposed rule needs only the
    probabilities the forward pass gave, not the exp and sum that made them."""
    jvp: Graph = op.attrs["jvp"]
    n_in, n_out = len(op.inputs), len(op.outputs)
    scratch = Graph(f"{jvp.name}_transposed", [Value(v.type) for v in jvp.inputs])
    results = inline(Emit(scratch), jvp, scratch.inputs)
    start = len(scratch.ops)  # (the ops above are jvp's own; backward appends after them)
    placeholders = scratch.inputs[n_in:]
    ct_inputs, cts = [], {}
    for value in results[n_out:]:
        if differentiable(value.type):
            ct = Value(value.type)
            ct_inputs.append(ct)
            cts[value] = ct if value not in cts else scratch.add(_add(), [cts[value], ct])[0]
    wanted = [t for t in placeholders if differentiable(t.type)]
    backward(scratch, scratch.ops[:start], cts, wanted)
    emit = Emit(scratch)
    outputs = [cts[t] if t in cts else emit.zeros(t.type) for t in wanted]
    primals = [Value(v.type) for v in results[:n_out]]
    given = {v: p for v, p in zip(results[:n_out], primals) if v not in scratch.inputs}
    ops = [o.replace(inputs=tuple(given.get(v, v) for v in o.inputs)) for o in scratch.ops]
    outputs = [given.get(v, v) for v in outputs]
    transposed = Graph(scratch.name, [*scratch.inputs[:n_in], *primals, *ct_inputs])
    transposed.ops, transposed.outputs = live_ops(ops, outputs), outputs
    # A tangent used by a kept op (or given back as it is) is not transposed: not linear.
    kept = {v for o in transposed.ops for v in o.inputs} | set(outputs)
    if any(t in kept for t in placeholders):
        raise GradientError(
            "the custom_jvp rule's tangent results are not linear in the input tangents "
            "(they multiply tangents together, or apply a nonlinear function to one), so "
            "reverse mode cannot transpose them; make the tangent results linear in the "
            "tangents (a product of primal values and one tangent, summed)",
            op=op.opdef.name,
            loc=op.loc,
        )
    return transposed


def _add() -> OpDef:
    from . import elementwise as E

    return E.add


# -- shared helpers ------------------------------------------------------------------------
def inline(emit: Emit, graph: Graph, args: Sequence[Value]) -> list[Value]:
    """Append a copy of ``graph``'s ops (a pure subgraph) to ``emit``'s graph, ``args`` in
    place of its inputs; returns the copies of its results. Each op keeps its own line."""
    if graph.states:
        names = ", ".join(f"${h.name}" for h in graph.states)
        raise GradientError(f"internal: {graph.name} still uses variables {names}")
    env = dict(zip(graph.inputs, args, strict=True))
    for op in graph.ops:
        device = op.device if op.device is not None else emit.device
        outs = emit.graph.add(op.opdef, [env[v] for v in op.inputs], op.attrs, op.loc, device)
        env.update(zip(op.outputs, outs))
    return [env[v] for v in graph.outputs]


def _no_active_consts(emit: Emit, op: Op) -> None:
    consts = op.inputs[: op.attrs["consts"]]
    if any(differentiable(v.type) and emit.is_active(v) for v in consts):
        raise _closure_error(op)


def _closure_error(op: Op) -> GradientError:
    return GradientError(
        "a function with a custom gradient is differentiated with respect to a value it "
        "closes over (a Tensor of the enclosing function, or a Variable it reads), but its "
        "rule only says how to differentiate its arguments; pass that value to it as an "
        "argument and give its cotangent in the rule",
        op=op.opdef.name,
        loc=op.loc,
    )


def _or_zeros(emit: Emit, value: Value, ct: Value | None) -> Value:
    return emit.zeros(value.type) if ct is None else ct


def _differentiable_only(inputs: Sequence[Value], cts: Sequence[Value]) -> list:
    """``cts``, one per input, with None for the inputs that are not differentiable."""
    return [ct if differentiable(v.type) else None for v, ct in zip(inputs, cts, strict=True)]


def _add_into(emit: Emit, total: list, more: Sequence[Value | None]) -> None:
    for i, ct in enumerate(more):
        if ct is not None:
            total[i] = ct if total[i] is None else emit(_add(), total[i], ct)


# -- lifting state (lift_state) -------------------------------------------------------------
# The variables the subgraphs read become consts, read just before the op (writes are refused
# by the shape rule).
def _lift(op: Op, reads, writes, values, discharge: Discharge) -> tuple[Op, tuple]:
    assert not writes, "the shape rule refuses writes"
    k = op.attrs["consts"]
    attrs = dict(op.attrs, consts=k + len(reads))
    for key in op.opdef.graph_attrs:
        sub: Graph = op.attrs[key]
        g = discharge(sub, reads, [])
        m = len(sub.inputs)
        g.inputs = g.inputs[:k] + g.inputs[m:] + g.inputs[k:m]
        attrs[key] = g
    inputs = [*op.inputs[:k], *values, *op.inputs[k:]]
    return rebuild(op, inputs, attrs, list(op.outputs)), ()


custom_vjp_call.deflift(_lift)
custom_jvp_call.deflift(_lift)


# -- batching (ir/batching.py) --------------------------------------------------------------
# The subgraphs are batched alike: a result is batched if the body's or the rule's is (a
# shared one is broadcast), a cotangent or tangent as its value, and a shared argument's
# cotangent from bwd is summed over the examples (each used it).
@custom_vjp_call.defbatch
def _custom_vjp_batch(e, op, args, batched):
    k, body, fwd, bwd = (op.attrs[key] for key in ("consts", "body", "fwd", "bwd"))
    flags, n = list(batched), len(body.outputs)
    fwd_flags = batch_graph(fwd, flags, e.size)[1]
    outs = [a or b for a, b in zip(batch_graph(body, flags, e.size)[1], fwd_flags)]
    fwd_flags = outs + fwd_flags[n:]
    r = len(bwd.inputs) - k - n
    new_bwd, ct_flags = batch_graph(bwd, flags[:k] + fwd_flags[n : n + r] + outs, e.size)
    inside = BatchEmit(new_bwd, e.size)
    new_bwd.outputs = [
        _like_argument(inside, ct, b, a) for ct, b, a in zip(new_bwd.outputs, ct_flags, flags[k:])
    ]
    attrs = dict(
        op.attrs,
        body=batch_graph(body, flags, e.size, outs)[0],
        fwd=batch_graph(fwd, flags, e.size, fwd_flags)[0],
        bwd=new_bwd,
    )
    results = e(custom_vjp_call, *args, **attrs)
    results = results if isinstance(results, tuple) else (results,)
    return results, fwd_flags if op.attrs["with_residuals"] else outs


def _like_argument(emit: BatchEmit, ct: Value, ct_batched: bool, arg_batched: bool) -> Value:
    """A batched cotangent of a shared argument summed over the examples; a shared one of a
    batched argument broadcast over them."""
    from . import reduce as R

    if ct_batched and not arg_batched:
        return emit(R.reduce_sum, ct, axes=(0,), keepdims=False)
    return emit.materialize(ct, ct_batched) if arg_batched else ct


@custom_jvp_call.defbatch
def _custom_jvp_batch(e, op, args, batched):
    k, body, jvp = (op.attrs[key] for key in ("consts", "body", "jvp"))
    flags, n = list(batched), len(body.outputs)
    jvp_in = flags + flags[k:]  # (a tangent is batched as its primal)
    jvp_flags = batch_graph(jvp, jvp_in, e.size)[1]
    outs = [
        a or b or c
        for a, b, c in zip(batch_graph(body, flags, e.size)[1], jvp_flags, jvp_flags[n:])
    ]
    attrs = dict(
        op.attrs,
        body=batch_graph(body, flags, e.size, outs)[0],
        jvp=batch_graph(jvp, jvp_in, e.size, outs + outs)[0],
    )
    results = e(custom_jvp_call, *args, **attrs)
    return (results if isinstance(results, tuple) else (results,)), outs


__all__ = ["custom_jvp_call", "custom_vjp_call", "inline"]
