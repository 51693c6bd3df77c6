"""Batching (``fj.vmap``) as a graph transformation: the ops of one example, rewritten by
each op's batching rule (``OpDef.batch``, declared beside the op with ``defbatch``) into ops
that compute a whole batch at once.

A value of the batched graph either carries the batch axis first (it is *batched*: each
example has its own) or is shared by every example (it then has the example's type). A rule
``rule(emit, op, args, batched) -> (results, results_batched)`` gets the example's op (its
types have no batch axis), its operands in the batched graph and which of them are batched;
it returns the op's results in the batched graph and which of those are batched. An op none
of whose operands is batched is copied as it is: its results are shared.

Rules build with ``BatchEmit``, which knows the batch size and the helpers most rules share:
``materialize`` (give a shared value the batch axis), ``expand`` (line a batched operand up
for numpy broadcasting against the example's result rank) and ``moveaxis``."""

from __future__ import annotations

from typing import Any, Sequence

from .core import Effect, Graph, Op, OpDef, StateHandle, Value
from .errors import BatchingError, FlowjitError
from .grad import Emit
from .types import TensorType


class BatchEmit(Emit):
    """An ``Emit`` for batching rules: ``size`` is the batch size."""

    def __init__(self, graph: Graph, size: int, loc=None, device=None):
        super().__init__(graph, loc, device)
        self.size = size

    def materialize(self, value: Value, batched: bool) -> Value:
        """``value`` with the batch axis first: a shared value is broadcast over the batch."""
        from .ops import shape as S

        if batched:
            return value
        return self(S.broadcast_to, value, shape=(self.size, *value.type.shape))

    def expand(self, value: Value, batched: bool, rank: int) -> Value:
        """``value`` ready to broadcast numpy-style against a batched result whose example
        has rank ``rank``: a batched operand of a lower example rank gets size-1 axes after
        its batch axis (a shared one broadcasts from the right as it is)."""
        from .ops import shape as S

        shape = value.type.shape
        if not batched or len(shape) - 1 == rank:
            return value
        padded = (shape[0],) + (1,) * (rank - len(shape) + 1) + shape[1:]
        return self(S.reshape, value, shape=padded)

    def moveaxis(self, value: Value, source: int, destination: int) -> Value:
        """``value`` with axis ``source`` moved to ``destination``, as numpy.moveaxis."""
        from .ops import shape as S

        ndim = len(value.type.shape)
        source, destination = source % ndim, destination % ndim
        if source == destination:
            return value
        perm = [d for d in range(ndim) if d != source]
        perm.insert(destination, source)
        return self(S.transpose, value, perm=tuple(perm))

    def batched_type(self, t: TensorType) -> TensorType:
        return TensorType((self.size, *t.shape), t.dtype)


def batch_ops(
    graph: Graph,
    ops: Sequence[Op],
    env: dict[Value, Value],
    batched: set[Value],
    size: int,
) -> None:
    """Append to ``graph`` the batched form of ``ops`` (an example's ops). ``env`` maps the
    example's values (and variable handles) to the batched graph's and is filled in;
    ``batched`` holds the batched graph's values that carry the batch axis, and grows."""
    for op in ops:
        args = [env[v] for v in op.inputs]
        flags = [a in batched for a in args]
        if not any(flags):
            outs = graph.add(op.opdef, args, op.attrs, op.loc, op.device)
            env.update(zip(op.outputs, outs))
            continue
        if op.opdef.batch is None:
            raise BatchingError(
                f"fj.vmap has no batching rule for {op.opdef.name}; call the function on "
                "each example (fj.scan over the batch) instead",
                op=op.opdef.name,
                loc=op.loc,
            )
        emit = BatchEmit(graph, size, op.loc, op.device)
        try:
            outs, out_flags = op.opdef.batch(emit, op, args, flags)
        except FlowjitError as err:
            raise err.with_context(op=op.opdef.name, loc=op.loc) from None
        outs, out_flags = tuple(outs), tuple(out_flags)
        for example, out, flag in zip(op.outputs, outs, out_flags, strict=True):
            want = emit.batched_type(example.type) if flag else example.type
            assert out.type == want, f"{op.opdef.name}'s batching rule gave {out.type}, not {want}"
            env[example] = out
            if flag:
                batched.add(out)


