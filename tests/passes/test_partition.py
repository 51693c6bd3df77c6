"""partition: golden IR-in/IR-out tests, and properties on random graphs with host calls
inserted (results and host-call order kept, no cycle, maximal clusters, idempotent).

The host calls here run registered callbacks that log what they see, so a test checks not
only the results but the order in which (and the values on which) the host work ran."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from irgen import graphs
from opcheck import TOLERANCE, run_xla

from flowjit.backends.reference import run_graph
from flowjit.ir import Effect, Graph, Op, PassError, Value, parse, print_graph, verify
from flowjit.ir.ops import control as Ctl
from flowjit.ir.ops import host as H
from flowjit.passes import partition

# (callback name, the operands it saw), in the order the host calls ran
LOG: list[tuple[str, list[np.ndarray]]] = []


def logged(tag: str, transform=None):
    """A host callback that logs ``tag`` and its operands, and returns ``transform`` of each
    operand (nothing when ``transform`` is None: a sink, like fj.print)."""

    def call(*arrays):
        LOG.append((tag, [np.array(a, copy=True) for a in arrays]))
        return [] if transform is None else [transform(a) for a in arrays]

    return call


# the test callbacks, as IR text names them (CB_ID, CB_NEG, CB_SINK) before ir() numbers them
CALLBACKS = {
    "CB_ID": logged("identity", lambda a: a),
    "CB_NEG": logged("negate", np.negative),
    "CB_SINK": logged("sink"),
}


def ir(text: str) -> str:
    """IR text with the test callbacks' names replaced by their numbers, as the text form
    numbers a graph's functions: in order of first appearance."""
    for number, name in enumerate(_named(text)):
        text = text.replace(name, str(number))
    return text


def parse_ir(text: str) -> Graph:
    """The graph of IR text naming the test callbacks, each host call holding its function."""
    return parse(ir(text), functions=[CALLBACKS[name] for name in _named(text)])


def _named(text: str) -> list[str]:
    """The test callbacks ``text`` names, in order of first appearance."""
    return list(dict.fromkeys(re.findall("|".join(CALLBACKS), text)))


def run_logged(graph: Graph, args: list[np.ndarray]) -> tuple[list[np.ndarray], list]:
    """The graph's results on the reference interpreter, and the host calls' log."""
    LOG.clear()
    with np.errstate(all="ignore"):
        outs = run_graph(graph, args)
    log = list(LOG)
    LOG.clear()
    return outs, log


def assert_same(before: list[np.ndarray], after: list[np.ndarray], what: str) -> None:
    assert len(before) == len(after), what
    for i, (a, b) in enumerate(zip(before, after)):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{what} {i}"
        wide = (lambda x: x.astype(np.float32)) if a.dtype.kind == "V" else (lambda x: x)
        np.testing.assert_array_equal(wide(a), wide(b), err_msg=f"{what} {i}")  # NaN == NaN


def assert_same_log(before: list, after: list) -> None:
    assert [tag for tag, _ in after] == [tag for tag, _ in before], "host calls ran out of order"
    for (tag, seen_before), (_, seen_after) in zip(before, after):
        assert_same(seen_before, seen_after, f"operands of {tag}")


def check_clustered(text: str, want: str, args: list[np.ndarray]) -> Graph:
    """Cluster the graph of ``text``: its text must be ``want``; it verifies, round-trips,
    and gives the original graph's results and host calls (operands, order) on the reference
    interpreter, and its results on XLA."""
    graph = parse_ir(text)
    out, changed = partition(graph)
    assert changed
    assert print_graph(out) == ir(want)
    verify(out)
    assert print_graph(parse(print_graph(out))) == print_graph(out)
    before, log_before = run_logged(graph, args)
    after, log_after = run_logged(out, args)
    assert_same(before, after, "result")
    assert_same_log(log_before, log_after)
    for i, (got, expected) in enumerate(zip(run_xla(out, args), before)):
        np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=f"xla result {i}")
    return out


X = np.array([0.5, -2.0], np.float32)


