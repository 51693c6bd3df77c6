"""Every jax/jaxlib import of the XLA backend lives here, so API drift touches one file.

Importing flowjit changes no jax setting: flowjit computes in the dtypes jax's own
``jax_enable_x64`` gives (compiler/dtypes.py), and points jax's persistent compilation cache at
its folder only at its first compile, and only if the process has not set one
(``prepare_compile``; docs/user-guide.md, "Dtypes and jax's settings")."""

from __future__ import annotations

import os
import threading

import jax
import jax.numpy as jnp
from jax import export as jax_export
from jax._src.array import ArrayImpl  # (no public name: jax's concrete array class)
from jax._src.lib import (  # (no public name: one wait for many arrays, jax.block_until_ready's)
    xla_client as _xla_client,
)
from jax._src.config import (  # (no public name: a thread-local switch of the cache key)
    compilation_cache_include_metadata_in_key,
)
from jax._src.config import (  # (no public name: the switch ensure_compile_time_eval turns on)
    eager_constant_folding,
)
from jax._src.core import trace_state_clean  # (no public name: whether jax is tracing)
from jax._src.source_info_util import (  # (no public name: the lines a jaxpr equation came from)
    user_frames,
)
from jax.core import ShapedArray
from jax.experimental.compilation_cache import compilation_cache
from jax.extend.core import Primitive
from jax.extend.mlir import ir
from jax.extend.mlir.dialects import chlo, func
from jax.extend.mlir.dialects import stablehlo as hlo
from jax.interpreters import batching
from jax.interpreters import mlir as jax_mlir
from jaxlib.mlir.dialects import sdy  # Shardy, XLA's SPMD partitioner (jax emits it too)

make_ir_context = jax_mlir.make_ir_context
register_lowering = jax_mlir.register_lowering
dtype_to_ir_type = jax_mlir.dtype_to_ir_type
emit_python_callback = jax_mlir.emit_python_callback
lower_fun = jax_mlir.lower_fun  # emits a jax function into the module a rule is building
float0 = jax.dtypes.float0  # the dtype of an integer value's cotangent


def wait_for_all(arrays: list) -> None:
    """Wait until every one of ``arrays`` (jax arrays) is computed, in one call into XLA's
    client (jax.block_until_ready without its pytree walk); raises if one failed."""
    if all(type(a) is ArrayImpl for a in arrays):
        _xla_client.batched_block_until_ready(arrays)
    else:
        jax.block_until_ready(arrays)


def register_batching(primitive: Primitive, rule) -> None:
    """``rule`` is ``primitive``'s batching rule (what ``jax.vmap`` calls)."""
    batching.primitive_batchers[primitive] = rule


def use_compilation_cache(folder: str | os.PathLike | None, min_compile_seconds: float) -> None:
    """Point jax's persistent compilation cache at ``folder`` now (None: no cache), keeping
    programs that compile in at least ``min_compile_seconds``. It is jax's process-wide cache:
    the process's own jax.jit functions use it too."""
    with _cache_lock:
        _pending_cache.clear()
        _set_cache(folder, min_compile_seconds)


def use_compilation_cache_at_first_compile(
    folder: str | os.PathLike | None, min_compile_seconds: float
) -> None:
    """As ``use_compilation_cache``, but at flowjit's first compile (``prepare_compile``), and
    only if jax's ``jax_compilation_cache_dir`` is still unset then."""
    with _cache_lock:
        _pending_cache[:] = [(folder, min_compile_seconds)]


def prepare_compile() -> None:
    """Called before flowjit lowers a cluster for XLA: applies a pending
    ``use_compilation_cache_at_first_compile``, once."""
    if not _pending_cache:  # (every later lowering)
        return
    with _cache_lock:
        if _pending_cache:
            folder, min_compile_seconds = _pending_cache.pop()
            if folder is not None and jax.config.jax_compilation_cache_dir is None:
                _set_cache(folder, min_compile_seconds)


_cache_lock = threading.Lock()
_pending_cache: list[tuple[str | os.PathLike | None, float]] = []


def _set_cache(folder: str | os.PathLike | None, min_compile_seconds: float) -> None:
    jax.config.update("jax_compilation_cache_dir", None if folder is None else os.fspath(folder))
    if folder is not None:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
    compilation_cache.reset_cache()  # (jax reads the folder once, at its first compile)


__all__ = [
    "compilation_cache_include_metadata_in_key",
    "eager_constant_folding",
    "jax",
    "jnp",
    "ShapedArray",
    "Primitive",
    "ir",
    "chlo",
    "func",
    "hlo",
    "sdy",
    "make_ir_context",
    "register_lowering",
    "register_batching",
    "dtype_to_ir_type",
    "emit_python_callback",
    "float0",
    "jax_export",
    "lower_fun",
    "trace_state_clean",
    "ArrayImpl",
    "use_compilation_cache",
    "user_frames",
    "use_compilation_cache_at_first_compile",
    "prepare_compile",
    "wait_for_all",
]
