"""Property tests: the default pipeline keeps results equal on random graphs (under the
reference interpreter), and each canonicalizing pass is idempotent."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from irgen import graphs

from flowjit.backends.reference import run_graph
from flowjit.ir import print_graph
from flowjit.passes import default_pipeline, cse, dce, run_pipeline

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _inputs(graph, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(v.type.shape) * 3).astype(v.type.dtype) for v in graph.inputs]


@SETTINGS
@given(graphs())
def test_pipeline_preserves_results(graph):
    args = _inputs(graph, 0)
    with np.errstate(all="ignore"):
        before = run_graph(graph, args)
        after = run_graph(run_pipeline(graph, default_pipeline()).graph, args)
    assert len(before) == len(after)
    for a, b in zip(before, after):
        assert a.dtype == b.dtype and a.shape == b.shape
        wide = (lambda x: x.astype(np.float32)) if a.dtype.kind == "V" else (lambda x: x)
        np.testing.assert_array_equal(wide(a), wide(b))  # NaNs compare equal here


@SETTINGS
@given(graphs())
def test_passes_are_idempotent(graph):
    for p in (cse, dce):
        once, _ = p(graph)
        twice, changed = p(once)
        assert not changed
        assert print_graph(twice) == print_graph(once)