# -- goldens -------------------------------------------------------------------------------
def test_one_host_call_in_the_middle_makes_two_clusters():
    text = """graph @g(%0: f32[2]) {
  %1: f32[2] = exp(%0)
  %2: f32[2] = host_call(%1) {callback=CB_NEG, name="show", result_types=[f32[2]]}
  %3: f32[2] = mul(%2, %1)
  return %3
}
"""
    want = """graph @g(%0: f32[2]) {
  %1: f32[2] = cluster(%0) {body=graph @cluster_0(%0: f32[2]) {
      %1: f32[2] = exp(%0)
      return %1
    }}
  %2: f32[2] = host_call(%1) {callback=CB_NEG, name="show", result_types=[f32[2]]}
  %3: f32[2] = cluster(%2, %1) {body=graph @cluster_1(%0: f32[2], %1: f32[2]) {
      %2: f32[2] = mul(%0, %1)
      return %2
    }}
  return %3
}
"""
    check_clustered(text, want, [X])
    np.testing.assert_allclose(run_graph(parse_ir(text), [X])[0], -np.exp(X) * np.exp(X))


def test_independent_work_after_a_host_call_lands_in_cluster_0():
    text = """graph @g(%0: f32[2]) {
  %1: f32[2] = exp(%0)
  %2: f32[2] = host_call(%1) {callback=CB_ID, name="show", result_types=[f32[2]]}
  %3: f32[2] = neg(%0)
  %4: f32[2] = tanh(%3)
  %5: f32[2] = add(%2, %4)
  return %5, %4
}
"""
    want = """graph @g(%0: f32[2]) {
  %1: f32[2], %2: f32[2] = cluster(%0) {body=graph @cluster_0(%0: f32[2]) {
      %1: f32[2] = exp(%0)
      %2: f32[2] = neg(%0)
      %3: f32[2] = tanh(%2)
      return %1, %3
    }}
  %3: f32[2] = host_call(%1) {callback=CB_ID, name="show", result_types=[f32[2]]}
  %4: f32[2] = cluster(%3, %2) {body=graph @cluster_1(%0: f32[2], %1: f32[2]) {
      %2: f32[2] = add(%0, %1)
      return %2
    }}
  return %4, %2
}
"""
    check_clustered(text, want, [X])


def test_host_calls_without_data_dependency_keep_program_order():
    # "second" could run first (its operand is ready at once); program order says it may not
    text = """graph @g(%0: f32[2]) {
  %1: f32[2] = neg(%0)
  host_call(%1) {callback=CB_SINK, name="first", result_types=[]}
  host_call(%0) {callback=CB_SINK, name="second", result_types=[]}
  return %1
}
"""
    want = """graph @g(%0: f32[2]) {
  %1: f32[2] = cluster(%0) {body=graph @cluster_0(%0: f32[2]) {
      %1: f32[2] = neg(%0)
      return %1
    }}
  host_call(%1) {callback=CB_SINK, name="first", result_types=[]}
  host_call(%0) {callback=CB_SINK, name="second", result_types=[]}
  return %1
}
"""
    check_clustered(text, want, [X])


def test_a_later_host_call_waits_for_an_earlier_one_in_a_later_phase():
    # "last" needs only the input, but runs after "middle", which waits for the first
    # cluster; the result of "first" is needed at once, so there is no cluster before it
    # (clusters are numbered in the order they run)
    text = """graph @g(%0: f32[2]) {
  %1: f32[2] = host_call(%0) {callback=CB_NEG, name="first", result_types=[f32[2]]}
  %2: f32[2] = neg(%1)
  host_call(%2) {callback=CB_SINK, name="middle", result_types=[]}
  %3: f32[2] = host_call(%0) {callback=CB_ID, name="last", result_types=[f32[2]]}
  %4: f32[2] = sub(%3, %2)
  return %4
}
"""
    want = """graph @g(%0: f32[2]) {
  %1: f32[2] = host_call(%0) {callback=CB_NEG, name="first", result_types=[f32[2]]}
  %2: f32[2] = cluster(%1) {body=graph @cluster_0(%0: f32[2]) {
      %1: f32[2] = neg(%0)
      return %1
    }}
  host_call(%2) {callback=CB_SINK, name="middle", result_types=[]}
  %3: f32[2] = host_call(%0) {callback=CB_ID, name="last", result_types=[f32[2]]}
  %4: f32[2] = cluster(%3, %2) {body=graph @cluster_1(%0: f32[2], %1: f32[2]) {
      %2: f32[2] = sub(%0, %1)
      return %2
    }}
  return %4
}
"""
    check_clustered(text, want, [X])


