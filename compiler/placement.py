"""``fj.devices`` and ``fj.device`` scopes (API.md, section 8): ops traced inside
``with fj.device(d):`` are placed on ``d``; the partition pass splits the graph per device,
with explicit transfers between them."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from flowjit.backends.xla.jaxshim import jax
from flowjit.runtime.steps import device_name, find_device

from .trace import device_scopes


def devices(backend: str | None = None) -> list:
    """The devices of ``backend`` (default: jax's default backend), as ``jax.devices``."""
    return jax.devices(backend)


@contextlib.contextmanager
def device(d: Any) -> Iterator[None]:
    """Place the ops traced inside on device ``d`` (a jax device from ``fj.devices()``, or its
    name such as ``"cpu:1"``)."""
    name = d if isinstance(d, str) else device_name(d)
    find_device(name)  # an unknown device fails here, at the user's line
    device_scopes().append(name)
    try:
        yield
    finally:
        device_scopes().pop()
