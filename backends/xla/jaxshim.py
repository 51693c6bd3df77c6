"""Every jax/jaxlib import of the XLA backend lives here, so API drift touches one file."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax._src.core import trace_state_clean  # (no public name: whether jax is tracing)
from jax.core import ShapedArray
from jax.extend.core import Primitive
from jax.extend.mlir import ir
from jax.extend.mlir.dialects import chlo, func
from jax.extend.mlir.dialects import stablehlo as hlo
from jax.interpreters import mlir as jax_mlir
from jaxlib.mlir.dialects import sdy  # Shardy, XLA's SPMD partitioner (jax emits it too)

# flowjit supports float64 and int64 (API.md, section 2); without x64, jax would silently
# narrow them at the jit boundary. Python scalars stay float32/int32: the compiler narrows
# jax's weak-typed 64-bit scalars before they reach a cluster.
jax.config.update("jax_enable_x64", True)

make_ir_context = jax_mlir.make_ir_context
register_lowering = jax_mlir.register_lowering
dtype_to_ir_type = jax_mlir.dtype_to_ir_type
emit_python_callback = jax_mlir.emit_python_callback

__all__ = [
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
    "dtype_to_ir_type",
    "emit_python_callback",
    "trace_state_clean",
]