def chain(k: int) -> tuple[str, str]:
    """A graph negating its input 2k+1 times: k+1 times in compiled code, k times on the
    host, alternating; and its clustered form (k+1 clusters)."""
    call = '{callback=CB_NEG, name="h", result_types=[f32[2]]}'
    text = ["graph @chain(%0: f32[2]) {"]
    want = ["graph @chain(%0: f32[2]) {"]
    for i in range(k + 1):
        text.append(f"  %{2 * i + 1}: f32[2] = neg(%{2 * i})")
        want += [
            f"  %{2 * i + 1}: f32[2] = cluster(%{2 * i}) {{body=graph @cluster_{i}(%0: f32[2]) {{",
            "      %1: f32[2] = neg(%0)",
            "      return %1",
            "    }}",
        ]
        if i < k:
            host = f"  %{2 * i + 2}: f32[2] = host_call(%{2 * i + 1}) {call}"
            text.append(host)
            want.append(host)
    for lines in (text, want):
        lines += [f"  return %{2 * k + 1}", "}", ""]
    return "\n".join(text), "\n".join(want)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_chain_of_k_host_calls_makes_k_plus_1_clusters(k):
    text, want = chain(k)
    out = check_clustered(text, want, [X])
    assert sum(op.opdef is H.cluster for op in out.ops) == k + 1
    np.testing.assert_array_equal(run_graph(out, [X])[0], -X)  # 2k+1 negations


def test_constants_are_copied_into_each_cluster_that_uses_them():
    # %1 is used in both clusters: copied into each; %5 only goes to a host call and the
    # results, so it is computed once, in cluster 0
    text = """graph @g(%0: f32[2]) {
  %1: f32[2] = constant() {value=dense(f32[2], [1.0, 2.0])}
  %2: f32[2] = add(%0, %1)
  %3: f32[2] = host_call(%2) {callback=CB_NEG, name="h", result_types=[f32[2]]}
  %4: f32[2] = mul(%3, %1)
  %5: f32[] = constant() {value=dense(f32[], [3.0])}
  host_call(%5) {callback=CB_SINK, name="show", result_types=[]}
  return %4, %5
}
"""
    want = """graph @g(%0: f32[2]) {
  %1: f32[2], %2: f32[] = cluster(%0) {body=graph @cluster_0(%0: f32[2]) {
      %1: f32[2] = constant() {value=dense(f32[2], [1.0, 2.0])}
      %2: f32[2] = add(%0, %1)
      %3: f32[] = constant() {value=dense(f32[], [3.0])}
      return %2, %3
    }}
  %3: f32[2] = host_call(%1) {callback=CB_NEG, name="h", result_types=[f32[2]]}
  host_call(%2) {callback=CB_SINK, name="show", result_types=[]}
  %4: f32[2] = cluster(%3) {body=graph @cluster_1(%0: f32[2]) {
      %1: f32[2] = constant() {value=dense(f32[2], [1.0, 2.0])}
      %2: f32[2] = mul(%0, %1)
      return %2
    }}
  return %4, %2
}
"""
    check_clustered(text, want, [X])


SCAN_WITH_HOST_CALL = """graph @g(%0: f32[2]) {
  %1: f32[2] = scan(%0) {consts=0, carries=1, length=3, reverse=false, \
body=graph @body(%0: f32[2]) {
      %1: f32[2] = host_call(%0) {callback=CB_NEG, name="h", result_types=[f32[2]]}
      %2: f32[2] = tanh(%1)
      return %2
    }}
  %2: f32[2] = exp(%1)
  return %2
}
"""


def test_host_call_inside_a_scan_body_stays_inside():
    # the scan becomes a cluster of its own (so the runtime runs the function step by step),
    # with its host call still inside its body
    graph = parse_ir(SCAN_WITH_HOST_CALL)
    out, changed = partition(graph)
    assert changed and [op.opdef for op in out.ops] == [H.cluster]
    (scan,) = [op for op in out.ops[0].attrs["body"].ops if op.opdef is Ctl.scan]
    assert [op.opdef for op in scan.attrs["body"].ops].count(H.host_call) == 1
    before, log = run_logged(graph, [X])
    assert [tag for tag, _ in log] == ["negate"] * 3  # once per iteration
    want = X
    for _ in range(3):
        want = np.tanh(-want)
    np.testing.assert_allclose(before[0], np.exp(want), rtol=1e-6)
    np.testing.assert_allclose(run_xla(out, [X])[0], np.exp(want), rtol=1e-6)


