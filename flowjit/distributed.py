"""``fj.distributed``: multi-process runs (API.md, section 8), on jax's distributed runtime.

Each process runs the same program; ``initialize`` joins them, after which ``fj.devices()``
lists every process's devices and a mesh over them makes compiled functions SPMD across
processes (docs/tpu.md)."""

from flowjit.runtime.distributed import initialize, process_count, process_index, shutdown

__all__ = ["initialize", "process_count", "process_index", "shutdown"]
