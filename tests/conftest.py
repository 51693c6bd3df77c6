"""flowjit's own tests verify the IR after every pass, and compile afresh: no persistent
compilation cache in this process (tests/runtime/test_compile_cache.py tests the cache in
processes of its own).

jax's ``jax_enable_x64`` stays off, jax's default, as in a user's program: flowjit then
computes numpy's float64/int64 data in float32/int32, as jax.jit does. A test of 64-bit
behaviour turns x64 on for itself only:
- a test parametrized with a 64-bit dtype (float64, int64, uint64; alone or in a tuple) gets
  the ``x64`` marker by itself;
- ``@pytest.mark.x64`` marks any other test;
- ``@pytest.mark.parametrize("x64", [False, True], indirect=True)`` runs a test in both modes.
(test_jax_config.py checks, in fresh processes, that importing flowjit changes no jax setting
and that results have jax.jit's dtypes with x64 off and on.)"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import jax
import numpy as np
import pytest

import flowjit as fj

fj.config.update("verify_passes", True)
fj.config.update("cache_dir", None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "x64: run the test with jax_enable_x64 on")


def _is_64_bit(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return any(_is_64_bit(v) for v in value)
    numpy_type = isinstance(value, type) and issubclass(value, np.generic)
    if not (isinstance(value, np.dtype) or numpy_type):  # (not Python's int and float)
        return False
    dtype = np.dtype(value)
    return dtype.kind in "iuf" and dtype.itemsize == 8


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "x64" not in callspec.params:
            if any(_is_64_bit(v) for v in callspec.params.values()):
                item.add_marker(pytest.mark.x64)


@contextlib.contextmanager
def _x64_scope(on: bool) -> Iterator[None]:
    """jax_enable_x64 set to ``on`` for one test (process-wide: threads a test starts see it
    too), then put back."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", on)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


@pytest.fixture(autouse=True)
def _x64_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    with _x64_scope(True) if request.node.get_closest_marker("x64") else contextlib.nullcontext():
        yield


@pytest.fixture
def x64(request: pytest.FixtureRequest) -> Iterator[bool]:
    """With ``indirect=True`` parametrization: jax_enable_x64 set to the parameter."""
    with _x64_scope(bool(request.param)):
        yield bool(request.param)