def test_graph_without_host_calls_is_unchanged():
    text = """graph @g(%0: f32[2]) {
  %1: f32[2] = constant() {value=dense(f32[2], [1.0, 2.0])}
  %2: f32[2] = add(%0, %1)
  return %2
}
"""
    out, changed = partition(parse(text))
    assert not changed and print_graph(out) == text


HOST_CALLS_ALONE = """graph @g(%0: f32[2]) {
  %1: f32[2] = host_call(%0) {callback=CB_NEG, name="a", result_types=[f32[2]]}
  %2: f32[2] = host_call(%1) {callback=CB_ID, name="b", result_types=[f32[2]]}
  return %2, %0
}
"""


def test_host_calls_alone_make_no_cluster():
    out, _ = partition(parse_ir(HOST_CALLS_ALONE))
    assert print_graph(out) == ir(HOST_CALLS_ALONE)
    assert_same(run_graph(out, [X]), [-X, X], "result")


def test_changed_flag_is_false_when_the_graph_stays_the_same():
    _, changed = partition(parse_ir(HOST_CALLS_ALONE))
    assert not changed


def test_second_run_on_clustered_graph_changes_nothing():
    # partition' output is what lowering takes: running it again must not wrap its
    # clusters in clusters
    once, _ = partition(parse_ir(chain(2)[0]))
    twice, changed = partition(once)
    assert print_graph(twice) == print_graph(once)
    assert not changed


def test_loop_with_host_call_keeps_its_place_among_host_calls():
    # the scan's host calls come after "first" in program order: the scan may not run in a
    # cluster ahead of it
    text = """graph @g(%0: f32[2]) {
  host_call(%0) {callback=CB_SINK, name="first", result_types=[]}
  %1: f32[2] = scan(%0) {consts=0, carries=1, length=2, reverse=false, \
body=graph @body(%0: f32[2]) {
      %1: f32[2] = host_call(%0) {callback=CB_NEG, name="h", result_types=[f32[2]]}
      return %1
    }}
  host_call(%1) {callback=CB_SINK, name="last", result_types=[]}
  return %1
}
"""
    graph = parse_ir(text)
    out, _ = partition(graph)
    verify(out)
    before, log_before = run_logged(graph, [X])
    assert [tag for tag, _ in log_before] == ["sink", "negate", "negate", "sink"]
    after, log_after = run_logged(out, [X])
    assert_same(before, after, "result")
    assert_same_log(log_before, log_after)


# -- random graphs with host calls inserted --------------------------------------------------
@st.composite
def host_graphs(draw, loops: bool = False) -> Graph:
    """A random graph of irgen's ``graphs()`` with host calls inserted before its ops and at
    its end: identity or negation of some values (later ops then use the host call's results
    in their place), or sinks that return nothing; with ``loops``, also scans whose body runs
    a host call on its carry. Each host call logs under its own name (h0, h1, ...)."""
    base = draw(graphs())
    graph = Graph(base.name, [Value(v.type) for v in base.inputs])
    env = dict(zip(base.inputs, graph.inputs))  # a value of base -> its value now
    count = 0

    def host_call(target: Graph, operands: list[Value], kind: str) -> tuple[Value, ...]:
        nonlocal count
        tag, count = f"h{count}", count + 1
        transform = {"identity": lambda a: a, "negate": np.negative, "sink": None}[kind]
        types = () if kind == "sink" else tuple(v.type for v in operands)
        attrs = {"callback": logged(tag, transform), "name": tag, "result_types": types}
        return target.add(H.host_call, operands, attrs)

    def insert() -> None:
        kinds = ["identity", "negate", "sink"] + (["loop"] if loops else [])
        kind = draw(st.sampled_from(kinds))
        known = list(env)
        if kind == "loop" and known:
            carry = draw(st.sampled_from(known))
            body = Graph("body", [Value(carry.type)])
            body.outputs = list(host_call(body, body.inputs, "identity"))
            attrs = {"consts": 0, "carries": 1, "length": draw(st.integers(1, 2))}
            attrs.update(reverse=False, body=body)
            (env[carry],) = graph.add(Ctl.scan, [env[carry]], attrs)
            return
        if kind == "loop":
            kind = "sink"
        if kind == "negate":  # numbers, not booleans (np.negative rejects those)
            known = [v for v in known if v.type.dtype != np.bool_]
        picked = draw(st.lists(st.sampled_from(known), max_size=2, unique=True)) if known else []
        results = host_call(graph, [env[v] for v in picked], kind)
        env.update(zip(picked, results))  # later ops use the host call's results

    for op in base.ops + [None]:
        for _ in range(draw(st.integers(0, 2))):
            insert()
        if op is not None:
            outs = graph.add(op.opdef, [env[v] for v in op.inputs], op.attrs, op.loc)
            env.update(zip(op.outputs, outs))
    graph.outputs = [env[v] for v in base.outputs]
    return graph


