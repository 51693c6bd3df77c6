"""Random programs of the differential fuzzer (tests/progen.py: ops of the whole registry,
cond, scan and while with random bodies) batched over three examples, compared with the
program run on each example: on the reference interpreter and on XLA."""

from __future__ import annotations

import os

import numpy as np
import pytest
from opcheck import TOLERANCE, run_xla
from progen import random_program

from flowjit.backends.reference import run_graph
from flowjit.ir.batching import batch_graph

SIZE = 3
PROGRAMS = int(os.environ.get("FLOWJIT_FUZZ_EXAMPLES", "40"))


@pytest.mark.parametrize("seed", range(PROGRAMS))
def test_a_batched_random_program_equals_the_program_on_each_example(seed):
    program = random_program(seed, variables=False)
    graph = program.graph
    rng = np.random.default_rng(seed)
    flags = [bool(rng.random() < 0.7) for _ in graph.inputs]
    examples = [list(program.args)]
    for _ in range(1, SIZE):  # (the elements shuffled: values the program's ops accept)
        examples.append([rng.permutation(np.ravel(a)).reshape(np.shape(a)) for a in program.args])
    shared = [
        [x if f else examples[0][i] for i, (x, f) in enumerate(zip(ex, flags))] for ex in examples
    ]
    with np.errstate(all="ignore"):
        want = [run_graph(graph, ex) for ex in shared]
    batched, out_flags = batch_graph(graph, flags, SIZE)
    inputs = [
        np.stack([ex[i] for ex in examples]) if f else examples[0][i] for i, f in enumerate(flags)
    ]
    with np.errstate(all="ignore"):
        runs = [("reference", run_graph(batched, inputs)), ("xla", run_xla(batched, inputs))]
    for backend, outs in runs:
        for i, (got, flag) in enumerate(zip(outs, out_flags)):
            expected = np.stack([np.asarray(w[i]) for w in want])
            got = np.asarray(got) if flag else np.broadcast_to(got, expected.shape)
            what = f"program {seed}, output {i} on {backend}, batched inputs {flags}"
            assert got.shape == expected.shape and got.dtype == expected.dtype, what
            if got.dtype.kind in "biu":
                np.testing.assert_array_equal(got, expected, err_msg=what)
            else:
                # (at least a float16 result's rounding: XLA rounds a float16 product at each
                # step, the reference's numpy once; they can be 1 ulp, ~1e-3, apart)
                tolerance = max(2e-4, TOLERANCE.get(got.dtype, 0))
                np.testing.assert_allclose(
                    got.astype(np.float64),
                    expected.astype(np.float64),
                    rtol=tolerance,
                    atol=tolerance,
                    equal_nan=True,
                    err_msg=what,
                )
