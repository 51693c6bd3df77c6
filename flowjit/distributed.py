"""``fj.distributed``: multi-process runs (API.md, section 8), on jax's distributed runtime.

Each process runs the same program; ``initialize`` joins them, after which ``fj.devices()``
lists every process's devices and a mesh over them makes compiled functions SPMD across
processes (docs/tpu.md). A computation that has not finished ``collective_timeout`` seconds
(600 by default) after it was queued ends its process with a report: see docs/tpu.md, "When a
multi-process run hangs"."""

from flowjit.runtime.distributed import initialize, process_count, process_index, shutdown

__all__ = ["initialize", "process_count", "process_index", "shutdown"]
