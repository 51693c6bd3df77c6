"""Every registered op has a shape rule, a reference implementation, an XLA lowering, a
gradient slot (a rule, or a reason there is none yet) and an op-vs-numpy test case."""

from __future__ import annotations

import importlib.util
import pathlib

import opcheck

from flowjit.backends.xla import LOWERINGS
from flowjit.ir import OPS

TESTS = pathlib.Path(__file__).parent


def _load_op_tests() -> None:
    for path in sorted((TESTS / "ir").glob("test_ops_*.py")):
        spec = importlib.util.spec_from_file_location(f"_opcases_{path.stem}", path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_every_op_has_rules_reference_and_lowering():
    assert len(OPS) >= 60
    for name, opdef in OPS.items():
        assert opdef.name == name
        assert callable(opdef.shape_rule), name
        assert callable(opdef.ref), name
        assert opdef in LOWERINGS, f"{name} has no XLA lowering"


def test_every_op_has_an_op_vs_numpy_case():
    _load_op_tests()
    covered = {opdef.name for opdef in opcheck.CASES}
    missing = sorted(set(OPS) - covered)
    assert not missing, f"ops without an OpCase in tests/ir/test_ops_*.py: {missing}"


def test_every_lowering_belongs_to_a_registered_op():
    assert all(OPS.get(opdef.name) is opdef for opdef in LOWERINGS)
