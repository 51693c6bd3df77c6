"""The XLA compile options flowjit passes per platform, beside the lowering choices it makes
per platform (nn.py): every program a step or cluster compiles gets them."""

from __future__ import annotations

from .jaxshim import jax

# XLA:CPU hands dots and convolutions to YNNPACK; with this it also takes the elementwise
# ops and reductions next to them, so a convolution's bias add runs inside it, and a pooling's
# reduce beside it. bench/suite's CNN step: about 7% faster (docs/performance.md). The
# differential fuzz test passes with it as without (each op held to its own rounding).
COMPILER_OPTIONS: dict[str, dict[str, str]] = {
    "cpu": {
        "xla_cpu_experimental_ynn_fusion_type": (
            "LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE"
        )
    }
}


def compiler_options(platform: str | None = None) -> dict[str, str] | None:
    """The options for ``platform`` (None: jax's default backend's), for jax.jit."""
    return COMPILER_OPTIONS.get(platform or jax.default_backend())
