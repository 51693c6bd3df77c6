"""``jax_call``: a jax computation the IR holds whole, for what ``fj.from_jax`` brings in from
jax and has no flowjit op for. The computation is a ``JaxModule`` (exported by jax.export:
portable StableHLO with its VJPs), printed as base64; ``name`` says which jax function it
came from, and the op carries the user's line of the call.

    %3: f32[4,4] = jax_call(%2) {name="tril", derivative=0, result_types=[f32[4,4]], module="..."}

``derivative`` d > 0 means the VJP of the VJP ... (d times) of the module's function: its
operands are the operands of the op it differentiates followed by the cotangents of that op's
float results, and its results are the cotangents of that op's float operands (integer and
boolean values have no cotangent). So gradients through it are jax's own, up to
``JaxModule.MAX_DERIVATIVE``.

The IR cannot run jax: a backend runs the module (XLA inlines it into the cluster; the
reference interpreter hands the op's ``ref`` a ``call_module`` that runs it with jax)."""

from __future__ import annotations

from ..batching import loop_batch
from ..core import OpDef, register
from ..errors import GradientError
from ..grad import differentiable
from ..types import JaxModule


def _jax_call_rule(types, name: str, derivative: int, result_types, module: JaxModule):
    return tuple(result_types)


def _jax_call_ref(*arrays, name, derivative, result_types, module, call_module):
    return tuple(call_module(module, derivative, arrays))


jax_call = register(
    OpDef(
        "jax_call",
        _jax_call_rule,
        _jax_call_ref,
        attrs={"name": "str", "derivative": "int", "result_types": "types", "module": "module"},
        doc="the results of the jax computation module (its derivative-th VJP) on the operands",
        # (an exported jax computation has fixed shapes: it runs once per example)
        batch=loop_batch,
    )
)


@jax_call.defvjp
def _jax_call_vjp(emit, op, *cts):
    """jax's own VJP of the computation: the next ``derivative`` of the same module."""
    floats = [v for v in op.inputs if differentiable(v.type)]
    if not any(emit.is_active(v) for v in floats):
        return [None] * len(op.inputs)
    derivative = op.attrs["derivative"]
    if derivative >= JaxModule.MAX_DERIVATIVE:
        raise GradientError(
            f"the jax function {op.attrs['name']!r} is differentiated more than "
            f"{JaxModule.MAX_DERIVATIVE} times; flowjit keeps jax's derivatives of an imported "
            "function up to that order",
            op="jax_call",
            loc=op.loc,
        )
    out_cts = [
        emit.zeros(v.type) if ct is None else ct
        for v, ct in zip(op.outputs, cts)
        if differentiable(v.type)
    ]
    results = emit(
        jax_call,
        *op.inputs,
        *out_cts,
        name=op.attrs["name"],
        derivative=derivative + 1,
        result_types=tuple(v.type for v in floats),
        module=op.attrs["module"],
    )
    results = iter(results if isinstance(results, tuple) else (results,))
    return [next(results) if differentiable(v.type) else None for v in op.inputs]


__all__ = ["jax_call"]