def random_args(graph: Graph, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.random(v.type.shape) < 0.5
        if v.type.dtype == np.bool_
        else (rng.standard_normal(v.type.shape) * 3).astype(v.type.dtype)
        for v in graph.inputs
    ]


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("loops", [False, True], ids=["top_level", "in_loops"])
@PROPERTY
@given(data=st.data())
def test_clustering_keeps_results_and_host_call_order(loops, data):
    graph = data.draw(host_graphs(loops=loops))
    text = print_graph(graph)
    note(text)
    out, changed = partition(graph)
    verify(out)
    assert print_graph(graph) == text  # a new graph; the pass's input is unchanged
    if not changed:
        assert print_graph(out) == text
    for seed in (0, 1):
        args = random_args(graph, seed)
        before, log_before = run_logged(graph, args)
        after, log_after = run_logged(out, args)
        assert_same(before, after, "result")
        assert_same_log(log_before, log_after)


def steps_of(out: Graph) -> list[Op]:
    """The top-level ops of a clustered graph, after checking that each is a cluster or a
    host call and only uses graph inputs and results of earlier ops (no cycle), and that no
    cluster body runs a host call at its top level."""
    known = set(out.inputs)
    for op in out.ops:
        assert op.opdef in (H.cluster, H.host_call), f"{op.opdef.name} outside any cluster"
        assert all(v in known for v in op.inputs), "an op uses a value of a later step"
        if op.opdef is H.cluster:
            body = op.attrs["body"]
            assert not any(inner.opdef is H.host_call for inner in body.ops)
        known.update(op.outputs)
    assert all(v in known for v in out.outputs)
    return list(out.ops)


@PROPERTY
@given(host_graphs(loops=True))
def test_clusters_never_form_a_cycle(graph):
    note(print_graph(graph))
    out, changed = partition(graph)
    verify(out)
    partitioned = all(op.opdef in (H.cluster, H.transfer, H.host_call) for op in graph.ops)
    if any(Effect.HOST in op.effects for op in graph.ops) and not partitioned:
        assert changed
        steps_of(out)
    else:  # nothing to split, or split already (host calls alone)
        assert not changed and print_graph(out) == print_graph(graph)


def levels(graph: Graph) -> dict[Op, int]:
    """For each op: how many host calls it must wait behind, one after the other (a host
    call's results come one level after it; a host call also waits for the one before it)."""
    made_by = {v: op for op in graph.ops for v in op.outputs}
    hosts = [op for op in graph.ops if op.opdef is H.host_call]
    before = dict(zip(hosts[1:], hosts))
    memo: dict[Op, int] = {}

    def level(op: Op) -> int:
        if op not in memo:
            waits = [level(before[op])] if op in before else []
            for v in op.inputs:
                if v in made_by:
                    producer = made_by[v]
                    waits.append(level(producer) + (producer.opdef is H.host_call))
            memo[op] = max(waits, default=0)
        return memo[op]

    return {op: level(op) for op in graph.ops}


