"""Structured control flow: ``cond``, ``while`` and ``scan``, each holding closed subgraphs.

A subgraph sees only its own inputs: values it needs from outside (closures) are explicit
op inputs, passed first as ``consts``. A subgraph may read and write the enclosing graph's
variables (its ``state(...)`` names them); the op then has those effects, and
``discharge_state`` threads the variables through the branch results and loop carries.

    cond(pred, *operands) {true_branch, false_branch}   both take the operands
    while(*consts, *carry) {cond, body, consts=k}        cond -> bool[], body -> carry
    scan(*consts, *carry, *xs) {body, consts, carries, length, reverse}
        body(*consts, *carry, *x[i]) -> (*carry, *y[i]); results (*carry, *ys)

The reference implementations get ``run(graph, args) -> results``, which evaluates a subgraph
with the interpreter's variables. The lift rules (``OpDef.deflift``), for ``lift_state``, get
``discharge(graph, handles, written) -> graph``, which discharges a subgraph's variables."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..batching import BatchEmit, batch_graph, has_effects, inline_batched
from ..core import Effect, Graph, Op, OpDef, Value, register
from ..errors import BatchingError, DTypeError, GradientError, ShapeError, TypeMismatchError
from ..grad import active_values, differentiable, linearize
from ..types import BOOL, TensorType
from . import elementwise as E
from . import reduce as R

Run = Callable[[Graph, Sequence[np.ndarray]], list[np.ndarray]]
Discharge = Callable[[Graph, list[Value], list[Value]], Graph]


def _types(values) -> tuple[TensorType, ...]:
    return tuple(v.type for v in values)


def check_types(what: str, got: Sequence[TensorType], want: Sequence[TensorType], of: str) -> None:
    """TypeMismatchError unless ``got`` (``what``) equals ``want`` (``of``) one by one."""
    if len(got) != len(want):
        raise TypeMismatchError(f"{what} has {len(got)} values but {of} has {len(want)}")
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            raise TypeMismatchError(f"{what} {i} is {g} but {of} {i} is {w}")


# -- cond ----------------------------------------------------------------------------------
def _cond_rule(types, true_branch: Graph, false_branch: Graph):
    if not types or types[0] != TensorType((), BOOL):
        got = types[0] if types else "nothing"
        raise DTypeError(f"the predicate must be bool[], got {got}")
    for label, branch in (("true_branch", true_branch), ("false_branch", false_branch)):
        check_types(f"{label} input", _types(branch.inputs), types[1:], "operand")
    out = _types(true_branch.outputs)
    check_types("false_branch result", _types(false_branch.outputs), out, "true_branch result")
    return out


def _cond_ref(pred, *operands, true_branch: Graph, false_branch: Graph, run: Run):
    return tuple(run(true_branch if bool(pred) else false_branch, operands))


cond = register(
    OpDef(
        "cond",
        _cond_rule,
        _cond_ref,
        attrs={"true_branch": "graph", "false_branch": "graph"},
        doc="the results of true_branch(*operands) if pred else of false_branch(*operands)",
    )
)


# -- while ---------------------------------------------------------------------------------
def _while_rule(types, consts: int, cond: Graph, body: Graph):
    if not 0 <= consts <= len(types):
        raise ShapeError(f"consts={consts} but the op has {len(types)} inputs")
    check_types("cond input", _types(cond.inputs), types, "operand")
    if any(Effect.WRITE in op.effects for op in cond.ops):
        raise ShapeError("the cond of a while loop must not write variables; write them in body")
    if _types(cond.outputs) != (TensorType((), BOOL),):
        raise DTypeError(f"cond must return one bool[], got {list(map(str, _types(cond.outputs)))}")
    check_types("body input", _types(body.inputs), types, "operand")
    check_types("body result", _types(body.outputs), types[consts:], "carry")
    return tuple(types[consts:])


def _while_ref(*operands, consts: int, cond: Graph, body: Graph, run: Run):
    fixed, carry = list(operands[:consts]), list(operands[consts:])
    while bool(run(cond, fixed + carry)[0]):
        carry = run(body, fixed + carry)
    return tuple(carry)


while_loop = register(
    OpDef(
        "while",
        _while_rule,
        _while_ref,
        attrs={"consts": "int", "cond": "graph", "body": "graph"},
        doc="carry <- body(*consts, *carry) while cond(*consts, *carry)",
    )
)


# -- scan ----------------------------------------------------------------------------------
def _scan_rule(types, consts: int, carries: int, length: int, reverse: bool, body: Graph):
    if consts < 0 or carries < 0 or consts + carries > len(types) or length < 0:
        raise ShapeError(
            f"consts={consts}, carries={carries}, length={length} do not fit {len(types)} inputs"
        )
    xs = types[consts + carries :]
    for i, x in enumerate(xs):
        if not x.shape or x.shape[0] != length:
            raise ShapeError(f"xs {i} has shape {x.shape}; scanned inputs need length {length}")
    slices = tuple(TensorType(x.shape[1:], x.dtype) for x in xs)
    check_types("body input", _types(body.inputs), types[: consts + carries] + slices, "operand")
    out = _types(body.outputs)
    check_types("body carry result", out[:carries], types[consts : consts + carries], "carry")
    ys = tuple(TensorType((length, *y.shape), y.dtype) for y in out[carries:])
    return tuple(types[consts : consts + carries]) + ys


def _scan_ref(*operands, consts: int, carries: int, length: int, reverse: bool, body: Graph, run):
    fixed = list(operands[:consts])
    carry = list(operands[consts : consts + carries])
    xs = operands[consts + carries :]
    ys: list[list[np.ndarray]] = [[] for _ in body.outputs[carries:]]
    for i in reversed(range(length)) if reverse else range(length):
        out = run(body, fixed + carry + [x[i] for x in xs])
        carry = out[:carries]
        for stack, y in zip(ys, out[carries:]):
            stack.append(y)
    stacked = []
    for stack, y in zip(ys, body.outputs[carries:]):
        stack = stack[::-1] if reverse else stack
        stacked.append(np.stack(stack) if stack else np.zeros((0, *y.type.shape), y.type.dtype))
    return tuple(carry) + tuple(stacked)


scan = register(
    OpDef(
        "scan",
        _scan_rule,
        _scan_ref,
        attrs={
            "consts": "int",
            "carries": "int",
            "length": "int",
            "reverse": "bool",
            "body": "graph",
        },
        doc="a loop over the leading axis of xs, carrying a state and stacking per-step results",
    )
)


# -- gradients -----------------------------------------------------------------------------
@cond.defvjp
def _cond_vjp(emit, op, *cts):
    """A cond over the branches' gradients (each recomputes its own forward values)."""
    pred, operands = op.inputs[0], op.inputs[1:]
    cts = [_ct_or_zeros(emit, v, ct) for v, ct in zip(op.outputs, cts) if differentiable(v.type)]
    active = [emit.is_active(v) for v in operands]
    branches = {
        key: linearize(op.attrs[key], active).joint for key in ("true_branch", "false_branch")
    }
    outs = _as_tuple(emit(cond, pred, *operands, *cts, **branches))
    return [None, *_scatter(operands, outs)]


