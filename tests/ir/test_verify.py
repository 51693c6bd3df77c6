"""The verifier catches broken graphs that passes could produce."""

from __future__ import annotations

import numpy as np
import pytest

from flowjit.ir import Graph, Op, TensorType, Value, VerifyError, parse, verify
from flowjit.ir.ops import elementwise as E

F32 = TensorType((2,), np.float32)


def base() -> Graph:
    return parse(
        "graph @g(%0: f32[2]) {\n  %1: f32[2] = neg(%0)\n  %2: f32[2] = exp(%1)\n  return %2\n}\n"
    )


def test_valid_graph_passes():
    verify(base())


def test_use_before_definition():
    g = base()
    g.ops.reverse()
    with pytest.raises(VerifyError, match="input 0 of op #0 is used before it is defined"):
        verify(g)


def test_wrong_output_type():
    g = base()
    op = g.ops[0]
    g.ops[0] = Op(op.opdef, op.inputs, op.attrs, (Value(TensorType((3,), np.float32)),), op.loc)
    with pytest.raises(
        VerifyError, match=r"output types f32\[3\] but its shape rule gives f32\[2\]"
    ):
        verify(g)


def test_undefined_output_and_redefinition():
    g = base()
    g.outputs = [Value(F32)]
    with pytest.raises(VerifyError, match="graph output 0 is not defined"):
        verify(g)
    g = base()
    g.ops.append(g.ops[0])
    with pytest.raises(VerifyError, match="redefines"):
        verify(g)


def test_bad_attributes():
    g = base()
    x = g.inputs[0]
    g.ops.append(Op(E.convert, (x,), {"dtype": np.float32, "extra": 1}, (Value(F32),)))
    with pytest.raises(VerifyError, match="unknown attributes"):
        verify(g)
