"""Checkpoints on orbax (issue 25): 1 GiB of state sharded over 8 virtual CPU devices, side by
side in one run (medians of a few rounds):

- the time a training loop is blocked by ``fj.Checkpoint.save`` when it is asynchronous (the
  call returns once the values are in host memory) against a synchronous save (the call
  returns once the files are written); goal: <= 10%;
- the total time of an asynchronous save (the call, then ``wait_until_finished``);
- ``fj.Checkpoint.restore`` (folder checks, read into the variables' shardings, fingerprints,
  rebinding) against plain orbax restoring the same arrays into the same shardings under jax
  (``ocp.PyTreeCheckpointer().restore``); goal: <= 1.1x.

    python bench/checkpoint.py [--gib G] [--rounds R] [--folder DIR] [--json out.json]
"""

from __future__ import annotations

import os

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402

import flowjit as fj  # noqa: E402

SIDE = 4096  # each variable f32[SIDE, SIDE]: 64 MiB


def make_state(gib: float) -> tuple[list, object]:
    count = max(1, round(gib * 2**30 / (SIDE * SIDE * 4)))
    mesh = fj.Mesh(np.array(fj.devices()), ("data",))
    rng = np.random.default_rng(0)
    with mesh:
        variables = [
            fj.Variable(
                rng.standard_normal((SIDE, SIDE), np.float32), name=f"w{i}", sharding=fj.P("data")
            )
            for i in range(count)
        ]
    return variables, mesh


def orbax_restore(path: str, variables: list) -> dict:
    """Plain orbax under jax: the same arrays into the same shardings."""
    abstract = {
        v.name: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=v.value.sharding) for v in variables
    }
    out = ocp.PyTreeCheckpointer().restore(
        path,
        args=ocp.args.PyTreeRestore(
            item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract)
        ),
    )
    return jax.block_until_ready(out)


def measure(gib: float, rounds: int, folder: str) -> dict:
    variables, mesh = make_state(gib)
    nbytes = sum(v.value.nbytes for v in variables)
    times: dict[str, list[float]] = {
        "async save, blocked": [],
        "async save, total": [],
        "sync save": [],
        "flowjit restore": [],
        "orbax restore": [],
    }
    step = 0
    for r in range(rounds):
        for mode in ("async", "sync"):
            step += 1
            where = os.path.join(folder, mode)
            ckpt = fj.Checkpoint(where, variables, max_to_keep=1, async_save=mode == "async")
            start = time.perf_counter()
            ckpt.save(step)
            blocked = time.perf_counter() - start
            ckpt.wait_until_finished()
            total = time.perf_counter() - start
            if mode == "async":
                times["async save, blocked"].append(blocked)
                times["async save, total"].append(total)
            else:
                times["sync save"].append(total)
                # the two restores of the same step, in alternating order (the second reads
                # files the first has just brought into the page cache)
                order = ("flowjit", "orbax") if r % 2 == 0 else ("orbax", "flowjit")
                for who in order:
                    start = time.perf_counter()
                    if who == "flowjit":
                        ckpt.restore(step)
                        jax.block_until_ready([v.value for v in variables])
                    else:
                        out = orbax_restore(os.path.join(where, str(step), "state"), variables)
                    times[f"{who} restore"].append(time.perf_counter() - start)
                    if who == "orbax":
                        for v in variables:  # (the plain read gives the same values)
                            assert np.array_equal(np.asarray(out[v.name]), np.asarray(v.value))
                        del out
            ckpt.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "gib": round(nbytes / 2**30, 3),
        "variables": len(variables),
        "devices": len(mesh.devices.flat),
        "seconds": {k: round(v, 3) for k, v in med.items()},
        "blocked_over_sync": round(med["async save, blocked"] / med["sync save"], 3),
        "restore_over_orbax": round(med["flowjit restore"] / med["orbax restore"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--folder", help="where to write (default: a temporary folder)")
    parser.add_argument("--json", help="write the figures here")
    opts = parser.parse_args()
    folder = opts.folder or tempfile.mkdtemp(prefix="flowjit-ckpt-bench-")
    try:
        result = measure(opts.gib, opts.rounds, folder)
    finally:
        if not opts.folder:
            shutil.rmtree(folder, ignore_errors=True)
    print(
        f"{result['gib']} GiB in {result['variables']} variables sharded over "
        f"{result['devices']} CPU devices; medians of {opts.rounds} rounds\n"
    )
    print("| | seconds |\n|---|---:|")
    for name, seconds in result["seconds"].items():
        print(f"| {name} | {seconds:.3f} |")
    print(
        f"\nblocked by an async save / a sync save: {result['blocked_over_sync']:.3f} "
        "(goal <= 0.10)\n"
        f"flowjit restore / orbax restore: {result['restore_over_orbax']:.3f} (goal <= 1.1)"
    )
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
