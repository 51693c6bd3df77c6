"""Saves asynchronous checkpoints forever, for the SIGKILL test (test_checkpointing.py):
``python checkpoint_saver.py DIR FIRST_STEP``.

Step ``k`` holds ``contents(k)``: about 10 MB of random bits (NaN payloads included), distinct
in every element for every ``k``, so any mix of two versions is detectable. Prints ``queued k``
once ``fj.Checkpoint.save(k)`` has returned (the values are in host memory, orbax writes them
in the background; the next save waits for that write first), flushed, so the parent knows
which steps were complete when it killed this process."""

from __future__ import annotations

import functools
import sys

import numpy as np
from flowjit.ir.types import bfloat16

SHAPES = {
    "w": ((2048, 1024), np.float32),
    "h": ((512, 1024), bfloat16),
    "n": ((1 << 18,), np.int32),
}
MAX_TO_KEEP = 1  # the hardest case: the previous checkpoint is the only other one


@functools.cache
def _base_bits() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for name, (shape, dtype) in SHAPES.items():
        uint = np.dtype(f"u{np.dtype(dtype).itemsize}")
        out[name] = np.frombuffer(rng.bytes(int(np.prod(shape)) * uint.itemsize), uint)
    return out


def contents(step: int) -> dict[str, np.ndarray]:
    """The values of checkpoint ``step``: fixed random bits XOR a mask that an odd multiplier
    makes distinct for each step (cheap, so the saver spends its time saving)."""
    out = {}
    for name, (shape, dtype) in SHAPES.items():
        base = _base_bits()[name]
        mask = base.dtype.type((step * 0x9E3779B1) % (1 << (8 * base.dtype.itemsize)))
        out[name] = (base ^ mask).view(dtype).reshape(shape)
    out["step"] = np.array(step, np.int64)
    return out


def main(directory: str, first_step: int) -> None:
    import flowjit as fj

    cells = {name: fj.Variable(value, name=name) for name, value in contents(0).items()}
    ckpt = fj.Checkpoint(directory, list(cells.values()), max_to_keep=MAX_TO_KEEP)
    step = first_step
    while True:
        for name, value in contents(step).items():
            cells[name].assign(value)
        ckpt.save(step)
        print(f"queued {step}", flush=True)
        step += 1


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
