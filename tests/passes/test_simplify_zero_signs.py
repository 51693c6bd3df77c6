"""simplify keeps zero signs (docs/ir-format.md, "Edge values"): x + -0.0 and x - 0.0 are x
for every x, so they are dropped; x + 0.0 and x - -0.0 are 0.0 at x = -0.0, so they stay, as
does a zero constant whose zeros differ in sign. Checked on values with both zeros, NaN and
infinities, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from flowjit.backends.reference import run_graph
from flowjit.ir import parse, print_graph
from flowjit.ir.types import bfloat16
from flowjit.passes import simplify

X = [-0.0, 0.0, 1.5, -np.inf, np.nan]


def _graph(op: str, constant: str, left: bool, dtype: str, shape: str = "") -> str:
    operands = "%1, %0" if left else "%0, %1"
    return f"""graph @g(%0: {dtype}[5]) {{
  %1: {dtype}[{shape}] = constant() {{value=dense({dtype}[{shape}], [{constant}])}}
  %2: {dtype}[5] = {op}({operands})
  return %2
}}
"""


@pytest.mark.parametrize("dtype", ["f32", "bf16", "f64"])
@pytest.mark.parametrize(
    "op, constant, left, shape, dropped",
    [
        ("add", "-0.0", False, "", True),  # x + -0.0 -> x
        ("add", "-0.0", True, "", True),  # -0.0 + x -> x
        ("sub", "0.0", False, "", True),  # x - 0.0 -> x
        ("add", "0.0", False, "", False),  # -0.0 + 0.0 is 0.0
        ("add", "0.0", True, "", False),
        ("sub", "-0.0", False, "", False),  # -0.0 - -0.0 is 0.0
        ("add", "-0.0, -0.0, 0.0, -0.0, -0.0", False, "5", False),  # not one zero
        ("add", "-0.0, -0.0, -0.0, -0.0, -0.0", False, "5", True),
    ],
)
def test_zero_neutral_only_with_its_sign(op, constant, left, shape, dropped, dtype):
    before = parse(_graph(op, constant, left, dtype, shape))
    after, changed = simplify(before)
    assert changed == dropped
    assert (op in print_graph(after)) != dropped
    numpy_dtype = {"f32": np.float32, "bf16": bfloat16, "f64": np.float64}[dtype]
    x = np.array(X, np.float64).astype(numpy_dtype)
    (want,), (got,) = run_graph(before, [x]), run_graph(after, [x])
    want, got = want.astype(np.float64), got.astype(np.float64)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
