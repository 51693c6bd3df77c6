"""Executing a compiled plan under jax.jit.

A Plan is what the runtime sees of a compiled function: the clusters to run in order and the
dtypes their flat inputs take; never an IR op. ``make_entry`` wraps the compiler's body in
``jax.jit``, so each call takes jax's C++ dispatch path (docs/xla-notes.md, "Recommended
backend design")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from flowjit.backends.xla import cluster_p
from flowjit.backends.xla.jaxshim import jax


@dataclass(frozen=True)
class Plan:
    cluster_key: int
    input_dtypes: tuple[np.dtype, ...]


def run_plan(plan: Plan, leaves: Sequence[Any]) -> list[Any]:
    """Run the plan on flat jax values (tracers under jit): cast, then bind the cluster."""
    cast = [
        x if x.dtype == dt else jax.lax.convert_element_type(x, dt)
        for x, dt in zip(leaves, plan.input_dtypes, strict=True)
    ]
    return list(cluster_p.bind(*cast, key=plan.cluster_key))


def make_entry(
    body: Callable,
    *,
    static_argnums: Sequence[int],
    static_argnames: Sequence[str],
    donate_argnums: Sequence[int],
    backend: str | None,
) -> Callable:
    """``jax.jit(body)``; with ``backend``, calls and lowerings run on that platform's first
    device (uncommitted inputs, numpy arrays included, are placed there)."""
    jitted = jax.jit(
        body,
        static_argnums=tuple(static_argnums),
        static_argnames=tuple(static_argnames),
        donate_argnums=tuple(donate_argnums),
    )
    if backend is None:
        return jitted
    try:
        device = jax.devices(backend)[0]
    except RuntimeError as err:
        raise ValueError(
            f"backend {backend!r} is not available here ({err}); available: "
            f"{sorted({d.platform for d in jax.devices()})}"
        ) from None
    return _OnDevice(jitted, device)


class _OnDevice:
    def __init__(self, jitted: Callable, device: Any):
        self._jitted, self._device = jitted, device

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with jax.default_device(self._device):
            return self._jitted(*args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        with jax.default_device(self._device):
            return self._jitted.lower(*args, **kwargs)
