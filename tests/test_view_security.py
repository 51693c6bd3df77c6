"""The dump viewer given a hostile dump (issue 20, items 5 and 6): nothing outside the dump
folders is read, whatever summary.json names and wherever a link points; what is refused is
named on the page and logged; the page replaces a link planted at report.html."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import threading

import pytest

from flowjit.view import main, render_report

SECRET = "SECRET-c0ffee-not-for-the-page"
TRACED = """# traced, before any pass
graph @f(%0: f32[2]) {
  %1: f32[2] = tanh(%0)
  %2: f32[] = constant() {value=dense(f32[], [1.0])}
  %3: f32[2] = mul(%1, %2)
  return %3
}
"""
SIMPLIFIED = """# after pass simplify (0.10 ms): 3 -> 1 ops
graph @f(%0: f32[2]) {
  %1: f32[2] = tanh(%0)
  return %1
}
"""
HLO = "HloModule jit_f, the optimized HLO of cluster 0\n"


def _summary(function: str = "f") -> dict:
    unchanged = {"seconds": 2e-5, "changed": False, "ops_before": 3, "ops_after": 3}
    changed = {"seconds": 1e-4, "changed": True, "ops_before": 3, "ops_after": 1}
    return {
        "function": function,
        "signature": ["args[0]: f32[2]"],
        "statics": [],
        "passes": [{"name": "fold_constants", **unchanged}, {"name": "simplify", **changed}],
        "clusters": 1,
    }


def _write_dump(folder: pathlib.Path, summary: dict | None = None) -> pathlib.Path:
    """A dump folder as compiler/dump.py writes it (one pass changed the IR, one cluster)."""
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary or _summary()))
    (folder / "00-traced.fjir").write_text(TRACED)
    (folder / "01-simplify.fjir").write_text(SIMPLIFIED)
    (folder / "graph.dot").write_text('digraph "f" { "tanh" -> "return" }\n')
    (folder / "cluster-0.hlo.txt").write_text(HLO)
    return folder


@pytest.fixture
def dump(tmp_path) -> pathlib.Path:
    """A dump root (``tmp/dumps``) with one compilation, and the secrets next to it."""
    (tmp_path / "secret.fjir").write_text(f"# {SECRET}\ngraph @{SECRET}() {{\n  return\n}}\n")
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    (tmp_path / "secret.dot").write_text(f'digraph "x" {{ "{SECRET}" }}\n')
    elsewhere = _write_dump(tmp_path / "elsewhere" / "000-g-0000", _summary(function=SECRET))
    (elsewhere / "00-traced.fjir").write_text(TRACED.replace("@f", f"@{SECRET}"))
    _write_dump(tmp_path / "dumps" / "000-f-12345678")
    return tmp_path / "dumps"


def _page(root: pathlib.Path, caplog) -> tuple[str, list[str]]:
    """The page for ``root``, and the warnings rendering it logged."""
    with caplog.at_level(logging.WARNING, logger="flowjit"):
        page = render_report(root)
    return page, [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_untouched_dump_is_shown_whole(dump, caplog):
    page, warnings = _page(dump, caplog)
    assert warnings == [] and "not shown" not in page
    assert "tanh(%0)" in page and "01-simplify" in page and HLO.strip() in page
    assert '<span class="del">-  %3: f32[2] = mul(%1, %2)</span>' in page


def _plant(folder: pathlib.Path, hostile: str) -> str:
    """Make the dump folder hostile as ``hostile`` says; the start of the name of the file
    that the page must refuse (the viewer's name for it, one name in the folder)."""
    outside = folder.parent.parent
    summary = _summary()
    if hostile == "pass name climbing out":
        (folder / "01-x").mkdir()  # so that 01-x/../../../secret.fjir resolves
        summary["passes"][1]["name"] = "x/../../../secret"
        refused = "01-x_.._.._.._secret.fjir"
    elif hostile == "pass name an absolute path":
        (folder / "01-").mkdir()  # so that 01-/../../(up to /)/tmp/.../secret.fjir resolves
        summary["passes"][1]["name"] = "/" + "../" * 20 + str(outside / "secret")
        refused = "01-_.._.._"
    else:
        name, target = {
            "traced IR a link out": ("00-traced.fjir", "secret.fjir"),
            "pass IR a link out": ("01-simplify.fjir", "secret.fjir"),
            "cluster HLO a link out": ("cluster-0.hlo.txt", "secret.txt"),
            "summary a link out": ("summary.json", "elsewhere/000-g-0000/summary.json"),
        }[hostile]
        (folder / name).unlink()
        (folder / name).symlink_to(outside / target)
        return name
    (folder / "summary.json").write_text(json.dumps(summary))
    return refused


@pytest.mark.parametrize(
    "hostile",
    [
        "pass name climbing out",
        "pass name an absolute path",
        "traced IR a link out",
        "pass IR a link out",
        "cluster HLO a link out",
        "summary a link out",
    ],
)
def test_nothing_outside_the_dump_folder_is_read(dump, caplog, hostile):
    folder = dump / "000-f-12345678"
    refused = _plant(folder, hostile)
    page, warnings = _page(dump, caplog)
    assert SECRET not in page
    assert len(warnings) == 1, warnings
    path, why = warnings[0].removeprefix("flowjit.view: ").split(" not shown: ")
    assert pathlib.Path(path).parent == folder and pathlib.Path(path).name.startswith(refused)
    assert f'<p class="refused">{pathlib.Path(path).name} not shown: {why}.</p>' in page
    if hostile != "summary a link out":  # the rest of the compilation is shown
        assert "tanh(%0)" in page
        assert (HLO.strip() in page) == (hostile != "cluster HLO a link out")


def test_a_dump_folder_that_is_a_link_out_is_refused(dump, caplog):
    (dump / "001-g-0000").symlink_to(dump.parent / "elsewhere" / "000-g-0000")
    page, warnings = _page(dump, caplog)
    assert SECRET not in page
    assert "001-g-0000 not shown: a link, not followed" in page
    assert len(warnings) == 1 and str(dump / "001-g-0000") in warnings[0]
    assert "01-simplify" in page  # the real folder is shown


def test_a_summary_without_the_dumps_fields_is_refused_with_a_message(dump, caplog):
    summary = _summary()
    summary["passes"][1]["name"] = 5
    (dump / "000-f-12345678" / "summary.json").write_text(json.dumps(summary))
    page, warnings = _page(dump, caplog)
    assert "summary.json not shown: passes[1].name is missing or not what the dump writes" in page
    assert len(warnings) == 1


def test_graph_dot_is_handed_to_graphviz_as_text_and_never_through_a_link(
    dump, caplog, monkeypatch, tmp_path
):
    """A stand-in ``dot`` that prints what it reads (a file named on its command line, else
    its input) as the SVG."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dot"
    fake.write_text('#!/bin/sh\necho "<svg>"; cat "${2:--}"; echo "</svg>"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    page, _ = _page(dump, caplog)
    assert '<div class="graph graphviz"><svg>\ndigraph "f" { "tanh" -> "return" }' in page

    graph_dot = dump / "000-f-12345678" / "graph.dot"
    graph_dot.unlink()
    graph_dot.symlink_to(tmp_path / "secret.dot")
    caplog.clear()
    page, warnings = _page(dump, caplog)
    assert SECRET not in page
    assert "graph.dot not shown: a link, not followed" in page and len(warnings) == 1
    assert '<div class="graph builtin">' in page  # drawn from the final IR instead


def test_a_fifo_in_the_folder_is_refused_not_waited_on(dump, caplog):
    traced = dump / "000-f-12345678" / "00-traced.fjir"
    traced.unlink()
    os.mkfifo(traced)
    result: dict[str, str] = {}
    worker = threading.Thread(target=lambda: result.update(page=render_report(dump)))
    worker.start()
    worker.join(timeout=60)
    if worker.is_alive():  # blocked opening the FIFO: open it for writing to let it go
        os.close(os.open(traced, os.O_WRONLY | os.O_NONBLOCK))
        worker.join()
        pytest.fail("the viewer waited for a writer to the FIFO 00-traced.fjir")
    assert "00-traced.fjir not shown: not a regular file" in result["page"]
    assert "01-simplify" in result["page"]


@pytest.mark.parametrize("target", ["an existing file", "a file not there yet"])
def test_the_report_replaces_a_link_planted_at_its_path(dump, tmp_path, capsys, target):
    victim = tmp_path / "victim.txt"
    if target == "an existing file":
        victim.write_text("the victim's own file\n")
    (dump / "report.html").symlink_to(victim)
    main([str(dump)])
    report = dump / "report.html"
    assert not report.is_symlink() and "01-simplify" in report.read_text()
    if target == "an existing file":
        assert victim.read_text() == "the victim's own file\n"
    else:
        assert not victim.exists()
    assert [p.name for p in dump.iterdir() if p.name.startswith(".")] == []  # no temp left
    assert f"wrote {report}" in capsys.readouterr().out
