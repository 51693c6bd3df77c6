"""Executing a compiled plan under jax.jit.

A Plan is what the runtime sees of a compiled function: the cluster to run, the dtypes its
argument inputs take, and which variables' values follow the arguments (state inputs) and
which variables' new values follow the results (state outputs); never an IR op.
``make_entry`` wraps the compiler's body in ``jax.jit`` so each call takes jax's C++ dispatch
path (docs/xla-notes.md, "Recommended backend design")."""

from __future__ import annotations

import collections
import functools
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from flowjit.backends.xla import Cluster, call_cluster, named_program
from flowjit.backends.xla.jaxshim import ArrayImpl, jax, wait_for_all

from .config import config
from .steps import run_steps
from .variables import VariableLocks, lost_in


@dataclass(frozen=True)
class Plan:
    """One cluster run under the caller's ``jax.jit`` (``cluster``); or, for a graph
    split around host calls, ``steps`` run one by one (runtime/steps.py), with ``results``
    the slots of the outputs."""

    cluster: Cluster | None
    input_dtypes: tuple[np.dtype, ...]
    state_inputs: tuple[Any, ...] = ()  # variables whose values follow the argument leaves
    state_outputs: tuple[Any, ...] = ()  # variables whose new values follow the results
    steps: tuple[Any, ...] = ()
    results: tuple[int, ...] = ()

    @property
    def split(self) -> bool:
        """Whether the plan runs step by step (it has host calls)."""
        return bool(self.steps)

    @property
    def stateful(self) -> bool:
        return bool(self.state_inputs or self.state_outputs)

    @functools.cached_property
    def variable_locks(self) -> VariableLocks:
        """The locks of the variables the plan reads or writes, to hold through a run."""
        return VariableLocks(self.state_inputs + self.state_outputs)


def run_plan(
    plan: Plan, leaves: Sequence[Any], state: dict[Any, Any] | None = None
) -> tuple[list[Any], dict[Any, Any]]:
    """Run the plan on flat jax values (tracers under jit, for a one-cluster plan): cast the
    arguments, feed the state values, bind the cluster or run the steps. Returns the results
    and {variable: new value} for each write."""
    cast = [
        x if x.dtype == dt else jax.lax.convert_element_type(x, dt)
        for x, dt in zip(leaves, plan.input_dtypes, strict=True)
    ]
    inputs = cast + [state[v] for v in plan.state_inputs]
    if plan.split:
        outs = run_steps(plan.steps, inputs, plan.results)
    else:
        outs = call_cluster(plan.cluster, *inputs)
    n = len(outs) - len(plan.state_outputs)
    return outs[:n], dict(zip(plan.state_outputs, outs[n:]))


def make_entry(
    body: Callable,
    *,
    static_argnums: Sequence[int],
    static_argnames: Sequence[str],
    donate_argnums: Sequence[int],
    backend: str | None,
    in_shardings: Any = None,
    out_shardings: Any = None,
    options: dict | None = None,
    name: str | None = None,
) -> Callable:
    """``jax.jit(body)``; with ``backend``, calls and lowerings run on that platform's first
    device (uncommitted inputs, numpy arrays included, are placed there). Shardings (None:
    not given) and XLA compile ``options`` go to jax.jit as they are. ``name`` names the
    program (XLA's module ``jit_<name>``, as profiles and HLO dumps show it)."""
    shardings = {"in_shardings": in_shardings, "out_shardings": out_shardings}
    jitted = jax.jit(
        body if name is None else named_program(body, name),
        static_argnums=tuple(static_argnums),
        static_argnames=tuple(static_argnames),
        donate_argnums=tuple(donate_argnums),
        compiler_options=options,
        **{k: v for k, v in shardings.items() if v is not None},
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


_Tracer = jax.core.Tracer

# Tokens of queued steps, oldest first, from all threads. Appends need no lock (deque.append
# is atomic); one thread at a time takes tokens off (_trimming), so none pops an empty deque.
_in_flight: collections.deque = collections.deque()
_trimming = threading.Lock()


def step_token(outputs: Sequence[Any], new_state: Sequence[Any]) -> Any:
    """Inside a jitted step with no outputs of its own: a one-element array, ready when the
    step is done, to wait on later (the new state is donated to the next step and cannot be).
    The optimization barrier keeps XLA from fusing the slice into the state update, which would
    cost the in-place update; reading the state from a separate dispatch instead would race
    with the next step's donation and make it copy."""
    if any(a.size for a in outputs):
        return None  # the step's results serve
    for array in new_state:
        if array.size:
            return jax.lax.optimization_barrier(array).reshape(-1)[:1]
    return None


def wait_for_steps_in_flight() -> None:
    """Wait until every step queued so far (by any thread) has run; a failed one is found
    by the next call that bounds the queue, as before."""
    steps = [step for step, _ in list(_in_flight)]
    try:
        wait_for_all(steps)
    except RuntimeError:
        pass


def bound_in_flight(results: Any, token: Any, written: tuple = ()) -> None:
    """Called after dispatching a step that wrote the variables ``written``: when more than
    N = ``max_steps_in_flight`` steps are queued, wait until at most N // 2 are (waiting for
    half the queue at once rather than one step per call keeps the dispatching thread from
    waking up at every step). A step is tracked by its first result, else by its
    ``step_token``. The queue is the process's, shared by all threads; the wait holds no lock
    (other threads go on queueing steps meanwhile). A queued step that failed while it ran
    (out of memory) is found here: the variables it wrote are lost (runtime/variables.py), and
    this raises their VariableError."""
    if token is None:
        if type(results) is ArrayImpl:  # (one result, the usual case: no pytree walk)
            token = None if 0 in results.shape else results
        else:
            leaves = jax.tree_util.tree_leaves(results)
            token = next((a for a in leaves if isinstance(a, jax.Array) and a.size), None)
    if token is not None and (type(token) is ArrayImpl or not isinstance(token, _Tracer)):
        _in_flight.append((token, written))  # (not a tracer: under a jax trace, nothing runs)
    limit = config.max_steps_in_flight
    if len(_in_flight) > limit:
        with _trimming:
            oldest = [_in_flight.popleft() for _ in range(len(_in_flight) - limit // 2)]
        try:  # (one wait for them all: cheaper than one per step)
            wait_for_all([step for step, _ in oldest])
        except RuntimeError:  # one failed, or was donated onwards: which, and what it lost
            lost = None
            for step, variables in oldest:
                try:
                    step.block_until_ready()
                except RuntimeError:
                    if not step.is_deleted():  # (else a result the user donated onwards)
                        lost = lost or lost_in(variables)
            if lost is not None:
                raise lost
