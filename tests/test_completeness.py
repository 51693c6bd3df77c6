"""Every registered op has a shape rule, a reference implementation, an XLA lowering, a
gradient rule (or says why it has none) and an op-vs-numpy test case; every state op says
which operand is its variable and has a discharge rule, and every control-flow op has a lift
rule."""

from __future__ import annotations

import opcheck

from flowjit.backends.xla import LOWERINGS
from flowjit.ir import OPS, Effect, parse
from flowjit.ir.ops import host as H
from flowjit.passes import discharge_state

# the ops that read or write a variable: those that say which operand is its handle
STATE_OPS = [opdef for opdef in OPS.values() if opdef.state_operand is not None]


def test_every_op_has_rules_reference_and_lowering():
    assert len(OPS) >= 60
    for name, opdef in OPS.items():
        assert opdef.name == name
        assert callable(opdef.shape_rule), name
        assert callable(opdef.ref), name
        assert (opdef.vjp is None) != (opdef.no_vjp is None), (
            f"{name} needs a gradient rule or a reason it has none (declare_no_vjp)"
        )
        if opdef in STATE_OPS:  # removed by discharge_state, so never lowered (tested below)
            assert opdef not in LOWERINGS
            continue
        assert opdef in LOWERINGS, f"{name} has no XLA lowering"


def test_every_op_with_a_state_effect_says_which_operand_is_its_variable():
    state_effects = {Effect.READ, Effect.WRITE}
    with_effect = {opdef for opdef in OPS.values() if opdef.effects & state_effects}
    assert len(with_effect) >= 4
    assert with_effect == set(STATE_OPS), "declare state_operand on the OpDef"


def test_every_state_op_has_a_discharge_rule():
    for opdef in STATE_OPS:
        assert callable(opdef.discharge), f"{opdef.name} needs a discharge rule (defdischarge)"


def test_every_op_with_subgraphs_has_a_lift_rule():
    with_subgraphs = {opdef for opdef in OPS.values() if opdef.graph_attrs}
    lifted = {opdef for opdef in OPS.values() if opdef.lift is not None}
    # (a cluster's body is pure: partition makes clusters after discharge_state)
    assert with_subgraphs - {H.cluster} == lifted, "declare a lift rule (deflift)"
    assert len(lifted) >= 3


def test_discharge_removes_every_state_op():
    graph = parse(
        "graph @g(%0: f32[2]) state($w: f32[2]) {\n"
        + "".join(f"  {op.name}($w, %0)\n" for op in STATE_OPS if Effect.WRITE in op.effects)
        + "  %1: f32[2] = read_variable($w)\n  return %1\n}\n"
    )
    assert {op.opdef for op in graph.ops} == set(STATE_OPS)
    pure, changed = discharge_state(graph)
    assert changed and not pure.states
    assert not {op.opdef for op in pure.ops} & set(STATE_OPS)


def test_every_op_has_an_op_vs_numpy_case():
    covered = {opdef.name for opdef in opcheck.load_cases()}
    missing = sorted(set(OPS) - covered - {op.name for op in STATE_OPS})  # tests/passes
    assert not missing, f"ops without an OpCase in tests/ir/test_ops_*.py: {missing}"


def test_every_lowering_belongs_to_a_registered_op():
    assert all(OPS.get(opdef.name) is opdef for opdef in LOWERINGS)


def test_every_op_with_a_gradient_has_a_forward_rule():
    """An op's tangents come from its forward rule (defjvp), or from its gradient rule
    transposed (ir/forward.py); an op with neither says why it has no gradient, and gives zero
    tangents. A control-flow op needs its own rule: it runs its subgraphs' forward sweeps.
    (tests/compiler/test_forward.py checks each op's tangents against finite differences.)"""
    explicit = sorted(n for n, op in OPS.items() if op.jvp is not None)
    derived = sorted(n for n, op in OPS.items() if op.jvp is None and op.vjp is not None)
    none = {n: op.no_vjp for n, op in OPS.items() if op.jvp is None and op.vjp is None}
    assert all(none.values()), "an op without a forward or gradient rule must say why"
    assert len(explicit) + len(derived) + len(none) == len(OPS)
    with_subgraphs = {op.name for op in OPS.values() if op.graph_attrs} - {H.cluster.name}
    assert with_subgraphs <= set(explicit), "a control-flow op needs a forward rule (defjvp)"
    assert {"dot_general", "reduce_window_max", "select_and_scatter_add"} <= set(explicit)
    print(
        f"\nforward-mode rules: {len(explicit)} explicit {explicit}, {len(derived)} derived "
        f"from the gradient rule, {len(none)} none (zero tangents: {sorted(none)})"
    )