@scan.defvjp
def _scan_vjp(emit, op, *cts):
    """The forward loop is extended to save, per step, the values the backward pass needs
    that are neither consts nor xs; a reversed scan then runs the body's backward pass,
    carrying the carry's cotangent and summing the consts' cotangents."""
    k, c = op.attrs["consts"], op.attrs["carries"]
    body: Graph = op.attrs["body"]
    lin = linearize(body, _active_inputs(emit, op, k, c))
    body = lin.forward  # the body's copy the residuals belong to
    consts, carry, xs = body.inputs[:k], body.inputs[k : k + c], body.inputs[k + c :]
    outer = dict(zip(body.inputs, op.inputs))  # a const or x of the body -> the op's input
    n_res = len(lin.residuals)
    res_inputs, ct_inputs = lin.backward.inputs[:n_res], lin.backward.inputs[n_res:]
    const_res, x_res, stacked = [], [], []  # (residual, its input in the backward graph)
    for value, bwd_input in zip(lin.residuals, res_inputs):
        group = const_res if value in consts else x_res if value in xs else stacked
        group.append((value, bwd_input))
    # a residual the body already gives as a y is stacked already; the others are added
    as_y = {v: op.outputs[c + i] for i, v in reversed(list(enumerate(body.outputs[c:])))}
    saved = list(dict.fromkeys(v for v, _ in stacked if v not in as_y))
    forward = Graph(body.name, body.inputs)
    forward.ops, forward.outputs = body.ops, [*body.outputs, *saved]
    as_y.update(zip(saved, emit.extend(op, body=forward)))

    diff_consts = [v for v in consts if differentiable(v.type)]
    diff_carry = [v for v in carry if differentiable(v.type)]
    diff_outs = [v for v in body.outputs if differentiable(v.type)]
    n_ct_carry = len(diff_carry)
    accs = [Value(v.type) for v in diff_consts]
    step = Graph(
        f"{body.name}_bwd",
        [
            *(b for _, b in const_res),
            *accs,
            *ct_inputs[:n_ct_carry],
            *(b for _, b in stacked),
            *(b for _, b in x_res),
            *ct_inputs[n_ct_carry:],
        ],
    )
    step.ops = list(lin.backward.ops)
    grads = lin.backward.outputs
    summed = [step.add(E.add, [acc, g])[0] for acc, g in zip(accs, grads)]
    step.outputs = [*summed, *grads[len(accs) :]]

    out_cts = dict(zip(op.outputs, cts))
    carry_cts = [_ct_or_zeros(emit, v, out_cts.get(v)) for v in op.outputs[:c]]
    y_cts = [_ct_or_zeros(emit, v, out_cts.get(v)) for v in op.outputs[c:]]
    diff = [differentiable(v.type) for v in body.outputs]
    carry_cts = [ct for ct, d in zip(carry_cts, diff[:c]) if d]
    y_cts = [ct for ct, d in zip(y_cts, diff[c:]) if d]
    assert len(carry_cts) + len(y_cts) == len(diff_outs)
    results = _as_tuple(
        emit(
            scan,
            *(outer[v] for v, _ in const_res),
            *(emit.zeros(v.type) for v in diff_consts),
            *carry_cts,
            *(as_y[v] for v, _ in stacked),
            *(outer[v] for v, _ in x_res),
            *y_cts,
            consts=len(const_res),
            carries=len(accs) + n_ct_carry,
            length=op.attrs["length"],
            reverse=not op.attrs["reverse"],
            body=step,
        )
    )
    return _scatter(op.inputs, results)


