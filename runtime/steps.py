"""Running a plan of several steps: compiled clusters and host calls, in program order.

A function whose graph has host calls is split by the clustering pass; its plan lists the
steps, each reading and writing numbered slots (the plan's inputs fill the first slots). Each
cluster is compiled once (its own ``jax.jit``); a host call runs its Python function on numpy
values between them. Variables are rebound only after every step has run, so a step that
fails leaves them as they were."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from flowjit.backends.xla import cluster_p
from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import FlowjitError, HostCallError


@dataclass(frozen=True)
class ClusterStep:
    key: int  # the cluster's key (backends/xla/cluster.py)
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class HostStep:
    fn: Callable[..., Sequence[np.ndarray]]
    name: str
    where: Any  # the user's source line
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


Step = ClusterStep | HostStep
_JITTED: dict[int, Callable] = {}


def _compiled(key: int) -> Callable:
    if key not in _JITTED:
        _JITTED[key] = jax.jit(lambda *xs: tuple(cluster_p.bind(*xs, key=key)))
    return _JITTED[key]


def run_steps(steps: Sequence[Step], inputs: Sequence[Any], results: Sequence[int]) -> list:
    """Run ``steps`` with ``inputs`` in the first slots; returns the values of the ``results``
    slots."""
    env: dict[int, Any] = dict(enumerate(inputs))
    for step in steps:
        args = [env[i] for i in step.inputs]
        if isinstance(step, ClusterStep):
            outs = _compiled(step.key)(*args)
        else:
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
            outs = [jax.device_put(o) for o in outs]
        env.update(zip(step.outputs, outs))
    return [env[i] for i in results]