@PROPERTY
@given(host_graphs(loops=False))
def test_clusters_are_maximal(graph):
    note(print_graph(graph))
    out, changed = partition(graph)
    if not changed:
        return
    ops = steps_of(out)
    # every op of a cluster waits for a host call run since the cluster before it (else it
    # could have run in that cluster): through its inputs, back to the cluster's inputs
    hosts_since, hosts_seen = set(), False
    for op in ops:
        if op.opdef is H.host_call:
            hosts_since.update(op.outputs)
            hosts_seen = True
            continue
        body = op.attrs["body"]
        waits = {inner for inner, outer in zip(body.inputs, op.inputs) if outer in hosts_since}
        for inner in body.ops:
            if inner.inputs and any(v in waits for v in inner.inputs):
                waits.update(inner.outputs)
            elif inner.inputs and hosts_seen:
                raise AssertionError(f"{inner.opdef.name} in @{body.name} could run earlier")
        hosts_since = set()
    # so there is one cluster per level of host calls that compiled work waits behind
    level = levels(graph)
    used_at_top = set(graph.outputs) | {
        v for op in graph.ops if op.opdef is H.host_call for v in op.inputs
    }
    compiled = [
        op
        for op in graph.ops
        if op.opdef is not H.host_call and (op.inputs or set(op.outputs) & used_at_top)
    ]
    assert sum(op.opdef is H.cluster for op in ops) == len({level[op] for op in compiled})


@pytest.mark.parametrize("loops", [False, True], ids=["top_level", "in_loops"])
@PROPERTY
@given(data=st.data())
def test_clustering_is_idempotent(loops, data):
    graph = data.draw(host_graphs(loops=loops))
    note(print_graph(graph))
    once, _ = partition(graph)
    twice, changed = partition(once)
    assert print_graph(twice) == print_graph(once)
    assert not changed


@pytest.mark.parametrize("loops", [False, True], ids=["top_level", "in_loops"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_clustered_graph_on_xla_computes_what_the_graph_does(loops, data):
    graph = data.draw(host_graphs(loops=loops))
    note(print_graph(graph))
    out, _ = partition(graph)
    args = random_args(graph, 0)
    with np.errstate(all="ignore"):
        want = run_xla(graph, args)
        got = run_xla(out, args)
    LOG.clear()
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.dtype == b.dtype and a.shape == b.shape
        if a.dtype.kind in "biu":
            np.testing.assert_array_equal(a, b, err_msg=f"result {i}")
        else:
            tol = TOLERANCE[a.dtype]
            wide = [x.astype(np.float64) for x in (a, b)]
            np.testing.assert_allclose(*wide, rtol=tol, atol=tol, equal_nan=True)


def test_clusters_of_a_graph_with_sharding_constraints_are_marked_spmd():
    text = """graph @g(%0: f32[2]) {
  %1: f32[2] = with_sharding(%0) {mesh="data=2", spec="[{data}]"}
  %2: f32[2] = exp(%1)
  %3: f32[2] = host_call(%2) {callback=CB_NEG, name="show", result_types=[f32[2]]}
  %4: f32[2] = mul(%3, %2)
  return %4
}
"""
    want = """graph @g(%0: f32[2]) {
  %1: f32[2] = cluster(%0) {body=graph @cluster_0(%0: f32[2]) {
      %1: f32[2] = with_sharding(%0) {mesh="data=2", spec="[{data}]"}
      %2: f32[2] = exp(%1)
      return %2
    }} device("mesh(data=2)")
  %2: f32[2] = host_call(%1) {callback=CB_NEG, name="show", result_types=[f32[2]]}
  %3: f32[2] = cluster(%2, %1) {body=graph @cluster_1(%0: f32[2], %1: f32[2]) {
      %2: f32[2] = mul(%0, %1)
      return %2
    }} device("mesh(data=2)")
  return %3
}
"""
    check_clustered(text, want, [X])


def test_sharding_constraints_over_two_meshes_are_a_pass_error():
    text = """graph @g(%0: f32[2]) {
  %1: f32[2] = with_sharding(%0) {mesh="data=2", spec="[{data}]"}
  %2: f32[2] = with_sharding(%1) {mesh="rows=2", spec="[{rows}]"}
  %3: f32[2] = host_call(%2) {callback=CB_NEG, name="show", result_types=[f32[2]]}
  return %3
}
"""
    with pytest.raises(PassError, match="different meshes"):
        partition(parse_ir(text))