@while_loop.defvjp
def _while_vjp(emit, op, *cts):
    raise GradientError(
        "cannot differentiate through a while loop (its trip count is not known before it "
        "runs); use fj.scan, or fj.fori_loop with Python int bounds",
        op="while",
        loc=op.loc,
    )


# -- lifting state (lift_state) -------------------------------------------------------------
# Each lift rule threads the variables through the op: their values come in as operands (a
# loop's read-only ones as consts, the written ones as carries) and the written ones' new
# values go out as results.
@cond.deflift
def _cond_lift(op: Op, reads, writes, values, discharge: Discharge) -> tuple[Op, tuple]:
    attrs = {k: discharge(op.attrs[k], reads, writes) for k in ("true_branch", "false_branch")}
    new = _rebuild(op, [*op.inputs, *values], attrs, [*op.outputs, *[None] * len(writes)])
    return new, new.outputs[len(op.outputs) :]


@while_loop.deflift
def _while_lift(op: Op, reads, writes, values, discharge: Discharge) -> tuple[Op, tuple]:
    k, n = op.attrs["consts"], len(op.inputs)
    read_only = [h for h in reads if h not in writes]
    r = len(read_only)
    order = read_only + writes
    attrs = dict(op.attrs, consts=k + r)
    for key in ("cond", "body"):
        g = discharge(op.attrs[key], order, writes if key == "body" else [])
        ins = g.inputs
        g.inputs = ins[:k] + ins[n : n + r] + ins[k:n] + ins[n + r :]
        attrs[key] = g
    by_handle = dict(zip(reads, values))
    inputs = [*op.inputs[:k], *(by_handle[h] for h in read_only), *op.inputs[k:]]
    inputs += [by_handle[h] for h in writes]
    new = _rebuild(op, inputs, attrs, [*op.outputs, *[None] * len(writes)])
    return new, new.outputs[len(op.outputs) :]


