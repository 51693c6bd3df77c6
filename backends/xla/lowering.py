"""Emitting a flowjit graph as StableHLO with jaxlib's MLIR builders.

``LOWERINGS`` maps each OpDef object to its rule ``rule(ctx, op, *args) -> ir.Value | list``;
rules live in one file per op family, mirroring ``ir/ops/``. ``emit_graph`` walks a graph in
order, wrapping each op's emission in the user's source location so XLA's HLO metadata names
it. Every rule gets the ``LoweringContext`` of the graph being emitted as its first argument:
the platform, jax's rule context (under jax.jit) and the graph's host-call token. No lowering
state lives in this module (jax hands its rules a LoweringRuleContext the same way).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from flowjit.ir import Graph, LoweringError, Op, OpDef, TensorType, dtype_name
from flowjit.ir.types import BOOL, bfloat16

from .jaxshim import dtype_to_ir_type, hlo, ir, jax, prepare_compile

LoweringRule = Callable[..., "ir.Value | Sequence[ir.Value]"]
LOWERINGS: dict[OpDef, LoweringRule] = {}


def lowers(*opdefs: OpDef) -> Callable[[LoweringRule], LoweringRule]:
    """Decorator: register ``rule`` as the StableHLO lowering of each of ``opdefs``."""

    def register(rule: LoweringRule) -> LoweringRule:
        for opdef in opdefs:
            assert opdef not in LOWERINGS, f"{opdef.name} lowered twice"
            LOWERINGS[opdef] = rule
        return rule

    return register


@dataclasses.dataclass(eq=False)
class LoweringContext:
    """What the rules emitting one graph share. ``platform``: the platform emitted for ("cpu",
    "cuda", "rocm", "tpu"). ``jax_context``: jax's lowering-rule context when the graph is
    emitted under jax.jit (host callbacks need it), None for a standalone module (dumps).
    ``token``: the token of the graph's last host call: host calls in one graph (a loop body, a
    cluster) chain a token through it so they run in program order; a token never leaves its
    graph (a region of the StableHLO), so each graph emitted gets its own context
    (``emit_graph``)."""

    platform: str
    jax_context: Any = None
    token: Any = None

    @classmethod
    def under_jit(cls, jax_context: Any) -> "LoweringContext":
        """For a cluster emitted under jax.jit. (XLA compiles it next: flowjit's persistent
        cache folder, if still pending, is given to jax first.)"""
        prepare_compile()
        return cls(jax_context.module_context.platforms[0], jax_context)

    @classmethod
    def standalone(cls) -> "LoweringContext":
        """For a standalone module (dumps, golden tests): jax's default platform."""
        return cls(jax.default_backend())

    def jax_rule_context(self, op: Op) -> Any:
        """jax's lowering-rule context, for ``op``, which is emitted through jax's helpers (a
        host callback, a jax computation)."""
        if self.jax_context is None:
            raise LoweringError(
                f"{op.opdef.name} is compiled only as part of a step (under jax.jit), not as a "
                "standalone module",
                op=op.opdef.name,
                loc=op.loc,
            )
        return self.jax_context


def ir_type(t: TensorType) -> ir.RankedTensorType:
    return ir.RankedTensorType.get(list(t.shape), dtype_to_ir_type(t.dtype))


def constant(value: np.ndarray | float | int | bool, dtype: np.dtype | None = None) -> ir.Value:
    """A stablehlo.constant of ``value`` (a scalar becomes a rank-0 tensor)."""
    array = np.asarray(value, dtype=dtype)
    array = np.ascontiguousarray(array).reshape(array.shape)  # (ascontiguousarray gives rank >= 1)
    if array.dtype == BOOL:
        return hlo.constant(ir.DenseElementsAttr.get(array))
    # The buffer protocol knows no bfloat16: hand over the bits with the element type beside.
    bits = array.view(np.uint16) if array.dtype == bfloat16 else array
    return hlo.constant(
        ir.DenseElementsAttr.get(bits, type=dtype_to_ir_type(array.dtype), shape=list(array.shape))
    )


