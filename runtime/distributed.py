"""Joining a multi-process run through jax's distributed runtime (``jax.distributed``).

Every process runs the same program. After ``initialize``, ``fj.devices()`` lists the devices
of all processes, and a compiled function over a mesh of them runs SPMD across processes: XLA
inserts the collectives (on CPU they go through gloo, jax's default)."""

from __future__ import annotations

from typing import Any

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import FlowjitError


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    **options: Any,
) -> None:
    """Join a multi-process run: call it once per process, before any computation (before
    ``fj.devices()`` too). On a Cloud TPU VM pod slice (or under SLURM or Open MPI) give no
    arguments: jax finds the coordinator and this process's id. Elsewhere give the
    coordinator's ``host:port`` (a port of the machine running process 0), the number of
    processes and this process's id (0 .. num_processes - 1). ``options`` go to
    ``jax.distributed.initialize`` (e.g. ``initialization_timeout`` in seconds,
    ``local_device_ids``)."""
    if jax.distributed.is_initialized():
        raise FlowjitError(
            "fj.distributed.initialize was called twice in this process; call it once, at "
            "the start of the program"
        )
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            **options,
        )
    except RuntimeError as err:
        if "before any JAX" in str(err):
            raise FlowjitError(
                "fj.distributed.initialize must run before any computation, and before "
                "fj.devices(): move it to the start of the program"
            ) from err
        raise


def process_index() -> int:
    """This process's id (0 in a single-process run)."""
    return jax.process_index()


def process_count() -> int:
    """The number of processes (1 in a single-process run)."""
    return jax.process_count()


def shutdown() -> None:
    """Leave the multi-process run (jax also does this at exit)."""
    jax.distributed.shutdown()