@scan.deflift
def _scan_lift(op: Op, reads, writes, values, discharge: Discharge) -> tuple[Op, tuple]:
    k, c, n = op.attrs["consts"], op.attrs["carries"], len(op.inputs)
    read_only = [h for h in reads if h not in writes]
    r, w = len(read_only), len(writes)
    g = discharge(op.attrs["body"], read_only + writes, writes)
    ins, outs = g.inputs, g.outputs
    # [consts, carry, xs, read-only, written] -> [consts, read-only, carry, written, xs]
    g.inputs = ins[:k] + ins[n : n + r] + ins[k : k + c] + ins[n + r :] + ins[k + c : n]
    # [carry, ys, written] -> [carry, written, ys]
    m = len(outs) - w
    g.outputs = outs[:c] + outs[m:] + outs[c:m]
    by_handle = dict(zip(reads, values))
    inputs = [*op.inputs[:k], *(by_handle[h] for h in read_only), *op.inputs[k : k + c]]
    inputs += [*(by_handle[h] for h in writes), *op.inputs[k + c :]]
    attrs = dict(op.attrs, consts=k + r, carries=c + w, body=g)
    results = [*op.outputs[:c], *[None] * w, *op.outputs[c:]]
    new = _rebuild(op, inputs, attrs, results)
    return new, new.outputs[c : c + w]


def _rebuild(op: Op, inputs: list[Value], attrs: dict, results: list[Value | None]) -> Op:
    """``op`` with new inputs and attributes; ``results`` reuses op's result values where
    given and makes fresh ones (for the threaded variables) where None."""
    types = op.opdef.infer(tuple(v.type for v in inputs), attrs)
    outputs = tuple(Value(t) if r is None else r for r, t in zip(results, types, strict=True))
    return op.replace(inputs=tuple(inputs), attrs=attrs, outputs=outputs)


def _active_inputs(emit, op, consts: int, carries: int) -> list[bool]:
    """Which inputs of a scan's body may carry a derivative: those whose operand does, and a
    carry that the body makes from an active value (found to a fixed point)."""
    body: Graph = op.attrs["body"]
    flags = [emit.is_active(v) for v in op.inputs]
    while True:
        active = active_values(body.ops, [v for v, a in zip(body.inputs, flags) if a])
        carried = [v in active for v in body.outputs[:carries]]
        carry = slice(consts, consts + carries)
        new = list(flags)
        new[carry] = [a or b for a, b in zip(flags[carry], carried)]
        if new == flags:
            return flags
        flags = new


def _ct_or_zeros(emit, value, ct):
    return emit.zeros(value.type) if ct is None else ct


def _as_tuple(outs) -> tuple:
    return outs if isinstance(outs, tuple) else (outs,)


def _scatter(inputs, cts) -> list:
    """Cotangents given for the differentiable ``inputs`` only, spread over all of them."""
    cts = iter(cts)
    return [next(cts) if differentiable(v.type) else None for v in inputs]


# -- batching (ir/batching.py) --------------------------------------------------------------
@cond.defbatch
def _cond_batch(e, op, args, batched):
    """A predicate shared by the examples picks one branch for all, batched as needed; a
    per-example predicate runs both branches on the batch and selects per example (as jax)."""
    pred, operands, flags = args[0], args[1:], list(batched[1:])
    branches = [op.attrs["true_branch"], op.attrs["false_branch"]]
    if not batched[0]:
        either = [batch_graph(b, flags, e.size)[1] for b in branches]
        force = [a or b for a, b in zip(*either)]
        true, false = (batch_graph(b, flags, e.size, force)[0] for b in branches)
        return _as_tuple(e(cond, pred, *operands, true_branch=true, false_branch=false)), force
    _refuse_effects(branches, "a fj.cond whose predicate differs across the examples")
    (t, _), (f, _) = (inline_batched(e, b, operands, flags) for b in branches)
    outs = [
        e(E.select, e.expand(pred, True, v.type.ndim), a, b) for a, b, v in zip(t, f, op.outputs)
    ]
    return outs, [True] * len(outs)


