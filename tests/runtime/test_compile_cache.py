"""The persistent compilation cache (fj.config cache_dir, FLOWJIT_CACHE_DIR): a second
process finds the first one's compiled programs and computes the same values; the setting can
move the cache, or turn it off, at any time. Each run is a fresh process."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import flowjit as fj

SCRIPT = pathlib.Path(__file__).with_name("cache_script.py")


def run(*args: str, cache: str) -> dict:
    env = dict(os.environ, FLOWJIT_CACHE_DIR=cache)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300
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
