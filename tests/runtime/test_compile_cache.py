"""The persistent compilation cache (fj.config cache_dir, FLOWJIT_CACHE_DIR): a second
process finds the first one's compiled programs and computes the same values; the setting can
move the cache, or turn it off, at any time. Each run is a fresh process."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import flowjit as fj

SCRIPT = pathlib.Path(__file__).with_name("cache_script.py")


def run(*args: str, cache: str, script: pathlib.Path = SCRIPT, env: dict | None = None) -> dict:
    env = dict(os.environ, FLOWJIT_CACHE_DIR=cache, **(env or {}))
    done = subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_starts_compiled(tmp_path):
    folder = str(tmp_path / "cache")
    cold = run(folder, cache=folder)
    warm = run(folder, cache=folder)
    assert cold["step"]["misses"] >= 1 and cold["step"]["hits"] == 0
    assert os.listdir(folder)  # the compiled step was written
    assert warm["step"]["hits"] >= 1 and warm["step"]["misses"] == 0
    assert warm["losses"] == cold["losses"]  # bit-identical results from the cached program


def test_the_setting_moves_the_cache_after_compiling(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    report = run(str(first), str(second), cache=str(first))
    assert report["after_update"]["misses"] >= 1
    assert os.listdir(second)  # the function compiled after the update went to the new folder


def test_an_empty_variable_turns_the_cache_off(tmp_path):
    report = run(str(tmp_path / "unused"), cache="")
    assert report["step"] == {"hits": 0, "misses": 0}  # jax was not asked to cache
    assert not (tmp_path / "unused").exists()


def test_cache_dir_is_validated():
    import pytest

    with pytest.raises(ValueError, match="cache_dir must be a folder path or None"):
        fj.config.update("cache_dir", 3)


def hlo_source_lines(hlo: str) -> dict[str, set[int]]:
    """{file name: its lines} that the metadata of XLA's HLO text names (its FileNames and
    FileLocations tables)."""
    file_names = hlo.split("FileNames", 1)[1].split("FunctionNames", 1)[0]
    names = dict(re.findall(r'^(\d+) "(.*)"$', file_names, re.M))
    found: dict[str, set[int]] = {}
    for file_id, line in re.findall(r"\{file_name_id=(\d+) .*?\bline=(\d+)", hlo):
        found.setdefault(names[file_id], set()).add(int(line))
    return found


def test_hlo_names_this_programs_lines_when_the_cache_serves_another_scripts_executable(
    tmp_path,
):
    # the same program from two scripts at other paths, its lines 9 apart: the second one's
    # step is served from the cache the first one filled (jax keys it without its locations)
    source = SCRIPT.read_text()
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    first = tmp_path / "one" / "first_script.py"
    second = tmp_path / "two" / "second_script.py"
    first.write_text(source)
    second.write_text("# moved down\n" * 9 + source)
    folder = str(tmp_path / "cache")
    reports = [
        run(
            folder,
            cache=folder,
            script=path,
            env={"SHOW_HLO": "1", "FLOWJIT_DUMP_DIR": str(path.parent / "dump")},
        )
        for path in (first, second)
    ]
    assert reports[1]["step"]["hits"] >= 1  # the step (the dump's compiles miss: other lines)
    for path, report in zip((first, second), reports):
        assert report["file"] == str(path)
        lines = path.read_text().splitlines()
        step_lines = {  # where the step's ops are, in this script
            number
            for number, text in enumerate(lines, start=1)
            if any(s in text for s in ("fnp.tanh(h @ w @ w)", "loss = h.sum()", "w.assign_sub"))
        }
        assert len(step_lines) == 3
        dumped = sorted((path.parent / "dump").glob("*-step-*/cluster-*.hlo.txt"))
        assert dumped  # the dump folder's HLO too
        for hlo in [report["hlo"], *(f.read_text() for f in dumped)]:
            named = hlo_source_lines(hlo)
            other = second if path == first else first
            assert not [f for f in named if os.path.basename(f) == other.name], named
            ours = set().union(*(v for f, v in named.items() if os.path.basename(f) == path.name))
            assert step_lines <= ours, (step_lines, named)
