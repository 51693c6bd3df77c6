"""Layers import only downward (DESIGN.md): ir <- passes <- backends <- runtime <- compiler <-
flowjit; ir/ and passes/ import nothing of jax or MLIR."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).parent.parent
ORDER = ["ir", "passes", "backends", "runtime", "compiler", "flowjit"]
NO_JAX = {"ir", "passes"}


def imports(path: pathlib.Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_layers_import_only_downward():
    problems = []
    for layer in ORDER:
        allowed = set(ORDER[: ORDER.index(layer) + 1])
        for path in (ROOT / layer).rglob("*.py"):
            for name in imports(path):
                parts = name.split(".")
                if parts[0] == "flowjit" and len(parts) > 1 and parts[1] in ORDER:
                    if parts[1] not in allowed:
                        problems.append(f"{path.relative_to(ROOT)} imports {name}")
                if layer in NO_JAX and parts[0] in ("jax", "jaxlib", "mlir"):
                    problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not problems, "\n".join(problems)


def test_jax_is_imported_in_the_xla_backend_only_through_the_shim():
    for path in (ROOT / "backends" / "xla").glob("*.py"):
        if path.name != "jaxshim.py":
            assert not [n for n in imports(path) if n.split(".")[0] in ("jax", "jaxlib")], path