def batch_graph(
    g: Graph, in_batched: Sequence[bool], size: int, force: Sequence[bool] | None = None
) -> tuple[Graph, list[bool]]:
    """The closed subgraph ``g`` batched: its inputs flagged in ``in_batched`` get the batch
    axis, and so does each result that depends on them, or that ``force`` flags (a shared
    result is broadcast). Returns the new graph and which of its results are batched."""
    new = Graph(g.name, [])
    env: dict[Value, Value] = {}
    batched: set[Value] = set()
    emit = BatchEmit(new, size)
    for v, flag in zip(g.inputs, in_batched, strict=True):
        env[v] = new.add_input(emit.batched_type(v.type) if flag else v.type)
        if flag:
            batched.add(env[v])
    for handle in g.states:
        env[handle] = new.add_state(handle.name, handle.type)
    batch_ops(new, g.ops, env, batched, size)
    outs = [env[v] for v in g.outputs]
    flags = [v in batched for v in outs]
    if force is not None:
        outs = [emit.materialize(v, f) if want else v for v, f, want in zip(outs, flags, force)]
        flags = [f or want for f, want in zip(flags, force)]
    new.outputs = outs
    return new, flags


def inline_batched(
    emit: BatchEmit, g: Graph, args: Sequence[Value], flags: Sequence[bool]
) -> tuple[list[Value], list[bool]]:
    """The results of the closed subgraph ``g`` on ``args`` (``flags``: which are batched),
    its ops batched into ``emit``'s graph; its variables are the graph's of the same name."""
    env: dict[Value, Value] = dict(zip(g.inputs, args))
    batched = {a for a, f in zip(args, flags) if f}
    by_name = {h.name: h for h in emit.graph.states}
    for handle in g.states:
        env[handle] = by_name[handle.name]
    batch_ops(emit.graph, g.ops, env, batched, emit.size)
    outs = [env[v] for v in g.outputs]
    return outs, [v in batched for v in outs]


def has_effects(g: Graph, *effects: Effect) -> bool:
    return any(op.effects & set(effects) for op in g.ops)


# -- rules shared by op families -----------------------------------------------------------
def elementwise_batch(emit: BatchEmit, op: Op, args: Sequence[Value], batched: Sequence[bool]):
    """Ops that map elements to elements, their operands broadcasting numpy-style: batched
    operands get the batch axis lined up, shared ones broadcast over it."""
    rank = len(op.outputs[0].type.shape)
    operands = [emit.expand(a, b, rank) for a, b in zip(args, batched)]
    out = emit(op.opdef, *operands, **op.attrs)
    outs = out if isinstance(out, tuple) else (out,)
    return outs, (True,) * len(outs)


def loop_batch(emit: BatchEmit, op: Op, args: Sequence[Value], batched: Sequence[bool]):
    """Any op, one example at a time: a scan over the batch whose body is the op (shared
    operands are the scan's consts, batched ones its xs). Correct for every op; for those
    whose vectorized form would be no faster (a host call) or is not written yet."""
    from .ops import control as C

    handles = [isinstance(a, StateHandle) for a in args]
    shared = [a for a, b, h in zip(args, batched, handles) if not (b or h)]
    stacked = [a for a, b in zip(args, batched) if b]
    body = Graph(f"{op.opdef.name}_example", [])
    consts = iter([body.add_input(a.type) for a in shared])
    xs = iter([body.add_input(TensorType(a.type.shape[1:], a.type.dtype)) for a in stacked])
    states: dict[str, StateHandle] = {}
    inputs = []
    for a, b, h in zip(args, batched, handles):
        if h:  # (the body names the graph's variable as its own)
            if a.name not in states:
                states[a.name] = body.add_state(a.name, a.type)
            inputs.append(states[a.name])
        else:
            inputs.append(next(xs) if b else next(consts))
    body.outputs = list(body.add(op.opdef, inputs, op.attrs, op.loc, op.device))
    out = emit(
        C.scan,
        *shared,
        *stacked,
        consts=len(shared),
        carries=0,
        length=emit.size,
        reverse=False,
        body=body,
    )
    outs = out if isinstance(out, tuple) else (out,)
    return outs, (True,) * len(outs)


def shifted_axis_batch(*names: str):
    """A rule for one-operand ops whose attributes ``names`` are axes (an int or ints) of the
    operand: with the batch axis first, each moves up by one."""

    def rule(emit: BatchEmit, op: Op, args: Sequence[Value], batched: Sequence[bool]):
        ndim = len(op.inputs[0].type.shape)
        attrs = dict(op.attrs)
        for name in names:
            attrs[name] = shift_axes(attrs[name], ndim)
        out = emit(op.opdef, *args, **attrs)
        outs = out if isinstance(out, tuple) else (out,)
        return outs, (True,) * len(outs)

    return rule


def shift_axes(axes: Any, ndim: int) -> Any:
    """Axes of an example of rank ``ndim`` (an int, ints, or None: all) as axes of its batch."""
    if axes is None:
        return tuple(range(1, ndim + 1))
    if isinstance(axes, int):
        return (axes % max(ndim, 1)) + 1
    return tuple((a % ndim) + 1 for a in axes)


def defbatch_all(rule, *opdefs: OpDef) -> None:
    for opdef in opdefs:
        opdef.defbatch(rule)
