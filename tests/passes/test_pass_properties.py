"""Property tests: every pass alone and the default pipeline keep results equal on random
graphs (under the reference interpreter) and leave graphs the verifier accepts; each
canonicalizing pass is idempotent."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from irgen import graphs, nested_graphs, simplifiable_graphs, stateful_graphs

from flowjit.backends.reference import run_graph
from flowjit.ir import print_graph, verify
from flowjit.passes import (
    cse,
    dce,
    default_pipeline,
    discharge_state,
    fold_constants,
    run_pipeline,
    simplify,
)

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


# -- every pass alone, and the pipeline, on every kind of random graph ----------------------
STRATEGIES = {
    "graphs": graphs(),
    "nested": nested_graphs(),
    "simplifiable": simplifiable_graphs(),
    "stateful": stateful_graphs(),
}
CANONICALIZING = [fold_constants, simplify, cse, dce]


def _args(graph, seed: int) -> list[np.ndarray]:
    """Random inputs; booleans (predicates) are true or false at random, not mostly true."""
    rng = np.random.default_rng(seed)
    return [
        rng.random(v.type.shape) < 0.5
        if v.type.dtype == np.bool_
        else (rng.standard_normal(v.type.shape) * 3).astype(v.type.dtype)
        for v in graph.inputs
    ]


def _state(graph, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 1000)
    return {
        h.name: (rng.standard_normal(h.type.shape) * 3).astype(h.type.dtype) for h in graph.states
    }


def _run(graph, args, state) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """The graph's results and the variables' new values, on the reference interpreter; a
    discharged graph takes and returns the variables where its state_map says."""
    if graph.state_map is None:
        new = dict(state)
        return run_graph(graph, args, new if graph.states else None), new
    inputs = list(args) + [None] * (len(graph.inputs) - len(args))
    for slot in graph.state_map:
        if slot.input is not None:
            inputs[slot.input] = state[slot.name]
    outs = run_graph(graph, inputs)
    n = len(outs) - sum(slot.output is not None for slot in graph.state_map)
    new = dict(state)
    new.update({s.name: outs[s.output] for s in graph.state_map if s.output is not None})
    return outs[:n], new


def _assert_same(before, after) -> None:
    assert len(before) == len(after)
    for a, b in zip(before, after):
        assert a.dtype == b.dtype and a.shape == b.shape
        wide = (lambda x: x.astype(np.float32)) if a.dtype.kind == "V" else (lambda x: x)
        np.testing.assert_array_equal(wide(a), wide(b))  # NaNs compare equal here


def _check_same_meaning(graph, new) -> None:
    for seed in (0, 1):
        args, state = _args(graph, seed), _state(graph, seed)
        with np.errstate(all="ignore"):
            outs, new_state = _run(graph, args, state)
            outs_after, new_state_after = _run(new, args, state)
        _assert_same(outs, outs_after)
        names = sorted(state)
        _assert_same([new_state[k] for k in names], [new_state_after[k] for k in names])


@pytest.mark.parametrize("kind", STRATEGIES)
@pytest.mark.parametrize("p", [*CANONICALIZING, discharge_state], ids=lambda p: p.__name__)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_each_pass_keeps_results_and_verifies(p, kind, data):
    graph = data.draw(STRATEGIES[kind])
    text = print_graph(graph)
    new, changed = p(graph)
    verify(new)
    assert print_graph(graph) == text  # the pass built a new graph; its input is unchanged
    if not changed:
        assert print_graph(new) == text
    _check_same_meaning(graph, new)


@pytest.mark.parametrize("kind", STRATEGIES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_default_pipeline_keeps_results_on_every_kind_of_graph(kind, data):
    graph = data.draw(STRATEGIES[kind])
    # verify_each: a pass that leaves a graph the verifier rejects raises PassError
    result = run_pipeline(graph, default_pipeline(), verify_each=True)
    _check_same_meaning(graph, result.graph)


@pytest.mark.parametrize("kind", STRATEGIES)
@pytest.mark.parametrize("p", CANONICALIZING, ids=lambda p: p.__name__)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_canonicalizing_passes_are_idempotent(p, kind, data):
    once, _ = p(data.draw(STRATEGIES[kind]))
    twice, changed = p(once)
    assert not changed
    assert print_graph(twice) == print_graph(once)
