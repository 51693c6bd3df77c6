"""Every op's batching rule against the op run on each example: for each op-vs-numpy case
(tests/ir/test_ops_*.py), a batch of three examples of its inputs, with all of them batched
and with each one batched alone (the others shared by every example), is run through the
batched graph on the reference interpreter and on XLA and compared with the example graph
run on each example and stacked."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import assert_matches, load_cases, run_xla

from flowjit.backends.reference import run_graph
from flowjit.ir import OPS, Graph, TensorType, print_graph
from flowjit.ir.batching import batch_graph

SIZE = 3
# ops that take no tensor operand: nothing of theirs can be batched
NO_TENSOR_OPERANDS = {"constant", "iota", "read_variable"}


def _attrs_equal(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, Graph):
            if not isinstance(y, Graph) or print_graph(x) != print_graph(y):
                return False
        elif isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not np.array_equal(np.asarray(x), np.asarray(y)):
                return False
        elif x is not y and x != y:
            return False
    return True


def _examples(case, dtype, seed: int) -> tuple[list[list[np.ndarray]], dict]:
    """``SIZE`` examples of the case's inputs, of one set of shapes and attributes: fresh ones
    where the case makes them so, else the first one's elements shuffled (a bool scalar, a
    predicate, alternates)."""
    rng = np.random.default_rng(seed)
    first, attrs = (case.grad_make or case.make)(rng, dtype)
    first = [np.asarray(x) for x in first]
    examples = [first]
    for k in range(1, SIZE):
        inputs, more = (case.grad_make or case.make)(rng, dtype)
        inputs = [np.asarray(x) for x in inputs]
        same = _attrs_equal(attrs, more) and [(x.shape, x.dtype) for x in inputs] == [
            (x.shape, x.dtype) for x in first
        ]
        if not same:
            inputs = [rng.permutation(x.ravel()).reshape(x.shape) for x in first]
        inputs = [~x if x.dtype == np.bool_ and x.shape == () and k % 2 else x for x in inputs]
        examples.append(inputs)
    return examples, attrs


def _cases() -> list:
    found = []
    for opdef, cases in sorted(load_cases().items(), key=lambda item: item[0].name):
        for case in cases:
            dtype = np.dtype(case.dtypes[0])
            found.append(pytest.param(case, dtype, id=f"{case.name}-{dtype.name}"))
    return found


@pytest.mark.parametrize("case, dtype", _cases())
def test_batched_op_equals_the_op_on_each_example(case, dtype):
    examples, attrs = _examples(case, dtype, seed=23)
    graph = Graph(case.name)
    args = [graph.add_input(TensorType(x.shape, x.dtype)) for x in examples[0]]
    graph.outputs = list(graph.add(case.opdef, args, attrs))
    with np.errstate(all="ignore"):
        per_example = [run_graph(graph, inputs) for inputs in examples]
    n = len(args)
    choices = [[True] * n] + ([[i == j for j in range(n)] for i in range(n)] if n > 1 else [])
    for flags in choices:
        batched, out_flags = batch_graph(graph, flags, SIZE)
        inputs = [
            np.stack([ex[i] for ex in examples]) if f else examples[0][i]
            for i, f in enumerate(flags)
        ]
        # an input shared by the examples is the first example's: the others are recomputed so
        want = per_example
        if not all(flags):
            shared = [
                [x if f else examples[0][i] for i, (x, f) in enumerate(zip(ex, flags))]
                for ex in examples
            ]
            with np.errstate(all="ignore"):
                want = [run_graph(graph, ex) for ex in shared]
        with np.errstate(all="ignore"):
            runs = [("reference", run_graph(batched, inputs)), ("xla", run_xla(batched, inputs))]
        for backend, outs in runs:
            for i, (got, flag) in enumerate(zip(outs, out_flags)):
                expected = np.stack([w[i] for w in want])
                got = np.asarray(got) if flag else np.broadcast_to(got, expected.shape)
                where = f"{case.name} output {i} on {backend}, batched operands {flags}"
                assert_matches(got, expected, dtype, case.tol_scale * 10, where)


def test_every_op_has_a_batching_rule_or_takes_no_tensor_operand():
    missing = sorted(
        name
        for name, opdef in OPS.items()
        if opdef.batch is None and name not in NO_TENSOR_OPERANDS
    )
    assert not missing, f"ops without a batching rule (declare one with defbatch): {missing}"
    rng = np.random.default_rng(0)
    for name in sorted(NO_TENSOR_OPERANDS):  # (their rule would never be asked)
        opdef = OPS[name]
        if opdef.state_operand is not None:  # its one operand is the variable's handle
            t = TensorType((2,), np.float32)
            assert opdef.infer((t,), {}) == (t,)
            continue
        for case in load_cases()[opdef]:
            inputs, _ = case.make(rng, np.dtype(case.dtypes[0]))
            assert not inputs, f"{name} takes operands: give it a batching rule"