@while_loop.defbatch
def _while_batch(e, op, args, batched):
    """Carries that become per-example (found to a fixed point) are batched. A per-example
    predicate runs the loop while any example's holds; an example whose predicate no longer
    holds keeps its carry (as jax)."""
    k = op.attrs["consts"]
    test, body = op.attrs["cond"], op.attrs["body"]
    consts, carry_flags = list(batched[:k]), list(batched[k:])
    while True:
        (per_example,) = batch_graph(test, consts + carry_flags, e.size)[1]
        if per_example:
            carry_flags = [True] * len(carry_flags)
            break
        out = batch_graph(body, consts + carry_flags, e.size)[1]
        widened = [a or b for a, b in zip(carry_flags, out)]
        if widened == carry_flags:
            break
        carry_flags = widened
    flags = consts + carry_flags
    carry = [e.materialize(a, b) if f else a for a, b, f in zip(args[k:], batched[k:], carry_flags)]
    if not per_example:
        new_test = batch_graph(test, flags, e.size)[0]
        new_body = batch_graph(body, flags, e.size, carry_flags)[0]
        outs = e(while_loop, *args[:k], *carry, consts=k, cond=new_test, body=new_body)
        return _as_tuple(outs), carry_flags
    _refuse_effects([body], "a fj.while_loop whose predicate differs across the examples")
    inputs = [a.type for a in args[:k]] + [a.type for a in carry]

    def any_holds(g: Graph, inner) -> Value:
        preds, _ = inline_batched(inner, test, g.inputs, flags)
        return inner(R.reduce_or, preds[0], axes=(0,), keepdims=False)

    def step(g: Graph, inner) -> list[Value]:
        (holds,), _ = inline_batched(inner, test, g.inputs, flags)
        new, new_flags = inline_batched(inner, body, g.inputs, flags)
        new = [inner.materialize(v, f) for v, f in zip(new, new_flags)]
        old = g.inputs[k:]
        return [
            inner(E.select, inner.expand(holds, True, v.type.ndim - 1), v, o)
            for v, o in zip(new, old)
        ]

    new_test = _batched_subgraph(e, test, inputs, lambda g, inner: [any_holds(g, inner)])
    new_body = _batched_subgraph(e, body, inputs, step)
    outs = e(while_loop, *args[:k], *carry, consts=k, cond=new_test, body=new_body)
    return _as_tuple(outs), carry_flags


@scan.defbatch
def _scan_batch(e, op, args, batched):
    """Carries that become per-example (found to a fixed point) are batched; batched xs are
    scanned over their second axis (the batch's is first), and batched ys come out with the
    batch axis first again."""
    k, c = op.attrs["consts"], op.attrs["carries"]
    body: Graph = op.attrs["body"]
    flags = list(batched)
    while True:
        out = batch_graph(body, flags, e.size)[1]
        widened = [a or b for a, b in zip(flags[k : k + c], out[:c])]
        if widened == flags[k : k + c]:
            break
        flags[k : k + c] = widened
    n_ys = len(body.outputs) - c
    new_body, out_flags = batch_graph(body, flags, e.size, flags[k : k + c] + [False] * n_ys)
    inputs = [e.materialize(a, b) if f else a for a, b, f in zip(args, batched, flags)]
    inputs[k + c :] = [
        e.moveaxis(a, 0, 1) if f else a for a, f in zip(inputs[k + c :], flags[k + c :])
    ]
    outs = list(_as_tuple(e(scan, *inputs, **dict(op.attrs, body=new_body))))
    outs[c:] = [e.moveaxis(y, 1, 0) if f else y for y, f in zip(outs[c:], out_flags[c:])]
    return outs, out_flags


def _refuse_effects(graphs, what: str) -> None:
    if any(has_effects(g, Effect.WRITE, Effect.HOST) for g in graphs):
        raise BatchingError(
            f"fj.vmap: {what} runs on every example and keeps each one's result, which a "
            "body that writes a variable or calls the host cannot do; make the predicate "
            "the same for every example, or move the write or host call out of it"
        )


def _batched_subgraph(e, like: Graph, types, build) -> Graph:
    """A new closed subgraph named as ``like``, with inputs of ``types`` and ``like``'s
    variables, whose results ``build(graph, emit)`` makes (batching into it)."""
    g = Graph(like.name, [Value(t) for t in types])
    for handle in like.states:
        g.add_state(handle.name, handle.type)
    g.outputs = build(g, BatchEmit(g, e.size))
    return g
