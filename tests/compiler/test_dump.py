"""IR dump folders: one per compilation, with the traced IR, the IR after each pass that
changed it (each parses back and names this file's lines), graph.dot, each cluster's
StableHLO and optimized HLO, and summary.json; a folder that cannot be written warns once."""

from __future__ import annotations

import inspect
import json
import logging
import os
import pathlib
import re

import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp
from flowjit.ir import parse, print_graph

HERE = pathlib.Path(__file__).name


@pytest.fixture
def dump_dir(tmp_path):
    fj.config.update("dump_dir", str(tmp_path))
    try:
        yield tmp_path
    finally:
        fj.config.update("dump_dir", None)


def _step():
    w = fj.Variable(np.ones((3, 2), np.float32), name="w")

    @fj.compile
    def step(x):
        y = fnp.tanh(x @ w) * 1.0  # the line every dumped file must name
        w.assign_sub(0.1 * fj.gradients((y**2).sum(), [w])[0])
        return y.sum()

    line = inspect.getsourcelines(step.fn)[1] + 2
    return step, line


def test_each_compilation_writes_a_folder_of_files_that_parse_back(dump_dir):
    step, line = _step()
    step(np.ones((4, 3), np.float32))
    step(np.ones((4, 3), np.float32))  # no new compilation: no new folder
    step(np.ones((5, 3), np.float32))  # a retrace: a second folder
    folders = sorted(os.listdir(dump_dir))
    assert len(folders) == 2
    # <seq>-<function>-<signature hash>: numbered in the order of compilation (in the process)
    parts = [re.fullmatch(r"(\d{3})-step-([0-9a-f]{8})", f) for f in folders]
    assert all(parts), folders
    assert int(parts[1][1]) == int(parts[0][1]) + 1 and parts[0][2] != parts[1][2]
    files = sorted(os.listdir(dump_dir / folders[0]))
    summary = json.loads((dump_dir / folders[0] / "summary.json").read_text())
    changed = [p["name"] for p in summary["passes"] if p["changed"]]
    assert files == sorted(
        ["00-traced.fjir", "graph.dot", "summary.json", "cluster-0.stablehlo.mlir"]
        + ["cluster-0.hlo.txt"]
        + [f"{i:02d}-{name}.fjir" for i, name in enumerate(changed, start=1)]
    )
    assert "simplify" in changed and "discharge_state" in changed
    assert summary["signature"] == ["args[0]: f32[4,3]"] and summary["clusters"] == 1
    for name in files:
        text = (dump_dir / folders[0] / name).read_text()
        if name.endswith(".fjir"):
            graph = parse(text)  # the header is a comment
            assert print_graph(graph) in text
            assert f'loc("{HERE}":{line})' in text
    header = (dump_dir / folders[0] / f"01-{changed[0]}.fjir").read_text().splitlines()[0]
    assert header.startswith(f"# after pass {changed[0]} (") and " ops" in header
    assert f'"{HERE}":{line}' in (dump_dir / folders[0] / "cluster-0.stablehlo.mlir").read_text()
    assert HERE in (dump_dir / folders[0] / "cluster-0.hlo.txt").read_text()
    assert (dump_dir / folders[0] / "graph.dot").read_text().startswith('digraph "step"')


def test_an_unwritable_dump_folder_warns_once_and_the_program_runs(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    fj.config.update("dump_dir", str(blocker / "dumps"))
    try:
        with caplog.at_level(logging.WARNING, logger="flowjit"):
            f = fj.compile(lambda x: x * 2)
            np.testing.assert_allclose(f(np.ones(3, np.float32)), 2.0)
            np.testing.assert_allclose(f(np.ones(4, np.float32)), 2.0)  # a second compilation
    finally:
        fj.config.update("dump_dir", None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cannot write IR dumps" in warnings[0]


def test_dump_dir_setting_is_checked():
    with pytest.raises(ValueError, match="dump_dir"):
        fj.config.update("dump_dir", 3)
