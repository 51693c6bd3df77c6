"""FSDP on 8 devices: examples/gpt.py's GPT with its parameters and optimizer state sharded
over the data axis by logical axis rules (each device holds 1/8 of every matrix), the batch
split over it, against the same model in flax + optax under ``jax.jit`` with the same
shardings (bench/suite/gpt_flax.py). Reports the step time of each (interleaved rounds, medians)
and the throughput ratio, the first losses of both, and the collectives in each compiled
program: both should gather the parameters where they are used and reduce their gradients,
with the same kinds of collective and no more of any kind than jax.jit's program. (XLA:CPU
reduces gradients by all-reduce; it forms reduce-scatters on GPU and TPU.)

On a CPU it simulates 8 devices (XLA_FLAGS, set before jax starts).

    python bench/gpt_fsdp.py [--size small|medium|tiny] [--steps N] [--rounds R] [--json F]
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    os.environ["XLA_FLAGS"] = flags.strip()

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import pathlib  # noqa: E402
import sys  # noqa: E402

import jax  # noqa: E402

import flowjit as fj  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench" / "suite"), str(ROOT / "examples")]
import gpt  # noqa: E402  (the flowjit model)
import gpt_flax  # noqa: E402  (the same in flax)
import workloads as W  # noqa: E402

# FSDP: every matrix split along its model dimension, the activations along the batch
RULES = [("batch", "data"), ("embed", "data")]
CHECKED = 3  # steps whose losses are compared


def fsdp_model(model_opts, mesh):
    """The example's GPT made under the FSDP rules, from flax's initial weights."""
    with mesh, fj.nn.axis_rules(RULES):
        model = gpt.GPT(model_opts)
    initial = gpt_flax.initial_params(model_opts)
    for path, variable in model.named_variables().items():
        variable.assign(gpt_flax.at_path(initial, path))
    return model


def split_eight_ways(model) -> bool:
    """Whether every matrix of the model (and so its optimizer slots) lies 1/8 per device."""
    return all(
        v.sharding is not None and v.value.addressable_shards[0].data.size * 8 == v.size
        for v in model.variables
        if "embed" in (v.axes or ()) and v.ndim >= 2
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="small", choices=sorted(W.GPT_SIZES))
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="write the figures here")
    opts = parser.parse_args()
    model_opts = W.gpt_options(f"gpt_{opts.size}")
    mesh = fj.Mesh(fj.devices(), ("data",))
    model = fsdp_model(model_opts, mesh)
    params = gpt_flax.params_of(model, mesh)  # (the same values, the same shardings)
    opt = fj.optim.Optimizer(W.gpt_tx())
    fj_step, _ = gpt.make_steps(model, opt, mesh=mesh)
    batch_sharding = jax.sharding.NamedSharding(mesh.jax, fj.P("data"))
    data = [jax.device_put(b, batch_sharding) for (b,) in W.batches(f"gpt_{opts.size}", 8)]
    jax_run, jax_step, jax_state = gpt_flax.jax_trainer(model_opts, params, mesh)

    with fj.nn.axis_rules(RULES):  # (traced under the rules, as flax's are)
        fj_lowered = fj_step.lower(data[0])
        float(fj_step(data[0]))  # (a first step, before the checked ones: both take one)
        float(jax_run(data[0]))
    hlo = {
        "flowjit": fj_lowered.compile().hlo(),
        "jax.jit": jax_step.lower(*jax_state, data[0]).compile().as_text(),
    }
    losses = {"flowjit": [], "jax.jit": []}
    for batch in data[:CHECKED]:
        losses["flowjit"].append(float(fj_step(batch)))
        losses["jax.jit"].append(float(jax_run(batch)))
    optimizer_split = all(s.sharding is not None for s in opt.variables() if s.ndim >= 2)
    times = {"flowjit": [], "jax.jit": []}
    runs = {"flowjit": fj_step, "jax.jit": jax_run}
    for _ in range(opts.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            for i in range(opts.steps):
                loss = run(data[i % len(data)])
            jax.block_until_ready(loss)
            times[name].append((time.perf_counter() - start) / opts.steps)
    step = {name: statistics.median(t) for name, t in times.items()}
    counts = {name: gpt_flax.collectives(text) for name, text in hlo.items()}
    report = {
        "size": opts.size,
        "devices": len(fj.devices()),
        "per_step_seconds": times,
        "step_ms": {k: v * 1e3 for k, v in step.items()},
        "throughput_ratio": step["jax.jit"] / step["flowjit"],
        "losses": losses,
        "collectives": counts,
        "same_kinds": {k for k, n in counts["flowjit"].items() if n}
        == {k for k, n in counts["jax.jit"].items() if n},
        "none_more": all(counts["flowjit"][k] <= n for k, n in counts["jax.jit"].items()),
        "parameters_split_8_ways": split_eight_ways(model),
        "optimizer_state_sharded": optimizer_split,
    }
    print(f"FSDP GPT {opts.size} on {report['devices']} devices")
    for name in runs:
        print(
            f"  {name:8s} step {step[name] * 1e3:8.2f} ms  losses "
            + " ".join(f"{x:.5f}" for x in losses[name])
            + f"  collectives {counts[name]}"
        )
    print(
        f"throughput flowjit / jax.jit = {report['throughput_ratio']:.3f} (goal >= 0.95); "
        f"same kinds of collective: {report['same_kinds']}, none more than jax.jit's: "
        f"{report['none_more']}; parameters 1/8 per device: "
        f"{report['parameters_split_8_ways']}; optimizer state sharded: {optimizer_split}"
    )
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(report, f, indent=1)
    print("RESULT " + json.dumps(report))  # (the suite's protocol: bench/suite/suite.py)


if __name__ == "__main__":
    main()
