"""Dump folders in a root others can write (a shared /tmp/dumps, issue 20 item 5): the folder
names are predictable, so nothing there is reused or followed. A name taken (by an earlier
folder, a planted link, another process) moves on to the next number; a folder swapped for a
link, or a link planted in a fresh folder, is not written through (the dump warns instead)."""

from __future__ import annotations

import itertools
import logging
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import flowjit as fj
from flowjit.compiler import dump

PRECIOUS = "the victim's own file\n"


@pytest.fixture
def numbered_from_zero(monkeypatch):
    """Dump folders numbered from 000, as in a fresh process (the sequence is per process)."""
    monkeypatch.setattr(dump, "_sequence", itertools.count())


def _dump_double(root: pathlib.Path) -> None:
    """Compile (afresh) and run ``double`` on f32[3] with dumps going to ``root``."""

    def double(x):
        return x * 2.0

    fj.config.update("dump_dir", str(root))
    try:
        np.testing.assert_allclose(fj.compile(double)(np.ones(3, np.float32)), 2.0)
    finally:
        fj.config.update("dump_dir", None)


@pytest.fixture
def expected(tmp_path, monkeypatch) -> tuple[str, list[str]]:
    """The folder name and files an untouched root gets for ``double``: ``000-double-<hash>``."""
    monkeypatch.setattr(dump, "_sequence", itertools.count())
    clean = tmp_path / "clean"
    _dump_double(clean)
    (name,) = os.listdir(clean)
    assert name.startswith("000-double-")
    return name, sorted(os.listdir(clean / name))


def _victim(tmp_path: pathlib.Path, names: list[str]) -> pathlib.Path:
    """A folder of the victim's, holding a file of each name."""
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in names:
        (victim / name).write_text(PRECIOUS)
    return victim


def _snapshot(folder: pathlib.Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}


def _links(root: pathlib.Path) -> dict[str, str | None]:
    """Every entry under ``root`` (not following links): where it links to, or None."""
    return {
        str(p.relative_to(root)): os.readlink(p) if p.is_symlink() else None
        for p in root.rglob("*")
    }


@pytest.mark.parametrize("plant", ["link to a folder", "folder of links", "dangling link"])
def test_a_planted_name_is_skipped_not_written_through(
    tmp_path, expected, numbered_from_zero, plant
):
    name, files = expected
    victim = _victim(tmp_path, files)
    root = tmp_path / "shared"
    root.mkdir()
    planted = root / name
    if plant == "link to a folder":
        planted.symlink_to(victim)
    elif plant == "folder of links":
        planted.mkdir()
        for file in files:
            (planted / file).symlink_to(victim / file)
    else:
        planted.symlink_to(victim / "made-by-the-dump")
    before = _links(root)

    _dump_double(root)

    assert _snapshot(victim) == dict.fromkeys(files, PRECIOUS)  # nothing written, nothing new
    assert not (victim / "made-by-the-dump").exists()
    after = _links(root)
    assert {k: after.get(k) for k in before} == before  # the planted entries are as they were
    fresh = root / name.replace("000-", "001-", 1)
    assert fresh.is_dir() and not fresh.is_symlink()
    assert sorted(os.listdir(fresh)) == files
    assert "graph @double" in (fresh / "00-traced.fjir").read_text()


@pytest.mark.parametrize("race", ["folder swapped for a link", "link planted in the folder"])
def test_a_fresh_folder_tampered_with_before_the_files_is_not_written_through(
    tmp_path, expected, monkeypatch, caplog, race
):
    """Someone who can write the root acts between the dump's mkdir and its files."""
    name, files = expected
    victim = _victim(tmp_path, files)
    root = tmp_path / "shared"
    root.mkdir()
    mkdir = os.mkdir

    def mkdir_then_tamper(path, mode=0o777, **kwargs):
        mkdir(path, mode, **kwargs)
        path = pathlib.Path(path)
        if path.parent != root:  # not the dump's folder
            return
        if race == "folder swapped for a link":
            path.rename(root / "moved-away")
            path.symlink_to(victim)
        else:
            (path / "summary.json").symlink_to(victim / "summary.json")

    monkeypatch.setattr(dump, "_sequence", itertools.count())
    monkeypatch.setattr(os, "mkdir", mkdir_then_tamper)
    with caplog.at_level(logging.WARNING, logger="flowjit"):
        _dump_double(root)  # the program runs on
    monkeypatch.undo()

    assert _snapshot(victim) == dict.fromkeys(files, PRECIOUS)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and f"cannot write IR dumps to {root}" in warnings[0]


_DUMPER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import flowjit as fj

    factor = float(sys.argv[2])
    fj.config.update("dump_dir", sys.argv[1])

    def scale(x):
        return x * factor * 1.0  # simplify drops the "* 1.0": a second .fjir file

    print(fj.compile(scale)(np.ones(3, np.float32)).tolist())
    """
)


def test_two_processes_dumping_the_same_function_get_a_folder_each(tmp_path):
    root = tmp_path / "shared"
    factors = ["1234.5", "6789.25"]  # exact in f32, and printed so in the IR
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _DUMPER, str(root), factor],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for factor in factors
    ]
    for run, factor in zip(runs, factors):
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        assert out.strip() == str([float(factor)] * 3)
    folders = sorted(os.listdir(root))
    # the same function and signature: the same name, numbered 000 in each process
    assert len(folders) == 2 and folders[0][4:] == folders[1][4:]
    assert [f[:4] for f in folders] == ["000-", "001-"]
    seen = set()
    for folder in folders:
        texts = {  # the IR, without the headers (their times are numbers too)
            p.name: "".join(line for line in p.read_text().splitlines() if line[:1] != "#")
            for p in (root / folder).glob("*.fjir")
        }
        assert "00-traced.fjir" in texts
        # every file of a folder is one process's: its factor, never the other's
        mine = [f for f in factors if f in texts["00-traced.fjir"]]
        assert len(mine) == 1
        other = next(f for f in factors if f != mine[0])
        assert not any(other in text for text in texts.values())
        seen.add(mine[0])
    assert seen == set(factors)