def broadcast(value: ir.Value, src: TensorType, shape: tuple[int, ...]) -> ir.Value:
    """numpy-style broadcast of ``value`` (of type ``src``) to ``shape``; a no-op if equal."""
    if src.shape == tuple(shape):
        return value
    dims = list(range(len(shape) - src.ndim, len(shape)))
    return hlo.broadcast_in_dim(ir_type(TensorType(shape, src.dtype)), value, dims)


def region_body(
    region: ir.Region, types: Sequence[TensorType], body: Callable[..., Sequence[ir.Value]]
) -> None:
    """Fill ``region`` (of a reduce, reduce_window or sort) with one block whose arguments have
    ``types`` and which returns ``body(*arguments)``."""
    block = region.blocks.append(*(ir_type(t) for t in types))
    with ir.InsertionPoint(block):
        hlo.return_(list(body(*block.arguments)))


def full(value: int | float | bool, t: TensorType) -> ir.Value:
    """A tensor of type ``t`` filled with ``value``."""
    return broadcast(constant(value, t.dtype), TensorType((), t.dtype), t.shape)


def accumulation_type(t: TensorType) -> TensorType:
    """float16/bfloat16 products are summed in float32 (then rounded once), as jax does with
    preferred_element_type=float32; every other dtype sums in itself."""
    if t.dtype.itemsize == 2 and t.dtype.kind in "fV":
        return TensorType(t.shape, np.float32)
    return t


def round_to(value: ir.Value, wide: TensorType, out: TensorType) -> ir.Value:
    """Convert a result computed in ``wide`` back to the op's output type ``out``."""
    return value if wide == out else hlo.convert(ir_type(out), value)


def emit_graph(ctx: LoweringContext, graph: Graph, args: Sequence[ir.Value]) -> list[ir.Value]:
    """Emit ``graph``'s ops at the current insertion point, in a context of its own (its own
    host-call token) under ``ctx``; returns the output values."""
    return _emit_ops(LoweringContext(ctx.platform, ctx.jax_context), graph, args)


def _emit_ops(ctx: LoweringContext, graph: Graph, args: Sequence[ir.Value]) -> list[ir.Value]:
    env = dict(zip(graph.inputs, args, strict=True))
    for op in graph.ops:
        rule = LOWERINGS.get(op.opdef)
        if rule is None:
            raise LoweringError(
                f"the xla backend has no lowering for {op.opdef.name}; "
                "run it with backend='reference' or file an issue",
                op=op.opdef.name,
                loc=op.loc,
            )
        _check_dtypes(op)
        # A named file location: XLA turns it into an HLO stack frame naming the user's line.
        location = _location(op)
        with location:
            results = rule(ctx, op, *(env[v] for v in op.inputs))
        results = [results] if isinstance(results, ir.Value) else list(results)
        env.update(zip(op.outputs, results, strict=True))
    return [env[v] for v in graph.outputs]


def _location(op: Op) -> ir.Location:
    """The op's name over its user line (a fused location for an op CSE merged)."""
    if op.loc is None:
        return ir.Location.unknown()
    # (one named location per line, fused: XLA's metadata takes the first, which names the
    # op's own line; a name over a fused location it would not read at all)
    lines = [
        ir.Location.name(op.opdef.name, childLoc=ir.Location.file(o.file, o.line, 0))
        for o in op.loc.origins
    ]
    return lines[0] if len(lines) == 1 else ir.Location.fused(lines)


def _check_dtypes(op: Op) -> None:
    for value in (*op.inputs, *op.outputs):
        try:
            dtype_to_ir_type(value.type.dtype)
        except (TypeError, KeyError):
            raise LoweringError(
                f"the xla backend cannot lower dtype {dtype_name(value.type.dtype)}",
                op=op.opdef.name,
                loc=op.loc,
            ) from None
