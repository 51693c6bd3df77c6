"""Running a plan of several steps: compiled clusters, transfers and host calls, in order.

A function whose graph has host calls or device scopes is split by the partition pass; its
plan lists the steps, each reading and writing numbered slots (the plan's inputs fill the
first slots). Each cluster is compiled once (its own ``jax.jit``); a host call runs its Python
function on numpy values between them (named in a profile's trace). Variables are rebound
only after every step has run, so a step that fails leaves them as they were."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from flowjit.backends.xla import Cluster
from flowjit.backends.xla.host import take_failure
from flowjit.backends.xla.jaxshim import jax, trace_state_clean
from flowjit.ir import FlowjitError, HostCallError


@dataclass(frozen=True)
class ClusterStep:
    cluster: Cluster  # what runs (backends/xla/cluster.py)
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    device: str | None = None  # a device name; None: the default device (or the mesh's)
    mesh: Any = None  # for a cluster that runs SPMD: the function's jax Mesh


@dataclass(frozen=True)
class HostStep:
    fn: Callable[..., Sequence[np.ndarray]]
    name: str
    where: Any  # the user's source line
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class TransferStep:
    device: str  # a device name, or "default"
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


Step = ClusterStep | HostStep | TransferStep


def device_name(device: Any) -> str:
    """A jax device's name in the IR: ``platform:id`` (``cpu:1``)."""
    return f"{device.platform}:{device.id}"


@functools.cache  # (a process's devices do not change; transfers look them up every call)
def find_device(name: str) -> Any:
    """The jax device named ``name`` ("default": jax's default device)."""
    if name == "default":
        return jax.devices()[0]
    platform, _, number = name.partition(":")
    try:
        found = [d for d in jax.devices(platform) if str(d.id) == number]
    except RuntimeError:
        found = []
    if not found:
        names = [device_name(d) for d in jax.devices()]
        raise ValueError(f"no device {name!r} here; devices: {names} (fj.devices())")
    return found[0]


def _compiled(cluster: Cluster, platform: str | None) -> Callable:
    # (jax takes compile options only on a jit it is not tracing inside another)
    return cluster.jitted(platform, top_level=trace_state_clean())


def _run_cluster(step: ClusterStep, args: list) -> Any:
    """Run one compiled cluster on its device (its inputs are there already: transfers; its
    constants go there too). A cluster calling the host is waited for, so that a callback
    that raised is reported as itself, here, in the thread that ran the step (the failure
    travels in XLA's error: backends/xla/host.py)."""
    wait = jax.block_until_ready if step.cluster.calls_host else (lambda outs: outs)
    if step.mesh is not None:  # SPMD: values from elsewhere (host calls) join the mesh
        devices = set(step.mesh.devices.flat)
        replicated = jax.sharding.NamedSharding(step.mesh, jax.sharding.PartitionSpec())
        args = [
            a if a.sharding.device_set == devices else jax.device_put(a, replicated) for a in args
        ]
    try:
        if step.mesh is not None:
            platform = step.mesh.devices.flat[0].platform
            return wait(_compiled(step.cluster, platform)(*args))
        if step.device is None:
            return wait(_compiled(step.cluster, None)(*args))
        device = find_device(step.device)
        with jax.default_device(device):
            return wait(_compiled(step.cluster, device.platform)(*args))
    except Exception as err:
        failure = take_failure(err)
        if failure is not None:  # (a HostCallError naming the user's line, a Ctrl-C, ...)
            raise failure from failure.__cause__ or err
        raise


HOST_CALL_EVENT = "flowjit host_call "


def _run_host(step: HostStep, args: list) -> list:
    try:
        outs = step.fn(*(np.asarray(a) for a in args))
    except FlowjitError:
        raise
    except Exception as err:
        raise HostCallError(
            f"the function {step.name} raised {type(err).__name__}: {err}",
            op="host_call",
            loc=step.where,
        ) from err
    return [jax.device_put(o) for o in outs]


def run_steps(steps: Sequence[Step], inputs: Sequence[Any], results: Sequence[int]) -> list:
    """Run ``steps`` with ``inputs`` in the first slots; returns the values of the ``results``
    slots."""
    env: dict[int, Any] = dict(enumerate(inputs))
    for step in steps:
        args = [env[i] for i in step.inputs]
        if isinstance(step, ClusterStep):
            outs = _run_cluster(step, args)
        elif isinstance(step, TransferStep):
            outs = [jax.device_put(args[0], find_device(step.device))]
        else:  # (named in a profile's trace: runtime/profile.py reads it back)
            with jax.profiler.TraceAnnotation(f"{HOST_CALL_EVENT}{step.name} at {step.where}"):
                outs = _run_host(step, args)
        env.update(zip(step.outputs, outs))
    return [env[i] for i in results]
