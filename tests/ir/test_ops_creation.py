"""constant and iota, every dtype, against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import OpCase, check_case, params, rand

from flowjit.ir.ops import creation as C
from flowjit.ir.ops.rules import ANY, NUMERIC


def _iota_numpy(*, shape, dimension, dtype):
    return np.indices(shape)[dimension].astype(dtype)


CASES = [
    OpCase(
        C.constant,
        ANY,
        lambda rng, dt: ([], {"value": rand(rng, (2, 3), dt)}),
        lambda *, value: value,
    ),
    OpCase(
        C.constant,
        ANY,
        lambda rng, dt: ([], {"value": rand(rng, (), dt)}),
        lambda *, value: value,
        name="constant_scalar",
    ),
    OpCase(
        C.iota,
        NUMERIC,
        lambda rng, dt: ([], {"shape": (3, 4), "dimension": int(rng.integers(2)), "dtype": dt}),
        _iota_numpy,
    ),
]


@pytest.mark.parametrize("case, dtype", params(CASES))
def test_op_against_numpy(case, dtype):
    check_case(case, dtype)
